"""The Policy contract (`liverec.policy.base`), checked against every policy of the factory.

Each case builds a fresh policy from `make_policy` with a seed; MMR cases wrap a deterministic and
a stochastic policy. Inputs are small (M = 8 candidates, D = 4) so the empirical propensity checks
can draw thousands of slates in well under a second per policy.
"""

from __future__ import annotations

import copy
from collections import Counter
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from liverec.policy import POLICIES, Feedback, Policy, make_policy

CASES: dict[str, Callable[[int], Policy]] = {
    "greedy": lambda seed: make_policy("greedy"),
    "epsilon": lambda seed: make_policy("epsilon", epsilon=0.3, seed=seed),
    "plackett_luce": lambda seed: make_policy("plackett_luce", temperature=0.7, seed=seed),
    "thompson": lambda seed: make_policy("thompson", seed=seed),  # every row cold: Beta draws
    "thompson_warm": lambda seed: make_policy("thompson", seed=seed, min_impressions=0, sigma=1.0),
    "thompson_user": lambda seed: make_policy("thompson", seed=seed, min_impressions=0, user_weight=2.0),
    "linucb": lambda seed: make_policy("linucb", alpha=1.0),
    "linucb_user": lambda seed: make_policy("linucb", alpha=1.0, user_weight=2.0),
    "shuffle": lambda seed: make_policy("shuffle", epsilon=0.5, depth=3, seed=seed),
    "mmr_greedy": lambda seed: make_policy("greedy", mmr=0.5),
    "mmr_epsilon": lambda seed: make_policy("epsilon", epsilon=0.3, seed=seed, mmr=0.5, mmr_pool_factor=2),
}
M, D = 8, 4


def inputs(seed: int = 0, m: int = M, vectors: bool = True) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """(m,) int64 candidates best first, (m,) float32 scores = item_vectors @ user_vector, context."""
    rng = np.random.default_rng(seed)
    rows = rng.choice(10_000, m, replace=False).astype(np.int64)
    u = rng.normal(0, 1, D).astype(np.float32)
    items = rng.normal(0, 1, (m, D)).astype(np.float32)
    scores = items @ u
    order = np.argsort(-scores, kind="stable")
    ctx: dict[str, Any] = {"user_id": "u1"}
    if vectors:
        ctx |= {"user_vector": u, "item_vectors": items[order]}
    return rows[order], scores[order], ctx


@pytest.fixture(params=sorted(CASES))
def case(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def test_every_factory_policy_is_covered() -> None:
    assert set(POLICIES) <= set(CASES)


@pytest.mark.parametrize("vectors", [True, False])
@pytest.mark.parametrize("k", [1, 3, 8, 12])
def test_slate_is_at_most_k_distinct_candidates_with_propensities(case: str, vectors: bool, k: int) -> None:
    policy = CASES[case](0)
    rows, scores, ctx = inputs(1, vectors=vectors)
    for _ in range(5):
        s = policy.select(rows, scores, k, ctx)
        kk = min(k, M)
        assert s.rows.shape == s.scores.shape == s.propensities.shape == (kk,)
        assert (
            s.rows.dtype == np.int64 and s.scores.dtype == np.float32 and s.propensities.dtype == np.float64
        )
        assert len(set(s.rows.tolist())) == kk and set(s.rows.tolist()) <= set(rows.tolist())
        assert np.all(s.propensities > 0) and np.all(s.propensities <= 1)
        assert s.index is not None  # display order: position p shows candidates[index[p]]
        np.testing.assert_array_equal(rows[s.index], s.rows)
        np.testing.assert_array_equal(scores[s.index], s.scores)
        if s.conditional_propensities is not None:
            c = s.conditional_propensities
            assert c.shape == (kk,) and np.all(c > 0) and np.all(c <= 1)
            assert s.slate_propensity == pytest.approx(float(np.prod(c)))
            assert np.all(s.propensities <= 1)
        policy.update(s.feedback(np.ones(kk), ctx))


def test_deterministic_for_a_fixed_seed(case: str) -> None:
    a, b = CASES[case](7), CASES[case](7)
    for i in range(15):
        rows, scores, ctx = inputs(i % 3)
        sa, sb = a.select(rows, scores, 3, ctx), b.select(rows, scores, 3, ctx)
        np.testing.assert_array_equal(sa.rows, sb.rows)
        np.testing.assert_array_equal(sa.propensities, sb.propensities)
        rewards = np.array([1.0, 0.0, 0.0])
        a.update(sa.feedback(rewards, ctx))
        b.update(sb.feedback(rewards, ctx))


IGNORE_VECTORS = sorted(c for c, make in CASES.items() if not make(0).uses_vectors)


def test_the_vector_free_policies_say_so() -> None:
    assert IGNORE_VECTORS == ["epsilon", "greedy", "plackett_luce", "shuffle"]


@pytest.mark.parametrize("case", IGNORE_VECTORS)
def test_a_policy_that_says_it_ignores_vectors_serves_the_same_without_them(case: str) -> None:
    """``uses_vectors = False`` lets the server skip computing item vectors: same seed, same
    updates, identical slates and propensities with and without vectors in the context."""
    a, b = CASES[case](3), CASES[case](3)
    for i in range(15):
        rows, scores, ctx = inputs(i % 3)
        bare = {"user_id": ctx["user_id"]}
        sa, sb = a.select(rows, scores, 3, ctx), b.select(rows, scores, 3, bare)
        np.testing.assert_array_equal(sa.rows, sb.rows)
        np.testing.assert_array_equal(sa.propensities, sb.propensities)
        a.update(sa.feedback(np.array([1.0, 0.0, 0.0]), ctx))
        b.update(sb.feedback(np.array([1.0, 0.0, 0.0]), bare))


@pytest.mark.parametrize("case", sorted(c for c in CASES if not c.endswith("_user")))
def test_rebase_forgets_exactly_what_was_learned_from_vectors(case: str) -> None:
    """After a model change (`rebase`), a policy that learned from feedback with vectors serves like
    one that got the same feedback without them: per-item counts stay, vector-space learning goes.
    Per-user windows (``user_weight``) are kept on purpose: an online learner publishes every few
    hundred visits, so dropping them would forget each user between two visits; the window renews
    them instead (tests/policy/test_user_posterior.py)."""
    a, b = CASES[case](5), CASES[case](5)
    for i in range(40):
        rows, scores, ctx = inputs(i % 4)
        sa = a.select(rows, scores, 3, ctx)
        b.select(rows, scores, 3, ctx)  # keeps b's random generator in step with a's
        rewards = np.array([float(i % 3 == 0), 0.0, float(i % 5 == 0)])
        a.update(sa.feedback(rewards, ctx))
        b.update(sa.feedback(rewards, {"user_id": "u1"}))  # the same slate and rewards, no vectors
    a.rebase()
    for i in range(10):
        rows, scores, ctx = inputs(10 + i % 3)
        sa, sb = a.select(rows, scores, 3, ctx), b.select(rows, scores, 3, ctx)
        np.testing.assert_array_equal(sa.rows, sb.rows)
        np.testing.assert_allclose(sa.propensities, sb.propensities)


@pytest.mark.parametrize("m", [0, 1, 2])
def test_fewer_candidates_than_k(case: str, m: int) -> None:
    policy = CASES[case](0)
    for vectors in (True, False):
        rows, scores, ctx = inputs(2, m=m, vectors=vectors)
        s = policy.select(rows, scores, 5, ctx)
        assert s.rows.shape == s.propensities.shape == (m,)
        assert sorted(s.rows.tolist()) == sorted(rows.tolist())
        assert np.all((s.propensities > 0) & (s.propensities <= 1))
        policy.update(s.feedback(np.zeros(m), ctx))
    s = policy.select(np.zeros(0, np.int64), np.zeros(0, np.float32), 5, None)
    assert s.rows.shape == (0,) and s.propensities.shape == (0,)


def test_update_takes_shown_and_unknown_rows(case: str) -> None:
    policy = CASES[case](0)
    rows, scores, ctx = inputs(3)
    s = policy.select(rows, scores, 3, ctx)
    policy.update(s.feedback([1.0, 0.0, 2.0], ctx))
    u = np.ones(D, np.float32)
    policy.update(
        [
            Feedback(row=-5, position=0, reward=1.0, propensity=0.5),
            Feedback(row=10**12, position=3, reward=0.0, propensity=1.0, user_vector=u, item_vector=u),
            Feedback(row=1, position=0, reward=1.0, propensity=1.0, user_vector=u, item_vector=np.ones(7)),
            Feedback(row=2, position=0, reward=float("nan"), propensity=1.0, user_vector=u, item_vector=u),
            Feedback(row=3, position=1, reward=1.0, propensity=1.0, user_vector=u * np.inf, item_vector=u),
        ]
    )
    policy.update([])
    after = policy.select(rows, scores, 3, ctx)
    assert after.rows.shape == (3,) and np.all(after.propensities > 0)


def test_select_does_not_mutate_inputs(case: str) -> None:
    policy = CASES[case](0)
    rows, scores, ctx = inputs(4)
    before = (rows.copy(), scores.copy(), copy.deepcopy(ctx))
    for k in (3, 8):
        policy.select(rows, scores, k, ctx)
    np.testing.assert_array_equal(rows, before[0])
    np.testing.assert_array_equal(scores, before[1])
    assert ctx.keys() == before[2].keys()
    for key in ("user_vector", "item_vectors"):
        np.testing.assert_array_equal(ctx[key], before[2][key])


def test_misaligned_inputs_raise(case: str) -> None:
    policy = CASES[case](0)
    rows, scores, ctx = inputs(5)
    with pytest.raises(ValueError):
        policy.select(rows, scores[:-1], 3, ctx)
    if case not in ("greedy", "epsilon", "plackett_luce", "shuffle"):  # these never read the vectors
        with pytest.raises(ValueError):
            policy.select(rows, scores, 3, ctx | {"item_vectors": ctx["item_vectors"][:-1]})


@pytest.mark.parametrize("vectors", [True, False])
def test_logged_propensities_match_empirical_frequencies(case: str, vectors: bool) -> None:
    """Draw many slates for the same inputs: the share of slates showing a row at a position is
    the marginal propensity logged for it (averaged, as Monte Carlo estimates vary per call), and
    `sample` draws from the same distribution as `select`."""
    n, k = 2500, 3
    policy = CASES[case](11)
    rows, scores, ctx = inputs(6, vectors=vectors)
    shown: Counter[tuple[int, int]] = Counter()
    logged: dict[tuple[int, int], list[float]] = {}
    for _ in range(n):
        s = policy.select(rows, scores, k, ctx)
        for p, (r, prop) in enumerate(zip(s.rows.tolist(), s.propensities.tolist(), strict=True)):
            shown[r, p] += 1
            logged.setdefault((r, p), []).append(prop)
    if policy.deterministic:
        assert len(shown) == k and all(v == [1.0] * n for v in logged.values())
    for (r, p), count in shown.items():
        freq, prop = count / n, float(np.mean(logged[r, p]))
        tol = 4.0 * np.sqrt(max(prop * (1 - prop), 1e-3) / n) + 0.005
        assert abs(freq - prop) < tol, (case, r, p, freq, prop)
    sampled = policy.sample(rows, scores, k, ctx, n)
    assert sampled.shape == (n, k)
    for (r, p), count in shown.items():
        freq_sample = float(np.mean(rows[sampled[:, p]] == r))
        tol = 4.0 * np.sqrt(max(freq_sample * (1 - freq_sample), 1e-3) * 2 / n) + 0.005
        assert abs(freq_sample - count / n) < tol, (case, r, p)
