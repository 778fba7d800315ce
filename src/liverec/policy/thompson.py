"""Thompson sampling: a linear posterior over the model's own features, plus Beta-Bernoulli
exploration of cold items.

Per request, one draw of everything uncertain ranks the candidates:

- (b) Warm scores. With vectors in the context, theta ~ N(mu, sigma^2 A^-1) from the Bayesian
  linear regression of rewards on phi = user_vector * item_vector (`liverec.policy.linear`, prior
  mean of ones = the model score) and each candidate scores ``phi . theta``. Without vectors the
  model scores are used as they are.
- (a) Cold items: a row shown fewer than ``min_impressions`` times draws p ~ Beta(a + clicks,
  b + non-clicks) (a click = a positive reward; drawn through cached quantiles, `BetaQuantiles`)
  and its score becomes ``(1 - cold_weight) * score + cold_weight * (lo + p * (hi - lo))``, where
  lo and hi are the lowest and highest (finite) scores among this draw's candidates: the Beta draw
  decides how high among the candidates a cold item lands (cold_weight = 1 replaces its score).
- (c) The user's own taste (``user_weight`` > 0): a draw of x . theta_u from the user's posterior
  over their last ``user_window`` shown items (`liverec.policy.linear.UserPosterior`: each item's
  reward minus its position's mean, on unit item vectors x), times ``user_weight`` (score units per
  unit of reward), is added to every candidate's score. Directions the user has not been shown
  lately stay uncertain and get explored; items like the ones the user kept ignoring sink.

Logged: ``propensities[p]`` is a Monte Carlo estimate of the marginal P(row at position p): the
share of ``n_propensity_samples`` further independent draws (all drawn in one vectorised batch
with the served one) whose ranking shows the same row at p, floored at ``min_propensity`` (never 0;
an estimate of 0 means "below about 1 / n_propensity_samples"). Exactly 1 when nothing is random
(no vectors and no cold candidates). No conditional or slate propensity (None): they have no closed
form.

`update` adds each (phi, reward) to the posterior (when the feedback has both vectors) and counts
an impression, and a click if the reward is positive, for the row. Counts live in memory: a fresh
instance treats every candidate as cold until it has ``min_impressions`` (replay recent feedback
through `update` to warm it, or set ``min_impressions=0`` to turn the cold-item part off).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from scipy.special import betaincinv

from liverec.policy.base import (
    PROPENSITY_FLOOR,
    Feedback,
    Policy,
    Slate,
    check_inputs,
    context_vectors,
    empirical_marginals,
    finite_scores,
    make_slate,
    top_k,
    top_k_rows,
)
from liverec.policy.linear import BayesLinear, UserPosterior, observe_user


class BetaQuantiles:
    """Beta(a + clicks, b + non-clicks) draws by inverse CDF on a grid: each count pair's quantiles
    at the `GRID` midpoints (i + 1/2) / GRID are computed once (scipy's ``betaincinv``), and a draw
    picks one of them uniformly. That is the Beta distribution to within 1 / (2 GRID) of CDF, and
    one table lookup per draw: numpy's Beta sampler dominated a Thompson request with hundreds of
    cold candidates. The logged propensities are estimated from these same draws, so they describe
    what is served. Counts are small integers (a row is cold for fewer than ``min_impressions``
    impressions), so a dense (clicks, non-clicks) -> table row index finds them without a loop."""

    GRID = 1024
    PREFILL_MAX = 32  # up to 528 pairs, ~0.2 s once

    def __init__(self, a: float, b: float, max_total: int = 0) -> None:
        self.a, self.b = a, b
        # the first missing pair fills every pair with clicks + non-clicks < max_total (if <= 32)
        self.max_total = max_total if max_total <= self.PREFILL_MAX else 0
        self.index = np.full((0, 0), -1, dtype=np.int64)  # [clicks, non-clicks] -> row of `table`
        self.table = np.zeros((0, self.GRID), np.float32)  # (R, GRID) quantiles at the midpoints

    def draw(
        self, clicks: np.ndarray, non_clicks: np.ndarray, n: int, rng: np.random.Generator
    ) -> np.ndarray:
        """(n, C) float32 draws for ``clicks`` and ``non_clicks`` (C,) non-negative integer counts."""
        c, nc = np.asarray(clicks, np.int64), np.asarray(non_clicks, np.int64)
        index = self.index
        if c.size and (c.max() >= index.shape[0] or nc.max() >= index.shape[1]):
            size = (max(int(c.max()) + 1, self.max_total), max(int(nc.max()) + 1, self.max_total))
            shape = (max(index.shape[0], size[0]), max(index.shape[1], size[1]))
            grown = np.full(shape, -1, dtype=np.int64)
            grown[: index.shape[0], : index.shape[1]] = index
            index = grown
        rows = index[c, nc]
        if (rows < 0).any():
            new = np.stack([c[rows < 0], nc[rows < 0]], axis=1)
            if self.max_total > 0:  # one batch up front (~0.4 ms per pair), not one pair per request
                cc, nn = np.meshgrid(np.arange(self.max_total), np.arange(self.max_total), indexing="ij")
                small = (cc + nn < self.max_total) & (index[: self.max_total, : self.max_total] < 0)
                new = np.concatenate([new, np.stack([cc[small], nn[small]], axis=1)])
            new = np.unique(new, axis=0)  # (R', 2)
            grid = (np.arange(self.GRID) + 0.5) / self.GRID
            q = betaincinv(self.a + new[:, :1], self.b + new[:, 1:], grid[None, :])
            index = index.copy()
            index[new[:, 0], new[:, 1]] = np.arange(len(new)) + self.table.shape[0]
            # the table first, then the index: a concurrent select() never sees a row it lacks
            self.table = np.vstack([self.table, q.astype(np.float32)])
            rows = index[c, nc]
        self.index = index
        pick = (rng.random((n, c.size), dtype=np.float32) * np.float32(self.GRID)).astype(np.int32)
        pick = np.minimum(pick, self.GRID - 1)  # float32 rounding can reach GRID itself
        return self.table.reshape(-1).take(pick + (rows * self.GRID).astype(np.int32)[None, :])

    def __len__(self) -> int:
        """How many count pairs have their quantiles cached."""
        return int(self.table.shape[0])


class RowCounts:
    """Impressions and clicks per catalog row. A request reads hundreds of rows at once, which a dict
    answers one Python lookup at a time, so rows in [0, `DENSE`) (the model's vocabulary rows) live
    in growable int arrays; any other row (not a vocabulary row, but `update` accepts it) in a dict."""

    DENSE = 1 << 24

    def __init__(self) -> None:
        self.shown = np.zeros(0, dtype=np.int64)
        self.clicked = np.zeros(0, dtype=np.int64)
        self.other: dict[int, tuple[int, int]] = {}  # row -> (impressions, clicks) outside [0, DENSE)

    def add(self, row: int, click: bool) -> None:
        if not 0 <= row < self.DENSE:
            shown, clicked = self.other.get(row, (0, 0))
            self.other[row] = (shown + 1, clicked + int(click))
            return
        if row >= self.shown.size:
            size = min(max(row + 1, 2 * self.shown.size, 1024), self.DENSE)
            self.shown = np.concatenate([self.shown, np.zeros(size - self.shown.size, np.int64)])
            self.clicked = np.concatenate([self.clicked, np.zeros(size - self.clicked.size, np.int64)])
        self.shown[row] += 1
        self.clicked[row] += click

    def get(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(M,) int64 impressions and clicks of ``rows`` (M,) int64 (0 for rows never shown)."""
        shown, clicked = self.shown, self.clicked
        known = (rows >= 0) & (rows < shown.size)
        at = np.where(known, rows, 0)
        imp = np.where(known, shown[at], 0) if shown.size else np.zeros(rows.shape, np.int64)
        clk = np.where(known, clicked[at], 0) if shown.size else np.zeros(rows.shape, np.int64)
        if self.other:
            for i in np.flatnonzero((rows < 0) | (rows >= self.DENSE)).tolist():
                imp[i], clk[i] = self.other.get(int(rows[i]), (0, 0))
        return imp, clk

    def as_dict(self, clicks: bool) -> dict[int, int]:
        """Row -> count of every row with a non-zero count."""
        counts, j = (self.clicked, 1) if clicks else (self.shown, 0)
        out = {int(r): int(counts[r]) for r in np.flatnonzero(counts)}
        out.update({r: c[j] for r, c in self.other.items() if c[j]})
        return out


def value_marginals(draws: np.ndarray, kk: int, floor: float) -> tuple[np.ndarray, np.ndarray] | None:
    """The first draw's top ``kk`` (kk,) of ``draws`` (1 + n, M), and the (kk,) share of the other
    draws that show its p-th item at position p (floored at ``floor``), from
    sorted values alone: without ties among a draw's top kk + 1 values, the served item is at p in
    that draw exactly when its score there equals the draw's p-th highest. Skips ranking each draw
    (a sort of values is several times cheaper than an argsort or partition). None when some draw
    has such a tie: then only a full ranking with its tie-break says who is where."""
    m = draws.shape[1]
    top = np.sort(draws, axis=1)[:, ::-1][:, : min(kk + 1, m)]  # (1 + n, kk + 1) highest first
    if (top[:, 1:] == top[:, :-1]).any():
        return None
    served = top_k(draws[0], kk)
    if draws.shape[0] == 1:
        return served, np.ones(kk, dtype=np.float64)
    hit = draws[1:, served] == top[1:, :kk]  # (n, kk)
    return served, np.maximum(hit.mean(axis=0, dtype=np.float64), floor)


class ThompsonSampling(Policy):
    """``sigma``: the reward noise scale (posterior draws are sigma^2 A^-1 wide; larger = more
    exploration); ``lam``: the prior precision around theta = 1 (larger = trusts the model longer);
    ``a``, ``b``: the Beta prior of a cold item's click rate; ``min_impressions``: impressions after
    which a row stops being cold; ``cold_weight`` in [0, 1]: how much of a cold row's score the
    Beta draw replaces; ``user_weight``: weight of the per-user posterior draw (0 = off),
    ``user_lam`` its prior precision and ``user_window`` how many recent shown items it keeps."""

    name = "thompson"

    def __init__(
        self,
        sigma: float = 0.5,
        lam: float = 1.0,
        a: float = 1.0,
        b: float = 1.0,
        min_impressions: int = 10,
        cold_weight: float = 0.5,
        n_propensity_samples: int = 100,
        min_propensity: float = PROPENSITY_FLOOR,
        seed: int | None = None,
        user_weight: float = 0.0,
        user_lam: float = 1.0,
        user_window: int = 100,
    ) -> None:
        if sigma < 0:
            raise ValueError(f"sigma must be >= 0, got {sigma}")
        if not (a > 0 and b > 0):
            raise ValueError("the Beta prior needs a > 0 and b > 0")
        if min_impressions < 0:
            raise ValueError(f"min_impressions must be >= 0, got {min_impressions}")
        if n_propensity_samples < 1:
            raise ValueError(f"n_propensity_samples must be >= 1, got {n_propensity_samples}")
        if not 0.0 <= cold_weight <= 1.0:
            raise ValueError(f"cold_weight must be in [0, 1], got {cold_weight}")
        if not 0 < min_propensity <= 1:
            raise ValueError("min_propensity must be in (0, 1]")
        self.sigma = float(sigma)
        self.lam = float(lam)
        self.a, self.b = float(a), float(b)
        self.min_impressions = int(min_impressions)
        self.cold_weight = float(cold_weight)
        self.n_propensity_samples = int(n_propensity_samples)
        self.min_propensity = float(min_propensity)
        self.seed = seed
        self.rng = np.random.default_rng(seed)
        self.linear = BayesLinear(lam)
        self.user = UserPosterior(user_lam, user_window, user_weight)
        self.beta = BetaQuantiles(self.a, self.b, self.min_impressions)
        self.counts = RowCounts()

    @property
    def impressions(self) -> dict[int, int]:
        """Row -> impressions counted so far (rows never shown are left out)."""
        return self.counts.as_dict(clicks=False)

    @property
    def clicks(self) -> dict[int, int]:
        """Row -> clicks (positive rewards) counted so far."""
        return self.counts.as_dict(clicks=True)

    def rebase(self) -> None:
        self.linear.reset(self.linear.dim)

    def forget_user(self, user_id: str) -> None:
        self.user.forget(user_id)

    def _scores(
        self, rows: np.ndarray, s: np.ndarray, context: Mapping[str, Any] | None, n: int
    ) -> np.ndarray:
        """(n, M) float32 scores of ``n`` independent posterior draws (float32: only their order
        matters, and it halves the cost of the (n, D) x (D, M) products)."""
        vectors = context_vectors(context, rows.size)
        if vectors is not None and self.sigma > 0:
            u, items = vectors
            phi = (items * u[None, :]).astype(np.float32)  # (M, D)
            self.linear.ensure(phi.shape[1])
            out = self.linear.sample(n, self.sigma, self.rng).astype(np.float32) @ phi.T
        elif vectors is not None:
            u, items = vectors
            out = np.tile(self.linear.mean(items * u[None, :]).astype(np.float32), (n, 1))
        else:
            out = np.tile(finite_scores(s).astype(np.float32), (n, 1))
        if vectors is not None and self.user.weight > 0:
            user_id = context.get("user_id") if context else None
            user = self.user.sample(user_id, vectors[1], n, self.sigma, self.rng)  # (n, M)
            out += np.float32(self.user.weight) * user
        if self.min_impressions == 0 or self.cold_weight == 0.0 or rows.size == 0:
            return out
        imp, clk = self.counts.get(rows)
        cold = np.flatnonzero(imp < self.min_impressions)
        if cold.size == 0:
            return out
        p = self.beta.draw(clk[cold], imp[cold] - clk[cold], n, self.rng)  # (n, C)
        lo, hi = out.min(axis=1, keepdims=True), out.max(axis=1, keepdims=True)
        span = np.where(hi > lo, hi - lo, np.float32(1.0))
        w = np.float32(self.cold_weight)
        if cold.size == rows.size:  # every candidate cold (common in a large catalog): in place
            out *= 1 - w
            out += w * lo
            out += (w * span) * p
        else:
            out[:, cold] = (1 - w) * out[:, cold] + w * (lo + p * span)
        return out

    def _rank(
        self, rows: np.ndarray, s: np.ndarray, context: Mapping[str, Any] | None, n: int, kk: int
    ) -> np.ndarray:
        """(n, kk) candidate indices of ``n`` independent draws' rankings, best first."""
        return self._rank_scores(self._scores(rows, s, context, n), kk)

    @staticmethod
    def _rank_scores(scores: np.ndarray, kk: int) -> np.ndarray:
        """(n, kk) rankings of the draws ``scores`` (n, M), best first."""
        n = scores.shape[0]
        if n > 1 and not (scores != scores[0]).any():  # nothing random: rank once, ties in order
            return np.tile(top_k(scores[0], kk), (n, 1))
        return top_k_rows(scores, kk)

    def select(
        self, candidates: np.ndarray, scores: np.ndarray, k: int, context: Mapping[str, Any] | None = None
    ) -> Slate:
        rows, s, kk = check_inputs(candidates, scores, k)
        draws = self._scores(rows, s, context, 1 + self.n_propensity_samples)  # (1 + n, M)
        fast = value_marginals(draws, kk, self.min_propensity)
        if fast is not None:
            served, marg = fast
        else:  # ties among some draw's top kk + 1: rank every draw, ties broken by candidate order
            rankings = self._rank_scores(draws, kk)
            served = rankings[0]
            marg = empirical_marginals(rankings[1:], served, self.min_propensity)
        return make_slate(self.name, rows, np.asarray(scores), served, marg)

    def sample(
        self,
        candidates: np.ndarray,
        scores: np.ndarray,
        k: int,
        context: Mapping[str, Any] | None,
        n: int,
    ) -> np.ndarray:
        rows, s, kk = check_inputs(candidates, scores, k)
        return self._rank(rows, s, context, n, kk)

    def update(self, feedback: Sequence[Feedback]) -> None:
        for fb in feedback:
            reward = float(fb.reward)
            if not np.isfinite(reward):
                continue
            self.counts.add(int(fb.row), reward > 0)
            phi = fb.features()
            if phi is not None:
                self.linear.update(phi, reward)
            observe_user(self.user, fb, reward)
