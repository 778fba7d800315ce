"""Per-position side features of a sequence: each interaction's time and event type.

`Seq` is an int64 array of item rows that may also carry ``times`` (epoch seconds) and ``types``
(event-type ids), aligned with it. Code that only needs items (baselines, metrics) treats it as a
plain array; the Transformer reads the types when its config asks for them (`event_types`), and
offline training reads the times to reorder ties (`trainer.offline.shuffle_ties`). Slicing a `Seq`
drops the features on purpose (a slice would silently misalign them); use `Seq.window`.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from liverec.core.schema import EventType

EVENT_TYPE_IDS = {t: i + 1 for i, t in enumerate(EventType)}  # 0 = padding
RATING_STARS = 5  # a rating with a value is embedded by its star count, rounded into 1..5
N_EVENT_TYPES = len(EVENT_TYPE_IDS) + RATING_STARS


def event_type_of(type_id: int) -> tuple[EventType, int | None]:
    """The event type an id stands for, and the stars when it is a rating (inverse of `event_type_id`)."""
    if type_id > len(EVENT_TYPE_IDS):
        return EventType.rating, type_id - len(EVENT_TYPE_IDS)
    return list(EVENT_TYPE_IDS)[type_id - 1], None


def event_type_id(kind: EventType, value: float | None = None) -> int:
    """The id the model embeds for an interaction: its event type or, for a rating with a value, its
    stars (a 1-star and a 5-star rating say different things about what comes next)."""
    if kind is EventType.rating and value is not None:
        return len(EVENT_TYPE_IDS) + min(RATING_STARS, max(1, round(value)))
    return EVENT_TYPE_IDS[kind]


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


def left_pad_types(seqs: list[np.ndarray], length: int) -> np.ndarray:
    """(B, length) int64 event-type ids, left-padded with 0, as the items are. A sequence without
    types gets zeros."""
    out = np.zeros((len(seqs), length), dtype=np.int64)
    for b, s in enumerate(seqs):
        n = min(len(s), length)
        kinds = getattr(s, "types", None)
        if n and kinds is not None:
            out[b, length - n :] = kinds[-n:]
    return out
