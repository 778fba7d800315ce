"""The search ranker: a linear scorer over `features.FEATURES`, learned from clicks, plus a click memory.

Learning (`LinearRanker.learn`): for a click on item c of a shown list with features X (L, F), the
loss is ``weight * -log softmax(X @ w)[c]`` (listwise cross-entropy), one AdaGrad step. ``weight`` is
where position bias is corrected: the inverse probability that the clicked position was examined
(`examination.Examination`), so a click at position 8 counts as much as the several clicks position 1
would have drawn from the same relevance (Joachims et al. 2017, "Unbiased learning-to-rank with
biased feedback"). Naive learning passes 1. The same loss trains offline over the whole catalog,
where the target is known and every weight is 1.

`ClickMemory` remembers, per query and item, the (weighted, time-decayed) clicks: what people who
typed this query picked recently. It is a feature, so the weights decide how much it counts.
"""

from __future__ import annotations

import copy
import math
from collections import OrderedDict

import numpy as np

from liverec.search.features import FEATURES, F

# what a server with no clicks yet ranks by: the query first, then the person, a little popularity
PRIOR_WEIGHTS: dict[str, float] = {
    "bm25": 2.0,
    "cosine": 2.0,
    "personal": 0.5,
    "popularity": 0.5,
    "freshness": 0.0,
    "seen": 0.0,
    "clicks": 1.0,
}


class LinearRanker:
    """score = X @ w, learned by AdaGrad on the IPS-weighted listwise loss (see the module doc)."""

    def __init__(self, weights: dict[str, float] | None = None, lr: float = 0.1, l2: float = 1e-4) -> None:
        w = PRIOR_WEIGHTS | (weights or {})
        unknown = set(w) - set(FEATURES)
        if unknown:
            raise ValueError(f"unknown feature(s) {sorted(unknown)}; known: {', '.join(FEATURES)}")
        self.w = np.array([w[f] for f in FEATURES], dtype=np.float64)  # (F,)
        self.prior = self.w.copy()  # (F,) what L2 pulls back to: a weight no click speaks to stays put
        self.lr, self.l2 = float(lr), float(l2)
        self.g2 = np.full(F, 1e-8)  # (F,) AdaGrad's sum of squared gradients
        self.steps = 0

    def score(self, x: np.ndarray) -> np.ndarray:
        """(M,) float64 scores of features ``x`` (M, F)."""
        return np.asarray(x, dtype=np.float64) @ self.w

    def loss_and_grad(self, x: np.ndarray, clicked: int) -> tuple[float, np.ndarray]:
        """Cross-entropy of item ``clicked`` among the rows of ``x`` (L, F), and its (F,) gradient."""
        x = np.asarray(x, dtype=np.float64)
        s = x @ self.w
        s -= s.max()
        p = np.exp(s)
        p /= p.sum()
        return float(-math.log(max(p[clicked], 1e-300))), p @ x - x[clicked]

    def learn(self, x: np.ndarray, clicked: int, weight: float = 1.0) -> float:
        """One step on a click at row ``clicked`` of ``x`` (L, F), scaled by ``weight``; the loss."""
        if x.shape[0] < 2 or weight <= 0:
            return 0.0
        loss, grad = self.loss_and_grad(x, clicked)
        g = weight * grad
        self.g2 += g * g
        # the L2 pull is decoupled from AdaGrad's scaling: through it, a feature that is 0 in every
        # list (the click memory of a query nobody clicked yet) would lose its weight at lr per step
        self.w -= self.lr * g / np.sqrt(self.g2) + self.lr * self.l2 * (self.w - self.prior)
        self.steps += 1
        return loss * weight

    def copy(self) -> LinearRanker:
        return copy.deepcopy(self)

    def weights(self) -> dict[str, float]:
        return {f: round(float(v), 6) for f, v in zip(FEATURES, self.w, strict=True)}


def reciprocal_rank(scores: np.ndarray, clicked: int) -> float:
    """1 / (1 + how many of ``scores`` (L,) beat the clicked one; ties count half)."""
    s = scores[clicked]
    return 1.0 / (1.0 + float((scores > s).sum()) + 0.5 * float((scores == s).sum() - 1))


class ClickMemory:
    """Per (query key, item row): the sum of click weights, halving every ``half_life_s`` of event time.

    Bounded: at most ``max_queries`` queries, the least recently clicked dropped first."""

    def __init__(self, half_life_s: float = 14 * 86_400.0, max_queries: int = 100_000) -> None:
        self.half_life_s = float(half_life_s)
        self.max_queries = int(max_queries)
        self._q: OrderedDict[str, dict[int, tuple[float, float]]] = OrderedDict()  # key -> row -> (v, t)

    def _decayed(self, v: float, t: float, now: float) -> float:
        return v * 0.5 ** (max(now - t, 0.0) / self.half_life_s)

    def add(self, key: str, row: int, weight: float, now: float) -> None:
        rows = self._q.setdefault(key, {})
        self._q.move_to_end(key)
        v, t = rows.get(row, (0.0, now))
        rows[row] = (self._decayed(v, t, now) + weight, now)
        while len(self._q) > self.max_queries:
            self._q.popitem(last=False)

    def values(self, key: str, rows: np.ndarray, now: float) -> np.ndarray:
        """(M,) float64 the decayed clicks of ``rows`` (M,) for query ``key`` (0 where none)."""
        out = np.zeros(rows.size)
        known = self._q.get(key)
        if not known or rows.size == 0:
            return out
        kr = np.fromiter(known.keys(), np.int64, len(known))
        kv = np.array([self._decayed(v, t, now) for v, t in known.values()])
        order = np.argsort(kr)
        kr, kv = kr[order], kv[order]
        i = np.minimum(np.searchsorted(kr, rows), kr.size - 1)
        hit = kr[i] == rows
        out[hit] = kv[i[hit]]
        return out

    def __len__(self) -> int:
        return len(self._q)
