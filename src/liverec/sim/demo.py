"""`run_demo`: start a real ``liverec serve``, let simulated users use it over HTTP, compare to random.

Every step a simulated user gets a list, the `World` decides what they do with it, and the
feedback goes back to the API before that user's next request, so the service learns live. A fixed
share of users (the control cohort) is served uniformly random unseen items chosen client-side, in
the same world at the same time; their impressions and feedback are posted too, so the log holds
both cohorts and their click-through rates compare like for like.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from liverec.sim.world import Response, World

DEFAULT_DATA_DIR = Path("liverec-data/demo")
MARKER = ".liverec-demo"  # only a directory holding this file is wiped at start
SERVER_CMD = "from liverec.cli import app; app()"
LIVEREC, RANDOM = 0, 1  # cohorts


class DemoError(RuntimeError):
    """The demo could not run (server did not start, died, or the data dir is not ours to wipe)."""


@dataclass(frozen=True)
class WindowStats:
    """Click-through of both cohorts in one time window of the run."""

    start_s: float
    end_s: float
    liverec_impressions: int = 0
    liverec_clicks: int = 0
    random_impressions: int = 0
    random_clicks: int = 0

    @property
    def liverec_ctr(self) -> float:
        return _ratio(self.liverec_clicks, self.liverec_impressions)

    @property
    def random_ctr(self) -> float:
        return _ratio(self.random_clicks, self.random_impressions)

    @property
    def overall_ctr(self) -> float:
        return _ratio(
            self.liverec_clicks + self.random_clicks, self.liverec_impressions + self.random_impressions
        )

    @property
    def lift(self) -> float:
        """Relative CTR gain of liverec over random (0.5 = +50%); nan without random clicks."""
        return self.liverec_ctr / self.random_ctr - 1.0 if self.random_ctr > 0 else float("nan")


def _ratio(a: float, b: float) -> float:
    return a / b if b else 0.0


def combine(windows: Sequence[WindowStats]) -> WindowStats:
    """One window spanning ``windows`` (e.g. the second half of a run)."""
    if not windows:
        return WindowStats(0.0, 0.0)
    return WindowStats(
        windows[0].start_s,
        windows[-1].end_s,
        sum(w.liverec_impressions for w in windows),
        sum(w.liverec_clicks for w in windows),
        sum(w.random_impressions for w in windows),
        sum(w.random_clicks for w in windows),
    )


@dataclass(frozen=True)
class DemoSummary:
    duration_s: float  # simulated traffic, measured
    users: int
    control_users: int
    items: int  # at the end (arrivals included)
    steps: int  # slates served, both cohorts
    total_events: int  # in the log at the end, server-side impressions included
    events_per_s: float
    windows: list[WindowStats]
    latency_p50_ms: float  # GET recommendations, measured by the client
    latency_p99_ms: float
    oracle_ctr: float  # expected CTR of the best possible slates for the liverec cohort's visits
    errors: int  # failed HTTP calls
    store_path: Path
    plot_path: Path | None
    url: str  # where the server listened
    server_pid: int
    server_exit_code: int | None
    log_path: Path

    @property
    def total(self) -> WindowStats:
        return combine(self.windows)


@dataclass(frozen=True)
class DemoStatus:
    """Live numbers for a progress display."""

    elapsed_s: float
    duration_s: float
    steps: int
    events_posted: int
    liverec_ctr: float
    random_ctr: float
    errors: int


@dataclass
class _Tally:
    """What the workers record, under one lock."""

    steps: list[tuple[float, int, int, int]] = field(default_factory=list)  # (t, cohort, shown, clicks)
    latencies: list[float] = field(default_factory=list)
    oracle_clicks: float = 0.0  # expected clicks of the oracle's lists for the liverec visits
    shown: np.ndarray = field(default_factory=lambda: np.zeros((2, 2), dtype=np.int64))
    events_posted: int = 0
    errors: int = 0


# -- server process -------------------------------------------------------------------------------
def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def fresh_data_dir(path: Path) -> None:
    """Empty ``path`` for a new run; refuse to wipe a non-empty directory the demo did not create."""
    if path.exists():
        if not (path / MARKER).exists() and any(path.iterdir()):
            raise DemoError(f"{path} is not empty and was not made by `liverec demo`; not wiping it")
        shutil.rmtree(path)
    path.mkdir(parents=True)
    (path / MARKER).write_text("created by `liverec demo`; wiped at the start of every run\n")


def _tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def wait_healthy(proc: subprocess.Popen[bytes], url: str, log: Path, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise DemoError(f"liverec serve exited with {proc.returncode}:\n{_tail(log)}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{url}/healthz", timeout=2.0).status_code == 200:
                return
        time.sleep(0.1)
    raise DemoError(f"liverec serve did not answer /healthz within {timeout_s:.0f}s:\n{_tail(log)}")


def stop_server(proc: subprocess.Popen[bytes]) -> int | None:
    """SIGTERM (uvicorn shuts down cleanly and closes the store), then SIGKILL if it hangs."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return proc.returncode


# -- one simulated visit --------------------------------------------------------------------------
def feedback_events(resp: Response, context: dict[str, Any], now: float) -> list[dict[str, Any]]:
    """The world's reaction as API events, joined to the served list by request_id and position."""
    return [
        {
            "event_id": uuid.uuid4().hex,
            "user_id": resp.user_id,
            "item_id": ev.item_id,
            "type": ev.type,
            **({"value": ev.value} if ev.value is not None else {}),
            "timestamp": now,
            "context": {**context, "position": ev.position},
        }
        for ev in resp.events
    ]


class _Worker:
    """One simulated client: its own users, connection and random stream."""

    def __init__(self, demo: _Demo, index: int) -> None:
        self.demo = demo
        self.users = demo.user_ids[index :: demo.workers]
        self.rng = np.random.default_rng([demo.seed, 1, index])
        self.client = httpx.Client(base_url=demo.url, timeout=30.0)

    def run(self) -> None:
        d = self.demo
        try:
            while not d.stop.is_set() and time.monotonic() < d.deadline and self.users:
                self.visit(self.users[int(self.rng.integers(len(self.users)))])
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
            if d.proc.poll() is not None:
                raise DemoError(f"liverec serve died:\n{_tail(d.log)}") from None
            time.sleep(0.05)
            return None

    def _random_slate(self, seen: set[str]) -> tuple[list[str], float]:
        ids = self.demo.item_ids
        n_unseen = len(ids) - len(seen)
        if n_unseen <= 0:
            return [], 1.0
        k = min(self.demo.k, n_unseen)
        picked: dict[str, None] = {}
        while len(picked) < k:
            for j in self.rng.integers(len(ids), size=k - len(picked)).tolist():
                if ids[j] not in seen:
                    picked[ids[j]] = None
        return list(picked), 1.0 / n_unseen  # P(an item at a given position), uniform

    def visit(self, user_id: str) -> None:
        d = self.demo
        cohort = RANDOM if user_id in d.control else LIVEREC
        seen = d.seen[user_id]
        t_start = time.monotonic()
        events: list[dict[str, Any]] = []
        if cohort == RANDOM:
            slate, propensity = self._random_slate(seen)
            request_id = uuid.uuid4().hex
            context: dict[str, Any] = {
                "request_id": request_id,
                "policy": "random",
                "surface": "demo-control",
            }
            now = time.time()
            events += [
                {
                    "event_id": f"imp:{request_id}:{pos}",
                    "user_id": user_id,
                    "item_id": item_id,
                    "type": "impression",
                    "timestamp": now,
                    "context": {**context, "position": pos, "propensity": propensity},
                }
                for pos, item_id in enumerate(slate)
            ]
        else:
            t0 = time.perf_counter()
            r = self._call("GET", f"/v1/users/{user_id}/recommendations", params={"k": d.k})
            latency = time.perf_counter() - t0
            if r is None:
                return
            body = r.json()
            slate = [it["item_id"] for it in body["items"]]
            context = {
                "request_id": body["request_id"],
                "policy": body["policy"],
                "model": body["model"],
                "surface": "demo",
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
        events += feedback_events(resp, context, time.time())
        seen.update(ev.item_id for ev in resp.events)  # what the server's exclude_seen also drops
        if events and self._call("POST", "/v1/events", json={"events": events}) is None:
            return
        with d.lock:
            d.tally.steps.append((t_start - d.t0, cohort, len(slate), resp.clicks))
            d.tally.shown[cohort] += (len(slate), resp.clicks)
            d.tally.events_posted += len(events)
            if cohort == LIVEREC and d.track_oracle:
                d.tally.oracle_clicks += best


@dataclass
class _Demo:
    """Shared state of one run."""

    world: World
    url: str
    proc: subprocess.Popen[bytes]
    log: Path
    seed: int
    k: int
    workers: int
    control: frozenset[str]
    track_oracle: bool
    user_ids: list[str] = field(default_factory=list)
    item_ids: list[str] = field(default_factory=list)
    seen: dict[str, set[str]] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)
    world_lock: threading.Lock = field(default_factory=threading.Lock)
    stop: threading.Event = field(default_factory=threading.Event)
    tally: _Tally = field(default_factory=_Tally)
    t0: float = 0.0
    deadline: float = 0.0
    failure: BaseException | None = None


# -- the run --------------------------------------------------------------------------------------
def run_demo(
    duration_s: float = 60.0,
    port: int = 0,
    users: int = 1000,
    items: int = 1000,
    seed: int = 0,
    data_dir: Path | str = DEFAULT_DATA_DIR,
    workers: int = 4,
    k: int = 10,
    control_share: float = 1 / 3,
    windows: int = 6,
    drift: float = 0.0,
    arrival_rate: float = 0.0,
    track_oracle: bool = True,
    plot: bool = True,
    startup_timeout_s: float = 120.0,
    on_status: Callable[[DemoStatus], None] | None = None,
) -> DemoSummary:
    """Run the demo end to end; the server subprocess is always stopped before this returns."""
    if duration_s <= 0 or users < 2 or items < k or workers < 1 or windows < 1:
        raise ValueError("need duration_s > 0, users >= 2, items >= k, workers >= 1, windows >= 1")
    if not 0 < control_share < 1:
        raise ValueError("control_share must be in (0, 1)")
    data_dir = Path(data_dir).absolute()
    fresh_data_dir(data_dir)
    store_path = data_dir / "events.db"
    log_path = data_dir / "server.log"
    world = World(n_items=items, n_users=users, seed=seed, drift=drift, arrival_rate=arrival_rate)
    user_ids = [u.user_id for u in world.users]
    pick = np.random.default_rng([seed, 2]).permutation(users)[: max(1, round(users * control_share))]
    control = frozenset(user_ids[i] for i in pick.tolist())

    port = port or free_port()
    url = f"http://127.0.0.1:{port}"
    cmd = [sys.executable, "-c", SERVER_CMD, "serve", "--store", f"sqlite:///{store_path}"]
    cmd += ["--host", "127.0.0.1", "--port", str(port)]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "LIVEREC_DATA_DIR": str(data_dir)}
    with log_path.open("wb") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
    demo = _Demo(world, url, proc, log_path, seed, k, workers, control, track_oracle)
    demo.user_ids = user_ids
    demo.item_ids = [it.item_id for it in world.items]
    demo.seen = {u: set() for u in user_ids}
    try:
        wait_healthy(proc, url, log_path, startup_timeout_s)
        catalog = [it.payload() for it in world.items]
        for i in range(0, len(catalog), 1000):
            httpx.post(
                f"{url}/v1/items", json={"items": catalog[i : i + 1000]}, timeout=60
            ).raise_for_status()
        elapsed, total_events = _simulate(demo, duration_s, on_status)
        server_exit = stop_server(proc)
    finally:
        stop_server(proc)

    tally = demo.tally
    lat = np.asarray(tally.latencies) * 1000.0
    shown = max(int(tally.shown[LIVEREC, 0]), 1)
    windows_ = _windows(tally.steps, elapsed, windows)
    plot_path = _plot(windows_, data_dir / "ctr.png") if plot else None
    return DemoSummary(
        duration_s=elapsed,
        users=users,
        control_users=len(control),
        items=len(world.items),
        steps=len(tally.steps),
        total_events=total_events,
        events_per_s=total_events / elapsed if elapsed > 0 else 0.0,
        windows=windows_,
        latency_p50_ms=float(np.percentile(lat, 50)) if lat.size else float("nan"),
        latency_p99_ms=float(np.percentile(lat, 99)) if lat.size else float("nan"),
        oracle_ctr=tally.oracle_clicks / shown if track_oracle else float("nan"),
        errors=tally.errors,
        store_path=store_path,
        plot_path=plot_path,
        url=url,
        server_pid=proc.pid,
        server_exit_code=server_exit,
        log_path=log_path,
    )


def _simulate(
    demo: _Demo, duration_s: float, on_status: Callable[[DemoStatus], None] | None
) -> tuple[float, int]:
    """Run the workers until the deadline; returns (elapsed seconds, events in the log)."""
    demo.t0 = time.monotonic()
    demo.deadline = demo.t0 + duration_s
    threads = [
        threading.Thread(target=_Worker(demo, i).run, name=f"demo-user-{i}", daemon=True)
        for i in range(demo.workers)
    ]
    for t in threads:
        t.start()
    try:
        while any(t.is_alive() for t in threads):
            if on_status:
                on_status(_status(demo, duration_s))
            time.sleep(0.25)
    finally:
        demo.stop.set()
        for t in threads:
            t.join()
    elapsed = time.monotonic() - demo.t0
    if demo.failure is not None:
        raise DemoError(f"simulated user failed: {demo.failure}") from demo.failure
    if on_status:
        on_status(_status(demo, duration_s))
    health = httpx.get(f"{demo.url}/healthz", timeout=30).json()
    return elapsed, int(health["events"])


def _status(demo: _Demo, duration_s: float) -> DemoStatus:
    with demo.lock:
        (li, lc), (ri, rc) = demo.tally.shown.tolist()
        return DemoStatus(
            elapsed_s=min(time.monotonic() - demo.t0, duration_s),
            duration_s=duration_s,
            steps=len(demo.tally.steps),
            events_posted=demo.tally.events_posted,
            liverec_ctr=_ratio(lc, li),
            random_ctr=_ratio(rc, ri),
            errors=demo.tally.errors,
        )


def _windows(steps: list[tuple[float, int, int, int]], elapsed: float, n: int) -> list[WindowStats]:
    """Per-window impressions and clicks of both cohorts, by the time each visit started."""
    width = max(elapsed, 1e-9) / n
    acc = np.zeros((n, 2, 2), dtype=np.int64)
    for t, cohort, shown, clicks in steps:
        acc[min(int(t / width), n - 1), cohort] += (shown, clicks)
    return [
        WindowStats(i * width, (i + 1) * width, *(int(x) for x in acc[i].reshape(-1).tolist()))
        for i in range(n)
    ]


def _plot(windows: list[WindowStats], path: Path) -> Path:
    """CTR per window, liverec vs random, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    mid = [(w.start_s + w.end_s) / 2 for w in windows]
    fig, ax = plt.subplots(figsize=(7, 4), dpi=110)
    ax.plot(mid, [w.liverec_ctr for w in windows], "o-", label="liverec")
    ax.plot(mid, [w.random_ctr for w in windows], "s--", label="random (control)")
    ax.set_xlabel("seconds since start")
    ax.set_ylabel("click-through rate (clicks / impressions)")
    ax.set_ylim(bottom=0)
    ax.set_title(f"liverec vs random on the same simulated users (lift {combine(windows).lift:+.0%})")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path
