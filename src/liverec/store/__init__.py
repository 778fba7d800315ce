"""The durable event log and item catalog. Backends are chosen by URL (gorse-style)."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlparse

from liverec.store.base import AppendResult, EventStore, StoreError, StoreStats, embedding_key

__all__ = ["AppendResult", "EventStore", "StoreError", "StoreStats", "embedding_key", "open_store"]

SCHEMES = "sqlite:///path, memory://, postgresql://user@host/db, redis://host:port/db"


def open_store(url: str) -> EventStore:
    """Open the store a URL names: ``sqlite:///relative.db`` or ``sqlite:////abs/path.db``, ``memory://``,
    ``postgresql://...``, ``redis://...``."""
    scheme = urlparse(url).scheme
    if scheme == "sqlite":
        path = url[len("sqlite:///") :] if url.startswith("sqlite:///") else ""
        if not path:
            raise ValueError(
                f"bad SQLite URL {url!r}: use sqlite:///relative/path.db or sqlite:////abs/path.db"
            )
        from liverec.store.sqlite import SQLiteEventStore

        return SQLiteEventStore(Path(path))
    if scheme == "memory":
        from liverec.store.memory import MemoryEventStore

        return MemoryEventStore()
    if scheme in ("postgresql", "postgres"):
        from liverec.store.postgres import PostgresEventStore

        return PostgresEventStore(url)
    if scheme in ("redis", "rediss"):
        from liverec.store.redis import RedisEventStore

        return RedisEventStore(url)
    raise ValueError(f"unknown store URL {url!r}; expected one of: {SCHEMES}")
