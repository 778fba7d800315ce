"""LinUCB on the model's own features: rank by an upper confidence bound of the reward.

With phi = user_vector * item_vector (M, D) from the context, each candidate scores
``phi . mu + alpha * sqrt(phi A^-1 phi^T)`` under the Bayesian linear regression of
`liverec.policy.linear` (prior mean of ones, so with no data the mean part is the model score, and
the bonus favours directions the rewards have not covered yet). Without vectors it ranks by the
model scores (greedy). The slate is a deterministic function of the inputs and the learned state,
so every shown row has propensity 1 (marginal, conditional and slate).

`update` adds each (phi, reward) by a rank-1 Sherman-Morrison step, O(D^2); feedback without both
vectors is ignored.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from liverec.policy.base import Feedback, Policy, Slate, check_inputs, context_vectors, make_slate, top_k
from liverec.policy.linear import BayesLinear, UserPosterior, observe_user


class LinUCB(Policy):
    """``alpha``: width of the confidence bonus (0 = greedy on the posterior mean); ``lam``: prior
    precision around theta = 1 (larger = trusts the model score longer); ``user_weight`` > 0 adds
    ``user_weight * (x . mu_u + alpha * width_u)`` from the user's own posterior over their last
    ``user_window`` shown items (`liverec.policy.linear.UserPosterior`, prior precision ``user_lam``)."""

    name = "linucb"
    deterministic = True

    def __init__(
        self,
        alpha: float = 1.0,
        lam: float = 1.0,
        user_weight: float = 0.0,
        user_lam: float = 1.0,
        user_window: int = 100,
    ) -> None:
        if alpha < 0:
            raise ValueError(f"alpha must be >= 0, got {alpha}")
        self.alpha = float(alpha)
        self.lam = float(lam)
        self.linear = BayesLinear(lam)
        self.user = UserPosterior(user_lam, user_window, user_weight)

    def rebase(self) -> None:
        self.linear.reset(self.linear.dim)

    def forget_user(self, user_id: str) -> None:
        self.user.forget(user_id)

    def ucb(self, context: Mapping[str, Any] | None, m: int) -> np.ndarray | None:
        """(M,) float64 upper confidence bounds of the candidates, or None without vectors."""
        vectors = context_vectors(context, m)
        if vectors is None:
            return None
        u, items = vectors
        phi = items * u[None, :]
        mean = self.linear.mean(phi)
        out = mean + self.alpha * self.linear.width(phi) if self.alpha > 0 else mean
        if self.user.weight > 0:
            user_id = context.get("user_id") if context else None
            out = out + self.user.weight * self.user.ucb(user_id, items, self.alpha)
        return out

    def select(
        self, candidates: np.ndarray, scores: np.ndarray, k: int, context: Mapping[str, Any] | None = None
    ) -> Slate:
        rows, s, kk = check_inputs(candidates, scores, k)
        ucb = self.ucb(context, rows.size)
        order = top_k(s if ucb is None else ucb, kk)
        ones = np.ones(kk)
        return make_slate(self.name, rows, np.asarray(scores), order, ones, ones)

    def update(self, feedback: Sequence[Feedback]) -> None:
        for fb in feedback:
            phi = fb.features()
            reward = float(fb.reward)
            if not np.isfinite(reward):
                continue
            if phi is not None:
                self.linear.update(phi, reward)
            observe_user(self.user, fb, reward)
