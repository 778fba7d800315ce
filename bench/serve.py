"""Serving: recommendation latency under paced load, max throughput, and event-to-visible latency.

Setup (through the HTTP API of a ``liverec serve`` subprocess on a fresh SQLite store): ``--items``
catalog items, then ``--events`` synthetic events in batches of 1,000. The events come from
`_world.World`: items sit in taste clusters and every user mostly acts within 2-3 clusters, so
item-to-item co-occurrence has a real signal. Then, from this (separate) process:

1. ``latency``: open loop, ``GET /v1/users/{u}/recommendations?k=10`` paced at ``--rate`` requests/s
   for ``--duration`` s; ``--new-users`` of the requests name users the server has never seen.
   Latency counts from the moment a request is due (so a slow server cannot hide by slowing the
   client), excluding the client's own timer lag.
2. ``throughput``: closed loop, the same requests on ``--connections`` connections, as fast as the
   server answers.
3. ``event-to-visible``: ``--trials`` times, a user with history GETs her list L0 (``--trial-k``
   long), clicks X, the most popular item of a cluster she has never touched (``POST /v1/events``),
   and at once GETs L1 on the same connection. The latency runs from sending the POST to receiving
   L1. The trial passes only if some item of X's cluster (items that co-occur with X in the data)
   ranks higher in L1 than in L0 (absent = below the list) and X is not in L1, where it would rank
   first among them had the click not marked it seen; otherwise it counts in
   ``event_to_visible_failures`` with the reason. Only the click changes state between L0 and L1.
   A single click among ~20 history items lifts its cluster only to ranks ~10-30, hence k=50.

With ``--model transformer``, after the setup ``liverec train --epochs N --promote always`` trains
the Transformer on the loaded log (in the server's data dir) and the server hot-loads it before any
phase runs; then, after the HTTP phases, ``inprocess``: ``Engine.recommend`` (live sequence ->
model scores over the whole catalog -> top-k -> policy; no impression write) timed in this
process for ``--inprocess`` users.

Run:  HF_HUB_OFFLINE=1 .venv/bin/python bench/serve.py [--rate 100 --duration 30 --connections 8]
      HF_HUB_OFFLINE=1 .venv/bin/python bench/serve.py --model transformer
Prints one JSON object on stdout (keys in bench/README.md); progress goes to stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import shutil
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import orjson

from _load import (
    Connection,
    MakeRequest,
    Request,
    client_loop_name,
    closed_loop,
    emit,
    fs_type,
    log,
    machine,
    open_loop,
    percentile,
    request_json,
    run,
)
from _server import live_server, liverec_train, server_cpu_s, server_cpu_since
from _world import World, batch_bodies


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--items", type=int, default=10_000, help="catalog size")
    p.add_argument("--users", type=int, default=5_000, help="users in the synthetic log")
    p.add_argument("--events", type=int, default=100_000, help="events loaded before measuring")
    p.add_argument("--rate", type=float, default=100.0, help="paced GETs per second (latency phase)")
    p.add_argument("--duration", type=float, default=25.0, help="seconds of paced load")
    p.add_argument("--pool", type=int, default=8, help="connections available to the paced loop")
    p.add_argument("--connections", type=int, default=8, help="connections of the closed loop")
    p.add_argument("--max-requests", type=int, default=20_000, help="closed-loop request bound")
    p.add_argument("--max-seconds", type=float, default=15.0, help="closed-loop time bound")
    p.add_argument("--new-users", type=float, default=0.2, help="share of GETs for never-seen users")
    p.add_argument("--k", type=int, default=10, help="list length of every GET")
    p.add_argument("--trials", type=int, default=300, help="event-to-visible trials")
    p.add_argument("--trial-k", type=int, default=50, help="list length of the trials' GETs")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--model", choices=("popularity", "transformer"), default="popularity")
    p.add_argument("--epochs", type=int, default=3, help="offline epochs of the Transformer")
    p.add_argument("--rules-weight", type=float, default=0.0, help="[rules] weight (0 = off)")
    p.add_argument(
        "--new-item-slots",
        type=int,
        default=0,
        help="[policy] new_item_slots: list positions kept for new items",
    )
    p.add_argument("--text", action=argparse.BooleanOptionalAction, default=True, help="train with text")
    p.add_argument("--inprocess", type=int, default=2_000, help="in-process recommend() calls timed")
    p.add_argument("--keep", action="store_true", help="keep the temp data dir (its path goes to stderr)")
    return p.parse_args()


def rec_path(user_id: str, k: int) -> str:
    return f"/v1/users/{user_id}/recommendations?k={k}"


async def load_world(url: str, world: World, n_events: int) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Catalog, then events, through the API; returns the events and how fast they went in."""
    items = world.items()
    for i in range(0, len(items), 1000):
        await request_json(url, "POST", "/v1/items", {"items": items[i : i + 1000]})
    events = world.events(n_events)
    bodies = batch_bodies(events, 1000)
    res = await closed_loop(
        url,
        lambda i: ("POST", "/v1/events", bodies[i]),
        connections=2,
        max_requests=len(bodies),
        max_seconds=300.0,
    )
    if res.ok != len(bodies):
        raise RuntimeError(f"setup: {res.ok} of {len(bodies)} event batches accepted: {res.summary()}")
    health = await request_json(url, "GET", "/healthz")
    info = {
        "items": health["items"],
        "users": health["users"],
        "events": health["events"],
        "load_events_per_s": round(len(events) / res.elapsed_s, 1),
    }
    return events, info


def make_gets(known: list[str], new_share: float, k: int, seed: int) -> MakeRequest:
    """Request i: a known user (uniform) or, with probability ``new_share``, a never-seen one."""
    rng = random.Random(seed)
    tag = rng.getrandbits(32)

    def make(i: int) -> Request:
        user = f"new-{tag:x}-{i}" if rng.random() < new_share else rng.choice(known)
        return ("GET", rec_path(user, k), None)

    return make


async def trials(
    url: str, world: World, events: list[dict[str, Any]], n: int, k: int, seed: int
) -> dict[str, Any]:
    """Click-then-read trials; each uses a different user and one sequential keep-alive connection."""
    rng = random.Random(seed)
    tastes = world.tastes()
    seen: dict[str, set[str]] = {}
    for ev in events:
        if ev["type"] != "impression":
            seen.setdefault(ev["user_id"], set()).add(ev["item_id"])
    users = [u for u in range(world.n_users) if world.user_id(u) in seen]
    picked = rng.sample(users, min(n, len(users)))
    conn = Connection(url)
    latencies: list[float] = []
    post_ms: list[float] = []
    failures: Counter[str] = Counter()
    top10 = 0  # trials where a co-occurring item entered the first 10 (model strength, not freshness)
    try:
        for u in picked:
            uid = world.user_id(u)
            c = rng.choice([c for c in range(world.n_clusters) if c not in tastes[u]])
            rows = [r for r in world.cluster_items(c) if world.item_id(r) not in seen[uid]]
            x = world.item_id(rows[0])  # the cluster's most popular item the user has not touched
            cooc = {world.item_id(r) for r in rows[1:]}
            before = await conn.request("GET", rec_path(uid, k))
            l0 = [it["item_id"] for it in orjson.loads(before.body)["items"]]
            click = orjson.dumps({"user_id": uid, "item_id": x, "type": "click", "timestamp": time.time()})
            t0 = time.perf_counter()
            posted = await conn.request("POST", "/v1/events", click)
            t1 = time.perf_counter()
            after = await conn.request("GET", rec_path(uid, k))
            t2 = time.perf_counter()
            if posted.status != 200 or after.status != 200:
                failures[f"http_{posted.status}_{after.status}"] += 1
                continue
            l1 = [it["item_id"] for it in orjson.loads(after.body)["items"]]
            rank0 = {item: r for r, item in enumerate(l0)}
            rose = any(r < rank0.get(item, len(l0)) for r, item in enumerate(l1) if item in cooc)
            top10 += any(item in cooc for item in l1[:10]) and not any(item in cooc for item in l0[:10])
            if x in l1:
                failures["clicked_item_still_listed"] += 1
            elif not rose:
                failures["no_cooccurring_item_rose"] += 1
            else:
                latencies.append(t2 - t0)
                post_ms.append(t1 - t0)
    finally:
        await conn.close()
    fails = sum(failures.values())
    return {
        "event_to_visible_p50_ms": round(percentile(latencies, 50) * 1000, 3),
        "event_to_visible_p99_ms": round(percentile(latencies, 99) * 1000, 3),
        "event_to_visible_failures": fails,
        "event_to_visible": {
            "trials": len(picked),
            "passed": len(latencies),
            "failures": fails,
            "failure_reasons": dict(failures),
            "max_ms": round(percentile(latencies, 100) * 1000, 3),
            "post_p50_ms": round(percentile(post_ms, 50) * 1000, 3),
            "k": k,
            "cooccurring_entered_top10_share": round(top10 / max(1, len(picked)), 3),
        },
    }


async def main(args: argparse.Namespace) -> dict[str, Any]:
    world = World(n_items=args.items, n_users=args.users, seed=args.seed)
    out: dict[str, Any] = {
        "benchmark": "serve",
        "machine": machine(),
        "client": {
            "impl": "bench/_load.py raw asyncio HTTP/1.1 keep-alive",
            "loop": client_loop_name(),
            "process": "separate from the server",
        },
    }
    root = Path(tempfile.mkdtemp(prefix="liverec-bench-serve-"))
    try:
        env = {
            "LIVEREC_RULES__WEIGHT": str(args.rules_weight),
            "LIVEREC_POLICY": orjson.dumps(policy(args)).decode(),
        }
        out["rules_weight"] = args.rules_weight
        out["new_item_slots"] = args.new_item_slots
        with live_server(root, env=env) as url:
            await phases(url, root, args, world, out)
        if args.model == "transformer":
            out["inprocess"] = inprocess(root, args)
            log(f"  in-process: {out['inprocess']}")
    finally:
        if args.keep:
            log(f"kept {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)
    return out


def policy(args: argparse.Namespace) -> dict[str, Any]:
    """The server's `[policy]`: greedy, with ``--new-item-slots``."""
    return {"name": "greedy", "new_item_slots": args.new_item_slots}


async def train_and_wait(url: str, root: Path, args: argparse.Namespace) -> dict[str, Any]:
    """`liverec train --promote always` on the server's store; wait until the server serves it."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LIVEREC_")}
    env.update({"LIVEREC_DATA_DIR": str(root), "HF_HUB_OFFLINE": "1"})
    before = (await request_json(url, "GET", "/healthz"))["model"]
    t0 = time.perf_counter()
    await asyncio.to_thread(liverec_train, root, args.epochs, args.text, env)
    train_s = time.perf_counter() - t0
    while time.perf_counter() - t0 < train_s + 120:
        health = await request_json(url, "GET", "/healthz")
        if health["model"] != before:  # e.g. "popularity" -> "transformer@v000001"
            return {"model": health["model"], "train_s": round(train_s, 1), "epochs": args.epochs}
        await asyncio.sleep(0.5)
    raise RuntimeError("the server did not load the promoted model within 120 s")


def inprocess(root: Path, args: argparse.Namespace) -> dict[str, Any]:
    """p50/p99 of `Engine.recommend` (no impression write) over the server's store and live model,
    with the server's garbage-collector settings (`server_gc`)."""
    from liverec.serve.app import server_gc
    from liverec.serve.engine import Engine
    from liverec.settings import RulesSettings, Settings

    settings = Settings(data_dir=root, rules=RulesSettings(weight=args.rules_weight), policy=policy(args))
    engine = Engine(settings).start()
    try:
        with server_gc(settings.server.gc_threshold):
            users = [u for u in engine.state.users if engine.state.get(u)]
            rng = random.Random(args.seed + 5)
            picks = [rng.choice(users) for _ in range(args.inprocess)]
            for u in picks[:50]:  # warm-up
                engine.recommend(u, args.k, log_impressions=False)
            ms = []
            for u in picks:
                t = time.perf_counter()
                engine.recommend(u, args.k, log_impressions=False)
                ms.append((time.perf_counter() - t) * 1000)
            return {
                "model": engine.model_version,
                "items": len(engine.catalog),
                "calls": len(ms),
                "p50_ms": round(percentile(ms, 50), 3),
                "p99_ms": round(percentile(ms, 99), 3),
                "threads": engine.settings.server.compute_threads,
            }
    finally:
        engine.close()


async def phases(url: str, root: Path, args: argparse.Namespace, world: World, out: dict[str, Any]) -> None:
    log(f"setup: {args.items:,} items and {args.events:,} events through the API ...")
    events, setup = await load_world(url, world, args.events)
    out["setup"] = setup
    log(f"  {setup}")
    if args.model == "transformer":
        log(f"training the Transformer ({args.epochs} epochs) and waiting for the server to load it ...")
        out["model"] = await train_and_wait(url, root, args)
        log(f"  {out['model']}")
    known = sorted({ev["user_id"] for ev in events})
    warm = make_gets(known, args.new_users, args.k, args.seed + 1)
    await closed_loop(url, warm, connections=2, max_requests=300, max_seconds=10.0)

    log(f"latency: {args.rate:g} GET/s for {args.duration:g}s (open loop) ...")
    cpu0 = server_cpu_s(url)
    paced = await open_loop(
        url,
        make_gets(known, args.new_users, args.k, args.seed + 2),
        rate=args.rate,
        duration_s=args.duration,
        connections=args.pool,
    )
    s = paced.summary()
    out["p50_ms"], out["p99_ms"] = s["p50_ms"], s["p99_ms"]
    out["latency"] = {
        **s,
        "k": args.k,
        "new_user_share": args.new_users,
        "server_cpu_s": server_cpu_since(url, cpu0),
    }
    log(f"  p50 {s['p50_ms']} ms, p99 {s['p99_ms']} ms at {s['achieved_rate']} req/s")

    log(f"throughput: closed loop on {args.connections} connections ...")
    cpu0 = server_cpu_s(url)
    closed = await closed_loop(
        url,
        make_gets(known, args.new_users, args.k, args.seed + 3),
        connections=args.connections,
        max_requests=args.max_requests,
        max_seconds=args.max_seconds,
    )
    s = closed.summary()
    out["requests_per_s"] = s["requests_per_s"]
    out["throughput"] = {
        **s,
        "server_cpu_s": server_cpu_since(url, cpu0),
    }
    log(f"  {s['requests_per_s']:,.0f} req/s, p50 {s['p50_ms']} ms, p99 {s['p99_ms']} ms")

    log(f"event-to-visible: {args.trials} click-then-read trials ...")
    out.update(await trials(url, world, events, args.trials, args.trial_k, args.seed + 4))
    log(
        f"  p50 {out['event_to_visible_p50_ms']} ms, p99 {out['event_to_visible_p99_ms']} ms, "
        f"failures {out['event_to_visible_failures']} {out['event_to_visible']['failure_reasons']}"
    )
    out["data_fs"] = fs_type(root)


if __name__ == "__main__":
    emit(run(main(parse_args())))
