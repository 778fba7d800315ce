"""In-process store for unit tests: same contract as the others, nothing durable."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from dataclasses import replace

import numpy as np

from liverec.core.schema import Event, Item, StoredEvent
from liverec.store.base import AppendResult, Deletion, EventStore, StoreStats, dedupe_batch, new_deletion
from liverec.store.codec import stub_item


class MemoryEventStore(EventStore):
    def __init__(self) -> None:
        self.url = "memory://"
        self._events: dict[int, StoredEvent] = {}  # insertion-ordered: offset order
        self._ids: set[str] = set()
        self._items: dict[str, Item] = {}  # insertion-ordered: creation order
        self._vectors: dict[str, np.ndarray] = {}
        self._last = 0
        self._deletions: list[Deletion] = []
        self._lock = threading.Lock()

    def append(self, events: Sequence[Event]) -> AppendResult:
        with self._lock:
            fresh, duplicates = dedupe_batch(events, self._ids)
            accepted = []
            for ev in fresh:
                self._last += 1
                stored = StoredEvent(offset=self._last, event=ev)
                self._events[self._last] = stored
                self._ids.add(ev.event_id)
                accepted.append(stored)
                if ev.item_id not in self._items:
                    self._items[ev.item_id] = stub_item(ev.item_id, ev.timestamp)
        return AppendResult(accepted, duplicates)

    def read(self, after: int = 0, limit: int = 10_000) -> list[StoredEvent]:
        with self._lock:
            out: list[StoredEvent] = []
            if limit <= 0:
                return out
            for off in range(after + 1, self._last + 1):
                if off in self._events:
                    out.append(self._events[off])
                    if len(out) >= limit:
                        break
            return out

    def last_offset(self) -> int:
        return self._last

    def count_events(self) -> int:
        return len(self._events)

    def user_history(self, user_id: str, limit: int | None = None) -> list[StoredEvent]:
        with self._lock:
            mine = [s for s in self._events.values() if s.event.user_id == user_id]
        return mine if limit is None else mine[-limit:] if limit > 0 else []

    def delete_user(self, user_id: str) -> int:
        with self._lock:
            gone = [off for off, s in self._events.items() if s.event.user_id == user_id]
            for off in gone:
                self._ids.discard(self._events.pop(off).event.event_id)
            seq = len(self._deletions) + 1
            self._deletions.append(new_deletion(seq, user_id, len(gone), max(gone, default=0)))
        return len(gone)

    def deletions(self, after: int = 0) -> list[Deletion]:
        with self._lock:
            return [d for d in self._deletions if d.seq > after]

    def honour_deletions(self, through: int, at: float | None = None) -> int:
        now = time.time() if at is None else at
        with self._lock:
            marked = [k for k, d in enumerate(self._deletions) if d.pending and d.seq <= through]
            for k in marked:
                self._deletions[k] = replace(self._deletions[k], honoured_at=now)
        return len(marked)

    def upsert_items(self, items: Sequence[Item]) -> int:
        with self._lock:
            new = 0
            for item in items:
                new += item.item_id not in self._items
                self._items[item.item_id] = item.model_copy()
        return new

    def get_item(self, item_id: str) -> Item | None:
        item = self._items.get(item_id)
        return item.model_copy() if item else None

    def list_items(self) -> list[Item]:
        with self._lock:
            return [i.model_copy() for i in self._items.values()]

    def get_embeddings(self, keys: Sequence[str]) -> dict[str, np.ndarray]:
        return {k: self._vectors[k].copy() for k in keys if k in self._vectors}

    def put_embeddings(self, vectors: dict[str, np.ndarray]) -> None:
        with self._lock:
            self._vectors.update({k: np.asarray(v, dtype=np.float32).copy() for k, v in vectors.items()})

    def stats(self) -> StoreStats:
        with self._lock:
            users = len({s.event.user_id for s in self._events.values()})
            return StoreStats(events=len(self._events), items=len(self._items), users=users, size_bytes=0)
