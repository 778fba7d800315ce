"""Plackett-Luce slates: a ranking sampled without replacement from softmax(scores / temperature),
drawn with the Gumbel-top-k trick (add Gumbel noise, keep the k largest).

Logged:

- ``conditional_propensities[p] = w_row / sum(w of the rows not shown before p)``, exact, with
  ``w = exp(scores / T)`` (computed in a shifted, overflow-free form);
- ``slate_propensity`` = their product, exact: P(this ordered slate);
- ``propensities[p]``: the marginal P(row at p | candidates), a Rao-Blackwellised Monte Carlo
  estimate: the average over ``n_propensity_samples`` independently drawn rankings of the exact
  conditional probability of the row at p given that ranking's first p items (0 when the row is
  among them). Unbiased, exact at p = 0, much less noisy than counting, and floored at
  ``min_propensity``. ``n_propensity_samples = 0`` logs the conditionals there instead (correct at
  p = 0 only; say so when you use them for per-position IPS).

Rows with score -inf are kept 50 temperature-units below the lowest finite score (tiny, non-zero
probability), so every row can be drawn and every propensity is > 0.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from liverec.policy.base import (
    PROPENSITY_FLOOR,
    Policy,
    Slate,
    check_inputs,
    finite_scores,
    make_slate,
    top_k_rows,
)


class PlackettLuce(Policy):
    """Softmax sampling without replacement at ``temperature`` (lower = greedier). Ignores feedback."""

    name = "plackett_luce"
    uses_vectors = False

    def __init__(
        self,
        temperature: float = 1.0,
        seed: int | None = None,
        n_propensity_samples: int = 100,
        min_propensity: float = PROPENSITY_FLOOR,
    ) -> None:
        if not temperature > 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        if n_propensity_samples < 0:
            raise ValueError("n_propensity_samples must be >= 0")
        if not 0 < min_propensity <= 1:
            raise ValueError("min_propensity must be in (0, 1]")
        self.temperature = float(temperature)
        self.seed = seed
        self.n_propensity_samples = int(n_propensity_samples)
        self.min_propensity = float(min_propensity)
        self.rng = np.random.default_rng(seed)

    def _logits(self, s: np.ndarray) -> np.ndarray:
        logits = finite_scores(s / self.temperature)
        return logits - logits.max() if logits.size else logits

    def _draw(self, logits: np.ndarray, n: int, kk: int) -> tuple[np.ndarray, np.ndarray]:
        """``n`` Gumbel-top-k rankings: (n, kk) candidate indices, best first, and (n, kk) the total
        weight still in play before each position (computed as the weight outside the top kk plus
        a reverse cumsum within it: sums of positives, no cancellation)."""
        m = logits.size
        gumbel = -np.log(self.rng.standard_exponential((n, m)))  # -log Exp(1) ~ Gumbel(0, 1)
        top = top_k_rows(logits[None, :] + gumbel, kk)
        w = np.exp(logits)
        outside = np.ones((n, m), dtype=bool)
        outside[np.arange(n)[:, None], top] = False
        rest = np.where(outside, w[None, :], 0.0).sum(axis=1)  # (n,)
        tails = rest[:, None] + np.cumsum(w[top][:, ::-1], axis=1)[:, ::-1]
        return top, tails

    def select(
        self, candidates: np.ndarray, scores: np.ndarray, k: int, context: Mapping[str, Any] | None = None
    ) -> Slate:
        rows, s, kk = check_inputs(candidates, scores, k)
        if kk == 0:
            none = np.zeros(0, np.int64)
            return make_slate(self.name, rows, np.asarray(scores), none, np.ones(0), np.ones(0))
        logits = self._logits(s)
        w = np.exp(logits)  # (M,) in (0, 1], max 1
        orders, tails = self._draw(logits, 1 + self.n_propensity_samples, kk)  # (1 + n, kk) each
        served = orders[0]
        cond = w[served] / tails[0]
        if self.n_propensity_samples == 0:
            marg = cond
        else:
            other = orders[1:]  # (n, kk)
            # in_prefix[s, p]: served[p] is among the first p items of ranking s.
            hit = other[:, :, None] == served[None, None, :]  # (n, q, p)
            in_prefix = (hit & np.tri(kk, k=-1, dtype=bool).T[None]).any(axis=1)  # (n, p)
            est = np.where(in_prefix, 0.0, w[served][None, :] / tails[1:])
            marg = np.maximum(est.mean(axis=0), self.min_propensity)
        return make_slate(self.name, rows, np.asarray(scores), served, np.minimum(marg, 1.0), cond)

    def sample(
        self,
        candidates: np.ndarray,
        scores: np.ndarray,
        k: int,
        context: Mapping[str, Any] | None,
        n: int,
    ) -> np.ndarray:
        rows, s, kk = check_inputs(candidates, scores, k)
        if rows.size == 0:
            return np.zeros((n, 0), dtype=np.int64)
        return self._draw(self._logits(s), n, kk)[0]
