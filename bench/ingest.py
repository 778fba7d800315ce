"""Ingest throughput: durable events per second, in-process and over HTTP.

Three phases, each on a fresh, empty store:

1. ``store``: ``EventStore.append`` in this process, batches of ``--batch`` synthetic events
   (pre-validated, so only the store is timed). SQLite commits with ``synchronous=FULL``.
2. ``http-batched``: ``POST /v1/events {"events": [...]}`` against a ``liverec serve`` subprocess,
   once per connection count in ``--connections`` (a fresh server each, so runs compare).
3. ``http-single``: one event per ``POST /v1/events`` on ``--single-connections`` keep-alive
   connections, closed loop; the server's group commit shares fsyncs between requests.

Every response is an acknowledgement that the events are durable and folded into live state. Events
come from `_world.World` (5k users, 10k items, a realistic type mix, uuid4 ids, past timestamps).

Run:  HF_HUB_OFFLINE=1 .venv/bin/python bench/ingest.py [--events 200000] [--connections 1,2,4]
Prints one JSON object on stdout (keys in bench/README.md); progress goes to stderr.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson
from pydantic import TypeAdapter

from _load import (
    LoadResult,
    Response,
    client_loop_name,
    closed_loop,
    emit,
    fs_type,
    log,
    machine,
    percentile,
    run,
)
from _server import live_server, server_cpu_s, server_cpu_since
from _world import World, batch_bodies
from liverec.core.schema import Event
from liverec.store import open_store

EVENTS = TypeAdapter(list[Event])


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--events", type=int, default=200_000, help="events per store / batched run")
    p.add_argument("--batch", type=int, default=1000, help="events per append / per POST")
    p.add_argument("--connections", default="1,2,4", help="comma list of connection counts, batched")
    p.add_argument("--single-connections", type=int, default=16, help="connections, one event per POST")
    p.add_argument("--single-requests", type=int, default=20_000, help="single-event POSTs at most")
    p.add_argument("--max-seconds", type=float, default=30.0, help="time bound of each HTTP run")
    p.add_argument("--store", default="", help="store URL for phase 1 (default: fresh sqlite in a tmp dir)")
    p.add_argument("--phases", default="store,http-batched,http-single", help="comma list of phases")
    p.add_argument("--users", type=int, default=5_000)
    p.add_argument("--items", type=int, default=10_000)
    p.add_argument(
        "--ids",
        choices=("uuid", "sequential"),
        default="uuid",
        help="event ids: random uuid4 hex (what clients and the server's default send) or ordered",
    )
    p.add_argument("--seed", type=int, default=0)
    return p.parse_args()


def bench_store(url: str, events: list[dict[str, Any]], batch: int) -> dict[str, Any]:
    """Append pre-validated batches in-process: the ceiling the HTTP path can approach."""
    validated = EVENTS.validate_python(events)
    batches = [validated[i : i + batch] for i in range(0, len(validated), batch)]
    tmp = None
    if not url:
        tmp = Path(tempfile.mkdtemp(prefix="liverec-bench-store-"))
        url = f"sqlite:///{tmp / 'events.db'}"
    try:
        store = open_store(url)
        try:
            times: list[float] = []
            accepted = 0
            t0 = time.perf_counter()
            for b in batches:
                s = time.perf_counter()
                accepted += len(store.append(b).accepted)
                times.append(time.perf_counter() - s)
            elapsed = time.perf_counter() - t0
            size = store.size_bytes()
        finally:
            store.close()
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
    return {
        "store_url": url.split("@")[-1],
        "data_fs": fs_type(tmp or Path(tempfile.gettempdir())) if url.startswith("sqlite") else None,
        "events": len(events),
        "accepted": accepted,
        "batch": batch,
        "elapsed_s": round(elapsed, 3),
        "events_per_s": round(accepted / elapsed, 1),
        "append_p50_ms": round(percentile(times, 50) * 1000, 3),
        "append_p99_ms": round(percentile(times, 99) * 1000, 3),
        "size_bytes": size,
    }


class Acks:
    """Sums the ``accepted`` counts the server acknowledges."""

    def __init__(self) -> None:
        self.accepted = 0

    def __call__(self, _i: int, resp: Response) -> None:
        if resp.status == 200:
            self.accepted += int(orjson.loads(resp.body)["accepted"])


async def http_run(
    bodies: list[bytes], warmup: list[bytes], connections: int, max_seconds: float
) -> tuple[LoadResult, int, float | None]:
    """One fresh server: warm up, then POST every body; returns (result, accepted, server CPU s)."""
    with live_server() as url:
        await closed_loop(
            url,
            lambda i: ("POST", "/v1/events", warmup[i]),
            connections=connections,
            max_requests=len(warmup),
            max_seconds=max_seconds,
        )
        acks = Acks()
        cpu0 = server_cpu_s(url)
        res = await closed_loop(
            url,
            lambda i: ("POST", "/v1/events", bodies[i]),
            connections=connections,
            max_requests=len(bodies),
            max_seconds=max_seconds,
            on_response=acks,
        )
        cpu = server_cpu_since(url, cpu0)
    return res, acks.accepted, cpu


async def main(args: argparse.Namespace) -> dict[str, Any]:
    phases = {p.strip() for p in args.phases.split(",") if p.strip()}
    world = World(n_items=args.items, n_users=args.users, seed=args.seed)
    log(f"generating {args.events:,} events ...")
    events = world.events(args.events)
    if args.ids == "sequential":  # ordered keys append to the id index instead of scattering over it
        run_tag = events[0]["event_id"][:8]
        events = [dict(ev, event_id=f"{run_tag}-{i:012d}") for i, ev in enumerate(events)]
    warm = world.events(max(5 * args.batch, 500), seed=args.seed + 1000)
    out: dict[str, Any] = {
        "benchmark": "ingest",
        "machine": machine(),
        "data_fs": fs_type(Path(tempfile.gettempdir())),
        "client": {
            "impl": "bench/_load.py raw asyncio HTTP/1.1 keep-alive",
            "loop": client_loop_name(),
            "process": "separate from the server",
        },
        "workload": {
            "events": args.events,
            "batch": args.batch,
            "users": args.users,
            "items": args.items,
            "ids": args.ids,
        },
    }

    if "store" in phases:
        log(f"store: appending {args.events:,} events in batches of {args.batch} ...")
        store = bench_store(args.store, events, args.batch)
        out["store_batched_events_per_s"] = store["events_per_s"]
        out["store"] = store
        log(f"  {store['events_per_s']:,.0f} events/s")

    if "http-batched" in phases:
        bodies = batch_bodies(events, args.batch)
        warmup = batch_bodies(warm[: 5 * args.batch], args.batch)
        table = []
        for c in [int(x) for x in args.connections.split(",") if x.strip()]:
            log(f"http-batched: {len(bodies)} POSTs of {args.batch} events on {c} connection(s) ...")
            res, accepted, cpu = await http_run(bodies, warmup, c, args.max_seconds)
            row = {
                "connections": c,
                "events_per_s": round(accepted / res.elapsed_s, 1) if res.elapsed_s else 0.0,
                "accepted": accepted,
                **{k: v for k, v in res.summary().items() if k != "connections"},
                "server_cpu_s": cpu,
            }
            table.append(row)
            log(f"  {row['events_per_s']:,.0f} events/s, p99 {row['p99_ms']} ms per batch")
        best = max(table, key=lambda r: r["events_per_s"])
        out["http_batched_events_per_s"] = best["events_per_s"]
        out["http_batched_best_connections"] = best["connections"]
        out["http_batched"] = table

    if "http-single" in phases:
        n = min(args.single_requests, len(events))
        singles = [orjson.dumps(ev) for ev in events[:n]]
        warmup = [orjson.dumps(ev) for ev in warm[:500]]
        c = args.single_connections
        log(f"http-single: {n:,} POSTs of one event on {c} connections ...")
        res, accepted, cpu = await http_run(singles, warmup, c, args.max_seconds)
        s = res.summary()
        out["http_single_requests_per_s"] = s["requests_per_s"]
        out["http_single_p50_ms"] = s["p50_ms"]
        out["http_single_p99_ms"] = s["p99_ms"]
        out["http_single"] = {**s, "accepted": accepted, "server_cpu_s": cpu}
        log(f"  {s['requests_per_s']:,.0f} requests/s, p50 {s['p50_ms']} ms, p99 {s['p99_ms']} ms")
    return out


if __name__ == "__main__":
    emit(run(main(parse_args())))
