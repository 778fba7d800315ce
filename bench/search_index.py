"""Speed of the live search indexes (`liverec.search.index`) on synthetic docs; prints JSON.

    .venv/bin/python bench/search_index.py [--sizes 10000,100000] [--queries 300] [--upserts 300]

Docs are 5-15 words drawn uniformly from a 5,000-word vocabulary; queries are 1-3 of those words.
For each size:

- ``build_s``: one upsert of every doc (tokenize, then one bm25s build); ``compact_s``: one more
  rebuild from the stored tokens (what the upsert that overflows the delta costs, synchronously);
- ``top200_ms``: p50/p99 of ``LexicalIndex.top(query, 200)`` with an empty delta and with a nearly
  full one (``max_delta - 1`` changed rows, the slowest reads between compactions);
- ``upsert_ms``: p50/p99 of the upsert of one new item, the delta empty (growing to ``--upserts``
  rows) and nearly full (growing to ``max_delta - 1``); the overflowing upsert is not among them.

``semantic``: ``SemanticIndex.top(query, 200)`` over 384-d random vectors, and one upsert.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from collections.abc import Callable

import numpy as np

from liverec.search.index import LexicalIndex, SemanticIndex

VOCAB = 5000


def percentiles(fn: Callable[[int], object], n: int) -> dict[str, float]:
    times = []
    for i in range(n):
        t = time.perf_counter()
        fn(i)
        times.append((time.perf_counter() - t) * 1e3)
    p50, p99 = np.percentile(times, [50, 99])
    return {"p50": round(float(p50), 3), "p99": round(float(p99), 3)}


def docs(rng: np.random.Generator, n: int, words: list[str]) -> list[str]:
    return [" ".join(rng.choice(words, int(rng.integers(5, 16)))) for _ in range(n)]


def lexical(
    size: int, n_queries: int, n_upserts: int, max_delta: int, rng: np.random.Generator
) -> dict[str, object]:
    words = [f"w{i}" for i in range(VOCAB)]
    texts = docs(rng, size + max_delta + n_upserts, words)
    queries = [" ".join(rng.choice(words, int(rng.integers(1, 4)))) for _ in range(n_queries)]
    ix = LexicalIndex(max_delta=max_delta)
    t = time.perf_counter()
    ix.upsert(range(size), texts[:size])  # tokenizes, then compacts by itself when size > max_delta
    if size <= max_delta:
        ix.compact()
    build_s = time.perf_counter() - t
    t = time.perf_counter()
    ix.compact()
    compact_s = time.perf_counter() - t
    hits = [len(ix.top(q, 200)[0]) for q in queries]
    top_empty = percentiles(lambda i: ix.top(queries[i], 200), n_queries)
    next_row = size

    def upsert_one(_: int) -> None:
        nonlocal next_row
        ix.upsert([next_row], [texts[next_row]])
        next_row += 1

    upsert_empty = percentiles(upsert_one, n_upserts)  # the delta grows from 0 to n_upserts rows
    ix.compact()
    for _ in range(max_delta - 1 - n_upserts):
        upsert_one(0)
    upsert_full = percentiles(upsert_one, n_upserts)  # ... from max_delta - 1 - n_upserts to max_delta - 1
    top_full = percentiles(lambda i: ix.top(queries[i], 200), n_queries)
    return {
        "docs": size,
        "build_s": round(build_s, 3),
        "compact_s": round(compact_s, 3),
        "mean_hits_top200": round(float(np.mean(hits)), 1),
        "top200_ms": {"delta_empty": top_empty, f"delta_{max_delta - 1}": top_full},
        "upsert_ms": {"delta_empty": upsert_empty, f"delta_{max_delta - 1}": upsert_full},
    }


def semantic(size: int, n_queries: int, n_upserts: int, rng: np.random.Generator) -> dict[str, object]:
    ix = SemanticIndex(dim=384)
    vecs = rng.standard_normal((size + n_upserts, 384)).astype(np.float32)
    t = time.perf_counter()
    ix.upsert(range(size), vecs[:size])
    build_s = time.perf_counter() - t
    qs = rng.standard_normal((n_queries, 384)).astype(np.float32)
    top = percentiles(lambda i: ix.top(qs[i], 200), n_queries)
    upsert = percentiles(lambda i: ix.upsert([size + i], vecs[size + i : size + i + 1]), n_upserts)
    return {"docs": size, "build_s": round(build_s, 3), "top200_ms": top, "upsert_ms": upsert}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="10000,100000")
    ap.add_argument("--queries", type=int, default=300)
    ap.add_argument("--upserts", type=int, default=300)
    ap.add_argument("--max-delta", type=int, default=1000)
    args = ap.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    rng = np.random.default_rng(0)
    if not 0 < args.upserts < args.max_delta:
        ap.error("--upserts must be in 1 .. max_delta - 1")
    lex, sem = [], []
    for size in sizes:
        print(f"lexical {size}", file=sys.stderr)
        lex.append(lexical(size, args.queries, args.upserts, args.max_delta, rng))
        print(f"semantic {size}", file=sys.stderr)
        sem.append(semantic(size, args.queries, args.upserts, rng))
    info = {"python": platform.python_version(), "max_delta": args.max_delta}
    print(json.dumps({**info, "lexical": lex, "semantic": sem}, indent=2))


if __name__ == "__main__":
    main()
