"""Thompson sampling: the linear posterior beats greedy; Beta-Bernoulli finds the best cold item."""

from __future__ import annotations

from functools import partial

import numpy as np

from liverec.policy import Feedback, Greedy, ThompsonSampling

from .bandit import run


def test_beats_greedy_when_the_model_score_is_wrong() -> None:
    seeds = range(3)
    greedy = np.mean([run(Greedy, seed) for seed in seeds])
    ts = np.mean(
        [run(partial(ThompsonSampling, min_impressions=0, n_propensity_samples=20, seed=s), s) for s in seeds]
    )
    assert ts > 1.3 * greedy, (ts, greedy)


def test_beta_bernoulli_finds_the_best_cold_item() -> None:
    ctr = np.array([0.05, 0.1, 0.15, 0.2, 0.25, 0.45, 0.3, 0.1])  # row 5 is best
    rows = np.arange(len(ctr), dtype=np.int64)
    scores = np.zeros(len(ctr), np.float32)  # the model cannot tell them apart
    rng = np.random.default_rng(0)
    for seed in range(3):
        policy = ThompsonSampling(min_impressions=10**9, cold_weight=1.0, n_propensity_samples=10, seed=seed)
        shown = []
        for _ in range(1500):
            s = policy.select(rows, scores, 1)
            reward = float(rng.random() < ctr[s.rows[0]])
            policy.update(s.feedback([reward]))
            shown.append(int(s.rows[0]))
        assert np.mean(np.array(shown[-500:]) == 5) > 0.6
        means = [(policy.clicks.get(r, 0) + 1) / (policy.impressions.get(r, 0) + 2) for r in range(8)]
        assert int(np.argmax(means)) == 5


def test_prior_mean_is_the_model_score() -> None:
    rng = np.random.default_rng(3)
    u, items = rng.normal(size=8).astype(np.float32), rng.normal(size=(30, 8)).astype(np.float32)
    scores = items @ u
    rows = np.arange(30, dtype=np.int64)
    ctx = {"user_vector": u, "item_vectors": items}
    s = ThompsonSampling(sigma=0.0, min_impressions=0, seed=0).select(rows, scores, 10, ctx)
    assert s.rows.tolist() == Greedy().select(rows, scores, 10).rows.tolist()
    assert s.propensities.tolist() == [1.0] * 10  # nothing random: every draw agrees
    s = ThompsonSampling(min_impressions=0, seed=0).select(rows, scores, 10, {"user_id": "u"})
    assert s.rows.tolist() == Greedy().select(rows, scores, 10).rows.tolist()


def test_monte_carlo_propensities_are_floored_never_zero() -> None:
    rows = np.arange(50, dtype=np.int64)
    scores = np.zeros(50, np.float32)
    policy = ThompsonSampling(n_propensity_samples=5, min_propensity=0.01, seed=0)
    props = np.concatenate([policy.select(rows, scores, 10).propensities for _ in range(50)])
    assert props.min() == 0.01  # 5 draws over 50 cold rows: most estimates are 0 before the floor
    assert np.all(props <= 1)


def test_counts_and_posterior_follow_feedback() -> None:
    policy = ThompsonSampling()
    u = np.ones(3, np.float32)
    policy.update(
        [
            Feedback(7, 0, 1.0, 0.5, user_vector=u, item_vector=u),
            Feedback(7, 1, 0.0, 0.5),
            Feedback(9, 2, -1.0, 0.5, user_vector=u, item_vector=u),
        ]
    )
    assert policy.impressions == {7: 2, 9: 1} and policy.clicks == {7: 1}
    assert policy.linear.n_updates == 2


def test_beta_quantile_draws_follow_the_beta_posterior() -> None:
    """The cached inverse-CDF draws of cold rows match Beta(a + clicks, b + non-clicks)."""
    from scipy import stats

    from liverec.policy.thompson import BetaQuantiles

    beta = BetaQuantiles(1.0, 1.0)
    clicks, non = np.array([0.0, 2.0, 0.0, 5.0]), np.array([0.0, 3.0, 9.0, 1.0])
    draws = beta.draw(clicks, non, 20_000, np.random.default_rng(0))  # (n, C)
    assert draws.shape == (20_000, 4) and draws.min() >= 0.0 and draws.max() <= 1.0
    for c in range(4):
        dist = stats.beta(1.0 + clicks[c], 1.0 + non[c])
        assert stats.kstest(draws[:, c], dist.cdf).pvalue > 0.01
        assert abs(draws[:, c].mean() - dist.mean()) < 0.01
    assert len(beta) == 4
    assert beta.draw(clicks, non, 3, np.random.default_rng(0)).dtype == np.float32
    beta.draw(np.array([2.0]), np.array([3.0]), 5, np.random.default_rng(1))
    assert len(beta) == 4 and beta.table.shape == (4, BetaQuantiles.GRID)  # reused, not recomputed


def test_beta_quantiles_fill_every_cold_count_pair_at_once() -> None:
    """The first draw computes all pairs a cold row can have, so no later request pays for one."""
    from liverec.policy.thompson import BetaQuantiles

    beta = BetaQuantiles(1.0, 1.0, max_total=10)
    beta.draw(np.array([0]), np.array([0]), 1, np.random.default_rng(0))
    assert len(beta) == 55  # pairs with clicks + non-clicks < 10
    beta.draw(np.array([9, 0, 3]), np.array([0, 9, 6]), 1, np.random.default_rng(0))
    assert len(beta) == 55
    huge = BetaQuantiles(1.0, 1.0, max_total=10**9)  # too many to fill: pairs come as they are seen
    huge.draw(np.array([2]), np.array([40]), 1, np.random.default_rng(0))
    assert len(huge) == 1


def test_counts_of_rows_outside_the_vocabulary_are_kept_apart() -> None:
    policy = ThompsonSampling()
    policy.update([Feedback(r, 0, 1.0, 0.5) for r in (3, 3, -5, 10**12, 2**40)])
    policy.update([Feedback(10**12, 1, 0.0, 0.5)])
    assert policy.impressions == {3: 2, -5: 1, 10**12: 2, 2**40: 1}
    assert policy.clicks == {3: 2, -5: 1, 10**12: 1, 2**40: 1}
    imp, clk = policy.counts.get(np.array([10**12, 3, 4, -5], dtype=np.int64))
    assert imp.tolist() == [2, 2, 0, 1] and clk.tolist() == [1, 2, 0, 1]


def test_value_marginals_equal_the_ranked_estimate() -> None:
    """Propensities from sorted values equal those from ranking every draw, and ties send the
    caller back to ranking."""
    from liverec.policy.base import empirical_marginals, top_k_rows
    from liverec.policy.thompson import value_marginals

    rng = np.random.default_rng(0)
    base = rng.normal(size=40)
    draws = (base[None, :] + 0.3 * rng.normal(size=(201, 40))).astype(np.float32)  # (1 + n, M)
    for kk in (1, 5, 40):
        served, marg = value_marginals(draws, kk, 0.001)  # type: ignore[misc]
        rankings = top_k_rows(draws, kk)
        np.testing.assert_array_equal(served, rankings[0])
        np.testing.assert_allclose(marg, empirical_marginals(rankings[1:], rankings[0], 0.001))
        assert 0.001 < marg.max() < 1.0
    tied = draws.copy()
    tied[7, 3] = tied[7].max()  # a tie at the top of one draw
    assert value_marginals(tied, 5, 0.001) is None
    same = np.tile(draws[:1], (5, 1))  # nothing random: every draw agrees
    np.testing.assert_array_equal(value_marginals(same, 5, 0.001)[1], np.ones(5))  # type: ignore[index]
