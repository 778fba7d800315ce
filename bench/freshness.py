"""Freshness: how soon an event changes what is served, and how fast the online trainer learns, under load.

Setup, on a fresh SQLite store in a temp dir: ``--items`` catalog items and ``--history`` synthetic
events from `_world.World` (taste clusters) are written to the store, ``liverec train --epochs 2``
trains and promotes v1 on them (``trainer_offset`` = the end of that log), then ``--backlog`` more
events are appended: work waiting for the online trainer. Then ``liverec serve --learn`` starts (the
server, and the trainer as its companion process), and for ``--duration`` s this separate process:

- streams events: ``POST /v1/events`` batches of ``--batch``, paced at ``--rate`` events/s;
- asks for lists: ``GET /v1/users/{u}/recommendations?k=10`` paced at ``--get-rate`` /s (open loop;
  latency from when a request is sent until its answer);
- every ``--trial-every`` s runs a freshness trial for a user with history: GET her list L0, POST
  a click on its first item X, GET L1 at once: ``event_to_visible`` is POST sent -> L1 received,
  and the trial passes if X left the list (it is seen now). Right after the POST, ``/healthz``
  ``log_offset`` is read (>= the click's offset); ``event_to_trained`` is POST sent -> the first
  ``/healthz`` (polled every 100 ms) whose ``model_offset`` (what the served weights learned up to)
  reaches it. ``event_to_trained`` counts only trials started after the trainer caught up with the
  backlog (the others are reported apart, as ``event_to_trained_behind_backlog_p50_s``).

The trainer's throughput comes from its own log lines (timestamp, offset, examples at each
decision): ``learn_events_per_s`` / ``learn_examples_per_s`` while it works through the backlog
(log offsets per second, impressions included; examples = positives learned), with the server's GET
latency over the same window next to it (``get_while_learning``), and again after it caught up.

Run:  HF_HUB_OFFLINE=1 .venv/bin/python bench/freshness.py [--rate 500 --duration 60]
Prints one JSON object on stdout; progress goes to stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import re
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson

from _load import (
    Connection,
    Response,
    client_loop_name,
    emit,
    fs_type,
    log,
    machine,
    percentile,
    request_json,
    run,
)
from _server import live_server, liverec_train, server_cpu_s
from _world import World

DECISION = re.compile(
    r"^(\S+ \S+) \w+ liverec\.trainer\.follow: offset (\d+), (\d+) examples, (\d+) steps: (.*)$", re.M
)
START = re.compile(r"^(\S+ \S+) \w+ liverec\.trainer\.follow: learning from offset (\d+)", re.M)


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rate", type=float, default=500.0, help="events per second streamed over HTTP")
    p.add_argument("--duration", type=float, default=60.0, help="seconds of load")
    p.add_argument("--items", type=int, default=2_000, help="catalog size")
    p.add_argument("--users", type=int, default=2_000, help="users in the synthetic log")
    p.add_argument("--history", type=int, default=50_000, help="events v1 is trained on")
    p.add_argument("--backlog", type=int, default=30_000, help="events waiting for the trainer at start")
    p.add_argument("--batch", type=int, default=50, help="events per POST")
    p.add_argument("--get-rate", type=float, default=50.0, help="paced GETs per second")
    p.add_argument("--pool", type=int, default=8, help="connections of the GET loop")
    p.add_argument("--trial-every", type=float, default=0.5, help="seconds between freshness trials")
    p.add_argument("--text", action=argparse.BooleanOptionalAction, default=True, help="train with text")
    p.add_argument("--epochs", type=int, default=2, help="offline epochs for v1")
    p.add_argument("--online", default="", help="JSON [online] overrides, e.g. '{\"threads\": 1}'")
    p.add_argument("--gate", default="", help="JSON [gate] overrides, e.g. '{\"publish_s\": 2}'")
    p.add_argument("--keep", action="store_true", help="keep the temp data dir (its path goes to stderr)")
    p.add_argument("--seed", type=int, default=0)
    return p.parse_args()


# -- setup ----------------------------------------------------------------------------------------


def setup(root: Path, args: argparse.Namespace, world: World, env: dict[str, str]) -> dict[str, Any]:
    """Store with catalog + history, v1 trained by `liverec train`, then the backlog appended."""
    from liverec.core.schema import Event, Item
    from liverec.store import open_store

    t0 = time.perf_counter()
    now = time.time()
    with open_store(f"sqlite:///{root / 'events.db'}") as st:
        st.upsert_items([Item(**it) for it in world.items()])
        hist = world.events(args.history, end_ts=now - 2 * 86_400, span_s=5 * 86_400, seed=args.seed + 1)
        for i in range(0, len(hist), 10_000):
            st.append([Event(**e) for e in hist[i : i + 10_000]])
    t1 = time.perf_counter()
    output = liverec_train(root, args.epochs, args.text, env)
    registered = [line for line in output.splitlines() if "registered" in line]
    log(registered[0] if registered else "v1 trained")
    t2 = time.perf_counter()
    with open_store(f"sqlite:///{root / 'events.db'}") as st:
        trained_to = st.last_offset()
        back = world.events(args.backlog, end_ts=now - 600, span_s=86_400, seed=args.seed + 2)
        for i in range(0, len(back), 10_000):
            st.append([Event(**e) for e in back[i : i + 10_000]])
        backlog_end = st.last_offset()
    return {
        "trained_to": trained_to,
        "backlog_end": backlog_end,
        "fill_s": round(t1 - t0, 1),
        "train_s": round(t2 - t1, 1),
        "train": registered[0] if registered else "",
    }


# -- measuring ------------------------------------------------------------------------------------


@dataclass
class Trial:
    sent: float  # perf_counter when the POST went out
    offset: int  # /healthz log_offset right after it: >= the click's offset
    after_catch_up: bool
    visible_s: float | None = None
    visible: bool = False
    trained_s: float | None = None


@dataclass
class State:
    args: argparse.Namespace
    world: World
    backlog_end: int
    t0: float = field(default_factory=time.perf_counter)
    caught_up_at: float | None = None  # perf_counter when model_offset first reached backlog_end
    stream: list[dict[str, Any]] = field(default_factory=list)  # events to send, in order
    gets: list[tuple[float, float, int]] = field(default_factory=list)  # (sent, latency s, status)
    posts: list[tuple[float, float, int]] = field(default_factory=list)
    trials: list[Trial] = field(default_factory=list)
    errors: int = 0
    done: bool = False
    ended: float = 0.0  # epoch s when the load stopped


def click(user: str, item: str) -> dict[str, Any]:
    return {"user_id": user, "item_id": item, "type": "click", "timestamp": time.time()}


async def timed(
    conn: Connection, method: str, path: str, body: bytes | None = None
) -> tuple[float, Response]:
    start = time.perf_counter()
    resp = await conn.request(method, path, body)
    return time.perf_counter() - start, resp


async def paced(rate: float, until: float, step: Any) -> None:
    """Start ``step()`` at ``rate`` per second until ``until`` (open loop: none waits for the last
    to finish); returns once every one started has finished."""
    n, t0, running = 0, time.perf_counter(), set()
    while (due := t0 + n / rate) < until:
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        task = asyncio.ensure_future(step())
        running.add(task)
        task.add_done_callback(running.discard)
        n += 1
    if running:
        await asyncio.gather(*running)


async def measure(url: str, s: State) -> None:
    args = s.args
    rng = random.Random(args.seed)
    until = s.t0 + args.duration
    pool: asyncio.Queue[Connection] = asyncio.Queue()
    for _ in range(args.pool + 4):
        pool.put_nowait(Connection(url))

    async def call(method: str, path: str, body: bytes | None, into: list[tuple[float, float, int]]) -> None:
        conn = await pool.get()
        sent = time.perf_counter()
        try:
            lat, resp = await timed(conn, method, path, body)
            into.append((sent, lat, resp.status))
        except OSError:
            s.errors += 1
        finally:
            pool.put_nowait(conn)

    def get_one() -> Any:
        user = s.world.user_id(min(args.users - 1, int(args.users * rng.random() ** 1.5)))
        return call("GET", f"/v1/users/{user}/recommendations?k=10", None, s.gets)

    sent = [0]

    def post_batch() -> Any:
        now = time.time() - 0.5
        batch = [ev | {"timestamp": now} for ev in s.stream[sent[0] : sent[0] + args.batch]]
        sent[0] += args.batch
        return call("POST", "/v1/events", orjson.dumps({"events": batch}), s.posts)

    async def trial() -> None:
        conn = Connection(url)
        try:
            user = s.world.user_id(rng.randrange(args.users // 4))  # active users: they have history
            l0 = (await conn.request("GET", f"/v1/users/{user}/recommendations?k=10")).json()["items"]
            if not l0:
                return
            x = l0[0]["item_id"]
            body = orjson.dumps(click(user, x))
            t = Trial(time.perf_counter(), 0, s.caught_up_at is not None)
            assert (await conn.request("POST", "/v1/events", body)).status == 200
            l1 = (await conn.request("GET", f"/v1/users/{user}/recommendations?k=10")).json()["items"]
            t.visible_s = time.perf_counter() - t.sent
            t.visible = x not in {i["item_id"] for i in l1}
            t.offset = int((await conn.request("GET", "/healthz")).json()["log_offset"])
            s.trials.append(t)
        except OSError:
            s.errors += 1
        finally:
            await conn.close()

    async def poll_health() -> None:
        conn = Connection(url)
        try:
            while not s.done:
                h = (await conn.request("GET", "/healthz")).json()
                now, trained = time.perf_counter(), int(h["model_offset"])
                if s.caught_up_at is None and trained >= s.backlog_end:
                    s.caught_up_at = now
                    log(f"trainer caught up with the backlog after {now - s.t0:.1f}s")
                for t in s.trials:
                    if t.trained_s is None and trained >= t.offset:
                        t.trained_s = now - t.sent
                await asyncio.sleep(0.1)
        finally:
            await conn.close()

    poller = asyncio.ensure_future(poll_health())
    loops = [
        paced(args.get_rate, until, get_one),
        paced(args.rate / args.batch, until, post_batch),
        paced(1.0 / args.trial_every, until, trial),
    ]
    await asyncio.gather(*loops)
    s.ended = time.time()
    grace = time.perf_counter() + 30.0  # let pending trials reach the served weights (bounded)
    while time.perf_counter() < grace and any(t.trained_s is None for t in s.trials):
        await asyncio.sleep(0.2)
    await asyncio.sleep(1.0)
    s.done = True
    await poller
    while not pool.empty():
        await pool.get_nowait().close()


# -- reporting ------------------------------------------------------------------------------------


def latency(samples: list[tuple[float, float, int]], start: float, end: float) -> dict[str, Any]:
    lat = [x[1] for x in samples if start <= x[0] < end]
    return {
        "requests": len(lat),
        "non_2xx": sum(1 for x in samples if start <= x[0] < end and not 200 <= x[2] < 300),
        "p50_ms": round(percentile(lat, 50) * 1000, 2) if lat else None,
        "p99_ms": round(percentile(lat, 99) * 1000, 2) if lat else None,
        "max_ms": round(max(lat) * 1000, 2) if lat else None,
    }


def learner_lines(text: str) -> tuple[list[tuple[float, int, int, int, str]], tuple[float, int] | None]:
    """Decisions (epoch s, offset, examples, steps, reason) and the start (epoch s, offset)."""

    def ts(stamp: str) -> float:
        return datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S,%f").timestamp()

    decisions = [(ts(m[1]), int(m[2]), int(m[3]), int(m[4]), m[5]) for m in DECISION.finditer(text)]
    starts = [(ts(m[1]), int(m[2])) for m in START.finditer(text)]
    return decisions, starts[0] if starts else None


def throughput(
    decisions: list[tuple[float, int, int, int, str]],
    start: tuple[float, int] | None,
    backlog_end: int,
    ended: float,
) -> dict[str, Any]:
    """Offsets and examples per second from the trainer's start to its first decision past the
    backlog (else its last decision while the load ran, ``ended``)."""
    decisions = [d for d in decisions if d[0] <= ended]
    if start is None or not decisions:
        return {"learn_events_per_s": None, "learn_examples_per_s": None, "backlog_drained": False}
    past = [d for d in decisions if d[1] >= backlog_end]
    end = past[0] if past else decisions[-1]
    secs = max(end[0] - start[0], 1e-9)
    return {
        "learn_events_per_s": round((end[1] - start[1]) / secs, 1),
        "learn_examples_per_s": round(end[2] / secs, 1),
        "learn_steps_per_s": round(end[3] / secs, 2),
        "backlog_drained": bool(past),
        "learn_window_s": round(secs, 2),
        "learned_events": end[1] - start[1],
        "learned_examples": end[2],
    }


def main() -> None:
    args = parse_args()
    world = World(
        n_items=args.items, n_users=args.users, n_clusters=max(10, args.items // 100), seed=args.seed
    )
    root = Path(tempfile.mkdtemp(prefix="liverec-fresh-"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("LIVEREC_")}
    env |= {"LIVEREC_DATA_DIR": str(root), "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    server_env = {"LIVEREC_ONLINE": args.online} if args.online else {}
    server_env |= {"LIVEREC_GATE": args.gate} if args.gate else {}
    result: dict[str, Any] = {"bench": "freshness", "machine": machine(), "client_loop": client_loop_name()}
    result["params"] = {k: v for k, v in vars(args).items() if k not in ("keep",)}
    result["data_fs"] = fs_type(root)
    try:
        log(f"setup in {root}: {args.items} items, {args.history} history + {args.backlog} backlog events")
        info = setup(root, args, world, env)
        result["setup"] = info
        log(f"setup done: {info}")
        with live_server(root, env=server_env, args=["--learn"], startup_timeout_s=300) as url:
            s = State(args, world, info["backlog_end"])
            s.stream = world.events(int(args.rate * args.duration) + args.batch, seed=args.seed + 3)
            s.t0 = time.perf_counter()
            cpu0 = server_cpu_s(url)
            run(measure(url, s))
            cpu1 = server_cpu_s(url)
            health = run(request_json(url, "GET", "/healthz"))
        text = (root / "server.log").read_text(errors="replace")
        decisions, start = learner_lines(text)
        learn = throughput(decisions, start, info["backlog_end"], s.ended)
        t_start = s.t0
        caught = s.caught_up_at or (s.t0 + args.duration)
        counted = [t for t in s.trials if t.after_catch_up]
        vis = [t.visible_s for t in s.trials if t.visible_s is not None]  # the trainer plays no part
        trained = [t.trained_s for t in counted if t.trained_s is not None]
        backlogged = [t.trained_s for t in s.trials if not t.after_catch_up and t.trained_s is not None]
        result |= {
            **learn,
            "caught_up_after_s": round(s.caught_up_at - s.t0, 1) if s.caught_up_at else None,
            "event_to_visible_p50_ms": round(percentile(vis, 50) * 1000, 2) if vis else None,
            "event_to_visible_p99_ms": round(percentile(vis, 99) * 1000, 2) if vis else None,
            "event_to_trained_p50_s": round(percentile(trained, 50), 2) if trained else None,
            "event_to_trained_p99_s": round(percentile(trained, 99), 2) if trained else None,
            "event_to_trained_behind_backlog_p50_s": (
                round(percentile(backlogged, 50), 2) if backlogged else None
            ),
            "get_p50_ms": latency(s.gets, t_start, t_start + args.duration)["p50_ms"],
            "get_p99_ms": latency(s.gets, t_start, t_start + args.duration)["p99_ms"],
            "get_while_learning": latency(s.gets, t_start, caught),
            "get_after_catch_up": latency(s.gets, caught, t_start + args.duration),
            "post_events": latency(s.posts, t_start, t_start + args.duration),
            "trials": {
                "total": len(s.trials),
                "after_catch_up": len(counted),
                "visible_failures": sum(1 for t in s.trials if not t.visible),
                "never_trained": sum(1 for t in counted if t.trained_s is None),
            },
            "decisions": {
                "total": len(decisions),
                "published": sum(1 for d in decisions if not d[4].startswith(("rejected", "live"))),
                "rejected": sum(1 for d in decisions if d[4].startswith("rejected")),
            },
            "transport_errors": s.errors,
            "server_cpu_s": round(cpu1 - cpu0, 1) if cpu0 is not None and cpu1 is not None else None,
            "final_health": health,
        }
    finally:
        if args.keep:
            log(f"kept {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)
    emit(result)


if __name__ == "__main__":
    main()
