"""Epsilon-greedy: exact marginal, conditional and slate propensities; explores at rate epsilon."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from liverec.policy import EpsilonGreedy
from liverec.policy.epsilon import marginal_table


def enumerate_slates(m: int, kk: int, eps: float) -> dict[tuple[int, ...], float]:
    """Every ordered slate of ranks with its probability, by brute force."""
    out: dict[tuple[int, ...], float] = {}

    def rec(prefix: tuple[int, ...], prob: float) -> None:
        if len(prefix) == kk:
            out[prefix] = prob
            return
        left = [r for r in range(m) if r not in prefix]
        for r in left:
            rec((*prefix, r), prob * ((1 - eps) * (r == left[0]) + eps / len(left)))

    rec((), 1.0)
    return out


@pytest.mark.parametrize(
    ("m", "kk", "eps"), [(1, 1, 0.3), (4, 4, 0.5), (6, 3, 0.2), (7, 5, 1.0), (8, 4, 0.37)]
)
def test_marginal_table_is_exact(m: int, kk: int, eps: float) -> None:
    want = np.zeros((kk, m))
    for slate, prob in enumerate_slates(m, kk, eps).items():
        want[np.arange(kk), list(slate)] += prob
    np.testing.assert_allclose(marginal_table(m, kk, eps), want, atol=1e-12)
    np.testing.assert_allclose(marginal_table(m, kk, eps).sum(axis=1), 1.0)


def test_slate_propensity_is_the_probability_of_the_slate() -> None:
    m, kk, eps = 5, 3, 0.4
    truth = enumerate_slates(m, kk, eps)
    rows = np.arange(100, 100 + m, dtype=np.int64)
    scores = np.linspace(1, 0, m).astype(np.float32)  # rank == position in rows
    policy = EpsilonGreedy(eps, seed=3)
    n = 4000
    seen: Counter[tuple[int, ...]] = Counter()
    for _ in range(n):
        s = policy.select(rows, scores, kk)
        ranks = tuple((s.rows - 100).tolist())
        assert s.slate_propensity == pytest.approx(truth[ranks])
        seen[ranks] += 1
    for slate, count in seen.items():
        p = truth[slate]
        assert abs(count / n - p) < 4 * np.sqrt(p * (1 - p) / n) + 0.003


def test_explores_at_the_expected_rate() -> None:
    m, eps, n = 20, 0.2, 4000
    rows = np.arange(m, dtype=np.int64)
    scores = np.arange(m, 0, -1).astype(np.float32)
    policy = EpsilonGreedy(eps, seed=0)
    off_top = sum(policy.select(rows, scores, 1).rows[0] != 0 for _ in range(n)) / n
    expected = eps * (m - 1) / m  # a random pick lands on the top one 1/m of the time
    assert abs(off_top - expected) < 4 * np.sqrt(expected * (1 - expected) / n)


def test_zero_is_greedy_and_one_is_uniform() -> None:
    rows = np.arange(6, dtype=np.int64)
    scores = np.array([3, 1, 2, 0, 5, 4], dtype=np.float32)
    s = EpsilonGreedy(0.0, seed=0).select(rows, scores, 3)
    assert s.rows.tolist() == [4, 5, 0] and s.propensities.tolist() == [1.0, 1.0, 1.0]
    s = EpsilonGreedy(1.0, seed=0).select(rows, scores, 3)
    np.testing.assert_allclose(s.propensities, 1 / 6)
    np.testing.assert_allclose(s.conditional_propensities, [1 / 6, 1 / 5, 1 / 4])


def test_rejects_bad_epsilon() -> None:
    with pytest.raises(ValueError):
        EpsilonGreedy(1.5)
