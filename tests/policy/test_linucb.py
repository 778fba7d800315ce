"""LinUCB: starts as the model (prior mean of ones), learns theta from rewards, beats greedy."""

from __future__ import annotations

import numpy as np

from liverec.policy import Feedback, Greedy, LinUCB
from liverec.policy.linear import BayesLinear

from .bandit import run


def test_beats_greedy_when_the_model_score_is_wrong() -> None:
    seeds = range(3)
    greedy = np.mean([run(Greedy, seed) for seed in seeds])
    linucb = np.mean([run(lambda: LinUCB(alpha=1.0, lam=1.0), seed) for seed in seeds])
    assert linucb > 1.3 * greedy, (linucb, greedy)


def test_without_data_and_bonus_it_ranks_like_the_model() -> None:
    rng = np.random.default_rng(0)
    u, items = rng.normal(size=8).astype(np.float32), rng.normal(size=(30, 8)).astype(np.float32)
    scores = items @ u
    rows = np.arange(30, dtype=np.int64)
    ctx = {"user_vector": u, "item_vectors": items}
    ucb = LinUCB(alpha=0.0).select(rows, scores, 10, ctx)
    assert ucb.rows.tolist() == Greedy().select(rows, scores, 10).rows.tolist()
    no_vectors = LinUCB(alpha=5.0).select(rows, scores, 10, {"user_id": "u"})
    assert no_vectors.rows.tolist() == ucb.rows.tolist()


def test_sherman_morrison_tracks_the_exact_posterior() -> None:
    rng = np.random.default_rng(1)
    lin = BayesLinear(lam=2.0)
    phis, rewards = rng.normal(size=(500, 5)), rng.random(500)
    for phi, r in zip(phis, rewards, strict=True):
        lin.update(phi, float(r))
    a = 2.0 * np.eye(5) + phis.T @ phis
    np.testing.assert_allclose(lin.A_inv, np.linalg.inv(a), rtol=1e-8, atol=1e-12)
    np.testing.assert_allclose(lin.mu, np.linalg.solve(a, 2.0 * np.ones(5) + phis.T @ rewards), rtol=1e-8)


def test_bonus_shrinks_where_it_has_seen_data() -> None:
    policy = LinUCB(alpha=1.0)
    u, e = np.ones(3, np.float32), np.array([1.0, 0.0, 0.0], np.float32)
    before = policy.linear.width(np.array([[1.0, 0, 0], [0, 1.0, 0]]))
    policy.update([Feedback(0, 0, 0.0, 1.0, user_vector=u, item_vector=e)] * 50)
    after = policy.linear.width(np.array([[1.0, 0, 0], [0, 1.0, 0]]))
    assert after[0] < before[0] / 5 and after[1] == before[1]


def test_a_new_vector_width_starts_a_fresh_prior() -> None:
    policy = LinUCB()
    u = np.ones(4, np.float32)
    policy.update([Feedback(0, 0, 1.0, 1.0, user_vector=u, item_vector=u)])
    assert policy.linear.dim == 4 and policy.linear.n_updates == 1
    ctx = {"user_vector": np.ones(6, np.float32), "item_vectors": np.eye(6, dtype=np.float32)}
    policy.select(np.arange(6, dtype=np.int64), np.ones(6, np.float32), 2, ctx)
    assert policy.linear.dim == 6 and policy.linear.n_updates == 0
