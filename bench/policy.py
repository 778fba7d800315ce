"""Latency of each exploration policy's select() and update(); prints JSON.

    python bench/policy.py [--candidates 100] [--k 10] [--dim 64] [--requests 2000]

The budget (the issue's "exploration adds <= 2 ms to serving p99") is on ``select_us.p99``: the
whole policy step for one request, M candidates with (M, D) item vectors and a (D,) user vector.
``update_us`` is one slate's feedback (k items, one `update` call). Before timing, each policy
serves and learns from ``--warmup`` requests so Thompson/LinUCB have a non-trivial posterior and
some rows are no longer cold; requests come from 50 users, so the ``_user`` variants' per-user
windows (100 shown items) are full, their most expensive state. Inputs are drawn beforehand from a
synthetic catalog; only the policy call is timed, in this one process: ``select_us`` is wall time
(``perf_counter_ns``), which on a shared machine includes being preempted by other processes (a
~4 ms time slice shows up in the p99 of any call long enough to be hit); ``select_cpu_us`` is this
thread's CPU time (``thread_time_ns``), the policy's own cost. ``load_avg_1m`` says how busy the machine was.

BLAS threads are limited to ``--blas-threads`` (default 1, with threadpoolctl) for the timed part:
the policies' matrices are small (at most 101 x 100 x 64), and multi-threaded OpenBLAS on a busy
machine turns ~0.3 ms products into 5-20 ms p99 stalls; a serving process should pin BLAS the
same way (``OPENBLAS_NUM_THREADS=1``). ``--blas-threads 0`` leaves the library default.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from collections.abc import Callable
from typing import Any

import numpy as np
from threadpoolctl import threadpool_limits

from liverec.policy import Policy, make_policy

POLICIES: dict[str, Callable[[], Policy]] = {
    "greedy": lambda: make_policy("greedy"),
    "epsilon": lambda: make_policy("epsilon", epsilon=0.1, seed=0),
    "plackett_luce": lambda: make_policy("plackett_luce", temperature=1.0, seed=0),
    "thompson": lambda: make_policy("thompson", seed=0),
    "thompson_no_cold": lambda: make_policy("thompson", seed=0, min_impressions=0),
    "thompson_user": lambda: make_policy("thompson", seed=0, user_weight=3.0),
    "linucb": lambda: make_policy("linucb"),
    "linucb_user": lambda: make_policy("linucb", user_weight=3.0),
    "mmr_greedy": lambda: make_policy("greedy", mmr=0.7),
    "mmr_epsilon": lambda: make_policy("epsilon", epsilon=0.1, seed=0, mmr=0.7),
}


USERS = 50  # requests come from this many users, so the warm-up fills the per-user windows


def percentiles(ns: list[int]) -> dict[str, float]:
    us = np.asarray(ns, dtype=np.float64) / 1e3
    return {
        "p50": round(float(np.percentile(us, 50)), 1),
        "p99": round(float(np.percentile(us, 99)), 1),
        "mean": round(float(us.mean()), 1),
        "max": round(float(us.max()), 1),
    }


def requests(n: int, m: int, d: int, n_items: int, seed: int) -> list[tuple[np.ndarray, np.ndarray, dict]]:
    """``n`` requests: (M,) int64 candidates best first, (M,) float32 scores, a context with vectors."""
    rng = np.random.default_rng(seed)
    items = rng.normal(0, 1 / np.sqrt(d), (n_items, d)).astype(np.float32)
    out = []
    for _ in range(n):
        u = rng.normal(0, 1, d).astype(np.float32)
        rows = rng.choice(n_items, m, replace=False)
        scores = items[rows] @ u
        order = np.argsort(-scores, kind="stable")
        rows, scores = rows[order].astype(np.int64), scores[order]
        user = f"u{rng.integers(USERS)}"
        out.append((rows, scores, {"user_id": user, "user_vector": u, "item_vectors": items[rows]}))
    return out


def bench(make: Callable[[], Policy], args: argparse.Namespace) -> dict[str, Any]:
    policy = make()
    rng = np.random.default_rng(1)
    warm = requests(args.warmup, args.candidates, args.dim, args.items, seed=2)
    for rows, scores, ctx in warm:
        slate = policy.select(rows, scores, args.k, ctx)
        policy.update(slate.feedback((rng.random(len(slate.rows)) < 0.1).astype(float), ctx))
    timed = requests(args.requests, args.candidates, args.dim, args.items, seed=3)
    select_ns, select_cpu_ns, update_ns = [], [], []
    for rows, scores, ctx in timed:  # as in serving, each request follows the feedback before it
        c, t = time.thread_time_ns(), time.perf_counter_ns()
        slate = policy.select(rows, scores, args.k, ctx)
        select_ns.append(time.perf_counter_ns() - t)
        select_cpu_ns.append(time.thread_time_ns() - c)
        fb = slate.feedback((rng.random(len(slate.rows)) < 0.1).astype(float), ctx)
        t = time.perf_counter_ns()
        policy.update(fb)
        update_ns.append(time.perf_counter_ns() - t)
    sel = percentiles(select_ns)
    return {
        "select_us": sel,
        "select_cpu_us": percentiles(select_cpu_ns),
        "update_us": percentiles(update_ns),
        "within_2ms_p99": sel["p99"] <= 2000.0,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--candidates", type=int, default=100, help="M, candidates per request")
    ap.add_argument("--k", type=int, default=10, help="slate length")
    ap.add_argument("--dim", type=int, default=64, help="D, width of the user/item vectors")
    ap.add_argument("--items", type=int, default=10_000, help="catalog size the candidates come from")
    ap.add_argument("--requests", type=int, default=2000, help="timed requests per policy")
    ap.add_argument("--warmup", type=int, default=500, help="untimed requests (with updates) first")
    ap.add_argument("--policies", default=",".join(POLICIES), help="comma-separated subset")
    ap.add_argument("--blas-threads", type=int, default=1, help="0 = the BLAS library default")
    args = ap.parse_args()
    results = {}
    with threadpool_limits(limits=args.blas_threads or None, user_api="blas"):
        for name in args.policies.split(","):
            print(f"policy {name}...", file=sys.stderr)
            results[name] = bench(POLICIES[name], args)
    greedy_p99 = results.get("greedy", {}).get("select_us", {}).get("p99")
    if greedy_p99 is not None:
        for r in results.values():
            r["added_p99_us_vs_greedy"] = round(r["select_us"]["p99"] - greedy_p99, 1)
    out = {
        "config": {
            "candidates": args.candidates,
            "k": args.k,
            "dim": args.dim,
            "requests": args.requests,
            "warmup": args.warmup,
            "blas_threads": args.blas_threads or "default",
            "load_avg_1m": round(os.getloadavg()[0], 2),
            "numpy": np.__version__,
            "python": platform.python_version(),
        },
        "policies": results,
    }
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
