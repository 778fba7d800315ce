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


def id_hashes(event_ids: Sequence[str]) -> list[int]:
    """`id_hash` of each id; converts all the digests at once (a third cheaper per id)."""
    blake2b = hashlib.blake2b
    digests = b"".join([blake2b(e.encode(), digest_size=8).digest() for e in event_ids])
    return np.frombuffer(digests, dtype=">i8").tolist()


class IdSet:
    def __init__(self, hashes: Iterable[int] = ()) -> None:
        self._sorted = np.unique(np.fromiter(hashes, dtype=np.int64))
        self._recent: set[int] = set()

    def __len__(self) -> int:
        return len(self._sorted) + len(self._recent)

    def contains(self, hashes: list[int]) -> np.ndarray:
        """(len(hashes),) bool."""
        arr = np.asarray(hashes, dtype=np.int64)
        hit = np.zeros(len(arr), dtype=bool)
        if len(self._sorted):
            pos = np.minimum(np.searchsorted(self._sorted, arr), len(self._sorted) - 1)
            hit = self._sorted[pos] == arr
        if self._recent and not self._recent.isdisjoint(hashes):  # per-id lookups only if some hit
            hit |= np.fromiter((h in self._recent for h in hashes), dtype=bool, count=len(hashes))
        return hit

    def add(self, hashes: Iterable[int]) -> None:
        self._recent.update(hashes)
        if len(self._recent) > max(50_000, len(self._sorted) // 4):  # merge, amortised O(1) per id
            recent = np.fromiter(self._recent, dtype=np.int64, count=len(self._recent))
            self._sorted = np.union1d(self._sorted, recent)
            self._recent.clear()

    def remove(self, hashes: Iterable[int]) -> None:
        gone = list(hashes)
        self._recent.difference_update(gone)
        if gone and len(self._sorted):
            self._sorted = np.setdiff1d(self._sorted, np.asarray(gone, dtype=np.int64), assume_unique=True)
