"""The embedded default: one SQLite file in WAL mode, fsync on every commit (synchronous=FULL).

One connection per store object, guarded by a lock; other processes (the online trainer) open their
own and read concurrently thanks to WAL. ``BEGIN IMMEDIATE`` makes dedupe + insert one atomic step
even when several processes append: inside it, a writer first folds in the ids other processes
appended since it last looked.

The events table has no secondary index, so an append is a sequential write whatever the ids look
like: duplicates are found through `IdSet` (hashes of every id, in memory), and a user's history
or deletion scans the log (both are rare operations; live state is kept in memory).
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from itertools import chain
from pathlib import Path

import numpy as np

from liverec.core.schema import Event, Item, StoredEvent, stored_events
from liverec.store.base import (
    AppendResult,
    Deletion,
    EventStore,
    StoreError,
    StoreStats,
    dedupe_batch,
    new_deletion,
)
from liverec.store.codec import (
    EVENT_COLS,
    ITEM_COLS,
    event_row,
    item_from_row,
    item_row,
    stored_event,
    stub_row,
    vector_bytes,
    vector_from,
)
from liverec.store.idset import IdSet, id_hash, id_hashes

SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    seq        INTEGER PRIMARY KEY AUTOINCREMENT,  -- the offset; never reused, even after deletes
    event_id   TEXT NOT NULL,
    id_hash    INTEGER NOT NULL,                   -- `idset.id_hash(event_id)`
    user_id    TEXT NOT NULL,
    item_id    TEXT NOT NULL,
    type       TEXT NOT NULL,
    value      REAL,
    ts         REAL NOT NULL,
    context    TEXT NOT NULL
);
DROP INDEX IF EXISTS events_by_user;  -- stores made before 0.1 had it; appends are faster without
CREATE TABLE IF NOT EXISTS items (
    idx        INTEGER PRIMARY KEY AUTOINCREMENT,  -- creation order
    item_id    TEXT NOT NULL UNIQUE,
    title      TEXT NOT NULL,
    text       TEXT NOT NULL,
    tags       TEXT NOT NULL,
    attributes TEXT NOT NULL,
    created_at REAL NOT NULL,
    available  INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS deletions (
    seq         INTEGER PRIMARY KEY AUTOINCREMENT,
    user_hash   TEXT NOT NULL,                     -- `base.user_hash`: never the raw id
    deleted_at  REAL NOT NULL,
    events      INTEGER NOT NULL,
    max_offset  INTEGER NOT NULL,
    honoured_at REAL                               -- NULL: a live model may still hold the user
);
CREATE TABLE IF NOT EXISTS embeddings (
    key        TEXT PRIMARY KEY,
    vec        BLOB NOT NULL
);
"""

log = logging.getLogger(__name__)
MAX_VARS = 900  # stay under SQLite's bound-parameter limit on old builds


def _chunks(seq: Sequence[str], n: int = MAX_VARS) -> Iterator[Sequence[str]]:
    for i in range(0, len(seq), n):
        yield seq[i : i + n]


def _insert_rows(db: sqlite3.Connection, head: str, rows: Sequence[tuple[object, ...]]) -> int:
    """Multi-row INSERT: one statement per 4,000 rows instead of one step per row. The sqlite3
    module releases the GIL around every step, and under load each re-acquire can wait a whole
    switch interval, so fewer steps keep the server's event loop and writer thread from convoying."""
    if not rows:
        return 0
    width = len(rows[0])
    per = max(1, 28_000 // width)
    changed = 0
    for i in range(0, len(rows), per):
        chunk = rows[i : i + per]
        marks = ",".join(["(" + ",".join("?" * width) + ")"] * len(chunk))
        changed += db.execute(f"{head} VALUES {marks}", list(chain.from_iterable(chunk))).rowcount
    return changed


class SQLiteEventStore(EventStore):
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.url = f"sqlite:///{self.path}"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=30.0)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")  # durable before we acknowledge
            self._db.execute("PRAGMA busy_timeout=30000")
            self._db.execute("PRAGMA secure_delete=ON")  # deleted rows are zeroed, not left in free space
            self._db.executescript(SCHEMA)
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"cannot open SQLite store at {self.path}: {exc}") from exc
        self._lock = threading.Lock()
        self._known_items: set[str] = set()  # item ids certainly in the catalog
        self._synced, self._ids = self._load_ids()

    def _load_ids(self) -> tuple[int, IdSet]:
        """Hashes of every event id in the log, and the offset they cover."""
        try:
            columns = {r[1] for r in self._db.execute("PRAGMA table_info(events)")}
            if "id_hash" not in columns:  # a store from before id hashes: add and fill the column
                self._db.execute("ALTER TABLE events ADD COLUMN id_hash INTEGER NOT NULL DEFAULT 0")
                rows = self._db.execute("SELECT seq, event_id FROM events").fetchall()
                self._db.executemany(
                    "UPDATE events SET id_hash = ? WHERE seq = ?", [(id_hash(e), q) for q, e in rows]
                )
            last = self._last_seq(self._db)
            hashes = (r[0] for r in self._db.execute("SELECT id_hash FROM events WHERE seq <= ?", (last,)))
            return last, IdSet(hashes)
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"cannot read the SQLite store at {self.path}: {exc}") from exc

    def _catch_up(self, db: sqlite3.Connection) -> None:
        """Fold in ids other processes appended since we last looked (we hold the write lock)."""
        rows = db.execute("SELECT seq, id_hash FROM events WHERE seq > ?", (self._synced,)).fetchall()
        if rows:
            self._ids.add(r[1] for r in rows)
            self._synced = max(r[0] for r in rows)

    @contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        """One read under the lock. SQLite failures (closed, corrupt) become `StoreError`, as writes do."""
        with self._lock:
            try:
                yield self._db
            except sqlite3.Error as exc:
                raise StoreError(f"SQLite read of {self.path} failed: {exc}") from exc

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One write transaction. SQLite failures (locked, disk full, closed) become `StoreError`, so
        callers (the API answers 503) know that nothing was written."""
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
                try:
                    yield self._db
                    self._db.execute("COMMIT")
                except BaseException:
                    if self._db.in_transaction:
                        self._db.execute("ROLLBACK")
                    raise
            except sqlite3.Error as exc:
                raise StoreError(f"SQLite write to {self.path} failed: {exc}") from exc

    # -- events -------------------------------------------------------------------------------
    def append(self, events: Sequence[Event]) -> AppendResult:
        # This runs for every event the server takes in. The events are read into their rows before
        # the write lock is taken; later steps work on those tuples and on whole-batch arrays, with
        # fast paths for the usual batch: no repeated ids, none in the log already.
        ids = [ev.event_id for ev in events]
        if len(set(ids)) == len(ids):
            fresh, duplicates = list(events), 0
        else:
            fresh, duplicates = dedupe_batch(events, set())
            ids = [ev.event_id for ev in fresh]
        if not fresh:
            return AppendResult([], duplicates)
        rows = [event_row(ev) for ev in fresh]
        hashes = id_hashes(ids)
        with self._write() as db:
            self._catch_up(db)
            known = self._ids.contains(hashes)
            if known.any():  # some are in the log already (an earlier batch, or another process)
                keep = np.flatnonzero(~known).tolist()
                fresh, rows, hashes = (
                    [fresh[k] for k in keep],
                    [rows[k] for k in keep],
                    [hashes[k] for k in keep],
                )
            first = self._last_seq(db)
            _insert_rows(
                db,
                f"INSERT INTO events({EVENT_COLS}, id_hash)",
                [(*row, h) for row, h in zip(rows, hashes, strict=True)],
            )
            accepted = stored_events(first + 1, fresh)
            first_seen: dict[str, float] = {}
            known_items = self._known_items
            for row in rows:
                item_id = row[2]  # (and the timestamp is row[5]: see `EventRow`)
                if item_id not in known_items and item_id not in first_seen:
                    first_seen[item_id] = row[5]
            if first_seen:  # items are never deleted, so ids known here need no round trip
                stubs = [stub_row(i, t) for i, t in first_seen.items()]
                _insert_rows(db, f"INSERT OR IGNORE INTO items({ITEM_COLS})", stubs)
        known_items.update(first_seen)
        self._ids.add(hashes)  # only after the commit succeeded
        self._synced = first + len(fresh)
        return AppendResult(accepted, len(events) - len(accepted))

    @staticmethod
    def _last_seq(db: sqlite3.Connection) -> int:
        row = db.execute("SELECT seq FROM sqlite_sequence WHERE name='events'").fetchone()
        return int(row[0]) if row else 0

    def read(self, after: int = 0, limit: int = 10_000) -> list[StoredEvent]:
        with self._read():
            rows = self._db.execute(
                f"SELECT seq, {EVENT_COLS} FROM events WHERE seq > ? ORDER BY seq LIMIT ?", (after, limit)
            ).fetchall()
        return [stored_event(r[0], r[1:]) for r in rows]

    def last_offset(self) -> int:
        with self._read():
            return self._last_seq(self._db)

    def count_events(self) -> int:
        with self._read():
            return int(self._db.execute("SELECT COUNT(*) FROM events").fetchone()[0])

    def user_history(self, user_id: str, limit: int | None = None) -> list[StoredEvent]:
        with self._read():
            rows = self._db.execute(
                f"SELECT seq, {EVENT_COLS} FROM events WHERE user_id = ? ORDER BY seq DESC LIMIT ?",
                (user_id, -1 if limit is None else limit),
            ).fetchall()
        return [stored_event(r[0], r[1:]) for r in reversed(rows)]

    def delete_user(self, user_id: str) -> int:
        with self._write() as db:
            self._catch_up(db)
            rows = db.execute("SELECT id_hash, seq FROM events WHERE user_id = ?", (user_id,)).fetchall()
            removed = db.execute("DELETE FROM events WHERE user_id = ?", (user_id,)).rowcount
            d = new_deletion(0, user_id, int(removed), max((r[1] for r in rows), default=0))
            db.execute(
                "INSERT INTO deletions(user_hash, deleted_at, events, max_offset, honoured_at) "
                "VALUES (?,?,?,?,?)",
                (d.user_hash, d.deleted_at, d.events, d.max_offset, d.honoured_at),
            )
        self._ids.remove([r[0] for r in rows])  # a deleted event's id may be sent again
        self.checkpoint()
        return int(removed)

    def checkpoint(self) -> bool:
        """Copy the WAL into the database and truncate it, so no old page (a deleted user's rows)
        stays in the -wal file; False when a reader in another process kept it from completing."""
        with self._lock:
            try:
                busy = self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0]
            except sqlite3.Error as exc:
                raise StoreError(f"SQLite checkpoint of {self.path} failed: {exc}") from exc
        if busy:
            log.warning("WAL checkpoint of %s blocked by a reader; deleted rows wait for the next", self.path)
        return not busy

    def deletions(self, after: int = 0) -> list[Deletion]:
        with self._read():
            rows = self._db.execute(
                "SELECT seq, user_hash, deleted_at, events, max_offset, honoured_at FROM deletions "
                "WHERE seq > ? ORDER BY seq",
                (after,),
            ).fetchall()
        return [Deletion(*r) for r in rows]

    def honour_deletions(self, through: int, at: float | None = None) -> int:
        with self._write() as db:
            marked = db.execute(
                "UPDATE deletions SET honoured_at = ? WHERE seq <= ? AND honoured_at IS NULL",
                (time.time() if at is None else at, through),
            ).rowcount
        return int(marked)

    # -- catalog ------------------------------------------------------------------------------
    def upsert_items(self, items: Sequence[Item]) -> int:
        if not items:
            return 0
        with self._write() as db:
            before = db.execute("SELECT COUNT(*) FROM items").fetchone()[0]
            db.executemany(
                f"INSERT INTO items({ITEM_COLS}) VALUES (?,?,?,?,?,?,?) ON CONFLICT(item_id) DO UPDATE SET "
                "title=excluded.title, text=excluded.text, tags=excluded.tags, "
                "attributes=excluded.attributes, created_at=excluded.created_at, "
                "available=excluded.available",
                [item_row(i) for i in items],
            )
            after = db.execute("SELECT COUNT(*) FROM items").fetchone()[0]
        return int(after - before)

    def get_item(self, item_id: str) -> Item | None:
        with self._read():
            row = self._db.execute(f"SELECT {ITEM_COLS} FROM items WHERE item_id = ?", (item_id,)).fetchone()
        return item_from_row(row) if row else None

    def list_items(self) -> list[Item]:
        with self._read():
            rows = self._db.execute(f"SELECT {ITEM_COLS} FROM items ORDER BY idx").fetchall()
        items = [item_from_row(r) for r in rows]
        self._known_items.update(i.item_id for i in items)
        return items

    # -- embeddings ---------------------------------------------------------------------------
    def get_embeddings(self, keys: Sequence[str]) -> dict[str, np.ndarray]:
        out: dict[str, np.ndarray] = {}
        with self._read():
            for chunk in _chunks(list(keys)):
                marks = ",".join("?" * len(chunk))
                for key, blob in self._db.execute(
                    f"SELECT key, vec FROM embeddings WHERE key IN ({marks})", chunk
                ):
                    out[key] = vector_from(blob)
        return out

    def put_embeddings(self, vectors: dict[str, np.ndarray]) -> None:
        if not vectors:
            return
        with self._write() as db:
            db.executemany(
                "INSERT OR REPLACE INTO embeddings(key, vec) VALUES (?, ?)",
                [(k, vector_bytes(v)) for k, v in vectors.items()],
            )

    # -- housekeeping -------------------------------------------------------------------------
    def stats(self) -> StoreStats:
        with self._read():
            events = self._db.execute("SELECT COUNT(*) FROM events").fetchone()[0]
            items = self._db.execute("SELECT COUNT(*) FROM items").fetchone()[0]
            users = self._db.execute("SELECT COUNT(DISTINCT user_id) FROM events").fetchone()[0]
        return StoreStats(events=events, items=items, users=users, size_bytes=self.size_bytes())

    def size_bytes(self) -> int:
        files = (self.path, Path(f"{self.path}-wal"), Path(f"{self.path}-shm"))
        return sum(f.stat().st_size for f in files if f.exists())

    def close(self) -> None:
        with self._lock:
            self._db.close()
