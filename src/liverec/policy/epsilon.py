"""Epsilon-greedy slates: per position, a uniformly random remaining candidate with probability
epsilon, else the best remaining one (by model score; ties keep the candidates' order).

Logged, exactly:

- ``conditional_propensities[p] = (1 - eps) * [row is the best remaining] + eps / (M - p)``;
- ``slate_propensity`` = their product;
- ``propensities[p]`` = the marginal P(row at position p | candidates). It depends only on the
  row's rank r among the candidates (and M, kk, eps), and is computed by a small dynamic programme
  (`marginal_table`), cached per (M, kk).

Why the programme is exact: after p picks, every rank below the best remaining m is gone, and
the c = p - m other picks are a uniformly random subset of the ranks above m (random picks are
uniform over what remains, greedy picks take m and do not look above it), so m alone is a Markov
state. From m: the greedy pick (probability 1 - eps + eps / R, R = M - p remaining) moves m past
the run of already-taken ranks above it; a random pick elsewhere keeps m.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import lru_cache
from typing import Any

import numpy as np

from liverec.policy.base import Policy, Slate, check_inputs, make_slate, top_k


@lru_cache(maxsize=256)
def marginal_table(m: int, kk: int, eps: float) -> np.ndarray:
    """(kk, M) float64: P(the candidate of rank r is shown at position p) under epsilon-greedy."""
    out = np.zeros((kk, m))
    state = np.zeros(m + 1)  # P(best remaining rank == j) before pick p; j == m: nothing left
    state[0] = 1.0
    for p in range(kk):
        remaining = m - p
        q = (1.0 - eps) + eps / remaining  # P(take the best remaining)
        j = np.arange(m)
        above = m - 1 - j  # ranks above j
        # P(rank r still there | best remaining j) = (remaining - 1) / above, for r > j.
        with np.errstate(divide="ignore", invalid="ignore"):
            reach = np.where(above > 0, state[:m] * (remaining - 1) / np.maximum(above, 1), 0.0)
        exclusive = np.concatenate([[0.0], np.cumsum(reach)[:-1]])  # sum over j < r
        out[p] = state[:m] * q + exclusive * eps / remaining
        nxt = np.zeros(m + 1)
        nxt[:m] += state[:m] * eps * (remaining - 1) / remaining  # a random pick elsewhere
        for best in range(min(p, m - 1) + 1):  # the greedy pick: best remaining is at most p
            pb = state[best] * q
            if pb == 0.0:
                continue
            n_above, taken = m - 1 - best, p - best
            run = 1.0  # P(the g ranks right above best are all taken)
            for g in range(taken + 1):
                if g == n_above:  # everything above is taken: nothing remains
                    nxt[m] += pb * run
                    break
                free = (n_above - taken) / (n_above - g)  # ... and the next one is not
                nxt[best + 1 + g] += pb * run * free
                run *= (taken - g) / (n_above - g)
        state = nxt
    out.setflags(write=False)
    return out


class EpsilonGreedy(Policy):
    """Per position: with probability ``epsilon`` a uniformly random remaining candidate, else the
    best remaining. ``seed`` fixes the draws. Ignores feedback."""

    name = "epsilon"
    uses_vectors = False

    def __init__(self, epsilon: float = 0.1, seed: int | None = None) -> None:
        if not 0.0 <= epsilon <= 1.0:
            raise ValueError(f"epsilon must be in [0, 1], got {epsilon}")
        self.epsilon = float(epsilon)
        self.seed = seed
        self.rng = np.random.default_rng(seed)

    def select(
        self, candidates: np.ndarray, scores: np.ndarray, k: int, context: Mapping[str, Any] | None = None
    ) -> Slate:
        rows, s, kk = check_inputs(candidates, scores, k)
        m = rows.size
        by_rank = top_k(s, m)  # (M,) candidate index of each rank
        ranks = self.sample_ranks(m, kk, 1)[0]
        cond = np.empty(kk)
        taken = np.zeros(m, dtype=bool)
        for p, r in enumerate(ranks.tolist()):
            best = int(np.argmin(taken))  # lowest rank not yet taken
            cond[p] = (1.0 - self.epsilon) * (r == best) + self.epsilon / (m - p)
            taken[r] = True
        marg = marginal_table(m, kk, self.epsilon)[np.arange(kk), ranks] if kk else np.ones(0)
        return make_slate(self.name, rows, np.asarray(scores), by_rank[ranks], marg, cond)

    def sample_ranks(self, m: int, kk: int, n: int) -> np.ndarray:
        """(n, kk) int64 ranks (0 = best model score) of ``n`` independent epsilon-greedy slates.

        A random pick takes the first not-yet-taken item of a uniformly random permutation drawn
        once per slate: given what was taken so far, the order of the remaining items in that
        permutation is still uniform, so this is a uniform pick among them, and it costs one
        sort up front instead of a fresh (n, M) draw per position.
        """
        out = np.empty((n, kk), dtype=np.int64)
        if kk == 0:
            return out
        perm = np.argsort(self.rng.random((n, m)), axis=1)  # (n, M) a random order per slate
        explore = self.rng.random((n, kk)) < self.epsilon
        taken = np.zeros((n, m), dtype=bool)
        at = np.arange(n)
        best = np.zeros(n, dtype=np.int64)  # the lowest rank not taken
        first = np.zeros(n, dtype=np.int64)  # the first position of perm not taken
        for p in range(kk):  # p < M: something remains, so the pointers stay in range
            while (stuck := taken[at, best]).any():
                best += stuck
            while (stuck := taken[at, perm[at, first]]).any():
                first += stuck
            pick = np.where(explore[:, p], perm[at, first], best)
            out[:, p] = pick
            taken[at, pick] = True
        return out

    def sample(
        self,
        candidates: np.ndarray,
        scores: np.ndarray,
        k: int,
        context: Mapping[str, Any] | None,
        n: int,
    ) -> np.ndarray:
        rows, s, kk = check_inputs(candidates, scores, k)
        return top_k(s, rows.size)[self.sample_ranks(rows.size, kk, n)]
