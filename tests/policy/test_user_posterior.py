"""Per-user posteriors (`UserPosterior`, Thompson's and LinUCB's ``user_weight``): each user's own
rewards, centred by position, move that user's ranking, and a window lets it follow a changed taste."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from liverec.policy import Feedback, LinUCB, Policy, ThompsonSampling
from liverec.policy.linear import UserPosterior, unit_rows

D = 8


def test_posterior_mean_is_ridge_on_centred_rewards_over_the_window() -> None:
    # rate 0: a position's first reward stays its mean
    post = UserPosterior(lam=2.0, window=3, position_rate=0.0)
    rng = np.random.default_rng(0)
    xs = rng.normal(size=(5, D))
    post.observe("u", np.ones(D), 0, 1.0)  # fixes position 0's mean at 1.0
    for x, r in zip(xs, [0.0, 1.0, 3.0, 0.0, 2.0], strict=True):
        post.observe("u", x, 0, r)
    mu, precision = post.posterior("u", D)
    x = unit_rows(xs[-3:])  # only the last 3 are in the window
    y = np.array([3.0, 0.0, 2.0]) - 1.0
    want = np.linalg.solve(2.0 * np.eye(D) + x.T @ x, x.T @ y)
    np.testing.assert_allclose(mu, want, atol=1e-12)
    np.testing.assert_allclose(precision, 2.0 * np.eye(D) + x.T @ x, atol=1e-12)
    mu0, p0 = post.posterior("nobody", D)  # an unknown user gets the prior
    np.testing.assert_array_equal(mu0, np.zeros(D))
    np.testing.assert_array_equal(p0, 2.0 * np.eye(D))


def test_least_recently_updated_users_are_forgotten_first() -> None:
    post = UserPosterior(lam=1.0, window=5, max_users=2)
    for user in ("a", "b", "a", "c"):
        post.observe(user, np.ones(D), 0, 1.0)
    assert list(post.users) == ["a", "c"]


def test_draws_have_the_posterior_mean_and_covariance() -> None:
    post = UserPosterior(lam=1.0, window=50)
    rng = np.random.default_rng(1)
    for _ in range(30):
        post.observe("u", rng.normal(size=D), int(rng.integers(3)), float(rng.random() < 0.3))
    items = rng.normal(size=(6, D))
    draws = post.sample("u", items, 40_000, 0.5, np.random.default_rng(2))  # (n, M)
    mu, precision = post.posterior("u", D)
    x = unit_rows(items)
    np.testing.assert_allclose(draws.mean(axis=0), x @ mu, atol=0.01)
    cov = 0.25 * x @ np.linalg.inv(precision) @ x.T
    np.testing.assert_allclose(np.cov(draws.T), cov, atol=0.01)


def run_users(make: Callable[[], Policy], seed: int, rounds: int = 3000, switch: int | None = None) -> float:
    """Clicks a policy collects from 10 users who each like one hidden direction of the item space
    that the model score does not know (its scores are noise); with ``switch``, every user's liked
    direction changes at that round."""
    rng = np.random.default_rng(seed)
    items = rng.normal(size=(200, D))
    likes = rng.normal(size=(10, D))
    policy = make()
    total = 0.0
    for t in range(rounds):
        if t == switch:
            likes = rng.normal(size=(10, D))
        user = int(rng.integers(10))
        rows = rng.choice(200, 40, replace=False).astype(np.int64)
        scores = rng.normal(size=40).astype(np.float32)
        order = np.argsort(-scores, kind="stable")
        rows, scores = rows[order], scores[order]
        context = {"user_id": f"u{user}", "user_vector": np.ones(D), "item_vectors": items[rows]}
        slate = policy.select(rows, scores, 3, context)
        affinity = unit_rows(items[slate.rows]) @ likes[user] / np.linalg.norm(likes[user])
        rewards = (rng.random(3) < 1 / (1 + np.exp(-(4 * affinity - 2)))).astype(np.float64)
        total += float(rewards.sum())
        policy.update(slate.feedback(rewards, context))
    return total


POLICIES: dict[str, Callable[[float], Policy]] = {
    "thompson": lambda w: ThompsonSampling(min_impressions=0, n_propensity_samples=5, seed=0, user_weight=w),
    "linucb": lambda w: LinUCB(alpha=1.0, user_weight=w),
}


@pytest.mark.parametrize("name", sorted(POLICIES))
def test_each_users_own_rewards_beat_the_shared_posterior(name: str) -> None:
    shared = np.mean([run_users(lambda: POLICIES[name](0.0), s) for s in range(2)])
    per_user = np.mean([run_users(lambda: POLICIES[name](3.0), s) for s in range(2)])
    assert per_user > 1.3 * shared, (per_user, shared)


def test_a_window_follows_a_changed_taste() -> None:
    def late(window: int) -> float:
        make = lambda: ThompsonSampling(  # noqa: E731
            min_impressions=0, n_propensity_samples=5, seed=0, user_weight=3.0, user_window=window
        )
        return run_users(make, 0, rounds=6000, switch=3000) - run_users(make, 0, rounds=3000)

    assert late(30) > 1.15 * late(3000)


def test_feedback_without_user_or_vectors_is_ignored() -> None:
    policy = ThompsonSampling(user_weight=1.0, seed=0)
    policy.update([Feedback(row=1, position=0, reward=1.0, propensity=1.0, context=None)])
    policy.update([Feedback(1, 0, 1.0, 1.0, {"user_id": "u"}, None, None)])
    assert not policy.user.users
    with pytest.raises(ValueError, match="user_weight"):
        LinUCB(user_weight=-1.0)


@pytest.mark.parametrize("name", sorted(POLICIES))
def test_a_rebase_keeps_the_users_windows(name: str) -> None:
    policy = POLICIES[name](1.0)
    ctx = {"user_id": "u", "user_vector": np.ones(D), "item_vectors": np.eye(D)[:3]}
    slate = policy.select(np.arange(3, dtype=np.int64), np.zeros(3, np.float32), 2, ctx)
    policy.update(slate.feedback([1.0, 0.0], ctx))
    policy.rebase()
    assert len(policy.user.users["u"]) == 2  # type: ignore[attr-defined]


def test_a_new_observation_replaces_the_cached_posterior() -> None:
    post = UserPosterior(lam=1.0, window=10, position_rate=0.0)
    x1, x2 = np.eye(D)[0], np.eye(D)[1]
    post.observe("u", x1, 0, 0.0)  # position 0's mean is 0 from now on
    post.observe("u", x1, 0, 1.0)
    mu, _ = post.posterior("u", D)
    assert mu[0] == pytest.approx(1.0 / 3.0) and mu[1] == 0.0  # (1 + 1 + 1)^-1 * 1
    post.observe("u", x2, 0, 1.0)
    mu, _ = post.posterior("u", D)
    assert mu[1] == pytest.approx(0.5)


def test_a_vector_of_another_width_starts_the_window_over() -> None:
    """A new model's space: the old vectors cannot be mixed with the new ones."""
    post = UserPosterior(lam=1.0, window=10, position_rate=0.0)
    post.observe("u", np.eye(D)[0], 0, 0.0)
    post.observe("u", np.eye(D)[0], 0, 1.0)
    post.observe("u", np.ones(3), 0, 1.0)
    assert len(post.users["u"]) == 1
    mu, precision = post.posterior("u", 3)
    x = np.ones(3) / np.sqrt(3.0)
    np.testing.assert_allclose(precision, np.eye(3) + np.outer(x, x), atol=1e-12)
    np.testing.assert_allclose(mu, np.linalg.solve(precision, x * 1.0), atol=1e-12)
    np.testing.assert_array_equal(post.posterior("u", D)[0], np.zeros(D))  # old width: the prior


def test_a_forgotten_user_starts_from_the_prior() -> None:
    post = UserPosterior(lam=1.0, window=5)
    prior = [m.copy() for m in post.posterior("a", D)]
    for user in ("a", "b"):
        post.observe(user, np.ones(D), 0, 1.0)
    learned = post.posterior("a", D)
    post.forget("a")
    assert list(post.users) == ["b"]
    after = post.posterior("a", D)
    assert not np.allclose(learned[1], prior[1])  # an observation adds to the precision
    assert all(np.allclose(x, y) for x, y in zip(after, prior, strict=True))
