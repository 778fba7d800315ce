"""The `EventStore` interface: one durable, append-only event log plus the item catalog.

Every backend (SQLite, memory, Postgres, Redis) passes the same contract tests
(`tests/store/test_contract.py`). What the contract promises:

- `append` is all-or-nothing and durable when it returns; events whose `event_id` is already in the
  log (or earlier in the same batch) are counted as duplicates and not stored again.
- Offsets are positive, increase in append order, and are visible in order: a reader that has seen
  offset n never later finds a new event at an offset <= n. The online trainer relies on this.
- An event for an item the catalog does not know creates a stub item in the same transaction.
- Item ids get a stable creation order; `list_items` returns it, so every process that reads the
  catalog builds the same id -> row vocabulary.
"""

from __future__ import annotations

import hashlib
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from liverec.core.schema import Event, Item, StoredEvent


class StoreError(RuntimeError):
    """A backend failed (unreachable, corrupt, misconfigured). Nothing was acknowledged."""


@dataclass(frozen=True)
class AppendResult:
    accepted: list[StoredEvent]  # in offset order
    duplicates: int


@dataclass(frozen=True)
class StoreStats:
    events: int
    items: int
    users: int
    size_bytes: int


def embedding_key(encoder: str, text: str) -> str:
    """Cache key for a text embedding: changes when the encoder or the text changes."""
    return hashlib.sha1(f"{encoder}\x00{text}".encode()).hexdigest()


def dedupe_batch(events: Sequence[Event], known: set[str]) -> tuple[list[Event], int]:
    """Events whose id is neither in ``known`` nor earlier in the batch; and the duplicate count."""
    fresh: list[Event] = []
    seen: set[str] = set()  # ids earlier in this batch (not a copy of ``known``: O(batch), not O(log))
    for ev in events:
        if ev.event_id in known or ev.event_id in seen:
            continue
        seen.add(ev.event_id)
        fresh.append(ev)
    return fresh, len(events) - len(fresh)


class EventStore(ABC):
    """Durable event log and item catalog. Backends are chosen by URL: see `liverec.store.open_store`."""

    url: str

    # -- events -------------------------------------------------------------------------------
    @abstractmethod
    def append(self, events: Sequence[Event]) -> AppendResult:
        """Append a batch atomically and durably; duplicates (by event_id) are skipped."""

    @abstractmethod
    def read(self, after: int = 0, limit: int = 10_000) -> list[StoredEvent]:
        """Up to ``limit`` events with offset > ``after``, in offset order."""

    @abstractmethod
    def last_offset(self) -> int:
        """The highest offset written so far (0 for an empty log)."""

    @abstractmethod
    def count_events(self) -> int: ...

    @abstractmethod
    def user_history(self, user_id: str, limit: int | None = None) -> list[StoredEvent]:
        """The user's events, oldest first; with ``limit``, only the newest ``limit``."""

    @abstractmethod
    def delete_user(self, user_id: str) -> int:
        """Remove every event of the user; returns how many were removed."""

    def pages(self, after: int = 0, page: int = 10_000) -> Iterator[list[StoredEvent]]:
        """Every event after ``after`` in offset order, ``page`` at a time."""
        while True:
            batch = self.read(after, page)
            if not batch:
                return
            yield batch
            after = batch[-1].offset

    def iter_events(self, after: int = 0, page: int = 10_000) -> Iterator[StoredEvent]:
        """Every event after ``after``, one at a time, in offset order."""
        for batch in self.pages(after, page):
            yield from batch

    # -- catalog ------------------------------------------------------------------------------
    @abstractmethod
    def upsert_items(self, items: Sequence[Item]) -> int:
        """Insert or replace items (keeping each one's creation order); returns how many were new."""

    @abstractmethod
    def get_item(self, item_id: str) -> Item | None: ...

    @abstractmethod
    def list_items(self) -> list[Item]:
        """All items in creation order."""

    # -- text-embedding cache -----------------------------------------------------------------
    @abstractmethod
    def get_embeddings(self, keys: Sequence[str]) -> dict[str, np.ndarray]:
        """Cached float32 vectors by `embedding_key`; missing keys are absent from the result."""

    @abstractmethod
    def put_embeddings(self, vectors: dict[str, np.ndarray]) -> None: ...

    # -- housekeeping -------------------------------------------------------------------------
    @abstractmethod
    def stats(self) -> StoreStats:
        """Counts for humans (CLI); may scan the log, so keep it off hot paths."""

    def size_bytes(self) -> int:
        """Bytes on local disk; cheap enough for every metrics scrape. 0 for remote backends."""
        return 0

    def close(self) -> None:  # noqa: B027 - optional for backends without resources
        """Release connections. The store is unusable afterwards."""

    def __enter__(self) -> EventStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
