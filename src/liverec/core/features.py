"""Per-position side features of a sequence: event type and time since the previous interaction.

`Seq` is an int64 array of item rows that may also carry ``times`` (epoch seconds) and ``types``
(event-type ids), aligned with it. Code that only needs items (baselines, metrics) treats it as a
plain array; the Transformer reads the features when its config asks for them. Slicing a `Seq`
drops the features on purpose (a slice would silently misalign them); use `Seq.window`.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from liverec.core.schema import EventType

EVENT_TYPE_IDS = {t: i + 1 for i, t in enumerate(EventType)}  # 0 = padding
RATING_STARS = 5  # a rating with a value is embedded by its star count, rounded into 1..5
N_EVENT_TYPES = len(EVENT_TYPE_IDS) + RATING_STARS


def event_type_id(kind: EventType, value: float | None = None) -> int:
    """The id the model embeds for an interaction: its event type or, for a rating with a value, its
    stars (a 1-star and a 5-star rating say different things about what comes next)."""
    if kind is EventType.rating and value is not None:
        return len(EVENT_TYPE_IDS) + min(RATING_STARS, max(1, round(value)))
    return EVENT_TYPE_IDS[kind]


N_TIME_GAP_BUCKETS = 32  # log2(seconds since the previous interaction + 1), capped


class Seq(np.ndarray):
    times: np.ndarray | None
    types: np.ndarray | None

    def __new__(cls, items: Any, times: Any = None, types: Any = None) -> Seq:
        obj = np.asarray(items, dtype=np.int64).view(cls)
        n = len(obj)
        obj.times = None if times is None else np.asarray(times, dtype=np.float64)
        obj.types = None if types is None else np.asarray(types, dtype=np.int64)
        for name in ("times", "types"):
            value = getattr(obj, name)
            if value is not None and len(value) != n:
                raise ValueError(f"{name} has {len(value)} entries for {n} items")
        return obj

    def __array_finalize__(self, obj: Any) -> None:
        self.times = None  # views and slices do not inherit features (see the module docstring)
        self.types = None

    def window(self, start: int | None, stop: int | None) -> Seq:
        """``self[start:stop]`` keeping the features aligned."""
        sl = slice(start, stop)
        return Seq(
            np.asarray(self)[sl],
            None if self.times is None else self.times[sl],
            None if self.types is None else self.types[sl],
        )

    def keep(self, mask: np.ndarray) -> Seq:
        """The entries where ``mask`` (bool) is True, features aligned."""
        return Seq(
            np.asarray(self)[mask],
            None if self.times is None else self.times[mask],
            None if self.types is None else self.types[mask],
        )

    def at(self, k: int) -> tuple[int, float | None, int | None]:
        """(item, time, type) of entry k."""
        return (
            int(np.asarray(self)[k]),
            None if self.times is None else float(self.times[k]),
            None if self.types is None else int(self.types[k]),
        )

    def append(self, item: int, time: float | None = None, type_id: int | None = None) -> Seq:
        times = None if self.times is None or time is None else np.append(self.times, time)
        types = None if self.types is None or type_id is None else np.append(self.types, type_id)
        return Seq(np.append(np.asarray(self), item), times, types)


def gap_bucket(seconds: float) -> int:
    """`gap_buckets` for one gap: the log2 bucket of ``seconds`` since the previous interaction."""
    return min(int(math.log2(max(seconds, 0.0) + 1.0)), N_TIME_GAP_BUCKETS - 1)


def gap_buckets(times: np.ndarray) -> np.ndarray:
    """(T,) int64 log2 buckets of seconds since the previous interaction (0 for the first)."""
    t = np.asarray(times, dtype=np.float64)
    gaps = np.diff(t, prepend=t[:1]) if len(t) else t
    return np.minimum(np.log2(np.maximum(gaps, 0.0) + 1.0).astype(np.int64), N_TIME_GAP_BUCKETS - 1)


def left_pad_features(
    seqs: list[np.ndarray], length: int, gaps: bool, types: bool
) -> tuple[np.ndarray | None, np.ndarray | None]:
    """(B, length) int64 gap buckets and event-type ids, left-padded with 0, as the items are;
    None for a feature not asked for. Sequences without the feature get zeros."""
    g = np.zeros((len(seqs), length), dtype=np.int64) if gaps else None
    y = np.zeros((len(seqs), length), dtype=np.int64) if types else None
    for b, s in enumerate(seqs):
        n = min(len(s), length)
        times, kinds = getattr(s, "times", None), getattr(s, "types", None)
        if n == 0:
            continue
        if g is not None and times is not None:
            g[b, length - n :] = gap_buckets(times)[-n:]
        if y is not None and kinds is not None:
            y[b, length - n :] = kinds[-n:]
    return g, y
