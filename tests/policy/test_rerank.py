"""MMR re-ranking: lam = 1 keeps the wrapped slate, lower lam spreads it over clusters."""

from __future__ import annotations

from typing import Any

import numpy as np

from liverec.policy import MMR, Greedy, LinUCB, make_policy


def clustered(seed: int = 0) -> tuple[np.ndarray, np.ndarray, dict[str, Any], np.ndarray]:
    """12 candidates in 3 tight clusters of 4; the best 4 scores all belong to cluster 0."""
    rng = np.random.default_rng(seed)
    centers = np.eye(3, 8, dtype=np.float32) * 5
    cluster = np.repeat([0, 1, 2], 4)
    items = centers[cluster] + rng.normal(0, 0.1, (12, 8)).astype(np.float32)
    scores = np.array([9, 8, 7, 6, 5, 4, 3, 2, 1.5, 1.2, 1.1, 1.0], np.float32)
    ctx = {"user_vector": np.ones(8, np.float32), "item_vectors": items}
    return np.arange(100, 112, dtype=np.int64), scores, ctx, cluster


def test_lam_one_keeps_the_wrapped_slate() -> None:
    rows, scores, ctx, _ = clustered()
    want = Greedy().select(rows, scores, 4, ctx).rows.tolist()
    assert MMR(Greedy(), lam=1.0).select(rows, scores, 4, ctx).rows.tolist() == want


def test_diversity_spreads_the_slate_over_clusters() -> None:
    rows, scores, ctx, cluster = clustered()
    greedy = Greedy().select(rows, scores, 3, ctx)
    assert len(set(cluster[greedy.index].tolist())) == 1
    diverse = MMR(Greedy(), lam=0.5, pool_factor=4).select(rows, scores, 3, ctx)
    assert diverse.index is not None and len(set(cluster[diverse.index].tolist())) == 3
    assert diverse.rows[0] == greedy.rows[0]  # the most relevant still leads
    assert diverse.propensities.tolist() == [1.0, 1.0, 1.0] and diverse.policy == "mmr(greedy)"


def test_over_a_stochastic_policy_it_estimates_propensities() -> None:
    rows, scores, ctx, _ = clustered()
    policy = make_policy("epsilon", epsilon=0.5, seed=0, mmr=0.5, mmr_pool_factor=4)
    s = policy.select(rows, scores, 3, ctx)
    assert s.conditional_propensities is None and s.slate_propensity is None
    assert np.all((s.propensities > 0) & (s.propensities <= 1)) and np.any(s.propensities < 1)


def test_without_item_vectors_the_wrapped_slate_is_served() -> None:
    rows, scores, _, _ = clustered()
    s = MMR(Greedy(), lam=0.2).select(rows, scores, 3, {"user_id": "u"})
    assert s.rows.tolist() == [100, 101, 102] and s.policy == "mmr(greedy)"


def test_update_reaches_the_wrapped_policy() -> None:
    rows, scores, ctx, _ = clustered()
    inner = LinUCB()
    policy = MMR(inner, lam=0.5)
    s = policy.select(rows, scores, 3, ctx)
    policy.update(s.feedback([1.0, 0.0, 0.0], ctx))
    assert inner.linear.n_updates == 3
