"""MMR (maximal marginal relevance) diversity re-ranking around another policy.

The wrapped policy ranks a pool of ``ceil(pool_factor * k)`` candidates (its own exploration
included); MMR then fills the k positions one at a time with the pool item maximising

    lam * relevance - (1 - lam) * max cosine similarity to the items already placed,

where relevance = 1 - j / pool for the item the wrapped policy put at pool position j (so the
wrapped policy's order, not the raw model score, is what diversity trades against: an item an
explorer promoted stays promoted) and similarities come from the context's ``item_vectors``.
lam = 1 reproduces the wrapped policy's slate; without item vectors the wrapped policy's slate is
served unchanged (no diversity).

Propensities: MMR is a deterministic function of the wrapped policy's pool ranking. Over a
deterministic policy every shown row has propensity 1 (marginal, conditional, slate). Over a
stochastic one, the served pool and ``n_propensity_samples`` further pools are drawn in one batch
with the wrapped policy's `Policy.sample`, all re-ranked, and ``propensities[p]`` is the share of
the further slates showing the served row at p, floored at ``min_propensity``; conditional and
slate propensities are then None.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from liverec.policy.base import (
    PROPENSITY_FLOOR,
    Feedback,
    Policy,
    Slate,
    check_inputs,
    empirical_marginals,
    make_slate,
)


def item_vectors(context: Mapping[str, Any] | None, m: int) -> np.ndarray | None:
    """(M, D) float64 unit-norm candidate vectors (zero rows stay zero), or None if absent/non-finite."""
    items = None if not context else context.get("item_vectors")
    if items is None:
        return None
    v = np.asarray(items, dtype=np.float64)
    if v.ndim != 2 or v.shape[0] != m:
        raise ValueError(f"item_vectors {v.shape} must be (M, D) with M = {m}")
    if not np.isfinite(v).all():
        return None
    norm = np.linalg.norm(v, axis=1, keepdims=True)
    return v / np.where(norm > 0, norm, 1.0)


def mmr(pools: np.ndarray, sim: np.ndarray, lam: float, kk: int) -> np.ndarray:
    """(n, kk) int64 candidate indices: MMR over each pool of ``pools`` (n, P) candidate indices
    (best first) with cosine similarities ``sim`` (M, M) between candidates."""
    n, size = pools.shape
    kk = min(kk, size)
    out = np.empty((n, kk), dtype=np.int64)
    if kk == 0:
        return out
    relevance = lam * (1.0 - np.arange(size) / size)  # (P,)
    at = np.arange(n)
    placed = np.zeros((n, size), dtype=bool)
    pick = np.zeros(n, dtype=np.int64)  # the first item: the most relevant
    max_sim = np.zeros((n, size))
    for p in range(kk):
        if p > 0:
            value = relevance[None, :] - (1.0 - lam) * max_sim
            value[placed] = -np.inf
            pick = np.argmax(value, axis=1)
        chosen = pools[at, pick]  # (n,)
        out[:, p] = chosen
        placed[at, pick] = True
        s = sim[chosen[:, None], pools]  # (n, P)
        max_sim = s if p == 0 else np.maximum(max_sim, s)
    return out


class MMR(Policy):
    """Diversify ``policy``'s slates. ``lam`` in [0, 1]: 1 = relevance only, 0 = diversity only;
    ``pool_factor``: the wrapped policy ranks ``ceil(pool_factor * k)`` candidates to choose from."""

    def __init__(
        self,
        policy: Policy,
        lam: float = 0.7,
        pool_factor: float = 3.0,
        n_propensity_samples: int = 100,
        min_propensity: float = PROPENSITY_FLOOR,
    ) -> None:
        if not 0.0 <= lam <= 1.0:
            raise ValueError(f"lam must be in [0, 1], got {lam}")
        if pool_factor < 1:
            raise ValueError(f"pool_factor must be >= 1, got {pool_factor}")
        if n_propensity_samples < 1:
            raise ValueError(f"n_propensity_samples must be >= 1, got {n_propensity_samples}")
        if not 0 < min_propensity <= 1:
            raise ValueError("min_propensity must be in (0, 1]")
        self.policy = policy
        self.lam = float(lam)
        self.pool_factor = float(pool_factor)
        self.n_propensity_samples = int(n_propensity_samples)
        self.min_propensity = float(min_propensity)
        self.name = f"mmr({policy.name})"
        self.deterministic = policy.deterministic

    def _pool(self, m: int, kk: int) -> int:
        return min(m, max(kk, math.ceil(self.pool_factor * kk)))

    def select(
        self, candidates: np.ndarray, scores: np.ndarray, k: int, context: Mapping[str, Any] | None = None
    ) -> Slate:
        rows, _, kk = check_inputs(candidates, scores, k)
        unit = item_vectors(context, rows.size)
        if unit is None or kk == 0:
            inner = self.policy.select(candidates, scores, k, context)
            return Slate(
                inner.rows,
                inner.scores,
                inner.propensities,
                self.name,
                inner.slate_propensity,
                inner.conditional_propensities,
                inner.index,
            )
        size = self._pool(rows.size, kk)
        if self.policy.deterministic:
            pool = self.policy.select(candidates, scores, size, context).index
            assert pool is not None
            served = mmr(pool[None, :], unit @ unit.T, self.lam, kk)[0]
            ones = np.ones(kk)
            return make_slate(self.name, rows, np.asarray(scores), served, ones, ones)
        pools = self.policy.sample(candidates, scores, size, context, 1 + self.n_propensity_samples)
        slates = mmr(pools, unit @ unit.T, self.lam, kk)
        marg = empirical_marginals(slates[1:], slates[0], self.min_propensity)
        return make_slate(self.name, rows, np.asarray(scores), slates[0], marg)

    def sample(
        self,
        candidates: np.ndarray,
        scores: np.ndarray,
        k: int,
        context: Mapping[str, Any] | None,
        n: int,
    ) -> np.ndarray:
        rows, _, kk = check_inputs(candidates, scores, k)
        unit = item_vectors(context, rows.size)
        if unit is None or kk == 0:
            return self.policy.sample(candidates, scores, k, context, n)
        pools = self.policy.sample(candidates, scores, self._pool(rows.size, kk), context, n)
        return mmr(pools, unit @ unit.T, self.lam, kk)

    def update(self, feedback: Sequence[Feedback]) -> None:
        self.policy.update(feedback)

    def rebase(self) -> None:
        self.policy.rebase()
