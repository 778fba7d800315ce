"""The `Policy` contract: choose a slate from scored candidates, and learn from feedback.

Every slate carries propensities, the probability that the policy shows each item at its position
given the candidates, so that any other policy or model can be judged off-policy from the log.

Inputs of `Policy.select`
-------------------------
``candidates`` (M,) int64 catalog rows, best model score first; ``scores`` (M,) float32 their model
scores (may hold -inf for rows the model cannot score); ``k`` the slate length wanted; ``context`` a
Mapping (or None) that may hold:

- ``"user_id"``: str.
- ``"user_vector"``: (D,) float32, the model's user embedding (the Transformer's last hidden state),
  or None for models without one.
- ``"item_vectors"``: (M, D) float32, the model's representations of the M candidates, row-aligned
  with ``candidates``; the model score is ``item_vectors @ user_vector``.

Other keys (e.g. ``"user"``) are ignored. Policies that use vectors (`LinUCB`, `ThompsonSampling`,
`MMR`) fall back when either is missing, None or non-finite: LinUCB and Thompson rank by the model
scores instead, MMR serves the wrapped policy's slate (each class says how). Vectors of the wrong
shape are a wiring bug and raise ``ValueError``.

What a `Slate` logs (all (kk,) with kk = min(k, M), in display order)
--------------------------------------------------------------------
- ``propensities``: the *marginal* P(this row is shown at this position | candidates, context,
  policy state), floored away from 0. This is the per-item number the server logs with each
  impression, and the one the item-position estimators need (IIPS / position-based IPS, and DR
  variants that weight each (item, position) reward separately). Exact for greedy, LinUCB and
  epsilon-greedy; a Monte Carlo estimate for Plackett-Luce (Rao-Blackwellised), Thompson sampling
  and MMR over a stochastic policy (each class documents its estimator).
- ``conditional_propensities``: P(row at position p | candidates, rows shown at positions < p),
  exact, when the policy has it in closed form (greedy, epsilon, Plackett-Luce, LinUCB), else None.
  ``cumprod`` of it is P(the top-(p+1) prefix), what cascade estimators (RIPS / cascade-DR) need.
- ``slate_propensity``: P(this whole ordered slate | candidates) = the product of the conditionals,
  what the standard slate IPS estimator needs; None when not available in closed form.
- ``index``: positions of the shown rows within ``candidates`` (so callers can pick their vectors).

Feedback: `Slate.feedback` turns the per-position rewards of a served slate, with the context it
was served with, into `Feedback` (with the user and item vectors the contextual policies learn
from). `Policy.sample` draws further rankings the way `select` would (for wrappers and OPE).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

PROPENSITY_FLOOR = 1e-3  # default floor of Monte Carlo propensity estimates (never log 0)


@dataclass(frozen=True)
class Feedback:
    """The reward one shown item earned (0 when nothing happened), joined back to its slate.

    ``user_vector`` (D,) and ``item_vector`` (D,) are the vectors the policy saw when it served the
    slate; the contextual policies learn from their elementwise product, and skip the linear update
    (keeping only per-row counts) when either is None.
    """

    row: int
    position: int
    reward: float
    propensity: float
    context: Mapping[str, Any] | None = None
    user_vector: np.ndarray | None = None
    item_vector: np.ndarray | None = None

    def features(self) -> np.ndarray | None:
        """(D,) float64 phi = user_vector * item_vector, or None if absent, mismatched or non-finite."""
        if self.user_vector is None or self.item_vector is None:
            return None
        u = np.asarray(self.user_vector, dtype=np.float64).reshape(-1)
        e = np.asarray(self.item_vector, dtype=np.float64).reshape(-1)
        if u.shape != e.shape or u.size == 0:
            return None
        phi = u * e
        return phi if np.isfinite(phi).all() else None


@dataclass(frozen=True)
class Slate:
    rows: np.ndarray  # (kk,) int64 catalog rows, in display order
    scores: np.ndarray  # (kk,) float32 model scores of those rows (as passed in)
    propensities: np.ndarray  # (kk,) float64 in (0, 1]: marginal P(row shown at this position)
    policy: str
    slate_propensity: float | None = None  # P(the whole ordered slate); None if unknown
    conditional_propensities: np.ndarray | None = None  # (kk,) float64 P(row at p | rows before p)
    index: np.ndarray | None = None  # (kk,) int64 positions of ``rows`` within the candidates

    def feedback(
        self, rewards: Sequence[float] | np.ndarray, context: Mapping[str, Any] | None = None
    ) -> list[Feedback]:
        """One `Feedback` per shown position, with the vectors of ``context`` (the one served with).

        ``rewards`` (kk,) is the reward at each position (0 for nothing).
        """
        r = np.asarray(rewards, dtype=np.float64).reshape(-1)
        if r.shape != self.rows.shape:
            raise ValueError(f"got {r.size} rewards for a slate of {self.rows.size}")
        vectors = context_vectors(context, None)
        out = []
        for p, row in enumerate(self.rows.tolist()):
            u = e = None
            if vectors is not None and self.index is not None:
                u, items = vectors
                j = int(self.index[p])
                e = items[j] if 0 <= j < len(items) else None
            out.append(Feedback(int(row), p, float(r[p]), float(self.propensities[p]), context, u, e))
        return out


class Policy(ABC):
    """Chooses slates. ``deterministic`` policies always show the same slate for the same inputs
    and state (propensity 1); stochastic ones draw with their own seeded generator."""

    name: str = "policy"
    deterministic: bool = False
    uses_vectors: bool = True  # reads ``user_vector``/``item_vectors`` (False: the server skips them)

    @abstractmethod
    def select(
        self, candidates: np.ndarray, scores: np.ndarray, k: int, context: Mapping[str, Any] | None = None
    ) -> Slate:
        """Pick up to ``k`` of ``candidates`` ((M,) int64 rows, with (M,) float32 scores, best first).

        Must not mutate its inputs nor the learned state (only the random generator advances).
        """

    def update(self, feedback: Sequence[Feedback]) -> None:  # noqa: B027 - stateless policies skip it
        """Learn from rewards of earlier slates. Must accept any row (unknown ones included)."""

    def forget_user(self, user_id: str) -> None:  # noqa: B027 - policies with no per-user state skip it
        """A deleted user: drop what the policy keeps about them alone. What it learned over everyone
        (a shared linear model) goes at the next `rebase`, when the retrained version serves."""

    def rebase(self) -> None:  # noqa: B027 - policies that learn nothing from vectors skip it
        """A new model version serves: its vectors mean something else, so forget what was learned
        on the old ones (per-item counts stay: they do not depend on the model)."""

    def sample(
        self,
        candidates: np.ndarray,
        scores: np.ndarray,
        k: int,
        context: Mapping[str, Any] | None,
        n: int,
    ) -> np.ndarray:
        """(n, kk) int64 indices into ``candidates`` of ``n`` independent rankings, each drawn the way
        `select` draws its slate (without changing the learned state). Wrappers such as `MMR` use it
        to estimate propensities; deterministic policies repeat their one ranking."""
        if not self.deterministic:
            raise NotImplementedError(f"{type(self).__name__} does not implement sample()")
        slate = self.select(candidates, scores, k, context)
        assert slate.index is not None
        return np.tile(slate.index, (n, 1))


def check_inputs(candidates: np.ndarray, scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray, int]:
    """(M,) int64 rows, (M,) float64 scores and kk = min(k, M); raises on misaligned arrays."""
    rows = np.asarray(candidates).reshape(-1).astype(np.int64, copy=False)
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    if rows.shape != s.shape:
        raise ValueError(f"candidates {rows.shape} and scores {s.shape} are not aligned")
    if k < 0:
        raise ValueError(f"k must be >= 0, got {k}")
    return rows, s, min(int(k), rows.size)


def context_vectors(context: Mapping[str, Any] | None, m: int | None) -> tuple[np.ndarray, np.ndarray] | None:
    """(D,) float64 user vector and (M, D) float64 item vectors from ``context``, or None.

    None when either is missing/None or holds non-finite values (the caller falls back to the model
    scores). ``m`` is the number of candidates the item vectors must align with (None: any).
    Misaligned shapes raise ``ValueError``: silently mixing up rows would corrupt learning.
    """
    if not context:
        return None
    u, items = context.get("user_vector"), context.get("item_vectors")
    if u is None or items is None:
        return None
    u = np.asarray(u, dtype=np.float64)
    items = np.asarray(items, dtype=np.float64)
    if u.ndim != 1 or items.ndim != 2 or items.shape[1] != u.shape[0]:
        raise ValueError(f"user_vector {u.shape} and item_vectors {items.shape} must be (D,) and (M, D)")
    if m is not None and items.shape[0] != m:
        raise ValueError(f"item_vectors has {items.shape[0]} rows for {m} candidates")
    if not (np.isfinite(u).all() and np.isfinite(items).all()):
        return None
    return u, items


def finite_scores(scores: np.ndarray, margin: float = 50.0) -> np.ndarray:
    """(M,) float64 copy with -inf/NaN set ``margin`` below the lowest finite score (+inf above the
    highest), so softmax and score-range arithmetic stay defined while the order is kept."""
    s = np.asarray(scores, dtype=np.float64)
    finite = np.isfinite(s)
    if finite.all():
        return s.copy()
    lo, hi = (float(s[finite].min()), float(s[finite].max())) if finite.any() else (0.0, 0.0)
    return np.where(finite, s, np.where(s == np.inf, hi + margin, lo - margin))


def top_k(scores: np.ndarray, k: int) -> np.ndarray:
    """(k,) int64 indices of the ``k`` highest of ``scores`` (M,), best first; ties keep the lower
    index first (so equal scores fall back to the candidates' order)."""
    return np.argsort(-scores, kind="stable")[:k]


def top_k_rows(scores: np.ndarray, k: int) -> np.ndarray:
    """(n, k) int64 indices of the ``k`` highest scores of each row of ``scores`` (n, M), best first.

    For the many random draws of the Monte Carlo estimates. Each row's k-th highest value comes from
    a full sort of the values (numpy's SIMD sort beats ``argpartition`` several times at n = 100,
    M = 300), the k entries at or above it are gathered and sorted. Within the k kept, ties keep the
    lower index first. A tie across the k-th place (more than k entries at or above it) falls back to
    a partition, which breaks it arbitrarily but deterministically. Random draws make ties a null
    event; use `top_k` where ties are expected.
    """
    n, m = scores.shape
    if k == 0 or m == 0:
        return np.zeros((n, 0), dtype=np.int64)
    if k < m:
        kth = np.sort(scores, axis=1)[:, m - k]  # (n,) each row's k-th highest value
        cols = np.nonzero(scores >= kth[:, None])[1]  # row by row, in candidate order
        exact = cols.size == n * k  # k per row: no tie across the k-th place
        part = cols.reshape(n, k) if exact else np.argpartition(-scores, k - 1, axis=1)[:, :k]
    else:
        part = np.broadcast_to(np.arange(m), (n, m))
    vals = np.take_along_axis(scores, part, axis=1)
    order = np.lexsort((part, -vals), axis=1)
    return np.take_along_axis(part, order, axis=1).astype(np.int64, copy=False)


def empirical_marginals(rankings: np.ndarray, served: np.ndarray, floor: float) -> np.ndarray:
    """(kk,) float64 share of ``rankings`` (n, kk) that show ``served[p]`` at position p, floored at
    ``floor`` (a Monte Carlo propensity is never logged as 0; with n samples an estimate of 0 means
    "below ~1/n", and the floor caps the importance weight at 1/floor)."""
    if rankings.shape[0] == 0:
        return np.ones(served.shape, dtype=np.float64)
    return np.maximum((rankings == served[None, :]).mean(axis=0), floor)


def make_slate(
    name: str,
    rows: np.ndarray,
    scores: np.ndarray,
    index: np.ndarray,
    propensities: np.ndarray,
    conditional: np.ndarray | None = None,
) -> Slate:
    """A `Slate` of candidates ``index`` (kk,) with the model scores (as float32) of ``scores``."""
    index = np.asarray(index, dtype=np.int64)
    cond = None if conditional is None else np.asarray(conditional, dtype=np.float64)
    return Slate(
        rows=rows[index],
        scores=np.asarray(scores[index], dtype=np.float32),
        propensities=np.asarray(propensities, dtype=np.float64),
        policy=name,
        slate_propensity=None if cond is None else float(np.prod(cond)),
        conditional_propensities=cond,
        index=index,
    )


class Greedy(Policy):
    """Show the top-k by model score; every shown item had propensity 1. Ignores feedback."""

    name = "greedy"
    deterministic = True
    uses_vectors = False

    def select(
        self, candidates: np.ndarray, scores: np.ndarray, k: int, context: Mapping[str, Any] | None = None
    ) -> Slate:
        rows, s, kk = check_inputs(candidates, scores, k)
        order = top_k(s, kk)
        ones = np.ones(kk)
        return make_slate(self.name, rows, np.asarray(scores), order, ones, ones)
