"""Time-decayed popularity blended with item-to-item co-occurrence, both updated per event.

The first recommender and the fallback for users a deep model cannot serve. Decay runs on event
time (the newest timestamp seen), so imported historical logs behave like live ones.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence

import numpy as np

from liverec.events.state import Interaction, UserState
from liverec.model.base import Model
from liverec.settings import PopularitySettings


class DecayedCounts:
    """Per-row exponentially decayed sums: value v_i at time t_i; now it is v_i * 2^-(now - t_i)/h."""

    def __init__(self, half_life_s: float) -> None:
        self.rate = math.log(2.0) / half_life_s
        self.value = np.zeros(1024, dtype=np.float64)
        self.time = np.zeros(1024, dtype=np.float64)

    def _grow(self, row: int) -> None:
        while row >= len(self.value):
            self.value = np.concatenate([self.value, np.zeros_like(self.value)])
            self.time = np.concatenate([self.time, np.zeros_like(self.time)])

    def add(self, row: int, weight: float, t: float) -> None:
        if row >= len(self.value):
            self._grow(row)
        last = self.time[row]
        if t >= last:
            self.value[row] = self.value[row] * math.exp(-self.rate * (t - last)) + weight
            self.time[row] = t
        else:  # a late event: decay it to the row's clock instead
            self.value[row] += weight * math.exp(-self.rate * (last - t))

    def at(self, now: float, n: int) -> np.ndarray:
        """(n,) float64 decayed values at time ``now``."""
        if n > len(self.value):
            self._grow(n - 1)
        return self.value[:n] * np.exp(-self.rate * np.maximum(now - self.time[:n], 0.0))


def _unit(x: np.ndarray) -> np.ndarray:
    top = float(x.max()) if x.size else 0.0
    return x / top if top > 0 else x


class PopularityCooc(Model):
    """score = w * cooc(user's recent items, item) + (1 - w) * popularity(item), each scaled to [0, 1]."""

    name = "popularity-cooc"

    def __init__(self, settings: PopularitySettings | None = None) -> None:
        s = settings or PopularitySettings()
        self.cooc_weight = s.cooc_weight
        self.window = s.cooc_window
        self.popular = DecayedCounts(s.half_life_s)
        self.trending = DecayedCounts(s.trending_half_life_s)
        self.count = np.zeros(1024, dtype=np.float64)  # undecayed positive weight per row
        self.cooc: defaultdict[int, defaultdict[int, float]] = defaultdict(lambda: defaultdict(float))
        self._row_cache: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        self.clock = 0.0  # newest event time seen

    def observe(self, interactions: Sequence[Interaction]) -> None:
        cooc, cache = self.cooc, self._row_cache
        for it in interactions:
            if not it.positive:
                continue
            j, w = it.row, it.reward
            self.clock = max(self.clock, it.timestamp)
            self.popular.add(j, w, it.timestamp)
            self.trending.add(j, w, it.timestamp)
            if j >= len(self.count):
                self.count = np.concatenate([self.count, np.zeros(max(j + 1, len(self.count)))])
            self.count[j] += w
            row_j = cooc[j]
            for i in set(it.history[-self.window :]):
                if i != j:
                    row_j[i] += w
                    cooc[i][j] += w
                    cache.pop(i, None)
            cache.pop(j, None)

    def _cooc_row(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        """Row i as (cols int64, cosine-normalised weights float64), cached until it changes."""
        hit = self._row_cache.get(i)
        if hit is None:
            row = self.cooc.get(i)
            if not row:
                hit = (np.empty(0, np.int64), np.empty(0, np.float64))
            else:
                cols = np.fromiter(row.keys(), dtype=np.int64, count=len(row))
                vals = np.fromiter(row.values(), dtype=np.float64, count=len(row))
                hit = (cols, vals / np.sqrt(max(self.count[i], 1e-9) * np.maximum(self.count[cols], 1e-9)))
            self._row_cache[i] = hit
        return hit

    def _popularity(self, n_items: int, trending: bool = False) -> np.ndarray:
        counts = self.trending if trending else self.popular
        return _unit(counts.at(self.clock, n_items))

    def score(self, user: UserState | None, n_items: int) -> np.ndarray:
        if user is None or not user.items:
            return self._popularity(n_items, trending=True).astype(np.float32)
        co = np.zeros(n_items, dtype=np.float64)
        recent = list(user.items)[-self.window :]
        for age, i in enumerate(reversed(recent)):  # the newest interaction counts most
            cols, vals = self._cooc_row(i)
            keep = cols < n_items
            co[cols[keep]] += vals[keep] * (0.9**age)  # cols are unique within a row
        blended = self.cooc_weight * _unit(co) + (1.0 - self.cooc_weight) * self._popularity(n_items)
        return blended.astype(np.float32)

    def similar(self, row: int, n_items: int) -> np.ndarray:
        sim = np.zeros(n_items, dtype=np.float64)
        cols, vals = self._cooc_row(row)
        keep = cols < n_items
        sim[cols[keep]] = vals[keep]
        # break ties (and fill for items with no co-occurrence yet) by popularity
        return (_unit(sim) + 1e-3 * self._popularity(n_items)).astype(np.float32)
