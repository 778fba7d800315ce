"""Postgres backend: the log and catalog in four tables, for many processes on many hosts.

``postgresql://user:pass@host:5432/db?schema=liverec``: ``schema`` (optional, created if missing)
keeps the tables apart from others; without it they go to the connection's current schema. Every
write commits with ``synchronous_commit=on`` before it returns.

Appends are serialized by one counter row (``liverec_meta``) locked ``FOR UPDATE`` for the whole
transaction. A BIGSERIAL would let concurrent transactions commit out of order: a reader could see
offset 12 before 11 commits and then miss 11 forever. Under the row lock each append gets its offsets
from the committed counter and commits before the next one may start, so offsets are visible in
order, contiguous (no holes from rolled-back sequence values) and never reused after deletes. One
writer at a time is fine: a batch of 1,000 events is one multi-row statement of a few milliseconds.
Item creation takes the same lock, so the catalog's creation order is also its commit order.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from typing import Any, TypeVar
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import numpy as np
import psycopg
from psycopg import sql

from liverec.core.schema import Event, Item, StoredEvent
from liverec.settings import redact_text, redact_url
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
    vector_bytes,
    vector_from,
)

T = TypeVar("T")
Conn = psycopg.Connection[Any]

SCHEMA = """
CREATE TABLE IF NOT EXISTS liverec_meta (
    id    INTEGER PRIMARY KEY CHECK (id = 1),
    last  BIGINT NOT NULL                      -- highest offset ever given out
);
INSERT INTO liverec_meta (id, last) VALUES (1, 0) ON CONFLICT (id) DO NOTHING;
CREATE TABLE IF NOT EXISTS liverec_events (
    seq       BIGINT PRIMARY KEY,              -- the offset, from liverec_meta.last
    event_id  TEXT NOT NULL UNIQUE,
    user_id   TEXT NOT NULL,
    item_id   TEXT NOT NULL,
    type      TEXT NOT NULL,
    value     DOUBLE PRECISION,
    ts        DOUBLE PRECISION NOT NULL,
    context   TEXT NOT NULL                    -- JSON text: exact, and keeps key order
);
CREATE INDEX IF NOT EXISTS liverec_events_by_user ON liverec_events (user_id, seq);
CREATE TABLE IF NOT EXISTS liverec_items (
    idx        BIGINT GENERATED ALWAYS AS IDENTITY UNIQUE,  -- creation order
    item_id    TEXT PRIMARY KEY,
    title      TEXT NOT NULL,
    text       TEXT NOT NULL,
    tags       TEXT NOT NULL,
    attributes TEXT NOT NULL,
    created_at DOUBLE PRECISION NOT NULL,
    available  BOOLEAN NOT NULL
);
CREATE TABLE IF NOT EXISTS liverec_deletions (
    seq         BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_hash   TEXT NOT NULL,                  -- `base.user_hash`: never the raw id
    deleted_at  DOUBLE PRECISION NOT NULL,
    events      BIGINT NOT NULL,
    max_offset  BIGINT NOT NULL,
    honoured_at DOUBLE PRECISION                -- NULL: a live model may still hold the user
);
CREATE TABLE IF NOT EXISTS liverec_embeddings (
    key  TEXT PRIMARY KEY,
    vec  BYTEA NOT NULL
);
"""

LOCK = "SELECT last FROM liverec_meta WHERE id = 1 FOR UPDATE"
# NOT EXISTS is exact because every appender holds LOCK; ON CONFLICT only guards against writers that
# bypass it. row_number() runs after the filter, so the offsets of one batch are contiguous.
INSERT_EVENTS = f"""
INSERT INTO liverec_events (seq, {EVENT_COLS})
SELECT %b + row_number() OVER (ORDER BY b.ord), {EVENT_COLS}
FROM unnest(%b::text[], %b::text[], %b::text[], %b::text[], %b::float8[], %b::float8[], %b::text[])
     WITH ORDINALITY AS b({EVENT_COLS}, ord)
WHERE NOT EXISTS (SELECT 1 FROM liverec_events e WHERE e.event_id = b.event_id)
ORDER BY b.ord
ON CONFLICT (event_id) DO NOTHING
RETURNING seq, event_id
"""
INSERT_STUBS = f"""
INSERT INTO liverec_items ({ITEM_COLS})
SELECT s.item_id, '', '', '[]', '{{}}', s.created_at, TRUE
FROM unnest(%b::text[], %b::float8[]) WITH ORDINALITY AS s(item_id, created_at, ord)
WHERE NOT EXISTS (SELECT 1 FROM liverec_items i WHERE i.item_id = s.item_id)
ORDER BY s.ord
ON CONFLICT (item_id) DO NOTHING
"""
UPSERT_ITEMS = f"""
INSERT INTO liverec_items ({ITEM_COLS})
SELECT {ITEM_COLS}
FROM unnest(%b::text[], %b::text[], %b::text[], %b::text[], %b::text[], %b::float8[], %b::bool[])
     WITH ORDINALITY AS s({ITEM_COLS}, ord)
ORDER BY s.ord
ON CONFLICT (item_id) DO UPDATE SET title = excluded.title, text = excluded.text, tags = excluded.tags,
    attributes = excluded.attributes, created_at = excluded.created_at, available = excluded.available
"""
# The delete and its record in one statement: the record's counts are exactly what was removed.
DELETE_USER = """
WITH gone AS (DELETE FROM liverec_events WHERE user_id = %s RETURNING seq)
INSERT INTO liverec_deletions (user_hash, deleted_at, events, max_offset, honoured_at)
SELECT %s, %s, count(*), coalesce(max(seq), 0), CASE WHEN count(*) = 0 THEN %s::float8 END FROM gone
RETURNING events
"""
POOL_SIZE = 4
CONNECT_TIMEOUT_S = 5
SCHEMA_LOCK_KEY = 0x6C69766572656300  # pg_advisory_xact_lock key for concurrent first opens


def redact(url: str) -> str:
    """The URL without its secrets, for messages and logs (`liverec.settings.redact_url`)."""
    return redact_url(url)


def split_url(url: str) -> tuple[str, str | None]:
    """libpq conninfo and our own ``schema`` parameter (libpq rejects unknown URI parameters)."""
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    schemas = [v for k, v in query if k == "schema"]
    rest = [(k, v) for k, v in query if k != "schema"]
    if not any(k == "connect_timeout" for k, _ in rest):
        rest.append(("connect_timeout", str(CONNECT_TIMEOUT_S)))
    scheme = "postgresql" if parts.scheme == "postgres" else parts.scheme
    conninfo = urlunsplit(parts._replace(scheme=scheme, query=urlencode(rest)))
    if schemas and not schemas[-1]:
        raise StoreError(f"empty ?schema= in Postgres URL {redact(url)}")
    return conninfo, schemas[-1] if schemas else None


class _Pool:
    """At most ``size`` connections, created lazily; a broken one is dropped, not handed out again."""

    def __init__(self, connect: Callable[[], Conn], size: int) -> None:
        self._connect = connect
        self._idle: list[Conn] = []
        self._lock = threading.Lock()
        self._slots = threading.BoundedSemaphore(size)
        self._closed = False

    @contextmanager
    def connection(self) -> Iterator[Conn]:
        with self._slots:
            with self._lock:
                if self._closed:
                    raise StoreError("the Postgres store is closed")
                conn = self._idle.pop() if self._idle else None
            if conn is None or conn.closed:
                conn = self._connect()
            try:
                yield conn
            finally:
                healthy = (
                    not conn.closed and conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
                )
                with self._lock:
                    if healthy and not self._closed:
                        self._idle.append(conn)
                    else:
                        conn.close()

    def close(self) -> None:
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()


class PostgresEventStore(EventStore):
    def __init__(self, url: str) -> None:
        self.url = url
        self._where = redact(url)
        self._conninfo, self._schema = split_url(url)
        self._pool = _Pool(self._new_connection, POOL_SIZE)
        self._known_items: set[str] = set()  # item ids certainly in the catalog (never deleted)
        # appends NOTIFY this channel at commit; replicas LISTEN (`wait_for_events`). Channels are
        # database-wide, so the schema names it.
        tag = hashlib.sha256((self._schema or "").encode()).hexdigest()[:16]
        self._channel = sql.Identifier(f"liverec_log_{tag}")
        self._listener: Conn | None = None
        self._listen_lock = threading.Lock()
        self._run(self._create_schema, "open")

    # -- plumbing -----------------------------------------------------------------------------
    def _new_connection(self) -> Conn:
        try:
            conn = psycopg.connect(self._conninfo, autocommit=True)
        except psycopg.Error as exc:
            raise StoreError(
                f"cannot connect to Postgres at {self._where}: {redact_text(str(exc), self.url)}"
            ) from exc
        try:
            conn.execute("SET synchronous_commit TO on")  # durable before we acknowledge
            if self._schema:
                conn.execute(sql.SQL("SET search_path TO {}").format(sql.Identifier(self._schema)))
        except BaseException:
            conn.close()
            raise
        return conn

    def _run(self, work: Callable[[Conn], T], action: str, retry: bool = False) -> T:
        """``work`` on a pooled connection; every driver error becomes a StoreError. Reads retry
        once on a fresh connection (an idle one may have died with a server restart); writes never,
        since a lost COMMIT reply leaves their outcome unknown."""
        for attempt in range(2 if retry else 1):
            try:
                with self._pool.connection() as conn:
                    return work(conn)
            except psycopg.OperationalError as exc:
                if attempt == 0 and retry:
                    continue
                raise StoreError(
                    f"Postgres {action} failed at {self._where}: {redact_text(str(exc), self.url)}"
                ) from exc
            except psycopg.Error as exc:
                raise StoreError(
                    f"Postgres {action} failed at {self._where}: {redact_text(str(exc), self.url)}"
                ) from exc
        raise AssertionError("unreachable")

    def _create_schema(self, conn: Conn) -> None:
        with conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (SCHEMA_LOCK_KEY,))
            if self._schema:
                exists = conn.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s", (self._schema,))
                if exists.fetchone() is None:
                    conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(self._schema)))
            row = conn.execute("SELECT current_schema()").fetchone()
            if row is None or row[0] is None:
                raise StoreError(
                    f"no schema to create tables in at {self._where}: add ?schema=name to the URL"
                )
            conn.execute(SCHEMA)

    # -- events -------------------------------------------------------------------------------
    def append(self, events: Sequence[Event]) -> AppendResult:
        fresh, duplicates = dedupe_batch(events, set())
        if not fresh:
            return AppendResult([], duplicates)
        for e in fresh:  # the schema rejects these; events built without validation may still have them
            if "\x00" in e.event_id or "\x00" in e.user_id or "\x00" in e.item_id:
                raise StoreError(
                    f"Postgres text cannot hold NUL (\\x00): event {e.event_id!r}; nothing written"
                )
        columns = [list(col) for col in zip(*(event_row(e) for e in fresh), strict=True)]
        columns[4] = [None if v is None else float(v) for v in columns[4]]  # binary arrays: one type
        columns[5] = [float(v) for v in columns[5]]

        def work(conn: Conn) -> tuple[list[StoredEvent], set[str]]:
            with conn.transaction():
                row = conn.execute(LOCK).fetchone()
                if row is None:
                    raise StoreError(f"liverec_meta is empty at {self._where}: the schema is damaged")
                offset_of = {eid: seq for seq, eid in conn.execute(INSERT_EVENTS, [row[0], *columns])}
                # offsets follow batch order (row_number over ord), so this is offset order
                accepted = [StoredEvent(offset_of[e.event_id], e) for e in fresh if e.event_id in offset_of]
                first_seen: dict[str, float] = {}
                for s in accepted:
                    if s.event.item_id not in self._known_items:
                        first_seen.setdefault(s.event.item_id, s.event.timestamp)
                if first_seen:
                    conn.execute(INSERT_STUBS, [list(first_seen), [float(t) for t in first_seen.values()]])
                if accepted:
                    conn.execute("UPDATE liverec_meta SET last = %s WHERE id = 1", (accepted[-1].offset,))
                    conn.execute(sql.SQL("NOTIFY {}").format(self._channel))  # delivered at commit
            return accepted, set(first_seen)

        accepted, stubbed = self._run(work, "append")
        self._known_items.update(stubbed)
        return AppendResult(accepted, duplicates + len(fresh) - len(accepted))

    def read(self, after: int = 0, limit: int = 10_000) -> list[StoredEvent]:
        if limit <= 0:
            return []
        query = f"SELECT seq, {EVENT_COLS} FROM liverec_events WHERE seq > %s ORDER BY seq LIMIT %s"
        rows = self._run(lambda c: c.execute(query, (after, limit)).fetchall(), "read", retry=True)
        return [stored_event(r[0], r[1:]) for r in rows]

    def last_offset(self) -> int:
        query = "SELECT last FROM liverec_meta WHERE id = 1"
        row = self._run(lambda c: c.execute(query).fetchone(), "last_offset", retry=True)
        return int(row[0]) if row else 0

    def wait_for_events(self, after: int, timeout_s: float) -> bool:
        """LISTEN on the log's channel (one connection of its own, kept), then check the offset:
        a commit after the LISTEN queues a notification, so none is missed between the two."""
        deadline = time.monotonic() + timeout_s
        with self._listen_lock:
            try:
                if self._listener is None or self._listener.closed:
                    self._listener = self._new_connection()
                    self._listener.execute(sql.SQL("LISTEN {}").format(self._channel))
                listener = self._listener
                while True:
                    if self.last_offset() > after:
                        return True
                    left = deadline - time.monotonic()
                    if left <= 0:
                        return False
                    for _ in listener.notifies(timeout=left, stop_after=1):
                        pass
            except psycopg.Error as exc:
                if self._listener is not None:
                    self._listener.close()
                raise StoreError(
                    f"Postgres wait failed at {self._where}: {redact_text(str(exc), self.url)}"
                ) from exc

    def count_events(self) -> int:
        row = self._run(lambda c: c.execute("SELECT count(*) FROM liverec_events").fetchone(), "count", True)
        return int(row[0]) if row else 0

    def user_history(self, user_id: str, limit: int | None = None) -> list[StoredEvent]:
        if limit is not None and limit <= 0:
            return []
        query = f"SELECT seq, {EVENT_COLS} FROM liverec_events WHERE user_id = %s ORDER BY seq DESC LIMIT %s"
        rows = self._run(lambda c: c.execute(query, (user_id, limit)).fetchall(), "user_history", True)
        return [stored_event(r[0], r[1:]) for r in reversed(rows)]

    def delete_user(self, user_id: str) -> int:
        d = new_deletion(0, user_id, 0, 0)  # the hash and time; counts come from the DELETE

        def work(conn: Conn) -> int:
            with conn.transaction():
                row = conn.execute(DELETE_USER, (user_id, d.user_hash, d.deleted_at, d.deleted_at)).fetchone()
            return int(row[0]) if row else 0

        return self._run(work, "delete_user")

    def deletions(self, after: int = 0) -> list[Deletion]:
        query = (
            "SELECT seq, user_hash, deleted_at, events, max_offset, honoured_at FROM liverec_deletions "
            "WHERE seq > %s ORDER BY seq"
        )
        rows = self._run(lambda c: c.execute(query, (after,)).fetchall(), "deletions", retry=True)
        return [Deletion(int(r[0]), r[1], float(r[2]), int(r[3]), int(r[4]), r[5]) for r in rows]

    def honour_deletions(self, through: int, at: float | None = None) -> int:
        now = time.time() if at is None else at
        query = "UPDATE liverec_deletions SET honoured_at = %s WHERE seq <= %s AND honoured_at IS NULL"

        def work(conn: Conn) -> int:
            with conn.transaction():
                return conn.execute(query, (now, through)).rowcount

        return self._run(work, "honour_deletions")

    # -- catalog ------------------------------------------------------------------------------
    def upsert_items(self, items: Sequence[Item]) -> int:
        latest = {i.item_id: i for i in items}  # first occurrence's position, last occurrence's fields
        if not latest:
            return 0
        rows = [item_row(i) for i in latest.values()]
        columns = [list(col) for col in zip(*rows, strict=True)]
        columns[-2] = [float(v) for v in columns[-2]]  # binary arrays: one type
        columns[-1] = [bool(v) for v in columns[-1]]
        ids = columns[0]

        def work(conn: Conn) -> int:
            with conn.transaction():
                conn.execute(LOCK)  # creation order must be commit order, see the module docstring
                query = "SELECT count(*) FROM liverec_items WHERE item_id = ANY(%s)"
                row = conn.execute(query, (ids,)).fetchone()
                conn.execute(UPSERT_ITEMS, columns)
            return len(ids) - int(row[0] if row else 0)

        created = self._run(work, "upsert_items")
        self._known_items.update(ids)
        return created

    def get_item(self, item_id: str) -> Item | None:
        query = f"SELECT {ITEM_COLS} FROM liverec_items WHERE item_id = %s"
        row = self._run(lambda c: c.execute(query, (item_id,)).fetchone(), "get_item", retry=True)
        return item_from_row(row) if row else None

    def list_items(self) -> list[Item]:
        query = f"SELECT {ITEM_COLS} FROM liverec_items ORDER BY idx"
        rows = self._run(lambda c: c.execute(query).fetchall(), "list_items", retry=True)
        items = [item_from_row(r) for r in rows]
        self._known_items.update(i.item_id for i in items)
        return items

    # -- embeddings ---------------------------------------------------------------------------
    def get_embeddings(self, keys: Sequence[str]) -> dict[str, np.ndarray]:
        if not keys:
            return {}
        query = "SELECT key, vec FROM liverec_embeddings WHERE key = ANY(%s)"
        rows = self._run(lambda c: c.execute(query, (list(keys),)).fetchall(), "get_embeddings", True)
        return {key: vector_from(bytes(blob)) for key, blob in rows}

    def put_embeddings(self, vectors: dict[str, np.ndarray]) -> None:
        if not vectors:
            return
        keys = list(vectors)
        blobs = [vector_bytes(v) for v in vectors.values()]
        query = (
            "INSERT INTO liverec_embeddings (key, vec) SELECT * FROM unnest(%b::text[], %b::bytea[]) "
            "ON CONFLICT (key) DO UPDATE SET vec = excluded.vec"
        )

        def work(conn: Conn) -> None:
            with conn.transaction():
                conn.execute(query, (keys, blobs))

        self._run(work, "put_embeddings")

    # -- housekeeping -------------------------------------------------------------------------
    def stats(self) -> StoreStats:
        query = (
            "SELECT (SELECT count(*) FROM liverec_events), (SELECT count(*) FROM liverec_items), "
            "(SELECT count(DISTINCT user_id) FROM liverec_events)"
        )
        row = self._run(lambda c: c.execute(query).fetchone(), "stats", retry=True)
        events, items, users = row if row else (0, 0, 0)
        return StoreStats(events=int(events), items=int(items), users=int(users), size_bytes=0)

    def close(self) -> None:
        with suppress(psycopg.Error):
            self._pool.close()
            if self._listener is not None:
                self._listener.close()
