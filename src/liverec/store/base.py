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
- `delete_user` removes the user's events and records a `Deletion` in the same transaction (the
  user id only as `user_hash`); other processes (the online learner) read `deletions` to forget the
  user too, and `honour_deletions` marks them once a model trained without the user is live.
"""

from __future__ import annotations

import hashlib
import time
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


@dataclass(frozen=True)
class Deletion:
    """One `delete_user`, as recorded in the store: what an auditor (and the learner) needs, never
    the raw user id."""

    seq: int  # record number, increasing in the order deletions happened
    user_hash: str  # `user_hash(user_id)`
    deleted_at: float  # epoch seconds
    events: int  # events removed
    max_offset: int  # the highest offset removed (0: none)
    honoured_at: float | None = None  # when a model trained without them went live (None: pending)

    @property
    def pending(self) -> bool:
        return self.honoured_at is None


def user_hash(user_id: str) -> str:
    """Plain (unsalted) sha256 hex of a user id. Unsalted on purpose: every process (the server, the
    learner) and an auditor can match a record to an id they already hold without sharing a secret;
    the cost is that a guessable id can be confirmed by hashing guesses."""
    return hashlib.sha256(user_id.encode()).hexdigest()


def new_deletion(seq: int, user_id: str, events: int, max_offset: int, at: float | None = None) -> Deletion:
    """The record of a deletion; one that removed no event needs no retrain, so it is born honoured."""
    now = time.time() if at is None else at
    return Deletion(seq, user_hash(user_id), now, events, max_offset, None if events else now)


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
        """Remove every event of the user and record a `Deletion` (same transaction); returns how
        many events were removed. No copy of them may stay in the backend's files (SQLite: WAL
        checkpointed, freed pages zeroed)."""

    @abstractmethod
    def deletions(self, after: int = 0) -> list[Deletion]:
        """The deletion records with ``seq`` > ``after``, in ``seq`` order."""

    @abstractmethod
    def honour_deletions(self, through: int, at: float | None = None) -> int:
        """Mark every pending deletion with ``seq`` <= ``through`` as honoured (a model trained
        without those users is live); returns how many were marked."""

    def wait_for_events(self, after: int, timeout_s: float) -> bool:
        """Block until the log holds an offset past ``after`` (True) or ``timeout_s`` passes (False).
        What a replica following the shared log sleeps in. This default polls `last_offset` every
        10 ms (SQLite, memory); Postgres is woken by NOTIFY, Redis by XREAD BLOCK."""
        deadline = time.monotonic() + timeout_s
        while True:
            if self.last_offset() > after:
                return True
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            time.sleep(min(0.01, left))

    def pending_deletions(self) -> list[Deletion]:
        """Deletions whose users may still be in a live model, oldest first."""
        return [d for d in self.deletions() if d.pending]

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
