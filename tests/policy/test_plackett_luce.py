"""Plackett-Luce: exact conditionals and slate probability, a Rao-Blackwellised marginal estimate."""

from __future__ import annotations

import itertools
from collections import Counter

import numpy as np
import pytest

from liverec.policy import PlackettLuce


def pl_probability(w: np.ndarray, slate: tuple[int, ...]) -> float:
    """P(ordered slate) under Plackett-Luce with weights ``w``, straight from the definition."""
    prob, left = 1.0, list(range(len(w)))
    for i in slate:
        prob *= w[i] / w[left].sum()
        left.remove(i)
    return prob


def test_slate_propensity_and_conditionals_are_exact_and_match_frequencies() -> None:
    scores = np.array([1.0, 0.3, -0.2, -1.0], dtype=np.float32)
    rows = np.array([40, 41, 42, 43], dtype=np.int64)
    temperature, n = 0.8, 4000
    w = np.exp(scores.astype(np.float64) / temperature)
    policy = PlackettLuce(temperature, seed=1, n_propensity_samples=1)
    seen: Counter[tuple[int, ...]] = Counter()
    for _ in range(n):
        s = policy.select(rows, scores, 2)
        slate = tuple((s.rows - 40).tolist())
        assert s.slate_propensity == pytest.approx(pl_probability(w, slate), rel=1e-9)
        assert s.conditional_propensities is not None
        assert s.conditional_propensities[0] == pytest.approx(w[slate[0]] / w.sum())
        seen[slate] += 1
    assert len(seen) == 12  # every ordered pair shows up
    for slate, count in seen.items():
        p = pl_probability(w, slate)
        assert abs(count / n - p) < 4 * np.sqrt(p * (1 - p) / n) + 0.003


def test_marginal_estimate_matches_the_exact_marginal() -> None:
    scores = np.array([2.0, 1.0, 0.5, 0.0, -1.0], dtype=np.float32)
    rows = np.arange(5, dtype=np.int64)
    w = np.exp(scores.astype(np.float64))
    exact = np.zeros((3, 5))
    for slate in itertools.permutations(range(5), 3):
        exact[np.arange(3), list(slate)] += pl_probability(w, slate)
    policy = PlackettLuce(1.0, seed=2, n_propensity_samples=3000)
    for _ in range(20):
        s = policy.select(rows, scores, 3)
        want = exact[np.arange(3), s.rows]
        assert s.propensities[0] == pytest.approx(want[0], rel=1e-9)  # exact at the top
        np.testing.assert_allclose(s.propensities, want, atol=0.015)


def test_temperature_moves_between_greedy_and_uniform() -> None:
    rows = np.arange(10, dtype=np.int64)
    scores = np.linspace(3, 0, 10).astype(np.float32)
    cold = PlackettLuce(0.01, seed=0).select(rows, scores, 4)
    assert cold.rows.tolist() == [0, 1, 2, 3] and cold.slate_propensity == pytest.approx(1.0)
    hot = PlackettLuce(1e6, seed=0).select(rows, scores, 4)
    np.testing.assert_allclose(hot.conditional_propensities, [1 / 10, 1 / 9, 1 / 8, 1 / 7], rtol=1e-4)


def test_unscorable_rows_are_drawn_last_but_never_with_zero_probability() -> None:
    rows = np.arange(4, dtype=np.int64)
    scores = np.array([1.0, -np.inf, 0.0, -np.inf], dtype=np.float32)
    s = PlackettLuce(1.0, seed=0).select(rows, scores, 4)
    assert set(s.rows[:2].tolist()) == {0, 2} and set(s.rows[2:].tolist()) == {1, 3}
    assert np.all(s.propensities > 0) and s.slate_propensity is not None and s.slate_propensity > 0


def test_rejects_bad_hyperparameters() -> None:
    with pytest.raises(ValueError):
        PlackettLuce(0.0)
    with pytest.raises(ValueError):
        PlackettLuce(1.0, n_propensity_samples=-1)
