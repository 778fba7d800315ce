"""Time-decayed popularity blended with item-to-item co-occurrence, both updated per event.

The first recommender and the fallback for users a deep model cannot serve. Decay runs on event
time (the newest timestamp seen), so imported historical logs behave like live ones; a long silence
(an ml-100k import from 1998, then live traffic today) decays as if it were `max_gap_half_lives`
half-lives long, so the first live click does not wipe out every popular item.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Mapping, Sequence
from itertools import chain, islice

import numpy as np

from liverec.core.state import Interaction, UserState
from liverec.model.base import Model
from liverec.settings import PopularitySettings


class DecayedCounts:
    """Per-row exponentially decayed sums with forward decay (Cormode et al., 2009).

    An event of weight w at time t adds w * e^{r (t - t0)}; the value at time `now` is the sum times
    e^{-r (now - t0)}. Adds need no per-row clock, arrive in any order, and vectorise per batch.

    Time is decay time: event time with every silence longer than ``max_gap_s`` cut to ``max_gap_s``
    (the clock stops until the next event). Silences are found as newer events arrive; a late event
    maps through the cuts already made (inside a cut silence it counts where the clock stopped), so
    order within the newest events does not matter.
    """

    def __init__(self, half_life_s: float, max_gap_s: float = math.inf) -> None:
        self.rate = math.log(2.0) / half_life_s
        self.t0: float | None = None
        self.sums = np.zeros(1024, dtype=np.float64)
        self.max_gap = max_gap_s if max_gap_s > 0 else math.inf
        self.newest = -math.inf  # newest event time added
        self._stops = np.zeros(0)  # (S,) event time at which each long silence stopped the clock
        self._skips = np.zeros(0)  # (S,) seconds that silence skipped
        self._before = np.zeros(0)  # (S,) seconds skipped by the silences before it

    def decay_time(self, times: np.ndarray) -> np.ndarray:
        """(B,) event times -> decay times: minus the skipped part of every long silence before each."""
        if not self._stops.size:
            return times
        i = np.searchsorted(self._stops, times, side="right") - 1
        j = np.maximum(i, 0)
        within = np.clip(times - self._stops[j], 0.0, self._skips[j])
        return times - np.where(i >= 0, self._before[j] + within, 0.0)

    def _find_silences(self, times: np.ndarray) -> None:
        """Record the silences longer than `max_gap` that events newer than any before end."""
        top = float(times.max())
        start = self.newest if math.isfinite(self.newest) else float(times.min())
        if math.isinf(self.max_gap) or top - start <= self.max_gap:  # no silence can fit
            self.newest = max(self.newest, top)
            return
        fresh = np.unique(times[times > self.newest])
        prev = np.r_[self.newest, fresh[:-1]] if math.isfinite(self.newest) else fresh[:-1]
        gaps = fresh[len(fresh) - len(prev) :] - prev - self.max_gap
        long = gaps > 0
        if long.any():
            skips = gaps[long]
            total = float(self._before[-1] + self._skips[-1]) if self._stops.size else 0.0
            self._stops = np.r_[self._stops, prev[long] + self.max_gap]
            self._before = np.r_[self._before, total + np.r_[0.0, np.cumsum(skips)[:-1]]]
            self._skips = np.r_[self._skips, skips]
        self.newest = top

    def add(self, rows: np.ndarray, weights: np.ndarray, times: np.ndarray) -> None:
        """rows (B,) int64, weights (B,) float64, times (B,) float64 epoch seconds."""
        if rows.size == 0:
            return
        self._find_silences(times)
        times = self.decay_time(times)
        if self.t0 is None:
            self.t0 = float(times.min())
        top = int(rows.max())
        if top >= len(self.sums):
            self.sums = np.concatenate([self.sums, np.zeros(max(top + 1, len(self.sums)))])
        exponent = self.rate * (times - self.t0)
        if float(exponent.max()) > 500.0:  # keep e^x finite: move t0 forward and rescale
            shift = float(times.max()) - self.t0
            self.sums *= math.exp(-self.rate * shift)
            self.t0 += shift
            exponent = self.rate * (times - self.t0)
        np.add.at(self.sums, rows, weights * np.exp(exponent))

    def remove(self, rows: np.ndarray, weights: np.ndarray, times: np.ndarray) -> None:
        """Subtract exactly the terms `add` added for these events (a deleted user's): the same
        w * e^{r (t - t0)} against the current t0, so rescaling since does not matter. A row left
        with only rounding residue (nothing else ever added to it) is set to 0."""
        if rows.size == 0 or self.t0 is None:
            return
        times = self.decay_time(times)  # through the same silence cuts as when added
        _subtract(self.sums, rows, weights * np.exp(self.rate * (times - self.t0)))

    def at(self, now: float, n: int) -> np.ndarray:
        """(n,) float64 decayed sums at time ``now``."""
        out = np.zeros(n, dtype=np.float64)
        if self.t0 is not None:
            m = min(n, len(self.sums))
            now = float(self.decay_time(np.array([now], dtype=np.float64))[0])
            out[:m] = self.sums[:m] * math.exp(-self.rate * (now - self.t0))
        return out


def _subtract(table: np.ndarray, rows: np.ndarray, terms: np.ndarray) -> None:
    """``table[rows] -= terms`` (repeated rows add up); a result within rounding of 0 (relative to
    what the row held) becomes 0, so a row only the removed events touched is 0, as if never added."""
    touched = np.unique(rows[rows < len(table)])
    before = table[touched].copy()
    keep = rows < len(table)
    np.subtract.at(table, rows[keep], terms[keep])
    after = table[touched]
    table[touched] = np.where(after <= 1e-9 * np.abs(before), 0.0, after)


def _unit(x: np.ndarray) -> np.ndarray:
    top = float(x.max()) if x.size else 0.0
    return x / top if top > 0 else x


class PopularityCooc(Model):
    """score = w * cooc(user's recent items, item) + (1 - w) * popularity(item), each scaled to [0, 1].

    Co-occurrence is computed at query time instead of kept as an item x item table: every item
    remembers the last `cooc_neighbors` users with a positive on it (an O(1) update per event), and
    the items co-occurring with a set of rows are the recent positives of those users, counted with
    one `bincount`. Writes stay cheap at 50k events/s; reads cost O(window x neighbors x window).
    """

    name = "popularity-cooc"

    def __init__(self, users: Mapping[str, UserState], settings: PopularitySettings | None = None) -> None:
        s = settings or PopularitySettings()
        self.users = users  # live sequences, shared with LiveState
        self.cooc_weight = s.cooc_weight
        self.window = s.cooc_window
        self.neighbors = s.cooc_neighbors
        gap = s.max_gap_half_lives
        self.popular = DecayedCounts(s.half_life_s, gap * s.half_life_s)
        self.trending = DecayedCounts(s.trending_half_life_s, gap * s.trending_half_life_s)
        self.count = np.zeros(1024, dtype=np.float64)  # undecayed positive weight per row
        self.recent_users: dict[int, deque[str]] = {}
        self.clock = 0.0  # newest event time seen

    def observe(self, interactions: Sequence[Interaction]) -> None:
        pos = [it for it in interactions if it.positive]
        if not pos:
            return
        users, row_list, reward_list, time_list, _ = zip(*pos, strict=True)  # columns, in C
        rows = np.array(row_list, dtype=np.int64)
        weights = np.array(reward_list, dtype=np.float64)
        times = np.array(time_list, dtype=np.float64)
        self.clock = max(self.clock, float(times.max()))
        self.popular.add(rows, weights, times)
        self.trending.add(rows, weights, times)
        top = int(rows.max())
        if top >= len(self.count):
            self.count = np.concatenate([self.count, np.zeros(max(top + 1, len(self.count)))])
        np.add.at(self.count, rows, weights)
        recent, m = self.recent_users, self.neighbors
        for row, user_id in zip(row_list, users, strict=True):
            neighbors = recent.get(row)
            if neighbors is None:
                neighbors = recent[row] = deque(maxlen=m)
            neighbors.append(user_id)

    def forget(self, interactions: Sequence[Interaction]) -> None:
        """Remove what `observe` added for these interactions: all of one deleted user's, rebuilt
        from their events (their positives depend on their own events only, see `core.state`).
        Counts end as a fresh model fed the log without the user would have them (up to float
        rounding). Their id leaves the neighbour lists; a list it crowded out refills with new
        events, not with the older neighbours it pushed out. The clock (newest event time) stays."""
        pos = [it for it in interactions if it.positive]
        if not pos:
            return
        rows = np.array([it.row for it in pos], dtype=np.int64)
        weights = np.array([it.reward for it in pos], dtype=np.float64)
        times = np.array([it.timestamp for it in pos], dtype=np.float64)
        self.popular.remove(rows, weights, times)
        self.trending.remove(rows, weights, times)
        _subtract(self.count, rows, weights)
        gone = {it.user_id for it in pos}
        for row in set(rows.tolist()):
            neighbors = self.recent_users.get(row)
            if neighbors is not None and not gone.isdisjoint(neighbors):
                kept = [u for u in neighbors if u not in gone]
                self.recent_users[row] = deque(kept, maxlen=neighbors.maxlen)

    def cooc(
        self, rows: Sequence[int], weights: Sequence[float], n_items: int, skip_user: str = ""
    ) -> np.ndarray:
        """(n_items,) float64: weighted count of each item among the recent positives of the users
        who recently interacted with ``rows``, divided by sqrt(item count) (cosine-style)."""
        neighbor_w: dict[str, float] = {}
        for r, w in zip(rows, weights, strict=True):
            for v in self.recent_users.get(r, ()):
                neighbor_w[v] = neighbor_w.get(v, 0.0) + w
        neighbor_w.pop(skip_user, None)
        seqs: list[list[int]] = []
        seq_w: list[float] = []
        for v, w in neighbor_w.items():
            st = self.users.get(v)
            if st is not None and st.items:
                seqs.append(list(islice(st.items, max(0, len(st.items) - self.window), None)))
                seq_w.append(w)
        if not seqs:
            return np.zeros(n_items)
        lengths = np.fromiter((len(q) for q in seqs), dtype=np.int64, count=len(seqs))
        flat = np.fromiter(chain.from_iterable(seqs), dtype=np.int64, count=int(lengths.sum()))
        keep = flat < n_items
        counts = np.bincount(flat[keep], np.repeat(seq_w, lengths)[keep], minlength=n_items)
        norm = np.sqrt(np.maximum(self.counts(n_items), 1.0))
        return counts / norm

    def counts(self, n_items: int) -> np.ndarray:
        """(n_items,) float64 undecayed positive weight per row: how much each item has been used."""
        out = np.zeros(n_items)
        m = min(n_items, len(self.count))
        out[:m] = self.count[:m]
        return out

    def _popularity(self, n_items: int, trending: bool = False) -> np.ndarray:
        counts = self.trending if trending else self.popular
        return _unit(counts.at(self.clock, n_items))

    def score(self, user: UserState | None, n_items: int, user_id: str = "") -> np.ndarray:
        if user is None or not user.items:
            return self._popularity(n_items, trending=True).astype(np.float32)
        recent = list(islice(user.items, max(0, len(user.items) - self.window), None))
        ages = 0.9 ** np.arange(len(recent))[::-1]  # the newest interaction counts most
        co = self.cooc(recent, ages.tolist(), n_items, skip_user=user_id)
        blended = self.cooc_weight * _unit(co) + (1.0 - self.cooc_weight) * self._popularity(n_items)
        return blended.astype(np.float32)

    def similar(self, row: int, n_items: int) -> np.ndarray:
        sim = self.cooc([row], [1.0], n_items)
        sim[row] = 0.0
        # break ties (and fill for items with no co-occurrence yet) by popularity
        return (_unit(sim) + 1e-3 * self._popularity(n_items)).astype(np.float32)
