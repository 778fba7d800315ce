"""Search: `GET /v1/search` latency under paced load, and the time from an item's PUT to its first
appearance in search.

For each ``--sizes`` catalog size, a fresh ``liverec serve`` (SQLite, popularity + co-occurrence as
the personal signal, search on with its defaults) gets, through the HTTP API: the catalog (titles of
2-4 words from a 5,000-word vocabulary, one of 50 genre tags), then ``--events`` clicks by
``--users`` users, so that known users have a history the personal signal reads. Then, from this
(separate) process:

1. ``latency``: open loop, ``GET /v1/search?q=...&user_id=...&k=10`` paced at ``--rate`` requests/s
   for ``--duration`` s (latency from the moment a request is due: a slow server cannot hide).
   Queries are 1-2 words of a random item's title, drawn Zipf-like from a pool of ``--queries``
   distinct queries (search traffic repeats itself; the server caches query vectors, so the share of
   queries it has to encode is reported as ``query_pool``); ``--anonymous`` of them name no user.
2. ``put_to_searchable``: ``--trials`` times, PUT a new item whose title holds a word no other item
   has, then GET a search for that word until the item is in the results; the time runs from sending
   the PUT to receiving the first result list that holds it. The PUT itself encodes the new item's
   text with the real MiniLM (``put_ms``).

The catalog's item vectors are random unit vectors placed in the store's embedding cache before the
server starts (encoding 100,000 titles with MiniLM would take this machine most of an hour, and the
values of the vectors do not change the work a query does); queries and the trial items are encoded
by the real encoder.

Run:  HF_HUB_OFFLINE=1 .venv/bin/python bench/search.py [--sizes 10000 100000 --rate 100]
Prints one JSON object on stdout (keys in bench/README.md); progress goes to stderr.
"""

from __future__ import annotations

import argparse
import random
import shutil
import tempfile
import time
import urllib.parse
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from _load import (
    Connection,
    Request,
    client_loop_name,
    closed_loop,
    emit,
    log,
    machine,
    open_loop,
    percentile,
    run,
)
from _server import live_server
from liverec.core.schema import Item
from liverec.model.text import ENCODER_NAME
from liverec.store import open_store
from liverec.store.base import embedding_key


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000], help="catalog sizes")
    p.add_argument("--users", type=int, default=2_000)
    p.add_argument("--events", type=int, default=20_000, help="clicks loaded before measuring")
    p.add_argument("--rate", type=float, default=100.0, help="paced searches per second")
    p.add_argument("--duration", type=float, default=20.0, help="seconds of paced load")
    p.add_argument("--pool", type=int, default=8, help="connections of the paced loop")
    p.add_argument("--queries", type=int, default=5_000, help="distinct queries in the pool")
    p.add_argument("--anonymous", type=float, default=0.3, help="share of searches without a user")
    p.add_argument("--trials", type=int, default=30, help="PUT-to-searchable trials")
    p.add_argument("--seed", type=int, default=0)
    return p.parse_args()


class Catalog:
    """Synthetic searchable items: readable-enough titles, a genre tag, clicks within 2 genres per user."""

    def __init__(self, n: int, seed: int) -> None:
        self.rng = random.Random(seed)
        words = [
            f"{a}{b}"
            for a in ("ka", "lo", "mi", "ne", "ru", "sa", "to", "vi", "xe", "zu")
            for b in range(500)
        ]
        self.words = words
        self.genre = [self.rng.randrange(50) for _ in range(n)]
        self.titles = [" ".join(self.rng.sample(words, self.rng.randint(2, 4))) for _ in range(n)]

    def items(self) -> list[dict[str, Any]]:
        return [
            {"item_id": f"i{r}", "title": t, "tags": [f"genre{g}"]}
            for r, (t, g) in enumerate(zip(self.titles, self.genre, strict=True))
        ]

    def clicks(self, n_users: int, n: int) -> list[dict[str, Any]]:
        by_genre: dict[int, list[int]] = {}
        for r, g in enumerate(self.genre):
            by_genre.setdefault(g, []).append(r)
        taste = [self.rng.sample(range(50), 2) for _ in range(n_users)]
        now = time.time() - 3600
        out = []
        for k in range(n):
            u = self.rng.randrange(n_users)
            r = self.rng.choice(by_genre[self.rng.choice(taste[u])])
            out.append({"user_id": f"u{u}", "item_id": f"i{r}", "type": "click", "timestamp": now + k * 0.01})
        return out

    def queries(self, n: int) -> list[str]:
        out = []
        for _ in range(n):
            words = self.rng.choice(self.titles).split()
            out.append(" ".join(self.rng.sample(words, self.rng.randint(1, 2))))
        return out


def seed_vectors(root: Path, cat: Catalog, seed: int) -> None:
    """Random unit vectors for the catalog's texts, in the store's embedding cache (see the docstring)."""
    rng = np.random.default_rng(seed)
    with open_store(f"sqlite:///{root / 'events.db'}") as st:
        for start in range(0, len(cat.titles), 10_000):
            chunk = cat.items()[start : start + 10_000]
            vecs = rng.normal(size=(len(chunk), 384)).astype(np.float32)
            vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
            keys = [embedding_key(ENCODER_NAME, Item(**it).content()) for it in chunk]
            st.put_embeddings(dict(zip(keys, vecs, strict=True)))


async def post_batches(url: str, path: str, key: str, rows: list[dict[str, Any]], max_s: float) -> None:
    """POST ``rows`` to ``path`` as ``{key: [...]}`` bodies of 1,000, in order; raise unless all took."""
    bodies = [orjson.dumps({key: rows[i : i + 1000]}) for i in range(0, len(rows), 1000)]
    res = await closed_loop(
        url, lambda i: ("POST", path, bodies[i]), connections=1, max_requests=len(bodies), max_seconds=max_s
    )
    if res.ok != len(bodies):
        raise RuntimeError(f"{path}: {res.ok} of {len(bodies)} batches accepted: {res.summary()}")


async def load(url: str, cat: Catalog, args: argparse.Namespace) -> None:
    await post_batches(url, "/v1/items", "items", cat.items(), 1800)
    await post_batches(url, "/v1/events", "events", cat.clicks(args.users, args.events), 600)


def search_path(q: str, user: str | None, k: int = 10) -> str:
    params = {"q": q, "k": k} | ({"user_id": user} if user else {})
    return "/v1/search?" + urllib.parse.urlencode(params)


async def latency(url: str, cat: Catalog, args: argparse.Namespace) -> dict[str, Any]:
    rng = random.Random(args.seed + 1)
    pool = cat.queries(args.queries)
    weights = [1.0 / (1 + i) for i in range(len(pool))]  # Zipf-like: a few queries are most traffic
    n = round(args.rate * args.duration)
    drawn = rng.choices(pool, weights, k=n)
    users = [None if rng.random() < args.anonymous else f"u{rng.randrange(args.users)}" for _ in range(n)]

    def make(i: int) -> Request:
        return ("GET", search_path(drawn[i], users[i]), None)

    # warm-up: the encoder's first call and the first queries are not what a running server does
    await closed_loop(
        url,
        lambda i: ("GET", search_path(pool[i], None), None),
        connections=1,
        max_requests=50,
        max_seconds=60,
    )
    res = await open_loop(url, make, rate=args.rate, duration_s=args.duration, connections=args.pool)
    lat = res.latencies_s
    seen: set[str] = set(pool[:50])
    fresh = 0
    for q in drawn:
        fresh += q not in seen
        seen.add(q)
    return {
        "requests": res.ok,
        "statuses": {str(k): v for k, v in res.statuses.items()},
        "p50_ms": round(percentile(lat, 50) * 1000, 2),
        "p99_ms": round(percentile(lat, 99) * 1000, 2),
        "max_ms": round(max(lat) * 1000, 2) if lat else None,
        **res.extra,
        "query_pool": {"distinct": len(pool), "share_encoded": round(fresh / max(n, 1), 3)},
    }


async def put_to_searchable(url: str, args: argparse.Namespace) -> dict[str, Any]:
    conn = Connection(url)
    put_ms, visible_ms, polls = [], [], []
    try:
        for t in range(args.trials):
            word = f"qqzv{args.seed}x{t}"
            body = orjson.dumps({"title": f"{word} brand new arrival", "tags": ["genre0"]})
            t0 = time.perf_counter()
            resp = await conn.request("PUT", f"/v1/items/new{t}", body)
            t1 = time.perf_counter()
            assert resp.status == 200, resp.body
            n = 0
            while True:
                n += 1
                got = (await conn.request("GET", search_path(word, None, 3), None)).json()
                if any(i["item_id"] == f"new{t}" for i in got["items"]):
                    break
                if time.perf_counter() - t0 > 5:
                    raise RuntimeError(f"new{t} not searchable 5 s after its PUT")
            visible_ms.append((time.perf_counter() - t0) * 1000)
            put_ms.append((t1 - t0) * 1000)
            polls.append(n)
    finally:
        await conn.close()
    return {
        "trials": args.trials,
        "put_ms_p50": round(float(np.median(put_ms)), 2),
        "put_to_searchable_ms_p50": round(float(np.median(visible_ms)), 2),
        "put_to_searchable_ms_max": round(max(visible_ms), 2),
        "searches_until_found_max": max(polls),
    }


async def one_size(n: int, args: argparse.Namespace) -> dict[str, Any]:
    cat = Catalog(n, args.seed)
    root = Path(tempfile.mkdtemp(prefix=f"liverec-bench-search-{n}-"))
    try:
        seed_vectors(root, cat, args.seed)
        with live_server(root, startup_timeout_s=600) as url:
            t0 = time.perf_counter()
            await load(url, cat, args)
            log(f"{n} items: loaded in {time.perf_counter() - t0:.0f}s; searching at {args.rate}/s")
            out = {"items": n, "latency": await latency(url, cat, args)}
            log(f"  latency: {out['latency']}")
            out["put_to_searchable"] = await put_to_searchable(url, args)
            log(f"  PUT -> searchable: {out['put_to_searchable']}")
            return out
    finally:
        shutil.rmtree(root, ignore_errors=True)


async def main(args: argparse.Namespace) -> dict[str, Any]:
    out: dict[str, Any] = {
        "benchmark": "search",
        "machine": machine(),
        "client": {"impl": "bench/_load.py raw asyncio HTTP/1.1 keep-alive", "loop": client_loop_name()},
        "personal_signal": "popularity + co-occurrence (no trained Transformer)",
        "sizes": [],
    }
    for n in args.sizes:
        out["sizes"].append(await one_size(n, args))
    return out


if __name__ == "__main__":
    emit(run(main(parse_args())))
