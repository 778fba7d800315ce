"""A small synthetic contextual bandit for the learning tests.

Users and items have D-dim vectors (what a sequential model would hand the policy); the model
score is ``u . e`` but the true click probability is ``sigmoid(phi . theta_true + bias)`` with
``phi = u * e`` and a ``theta_true`` far from ones, so ranking by the model score is a poor policy
and a policy that learns theta from rewards can do much better. No position bias: every shown
item's click is drawn from its own probability.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from liverec.policy import Policy

D = 6


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def theta_true() -> np.ndarray:
    """(D,) the hidden weights: half the model's dimensions help, half hurt."""
    return np.array([1.5, -1.5, 1.0, -1.0, 2.0, -0.5])


def run(
    make: Callable[[], Policy],
    seed: int,
    rounds: int = 1500,
    n_items: int = 300,
    n_users: int = 40,
    m: int = 30,
    k: int = 2,
    bias: float = -1.0,
) -> float:
    """Total reward ``make()`` collects over ``rounds`` slates of ``k`` from ``m`` random candidates."""
    rng = np.random.default_rng(seed)
    items = rng.normal(0.0, 1.0, (n_items, D)).astype(np.float32)
    users = rng.normal(0.0, 1.0, (n_users, D)).astype(np.float32)
    theta = theta_true()
    policy = make()
    total = 0.0
    for _ in range(rounds):
        u = users[rng.integers(n_users)]
        rows = rng.choice(n_items, m, replace=False)
        scores = items[rows] @ u
        order = np.argsort(-scores, kind="stable")  # candidates come best first
        rows, scores = rows[order].astype(np.int64), scores[order]
        context = {"user_id": "u", "user_vector": u, "item_vectors": items[rows]}
        slate = policy.select(rows, scores, k, context)
        p = sigmoid((items[slate.rows] * u) @ theta + bias)
        rewards = (rng.random(len(p)) < p).astype(np.float64)
        total += float(rewards.sum())
        policy.update(slate.feedback(rewards, context))
    return total
