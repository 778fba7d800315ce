"""`IdSet`: membership of 64-bit event-id hashes, kept in memory so the log needs no unique index.

A unique B-tree index on random ids (UUIDs) makes every durable commit rewrite about one index page
per event, and appends slow down as the log grows. Instead the store keeps the hashes of all ids in
memory (8 bytes each: a sorted array plus a small set of recent additions) and rebuilds them from
the log when it opens, so appends stay sequential writes.

The hash is 64-bit BLAKE2b of the id: two different ids share one with probability ~n^2 / 2^65
(about 3e-8 for a million events), in which case the second would be taken for a duplicate.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence

import numpy as np


def id_hash(event_id: str) -> int:
    """Signed 64-bit hash of an event id (fits an SQLite INTEGER)."""
    return int.from_bytes(hashlib.blake2b(event_id.encode(), digest_size=8).digest(), "big", signed=True)


_BLAKE2B_8 = hashlib.blake2b(digest_size=8)  # never updated: a template to copy


def id_hashes(event_ids: Sequence[str]) -> list[int]:
    """`id_hash` of each id, a third cheaper: copying a fresh hash state costs less than building
    one (its parameters are parsed each time), and the digests are converted all at once."""
    digests = []
    for event_id in event_ids:
        h = _BLAKE2B_8.copy()
        h.update(event_id.encode())
        digests.append(h.digest())
    return np.frombuffer(b"".join(digests), dtype=">i8").tolist()


class IdSet:
    def __init__(self, hashes: Iterable[int] = ()) -> None:
        self._sorted = _sorted_unique(np.fromiter(hashes, dtype=np.int64))
        self._recent: set[int] = set()

    def __len__(self) -> int:
        return len(self._sorted) + len(self._recent)

    def _in_sorted(self, arr: np.ndarray) -> np.ndarray:
        """(len(arr),) bool: which of ``arr`` (int64) are in the sorted array."""
        if not len(self._sorted):
            return np.zeros(len(arr), dtype=bool)
        pos = np.minimum(np.searchsorted(self._sorted, arr), len(self._sorted) - 1)
        return self._sorted[pos] == arr

    def contains(self, hashes: list[int]) -> np.ndarray:
        """(len(hashes),) bool."""
        hit = self._in_sorted(np.asarray(hashes, dtype=np.int64))
        if self._recent and not self._recent.isdisjoint(hashes):  # per-id lookups only if some hit
            hit |= np.fromiter((h in self._recent for h in hashes), dtype=bool, count=len(hashes))
        return hit

    def add(self, hashes: Iterable[int]) -> None:
        self._recent.update(hashes)
        if len(self._recent) > max(50_000, len(self._sorted) // 4):  # merge, amortised O(1) per id
            recent = np.sort(np.fromiter(self._recent, dtype=np.int64, count=len(self._recent)))
            recent = recent[~self._in_sorted(recent)]
            # Inserted at their sorted positions: linear in the size. (np.union1d sorted everything
            # again, slowly: ~3 µs per added id once a million ids are held, with numpy 2.4.)
            self._sorted = np.insert(self._sorted, np.searchsorted(self._sorted, recent), recent)
            self._recent.clear()

    def remove(self, hashes: Iterable[int]) -> None:
        gone = list(hashes)
        self._recent.difference_update(gone)
        if gone and len(self._sorted):
            self._sorted = np.setdiff1d(self._sorted, np.asarray(gone, dtype=np.int64), assume_unique=True)


def _sorted_unique(arr: np.ndarray) -> np.ndarray:
    """``np.unique(arr)`` for int64, by one sort: np.unique itself is ~80x slower with numpy 2.4."""
    arr = np.sort(arr)
    if len(arr) > 1:
        arr = arr[np.concatenate(([True], arr[1:] != arr[:-1]))]
    return arr
