"""Batched append and full-scan read throughput of each EventStore backend; prints JSON.

    python bench/store.py [--events 50000] [--batch 1000] [--backends sqlite,postgres,redis]

Each backend gets a scratch namespace (temp file, Postgres schema, Redis key prefix) that is
removed afterwards. Servers must be running; the URLs are options.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path

import psycopg
import redis

from liverec.core.schema import Event, EventContext, EventType
from liverec.store import open_store


def synthetic(n: int, tag: str) -> list[Event]:
    """Impression-like events: 2,000 users, 5,000 items, a served-list context on each."""
    return [
        Event.model_construct(
            event_id=f"{tag}-{i}",
            user_id=f"u{i % 2000}",
            item_id=f"i{(i * 7919) % 5000}",
            type=EventType.click,
            value=None,
            timestamp=1.7e9 + i,
            context=EventContext.model_construct(request_id=f"r{i // 10}", position=i % 10),
        )
        for i in range(n)
    ]


@contextmanager
def sqlite_url() -> Iterator[str]:
    with tempfile.TemporaryDirectory() as tmp:
        yield f"sqlite:///{Path(tmp) / 'events.db'}"


@contextmanager
def postgres_url(base: str) -> Iterator[str]:
    schema = f"bench_{uuid.uuid4().hex[:12]}"
    try:
        yield f"{base}?schema={schema}"
    finally:
        with psycopg.connect(base, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


@contextmanager
def redis_url(base: str) -> Iterator[str]:
    prefix = f"bench-{uuid.uuid4().hex[:12]}"
    try:
        yield f"{base}?prefix={prefix}"
    finally:
        client = redis.Redis.from_url(base)
        keys = list(client.scan_iter(match=f"{{{prefix}}}:*", count=1000))
        for at in range(0, len(keys), 1000):
            client.delete(*keys[at : at + 1000])


def measure(url: str, events: list[Event], batch: int) -> dict[str, float]:
    with open_store(url) as store:
        store.append(events[:batch])  # warm-up: schema, scripts, connections
        t0 = time.perf_counter()
        for at in range(batch, len(events), batch):
            store.append(events[at : at + batch])
        appended = len(events) - batch
        append_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        read = sum(len(page) for page in store.pages(0, 10_000))
        read_s = time.perf_counter() - t0
    return {
        "append_events_per_s": round(appended / append_s),
        "read_events_per_s": round(read / read_s),
        "events": read,
        "batch": batch,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--events", type=int, default=50_000)
    ap.add_argument("--batch", type=int, default=1000)
    ap.add_argument("--backends", default="sqlite,postgres,redis")
    ap.add_argument("--postgres", default="postgresql://root@127.0.0.1:5432/test")
    ap.add_argument("--redis", default="redis://127.0.0.1:6379/0")
    args = ap.parse_args()
    namespaces: dict[str, Callable[[], AbstractContextManager[str]]] = {
        "sqlite": sqlite_url,
        "postgres": lambda: postgres_url(args.postgres),
        "redis": lambda: redis_url(args.redis),
    }
    out = {}
    for name in args.backends.split(","):
        with namespaces[name]() as url:
            out[name] = measure(url, synthetic(args.events, uuid.uuid4().hex[:8]), args.batch)
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
