"""The durable event log and item catalog. Backends are chosen by URL (gorse-style)."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlparse

from liverec.settings import redact_url
from liverec.store.base import AppendResult, EventStore, StoreError, StoreStats, embedding_key

__all__ = [
    "AppendResult",
    "EventStore",
    "StoreError",
    "StoreStats",
    "StoreUrlError",
    "embedding_key",
    "open_store",
]

SCHEMES = "sqlite:///path (or a plain file path), memory://, postgresql://user@host/db, redis://host:port/db"


class StoreUrlError(StoreError, ValueError):
    """A store URL or path that names no usable store. A `StoreError`, so every command that reports
    store failures reports this one too (no traceback); a `ValueError`, as it always was."""


SQLITE_MAGIC = b"SQLite format 3\x00"


def sqlite_path(path: Path) -> Path:
    """``path`` if it can hold a SQLite store: missing (it is created), empty, or a SQLite file. A
    folder or a file of another kind is a `StoreError` that says so, before SQLite's own vaguer
    "unable to open database file" / "file is not a database"."""
    if path.is_dir():
        raise StoreUrlError(
            f"{path} is a folder; --store takes a SQLite file (e.g. {path / 'events.db'}) or a URL: {SCHEMES}"
        )
    if path.is_file():
        with path.open("rb") as fh:
            head = fh.read(len(SQLITE_MAGIC))
        if head and head != SQLITE_MAGIC:
            raise StoreUrlError(
                f"{path} is not a SQLite database; --store takes a SQLite file or a URL: {SCHEMES}"
            )
    return path


def open_store(url: str) -> EventStore:
    """Open the store a URL names: ``sqlite:///relative.db`` or ``sqlite:////abs/path.db``, ``memory://``,
    ``postgresql://...``, ``redis://...``; a plain file path (``events.db``) is a SQLite store."""
    scheme = urlparse(url).scheme
    if not scheme and url:  # a plain path, what a new user types first
        from liverec.store.sqlite import SQLiteEventStore

        return SQLiteEventStore(sqlite_path(Path(url).expanduser()))
    if scheme == "sqlite":
        path = url[len("sqlite:///") :] if url.startswith("sqlite:///") else ""
        if not path:
            raise StoreUrlError(
                f"bad SQLite URL {redact_url(url)!r}: use sqlite:///relative/path.db or sqlite:////abs/path.db"
            )
        from liverec.store.sqlite import SQLiteEventStore

        return SQLiteEventStore(sqlite_path(Path(path)))
    if scheme == "memory":
        from liverec.store.memory import MemoryEventStore

        return MemoryEventStore()
    if scheme in ("postgresql", "postgres"):
        from liverec.store.postgres import PostgresEventStore

        return PostgresEventStore(url)
    if scheme in ("redis", "rediss"):
        from liverec.store.redis import RedisEventStore

        return RedisEventStore(url)
    raise StoreUrlError(f"unknown store URL {redact_url(url)!r}; expected one of: {SCHEMES}")
