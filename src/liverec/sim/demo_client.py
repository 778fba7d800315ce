"""The demo's simulated clients: each owns some users, asks the server for their lists (or draws a
random list for the control cohort), lets the `World` respond, and posts the feedback back."""

from __future__ import annotations

import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import httpx
import numpy as np

from liverec.sim.demo_procs import DemoError, Server, tail
from liverec.sim.demo_stats import LIVEREC, RANDOM, Step, Tally
from liverec.sim.feedback import feedback_dicts, impression_dicts, uniform_slate
from liverec.sim.search import SearchWorld
from liverec.sim.world import World


class Client:
    """One simulated client: its own users, connection and random stream."""

    def __init__(self, demo: DemoState, index: int) -> None:
        self.demo = demo
        self.users = demo.user_ids[index :: demo.workers]
        self.rng = np.random.default_rng([demo.seed, 1, index])
        self.generation = -1
        self.client = httpx.Client(timeout=30.0)

    def run(self) -> None:
        d = self.demo
        try:
            while not d.stop.is_set() and time.monotonic() < d.deadline and self.users:
                with d.lock:  # check and count under one lock, so a restart waits for this visit
                    go = d.serving.is_set()
                    if go:
                        d.inflight += 1
                if not go:
                    d.serving.wait(0.1)
                    continue
                try:
                    if self.generation != d.generation:  # a new server: fresh connections
                        self.client.close()
                        self.client = httpx.Client(base_url=d.server.url, timeout=30.0)
                        self.generation = d.generation
                    self.visit(self.users[int(self.rng.integers(len(self.users)))])
                finally:
                    with d.idle:
                        d.inflight -= 1
                        d.idle.notify_all()
        except Exception as exc:  # surfaced by run_demo after the join
            d.failure = d.failure or exc
            d.stop.set()
        finally:
            self.client.close()

    def _call(self, method: str, path: str, **kw: Any) -> httpx.Response | None:
        d = self.demo
        try:
            r = self.client.request(method, path, **kw)
            r.raise_for_status()
            return r
        except httpx.HTTPError:
            with d.lock:
                d.tally.errors += 1
            if d.server.died():
                raise DemoError(f"liverec serve died:\n{tail(d.server.log)}") from None
            time.sleep(0.05)
            return None

    def visit(self, user_id: str) -> None:
        d = self.demo
        cohort = RANDOM if user_id in d.control else LIVEREC
        if cohort == LIVEREC and d.search is not None and self.rng.random() < d.search_share:
            self.search(user_id)
            return
        seen = d.seen[user_id]
        t_start = time.monotonic()
        events: list[dict[str, Any]] = []
        model = ""
        if cohort == RANDOM:
            with d.lock:
                item_ids = list(d.item_ids)
            slate, propensity = uniform_slate(item_ids, seen, d.k, self.rng)
            context: dict[str, Any] = {
                "request_id": uuid.uuid4().hex,
                "policy": "random",
                "surface": "demo-control",
                "cohort": "control",  # the dashboard's Quality view compares CTR by cohort
            }
            events += impression_dicts(user_id, slate, propensity, context, time.time())
        else:
            t0 = time.perf_counter()
            r = self._call("GET", f"/v1/users/{user_id}/recommendations", params={"k": d.k})
            latency = time.perf_counter() - t0
            if r is None:
                return
            body = r.json()
            slate = [it["item_id"] for it in body["items"]]
            model = str(body["model"])
            context = {
                "request_id": body["request_id"],
                "policy": body["policy"],
                "model": model,
                "surface": "demo",
                "cohort": "liverec",
            }
            with d.lock:
                d.tally.latencies.append(latency)
        best = 0.0
        with d.world_lock:
            if cohort == LIVEREC and d.track_oracle:  # what the best possible list would have earned
                best = d.world.expected_clicks(user_id, d.world.oracle_slate(user_id, d.k, seen))
            resp = d.world.respond(user_id, slate)
            arrived = d.world.tick()
        if arrived:
            self._call("POST", "/v1/items", json={"items": [it.payload() for it in arrived]})
            with d.lock:
                d.item_ids.extend(it.item_id for it in arrived)
        ids = [uuid.uuid4().hex for _ in resp.events]
        events += feedback_dicts(resp, context, time.time(), ids)
        seen.update(ev.item_id for ev in resp.events)  # what the server's exclude_seen also drops
        if events and self._call("POST", "/v1/events", json={"events": events}) is None:
            return
        with d.lock:
            d.tally.steps.append(Step(t_start - d.t0, cohort, len(slate), resp.clicks, model))
            d.tally.shown[cohort] += (len(slate), resp.clicks)
            d.tally.events_posted += len(events)
            if cohort == LIVEREC and d.track_oracle:
                d.tally.oracle_clicks += best
            d.last_model = model or d.last_model

    def search(self, user_id: str) -> None:
        """A search visit: a query about one of the user's interests, results from the server, clicks
        by the world's truth for that query under position bias, posted naming the list."""
        d = self.demo
        sw = d.search
        assert sw is not None
        user = d.user_index[user_id]
        query = sw.query(user, self.rng)
        t0 = time.perf_counter()
        r = self._call("GET", "/v1/search", params={"q": query.text, "user_id": user_id, "k": d.k})
        latency = time.perf_counter() - t0
        if r is None:
            return
        body = r.json()
        shown = [(p, d.item_row.get(it["item_id"])) for p, it in enumerate(body["items"])]
        shown = [(p, row) for p, row in shown if row is not None and row < sw.n]  # arrivals: no truth
        rows = np.asarray([row for _, row in shown], dtype=np.int64)
        with d.world_lock:
            grades = sw.relevance(user, query.genre)
        clicked = sw.clicks(rows, grades, self.rng.random(max(len(rows), 1)), self.rng.random(sw.n))
        now = time.time()
        events = [
            {
                "event_id": uuid.uuid4().hex,
                "user_id": user_id,
                "item_id": body["items"][p]["item_id"],
                "type": "click",
                "timestamp": now,
                "context": {
                    "request_id": body["request_id"],
                    "position": p,
                    "surface": "search",
                    "cohort": "liverec",
                },
            }
            for (p, _), c in zip(shown, clicked.tolist(), strict=True)
            if c
        ]
        if events and self._call("POST", "/v1/events", json={"events": events}) is None:
            return
        with d.lock:
            d.tally.searches.append((time.monotonic() - d.t0, len(rows), len(events)))
            d.tally.search_latencies.append(latency)
            d.tally.events_posted += len(events)


@dataclass
class DemoState:
    """Shared state of one run."""

    world: World
    server: Server
    seed: int
    k: int
    workers: int
    control: frozenset[str]
    track_oracle: bool
    search: SearchWorld | None = None  # search visits' truth (queries, relevance, clicks)
    search_share: float = 0.0  # share of the liverec cohort's visits that are searches
    user_index: dict[str, int] = field(default_factory=dict)  # user id -> world.users index
    item_row: dict[str, int] = field(default_factory=dict)  # item id -> world.items index
    user_ids: list[str] = field(default_factory=list)
    item_ids: list[str] = field(default_factory=list)
    seen: dict[str, set[str]] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)
    world_lock: threading.Lock = field(default_factory=threading.Lock)
    stop: threading.Event = field(default_factory=threading.Event)
    serving: threading.Event = field(default_factory=threading.Event)  # a server takes traffic
    tally: Tally = field(default_factory=Tally)
    inflight: int = 0
    generation: int = 0  # bumped when the server is replaced
    last_model: str = ""
    t0: float = 0.0
    deadline: float = 0.0
    failure: BaseException | None = None

    def __post_init__(self) -> None:
        self.idle = threading.Condition(self.lock)

    def pause(self) -> None:
        """Stop sending traffic and wait for visits in flight to finish."""
        with self.idle:
            self.serving.clear()
            self.idle.wait_for(lambda: self.inflight == 0, timeout=60)

    def resume(self, server: Server) -> None:
        with self.lock:
            self.server = server
            self.generation += 1
            self.serving.set()
