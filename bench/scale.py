"""Beyond one machine (issue 28): replicas on a shared store, restarts from snapshots, approximate
retrieval over a million items, data-parallel training. One JSON object; each part can run alone.

1. ``replica`` (Postgres and Redis, each on a fresh schema / key prefix): two ``liverec serve``
   processes, A and B, on one store (search off). ``--trials`` times: B's top item X for a user with
   history; a click on X POSTed to A; B's recommendations polled until X is gone from them (it is
   seen now). ``replica_visible_p50_ms``/``_p99_ms``: POST sent -> B's list reflects it, over both
   backends (and per backend).
2. ``restart``: a SQLite store of ``--events`` synthetic events (``--users`` users, ``--items``
   items; clicks, purchases and impressions), then ``Engine.start`` (search off, no model) replaying
   the whole log (``restart_s_full``), a snapshot taken, and a start from it (``restart_s_snapshot``:
   it loads the snapshot and replays the empty tail). Both starts fold to the same state (checked).
3. ``ann``: `bench/ann.py`'s ``ann_figures`` (1M items, in-process, exact vs the ANN path).
4. ``ddp``: MovieLens 100k imported once; ``liverec train --nproc 1`` and ``--nproc 2`` (same seed,
   ``--epochs``, each registering into its own registry); ``ddp_samples_per_s`` (training target
   interactions per second, whole group) and the validation NDCG@10 of each, with the one-process
   run's 95% bootstrap interval over users.

Run:  HF_HUB_OFFLINE=1 .venv/bin/python bench/scale.py                      (everything, ~15 min)
      HF_HUB_OFFLINE=1 .venv/bin/python bench/scale.py --parts restart --events 1000000
Prints one JSON object on stdout; progress goes to stderr.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
from tqdm import tqdm

from _load import emit, log, machine, percentile
from _server import live_server, liverec_command
from liverec.core.schema import EventType, trusted_event
from liverec.serve.engine import Engine
from liverec.settings import SearchSettings, ServerSettings, Settings
from liverec.store import open_store

PG = "postgresql://root@127.0.0.1:5432/test"
REDIS = "redis://127.0.0.1:6379/0"
T0 = 1_700_000_000.0


# -- 1. replicas -----------------------------------------------------------------------------------
def replica_visible(store_url: str, trials: int, users: int = 200, items: int = 60) -> list[float]:
    """Milliseconds from a click POSTed to replica A until replica B's list reflects it."""
    env = {"LIVEREC_STORE_URL": store_url, "LIVEREC_SEARCH__ENABLED": "false"}
    with live_server(env=env) as a, live_server(env=env) as b:
        ca, cb = httpx.Client(base_url=a, timeout=10), httpx.Client(base_url=b, timeout=10)
        rng = random.Random(0)
        seed = [
            {"user_id": f"u{u}", "item_id": f"i{rng.randrange(items)}", "type": "click", "timestamp": T0 + u}
            for u in range(users)
            for _ in range(3)
        ]
        for at in range(0, len(seed), 500):
            ca.post("/v1/events", json={"events": seed[at : at + 500]}).raise_for_status()
        with open_store(store_url) as st:
            total = st.last_offset()
        deadline = time.monotonic() + 60
        while int(cb.get("/healthz").json()["events"]) < total:  # B has folded A's seed
            if time.monotonic() > deadline:
                raise RuntimeError("replica B did not catch up with A's seed events")
            time.sleep(0.05)
        out = []
        for t in tqdm(range(trials), desc=f"replica {store_url.split(':')[0]}", file=sys.stderr):
            user = f"u{t % users}"
            top = cb.get(f"/v1/users/{user}/recommendations", params={"k": 5}).json()["items"]
            x = top[0]["item_id"]
            click = {"user_id": user, "item_id": x, "type": "click", "timestamp": T0 + 10_000 + t}
            t0 = time.perf_counter()
            ca.post("/v1/events", json=click).raise_for_status()
            while True:
                got = cb.get(f"/v1/users/{user}/recommendations", params={"k": 5}).json()["items"]
                if x not in {i["item_id"] for i in got}:
                    break
                if time.perf_counter() - t0 > 10:
                    raise RuntimeError(f"replica B never reflected the click on {x}")
            out.append((time.perf_counter() - t0) * 1000)
        ca.close()
        cb.close()
        return out


def replica_part(trials: int) -> dict[str, Any]:
    per: dict[str, Any] = {}
    both: list[float] = []
    for name, base in (("postgres", PG), ("redis", REDIS)):
        tag = f"bench{uuid.uuid4().hex[:10]}"
        url = f"{base}?schema={tag}" if name == "postgres" else f"{base}?prefix={tag}"
        try:
            ms = replica_visible(url, trials)
        finally:
            cleanup(name, base, tag)
        both += ms
        per[name] = {
            "p50_ms": round(percentile(ms, 50), 2),
            "p99_ms": round(percentile(ms, 99), 2),
            "n": len(ms),
        }
    return {
        "replica_visible_p50_ms": round(percentile(both, 50), 2),
        "replica_visible_p99_ms": round(percentile(both, 99), 2),
        "replica": per,
    }


def cleanup(name: str, base: str, tag: str) -> None:
    """Drop the bench's schema / keys."""
    if name == "postgres":
        import psycopg

        with psycopg.connect(base, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{tag}" CASCADE')
    else:
        import redis

        r = redis.Redis.from_url(base)
        keys = list(r.scan_iter(match=f"{{{tag}}}:*", count=1000))
        for at in range(0, len(keys), 1000):
            r.delete(*keys[at : at + 1000])
        r.close()


# -- 2. restarts -----------------------------------------------------------------------------------
def build_store(url: str, events: int, users: int, items: int, seed: int = 0) -> None:
    """``events`` synthetic events: Zipf-ish items, 60% impressions, 35% clicks, 5% purchases."""
    rng = random.Random(seed)
    kinds = [EventType.impression] * 12 + [EventType.click] * 7 + [EventType.purchase]
    weights = [1.0 / (1 + r) ** 0.8 for r in range(items)]
    cum = [0.0]
    for w in weights:
        cum.append(cum[-1] + w)
    import bisect

    def item() -> str:
        return f"i{bisect.bisect(cum, rng.random() * cum[-1]) - 1}"

    with (
        open_store(url) as st,
        tqdm(total=events, desc="building the log", unit="ev", file=sys.stderr) as bar,
    ):
        n = 0
        while n < events:
            m = min(50_000, events - n)
            batch = [
                trusted_event(
                    f"e{n + j}",
                    f"u{rng.randrange(users)}",
                    item(),
                    rng.choice(kinds),
                    None,
                    T0 + (n + j) * 0.01,
                )
                for j in range(m)
            ]
            st.append(batch)
            n += m
            bar.update(m)


def restart_part(events: int, users: int, items: int) -> dict[str, Any]:
    root = Path(tempfile.mkdtemp(prefix="liverec-scale-"))
    try:
        url = f"sqlite:///{root / 'events.db'}"
        build_store(url, events, users, items)

        def settings(snapshots: bool) -> Settings:
            return Settings(
                data_dir=root,
                store_url=url,
                search=SearchSettings(enabled=False),
                server=ServerSettings(snapshots=snapshots, snapshot_every_s=0, follow_log=False),
            )

        log("starting from the whole log ...")
        t0 = time.perf_counter()
        full = Engine(settings(False)).start(models=False, background=False)
        restart_s_full = time.perf_counter() - t0
        folded = (full.state.events_applied, len(full.state), len(full.catalog))
        t0 = time.perf_counter()
        full.save_snapshot()
        snapshot_save_s = time.perf_counter() - t0
        full.close()
        snap_bytes = sum(p.stat().st_size for p in (root / "snapshots").glob("snapshot-*"))
        log("starting from the snapshot ...")
        t0 = time.perf_counter()
        again = Engine(settings(True)).start(models=False, background=False)
        restart_s_snapshot = time.perf_counter() - t0
        same = (again.state.events_applied, len(again.state), len(again.catalog)) == folded
        loaded = again.snapshot_offset
        again.close()
        if not same or not loaded:
            raise RuntimeError(f"the snapshot start differs from the full replay: {folded} vs {again.state}")
        return {
            "restart_s_full": round(restart_s_full, 2),
            "restart_s_snapshot": round(restart_s_snapshot, 2),
            "restart": {
                "events": events,
                "users": folded[1],
                "items": folded[2],
                "snapshot_mb": round(snap_bytes / 1e6, 1),
                "snapshot_save_s": round(snapshot_save_s, 2),
                "store_mb": round((root / "events.db").stat().st_size / 1e6, 1),
            },
        }
    finally:
        shutil.rmtree(root, ignore_errors=True)


# -- 4. data-parallel training -----------------------------------------------------------------------
def ddp_part(data: Path, epochs: int) -> dict[str, Any]:
    from liverec.evaluate.offline import rank_snapshot_all, split_from_store
    from liverec.registry.registry import ModelRegistry

    root = Path(tempfile.mkdtemp(prefix="liverec-ddp-"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("LIVEREC_")}
    env |= {"LIVEREC_DATA_DIR": str(root), "HF_HUB_OFFLINE": "1", "OMP_WAIT_POLICY": "PASSIVE"}
    try:
        cmd = [*liverec_command(), "import", str(data.resolve()), "--format", "movielens"]
        subprocess.run(cmd, env=env, cwd=root, check=True, capture_output=True, timeout=600)
        out: dict[str, Any] = {}
        for nproc in (1, 2):
            reg = root / f"registry-{nproc}"
            run_env = env | {"LIVEREC_REGISTRY_DIR": str(reg)}
            log(f"liverec train --nproc {nproc} --epochs {epochs} ...")
            cmd = [*liverec_command(), "train", "--nproc", str(nproc), "--epochs", str(epochs), "--seed", "0"]
            t0 = time.perf_counter()
            done = subprocess.run(cmd, env=run_env, cwd=root, capture_output=True, text=True, timeout=7200)
            wall = time.perf_counter() - t0
            if done.returncode != 0:
                raise RuntimeError(
                    f"train --nproc {nproc} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
                )
            registry = ModelRegistry(reg)
            (version,) = registry.list_versions()
            metrics = registry.meta(version)["metrics"]
            with open_store(f"sqlite:///{root / 'events.db'}") as st:
                split = split_from_store(st, min_len=3)
            ranked = rank_snapshot_all(registry.load(version), split, on="val")[-1]
            out[str(nproc)] = {
                "samples_per_s": round(float(metrics["interactions_per_s"]), 1),
                "val_ndcg@10": round(float(metrics["val"]["ndcg@10"]), 4),
                "val_ndcg@10_ci95": [round(x, 4) for x in ranked.ndcg_interval()],
                "best_epoch": metrics["best_epoch"],
                "train_s": round(float(metrics["train_s"]), 1),
                "wall_s": round(wall, 1),
                "world_size": metrics.get("world_size", 1),
            }
        one, two = out["1"], out["2"]
        lo, hi = one["val_ndcg@10_ci95"]
        return {
            "ddp_samples_per_s": {"1": one["samples_per_s"], "2": two["samples_per_s"]},
            "ddp_val_ndcg@10": {"1": one["val_ndcg@10"], "2": two["val_ndcg@10"]},
            "ddp_2_within_1_ci95": bool(lo <= two["val_ndcg@10"] <= hi),
            "ddp": out,
        }
    finally:
        shutil.rmtree(root, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--parts", default="replica,restart,ann,ddp", help="comma-separated parts to run")
    ap.add_argument("--trials", type=int, default=200, help="replica: clicks timed per backend")
    ap.add_argument("--events", type=int, default=10_000_000, help="restart: events in the log")
    ap.add_argument("--users", type=int, default=100_000, help="restart: users in the log")
    ap.add_argument("--items", type=int, default=50_000, help="restart: items in the log")
    ap.add_argument("--ann-items", type=int, default=1_000_000, help="ann: catalog size")
    ap.add_argument("--data", type=Path, default=Path("../shared/data/ml-100k"), help="ddp: MovieLens 100k")
    ap.add_argument("--epochs", type=int, default=30, help="ddp: training epochs (early stopping on)")
    args = ap.parse_args()
    parts = set(args.parts.split(","))
    out: dict[str, Any] = {"machine": machine(), "date": time.strftime("%Y-%m-%d")}
    if "replica" in parts:
        out |= replica_part(args.trials)
    if "restart" in parts:
        out |= restart_part(args.events, args.users, args.items)
    if "ann" in parts:
        from ann import ann_figures

        figures = ann_figures(n_items=args.ann_items, data=args.data)
        figures["ann_build_s"] = figures.pop("build_s", None)
        out |= figures
    if "ddp" in parts:
        out |= ddp_part(args.data, args.epochs)
    emit(out)


if __name__ == "__main__":
    main()
