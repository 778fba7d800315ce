"""`liverec demo` end to end: a real `liverec serve` subprocess, simulated users over HTTP."""

from __future__ import annotations

import dataclasses
import os
import socket
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlparse

import pytest

from liverec.events.schema import EventType
from liverec.sim.demo import DemoError, DemoStatus, combine, fresh_data_dir, run_demo
from liverec.store import open_store


@pytest.fixture(autouse=True)
def _no_liverec_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("LIVEREC_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


def _port_open(url: str) -> bool:
    parsed = urlparse(url)
    with socket.socket() as s:
        s.settimeout(1.0)
        return s.connect_ex((parsed.hostname or "127.0.0.1", parsed.port or 80)) == 0


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


@pytest.mark.slow
def test_demo_learns_beats_random_and_cleans_up(tmp_path: Path) -> None:
    statuses: list[DemoStatus] = []
    data_dir = tmp_path / "demo"
    s = run_demo(
        duration_s=12, users=1000, items=1000, seed=1, data_dir=data_dir, workers=3, on_status=statuses.append
    )

    for f in dataclasses.fields(s):
        assert getattr(s, f.name) is not None, f.name
    assert s.server_exit_code is not None and _gone(s.server_pid)
    assert not _port_open(s.url)
    assert statuses and statuses[-1].steps == s.steps
    assert s.steps > 0 and s.errors == 0
    assert len(s.windows) == 6 and sum(w.liverec_impressions + w.random_impressions for w in s.windows) > 0
    assert s.latency_p50_ms > 0 and s.latency_p99_ms >= s.latency_p50_ms
    assert s.plot_path is not None and s.plot_path.stat().st_size > 0
    assert s.store_path.parent == data_dir.absolute()

    store = open_store(f"sqlite:///{s.store_path}")
    try:
        assert store.count_events() == s.total_events > 0
        assert len(store.list_items()) == 1000
        events = [e.event for e in store.read(0, limit=s.total_events)]
    finally:
        store.close()
    clicks = [e for e in events if e.type is EventType.click]
    impressions = [e for e in events if e.type is EventType.impression]
    served = {(e.context.request_id, e.context.position, e.item_id) for e in impressions}
    assert clicks and all((c.context.request_id, c.context.position, c.item_id) in served for c in clicks)
    policies = {c.context.policy for c in clicks}
    assert "random" in policies and len(policies) == 2
    assert {e.type for e in events} >= {EventType.dwell, EventType.skip, EventType.add_to_cart}

    # liverec learns from the live stream: it beats the random cohort once it has seen some traffic
    late = combine(s.windows[len(s.windows) // 2 :])
    assert late.liverec_impressions > 1000 and late.random_impressions > 500
    assert late.liverec_ctr > 1.15 * late.random_ctr, (late.liverec_ctr, late.random_ctr)
    assert s.total.liverec_ctr > s.total.random_ctr
    assert s.oracle_ctr > s.total.liverec_ctr  # the world has headroom left


def test_data_dir_is_wiped_only_when_the_demo_made_it(tmp_path: Path) -> None:
    mine = tmp_path / "mine"
    (mine / "keep.txt").parent.mkdir()
    (mine / "keep.txt").write_text("not the demo's")
    with pytest.raises(DemoError, match="not wiping"):
        fresh_data_dir(mine)
    assert (mine / "keep.txt").exists()

    ours = tmp_path / "ours"
    fresh_data_dir(ours)
    (ours / "events.db").write_text("old run")
    fresh_data_dir(ours)
    assert not (ours / "events.db").exists()


@pytest.mark.slow
def test_cli_demo_exits_cleanly_and_prints_the_summary(tmp_path: Path) -> None:
    cmd = [sys.executable, "-c", "from liverec.cli import app; app()", "demo", "--duration", "3"]
    cmd += ["--users", "60", "--items", "100", "--data-dir", str(tmp_path / "d"), "--workers", "2"]
    env = {**os.environ, "COLUMNS": "200"}
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=180, env=env)
    assert done.returncode == 0, done.stderr
    expected = ("events ingested", "events/s", "p50", "p99", "liverec CTR", "random CTR", "lift", "events.db")
    for text in expected:
        assert text in done.stdout
    assert (tmp_path / "d" / "ctr.png").exists()
