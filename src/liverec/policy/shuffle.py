"""Result randomization: greedy slates, except that with probability ``epsilon`` the top ``depth``
positions show the top ``depth`` candidates in a uniformly random order.

Search logs carry position bias: people click the first results because they look at them. On a
randomized slate every one of the top ``depth`` items is equally likely at every position, so the
click-through rate at position p on those slates is proportional to the probability that p is
examined at all (Joachims et al. 2017, "swap interventions"; `liverec.search.examination`
estimates it). The randomized slates say so in their policy name (``RANDOMIZED``), so the log tells
which requests were randomized.

Logged, exactly: ``propensities[p] = (1 - epsilon) * [row is the p-th best] + epsilon / depth`` for
p < depth (1 below that); ``slate_propensity = (1 - epsilon) * [greedy order] + epsilon / depth!``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from liverec.policy.base import Policy, Slate, check_inputs, make_slate, top_k

RANDOMIZED = "shuffle:random"  # the policy name a randomized slate is logged under


class ShuffleTopK(Policy):
    """Greedy, with the top ``depth`` shuffled on an ``epsilon`` share of slates. Ignores feedback."""

    name = "shuffle"
    uses_vectors = False

    def __init__(self, epsilon: float = 0.1, depth: int = 10, seed: int | None = None) -> None:
        if not 0.0 <= epsilon <= 1.0:
            raise ValueError(f"epsilon must be in [0, 1], got {epsilon}")
        if depth < 1:
            raise ValueError(f"depth must be >= 1, got {depth}")
        self.epsilon = float(epsilon)
        self.depth = int(depth)
        self.seed = seed
        self.rng = np.random.default_rng(seed)

    def select(
        self, candidates: np.ndarray, scores: np.ndarray, k: int, context: Mapping[str, Any] | None = None
    ) -> Slate:
        rows, s, kk = check_inputs(candidates, scores, k)
        order = top_k(s, rows.size)[:kk]  # (kk,) candidate indices, best first
        d = min(self.depth, kk)
        ranks, drawn = self._draw(kk, 1)
        shuffled = bool(drawn[0])  # a random order may be the greedy one: still logged as random
        index = order[ranks[0]]
        greedy = np.ones(kk, dtype=bool)
        greedy[:d] = index[:d] == order[:d]
        marg = np.ones(kk)
        if d > 1:
            marg[:d] = (1.0 - self.epsilon) * greedy[:d] + self.epsilon / d
        whole = (1.0 - self.epsilon) * bool(greedy.all()) + self.epsilon / math.factorial(d) if d > 1 else 1.0
        slate = make_slate(RANDOMIZED if shuffled else self.name, rows, np.asarray(scores), index, marg)
        return Slate(slate.rows, slate.scores, slate.propensities, slate.policy, whole, None, slate.index)

    def _draw(self, kk: int, n: int) -> tuple[np.ndarray, np.ndarray]:
        """(n, kk) int64 ranks (0 = best score) of ``n`` slates and (n,) bool which were shuffled."""
        out = np.tile(np.arange(kk, dtype=np.int64), (n, 1))
        d = min(self.depth, kk)
        if d < 2:
            return out, np.zeros(n, dtype=bool)
        shuffle = self.rng.random(n) < self.epsilon
        out[shuffle, :d] = np.argsort(self.rng.random((int(shuffle.sum()), d)), axis=1)
        return out, shuffle

    def sample(
        self,
        candidates: np.ndarray,
        scores: np.ndarray,
        k: int,
        context: Mapping[str, Any] | None,
        n: int,
    ) -> np.ndarray:
        rows, s, kk = check_inputs(candidates, scores, k)
        return top_k(s, rows.size)[self._draw(kk, n)[0]]
