"""`run_demo`: the whole product against simulated users over HTTP, compared to a random control.

Phases (all within ``duration_s`` of traffic):

1. warm-up: a real ``liverec serve`` on popularity + co-occurrence (``warmup_policy``) takes traffic;
2. training: ``liverec train`` runs in a subprocess on the log so far (a tiny Transformer with the
   items' text); it registers and promotes v000001, which the warm-up server already hot-reloads;
3. restart: the server is replaced by ``liverec serve --learn`` with an exploration ``policy``: the
   online trainer runs as its own process, publishes guarded updates, and the server hot-reloads
   every one (the summary shows the model version changing per window);
4. live learning until the end.

Every step a simulated user gets a list, the `World` decides what they do with it (the simulator's
response code), and the feedback goes back to the API before that user's next request. A fixed share
of users (the control cohort) is served uniformly random unseen items chosen client-side, in the
same world at the same time; their impressions and feedback are posted too, so the log holds both
cohorts and their click-through rates compare like for like. Every subprocess is stopped before
`run_demo` returns, however it ends.
"""

from __future__ import annotations

import dataclasses
import json
import os
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from liverec.sim.demo_client import Client, DemoState
from liverec.sim.demo_procs import (
    DemoError,
    Server,
    alive,
    cli,
    end_pid,
    free_port,
    fresh_data_dir,
    stop_process,
    tail,
    write_configs,
)
from liverec.sim.demo_stats import (
    LIVEREC,
    Phase,
    WindowStats,
    _ratio,
    combine,
    plot_windows,
    windows_of,
)
from liverec.sim.search import SearchWorld
from liverec.sim.world import World

__all__ = [
    "DEFAULT_DATA_DIR",
    "DemoError",
    "DemoStatus",
    "DemoSummary",
    "combine",
    "fresh_data_dir",
    "run_demo",
]

DEFAULT_DATA_DIR = Path("liverec-data/demo")
MIN_LIVE_S = 5.0  # a restart with the learner needs at least this much of the run left


@dataclass(frozen=True)
class DemoSummary:
    duration_s: float  # simulated traffic, measured (the restart pause included)
    users: int
    control_users: int
    items: int  # at the end (arrivals included)
    steps: int  # slates served, both cohorts
    total_events: int  # in the log at the end, server-side impressions included
    events_per_s: float
    windows: list[WindowStats]
    latency_p50_ms: float  # GET recommendations, measured by the client
    latency_p99_ms: float
    searches: int  # search visits (a share of the liverec cohort's visits)
    search_ctr_first_half: float  # clicks per result shown, first and second half of the searches:
    search_ctr_second_half: float  # the ranker learns from the first half's clicks
    search_latency_p50_ms: float  # GET /v1/search, measured by the client
    search_latency_p99_ms: float
    oracle_ctr: float  # expected CTR of the best possible slates for the liverec cohort's visits
    errors: int  # failed HTTP calls
    phases: list[Phase]
    initial_model: str  # what `liverec train` registered ("" if it did not finish in time)
    initial_val_ndcg: float
    online_versions: int  # versions the online learner published
    live_version: str  # the registry's live version at the end
    setup_s: float  # encoding the catalog's text before the traffic started
    store_path: Path
    plot_path: Path | None
    data_dir: Path
    server_urls: list[str]
    server_pids: list[int]
    server_exit_codes: list[int | None]
    learner_pid: int | None
    train_pid: int | None
    train_exit_code: int | None

    @property
    def total(self) -> WindowStats:
        return combine(self.windows)

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        for w, stats in zip(out["windows"], self.windows, strict=True):
            w.update(liverec_ctr=stats.liverec_ctr, random_ctr=stats.random_ctr, lift=stats.lift)
        return json.loads(json.dumps(out, default=str))


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
    phase: str = ""
    model: str = ""


def run_demo(
    duration_s: float = 60.0,
    port: int = 0,
    users: int = 300,
    items: int = 500,
    seed: int = 0,
    data_dir: Path | str = DEFAULT_DATA_DIR,
    workers: int = 4,
    k: int = 10,
    control_share: float = 1 / 3,
    windows: int = 6,
    drift: float = 0.0,
    arrival_rate: float = 0.0,
    policy: str = "thompson",
    warmup_policy: str = "epsilon",
    warmup_share: float = 0.2,
    train_epochs: int = 8,
    publish_s: float = 3.0,
    track_oracle: bool = True,
    search_share: float = 0.25,
    plot: bool = True,
    startup_timeout_s: float = 120.0,
    on_status: Callable[[DemoStatus], None] | None = None,
    on_ready: Callable[[str], None] | None = None,
) -> DemoSummary:
    """Run the demo end to end; every subprocess is stopped before this returns. ``on_ready`` gets
    the live dashboard's URL once the first server answers: every server of the run takes the
    same port, so the page stays up (through the restart) for the demo's duration."""
    if duration_s <= 0 or users < 2 or items < k or workers < 1 or windows < 1:
        raise ValueError("need duration_s > 0, users >= 2, items >= k, workers >= 1, windows >= 1")
    if not 0 < control_share < 1 or not 0 < warmup_share < 1:
        raise ValueError("control_share and warmup_share must be in (0, 1)")
    if not 0 <= search_share < 1:
        raise ValueError("search_share must be in [0, 1)")
    data_dir = Path(data_dir).absolute()
    fresh_data_dir(data_dir)
    store_path = data_dir / "events.db"
    store_url = f"sqlite:///{store_path}"
    warm_cfg, live_cfg = write_configs(data_dir, policy, warmup_policy, publish_s, max(5.0, duration_s / 4))
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "LIVEREC_DATA_DIR": str(data_dir),
        "TOKENIZERS_PARALLELISM": "false",
    }
    world = World(n_items=items, n_users=users, seed=seed, drift=drift, arrival_rate=arrival_rate)
    user_ids = [u.user_id for u in world.users]
    pick = np.random.default_rng([seed, 2]).permutation(users)[: max(1, round(users * control_share))]
    control = frozenset(user_ids[i] for i in pick.tolist())

    port = port or free_port()  # one port for every server of the run: one dashboard URL
    first = Server(warm_cfg, store_url, port, data_dir / "server-warmup.log", env)
    demo = DemoState(world, first, seed, k, workers, control, track_oracle)
    if search_share > 0:
        demo.search, demo.search_share = SearchWorld(world, seed=seed), search_share
    demo.user_index = {u: i for i, u in enumerate(user_ids)}
    demo.item_row = {it.item_id: r for r, it in enumerate(world.items)}
    demo.user_ids = user_ids
    demo.item_ids = [it.item_id for it in world.items]
    demo.seen = {u: set() for u in user_ids}
    servers: list[Server] = [first]
    train: dict[str, Any] = {"proc": None}
    setup_s = encode_catalog(store_url, world)
    try:
        first.start(startup_timeout_s)
        if on_ready:
            on_ready(f"{first.url}/dashboard")
        catalog = [it.payload() for it in world.items]
        for i in range(0, len(catalog), 1000):
            httpx.post(
                f"{first.url}/v1/items", json={"items": catalog[i : i + 1000]}, timeout=60
            ).raise_for_status()
        plan = _Plan(
            duration_s * warmup_share,
            train_epochs,
            warmup_policy,
            policy,
            live_cfg,
            store_url,
            env,
            data_dir,
            port,
            startup_timeout_s,
        )
        elapsed, total_events, phases = _traffic(demo, duration_s, plan, servers, train, on_status)
    finally:
        demo.stop.set()
        demo.serving.set()
        if train["proc"] is not None:
            stop_process(train["proc"])
        for s in servers:
            s.stop()
    for s in servers:
        for pid in [s.pid, *s.helpers]:
            if alive(pid):
                end_pid(pid)
    summary = _summary(
        demo, servers, train, phases, elapsed, total_events, windows, data_dir, store_path, plot
    )
    summary = dataclasses.replace(summary, setup_s=setup_s)
    (data_dir / "summary.json").write_text(json.dumps(summary.to_json(), indent=1))
    return summary


def encode_catalog(store_url: str, world: World) -> float:
    """Encode the catalog's text into the store's embedding cache before any traffic (as an item
    pipeline would at upload), so that `liverec train` in the middle of the run only trains.
    Returns the seconds it took."""
    from liverec.core.schema import Item
    from liverec.model.text import TextEncoder
    from liverec.store import open_store

    t0 = time.perf_counter()
    with open_store(store_url) as store:
        TextEncoder().encode_cached([Item(**it.payload()).content() for it in world.items], store)
    return time.perf_counter() - t0


@dataclass
class _Plan:
    train_at_s: float
    train_epochs: int
    warmup_policy: str
    policy: str
    live_config: Path
    store_url: str
    env: dict[str, str]
    data_dir: Path
    port: int
    startup_timeout_s: float


def _traffic(
    demo: DemoState,
    duration_s: float,
    plan: _Plan,
    servers: list[Server],
    train: dict[str, Any],
    on_status: Callable[[DemoStatus], None] | None,
) -> tuple[float, int, list[Phase]]:
    """Run the clients until the deadline, moving through the phases; returns (elapsed seconds,
    events in the log, phases)."""
    demo.t0 = time.monotonic()
    demo.deadline = demo.t0 + duration_s
    phases: list[Phase] = []
    state, since = "warm-up", 0.0
    demo.resume(servers[0])
    threads = [
        threading.Thread(target=Client(demo, i).run, name=f"demo-user-{i}", daemon=True)
        for i in range(demo.workers)
    ]
    for t in threads:
        t.start()
    try:
        while any(t.is_alive() for t in threads):
            now = time.monotonic() - demo.t0
            if state == "warm-up" and now >= plan.train_at_s:
                phases.append(Phase("warm-up", since, now, f"popularity-cooc, {plan.warmup_policy} policy"))
                state, since = "training", now
                args = ["train", "--config", str(plan.live_config), "--store", plan.store_url]
                args += ["--epochs", str(plan.train_epochs), "--promote", "always"]
                train["proc"] = cli(args, plan.data_dir / "train.log", plan.env)
            elif state == "training" and train["proc"].poll() is not None:
                if train["proc"].returncode != 0:
                    raise DemoError(f"liverec train failed:\n{tail(plan.data_dir / 'train.log')}")
                phases.append(Phase("training", since, now, "liverec train (subprocess); v000001 promoted"))
                state, since = "serving v000001 (too late to restart)", now
                if duration_s - now < MIN_LIVE_S:
                    continue
                state, since = "restart", now
                # no traffic while the new server rebuilds its live state from the log; on a free
                # port it can start before the old one stops (a fixed --port must be freed first)
                demo.pause()
                first = servers[-1]
                if plan.port:
                    first.stop()
                second = Server(
                    plan.live_config,
                    plan.store_url,
                    plan.port or free_port(),
                    plan.data_dir / "server-live.log",
                    plan.env,
                    learn=True,
                )
                servers.append(second)
                second.start(plan.startup_timeout_s)
                demo.resume(second)
                now = time.monotonic() - demo.t0
                phases.append(Phase("restart", since, now, f"liverec serve --learn, {plan.policy} policy"))
                state, since = "live learning", now
                first.stop()
            if on_status:
                on_status(_status(demo, duration_s, state))
            time.sleep(0.25)
    finally:
        demo.stop.set()
        demo.serving.set()
        for t in threads:
            t.join()
    elapsed = time.monotonic() - demo.t0
    if state == "training":
        state = "training (did not finish before the end)"
    phases.append(Phase(state, since, elapsed))
    if demo.failure is not None:
        raise DemoError(f"simulated user failed: {demo.failure}") from demo.failure
    if on_status:
        on_status(_status(demo, duration_s, state))
    health = httpx.get(f"{servers[-1].url}/healthz", timeout=30).json()
    return elapsed, int(health["events"]), phases


def _status(demo: DemoState, duration_s: float, phase: str) -> DemoStatus:
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
            phase=phase,
            model=demo.last_model,
        )


def _summary(
    demo: DemoState,
    servers: list[Server],
    train: dict[str, Any],
    phases: list[Phase],
    elapsed: float,
    total_events: int,
    n_windows: int,
    data_dir: Path,
    store_path: Path,
    plot: bool,
) -> DemoSummary:
    from liverec.registry.registry import ModelRegistry, RegistryError

    tally = demo.tally
    lat = np.asarray(tally.latencies) * 1000.0
    slat = np.asarray(tally.search_latencies) * 1000.0
    half = len(tally.searches) // 2
    first, second = tally.searches[:half], tally.searches[half:]
    shown = max(int(tally.shown[LIVEREC, 0]), 1)
    windows = windows_of(tally.steps, elapsed, n_windows)
    plot_path = plot_windows(windows, phases, data_dir / "ctr.png") if plot else None
    registry = ModelRegistry(data_dir / "registry")
    initial, val = "", float("nan")
    online = 0
    try:
        for v in registry.list_versions():
            meta = registry.meta(v)
            if meta.get("online"):
                online += 1
            elif not initial:
                initial, val = v, float(meta.get("metrics", {}).get("val", {}).get("ndcg@10", float("nan")))
    except RegistryError:
        pass
    proc = train["proc"]
    summary = DemoSummary(
        duration_s=elapsed,
        users=len(demo.user_ids),
        control_users=len(demo.control),
        items=len(demo.world.items),
        steps=len(tally.steps),
        total_events=total_events,
        events_per_s=total_events / elapsed if elapsed > 0 else 0.0,
        windows=windows,
        latency_p50_ms=float(np.percentile(lat, 50)) if lat.size else float("nan"),
        latency_p99_ms=float(np.percentile(lat, 99)) if lat.size else float("nan"),
        searches=len(tally.searches),
        search_ctr_first_half=_ctr(first),
        search_ctr_second_half=_ctr(second),
        search_latency_p50_ms=float(np.percentile(slat, 50)) if slat.size else float("nan"),
        search_latency_p99_ms=float(np.percentile(slat, 99)) if slat.size else float("nan"),
        oracle_ctr=tally.oracle_clicks / shown if demo.track_oracle else float("nan"),
        errors=tally.errors,
        phases=phases,
        initial_model=initial,
        initial_val_ndcg=val,
        online_versions=online,
        live_version=registry.live() or "",
        setup_s=0.0,
        store_path=store_path,
        plot_path=plot_path,
        data_dir=data_dir,
        server_urls=[s.url for s in servers if s.proc is not None],
        server_pids=[s.pid for s in servers if s.proc is not None],
        server_exit_codes=[s.exit_code for s in servers if s.proc is not None],
        learner_pid=next((s.learner_pid for s in servers if s.learner_pid), None),
        train_pid=proc.pid if proc is not None else None,
        train_exit_code=proc.returncode if proc is not None else None,
    )
    return summary


def _ctr(searches: list[tuple[float, int, int]]) -> float:
    """Clicks per result shown over ``searches`` ((t, shown, clicks) each); NaN when none."""
    shown = sum(n for _, n, _ in searches)
    return sum(c for _, _, c in searches) / shown if shown else float("nan")
