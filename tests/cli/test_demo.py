"""`liverec demo` end to end: real `liverec serve`, `liverec train` and `liverec learn` subprocesses,
simulated users over HTTP, and every process gone afterwards."""

from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from liverec.cli import app
from liverec.core.schema import EventType
from liverec.sim.demo import DemoError, combine, fresh_data_dir
from liverec.sim.demo_procs import alive
from liverec.sim.demo_stats import LIVEREC, RANDOM, Step, model_label, windows_of
from liverec.store import open_store


def _port_open(url: str) -> bool:
    host, port = url.rsplit("//", 1)[1].split(":")
    with socket.socket() as s:
        s.settimeout(1.0)
        return s.connect_ex((host, int(port))) == 0


@pytest.mark.slow
def test_demo_warms_up_trains_learns_online_beats_random_and_cleans_up(tmp_path: Path) -> None:
    data_dir = tmp_path / "demo"
    # 400 users x 300 items: a smaller world runs out of unseen good items within 40 s on a fast
    # machine (150 x 150: CTR of both cohorts fell by half and the lift shrank to 1.04-1.12x)
    args = ["demo", "--duration", "40", "--users", "400", "--items", "300", "--workers", "2"]
    args += ["--data-dir", str(data_dir), "--train-epochs", "3"]
    result = CliRunner().invoke(app, args, env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    for text in ("events ingested", "events/s", "p50", "p99", "liverec CTR", "random CTR", "lift", "model"):
        assert text in result.stdout
    s: dict[str, Any] = json.loads((data_dir / "summary.json").read_text())

    # every process the demo started, directly or through the server, is gone
    pids = [*s["server_pids"], s["learner_pid"], s["train_pid"]]
    assert len(s["server_pids"]) == 2 and all(isinstance(p, int) for p in pids)
    assert not any(alive(p) for p in pids)
    assert s["train_exit_code"] == 0 and all(c is not None for c in s["server_exit_codes"])
    assert len(s["server_urls"]) == 2 and not any(_port_open(u) for u in s["server_urls"])
    # one dashboard URL for the whole run (both servers take its port), printed at the start
    assert f"live dashboard: {s['server_urls'][0]}/dashboard" in result.output  # stderr: progress
    assert s["server_urls"][0] == s["server_urls"][1]

    # the whole product ran: warm-up, training, restart with the learner, then online updates served
    assert [p["name"] for p in s["phases"]] == ["warm-up", "training", "restart", "live learning"]
    assert s["initial_model"] == "v000001" and s["online_versions"] >= 1
    served = sorted({m for w in s["windows"] for m in w["models"] if m.startswith("transformer@")})
    assert served[0] == "transformer@v000001" and len(served) >= 2, served
    assert s["live_version"] != "v000001" and s["errors"] == 0
    assert (data_dir / "ctr.png").stat().st_size > 0

    store = open_store(f"sqlite:///{s['store_path']}")
    try:
        assert store.count_events() == s["total_events"] > 0
        events = [e.event for e in store.read(0, limit=s["total_events"])]
    finally:
        store.close()
    impressions = [e for e in events if e.type is EventType.impression]
    assert all(0 < (e.context.propensity or 0) <= 1 for e in impressions)
    served_at = {(e.context.request_id, e.context.position, e.item_id) for e in impressions}
    clicks = [e for e in events if e.type is EventType.click]
    assert clicks and all((c.context.request_id, c.context.position, c.item_id) in served_at for c in clicks)
    assert {e.context.policy for e in impressions} >= {"random", "epsilon", "thompson"}
    # the cohorts the dashboard compares: the control's lists and the liverec cohort's feedback name them
    control = [e for e in impressions if e.context.policy == "random"]
    assert control and all((e.context.model_extra or {}).get("cohort") == "control" for e in control)
    assert all((c.context.model_extra or {}).get("cohort") in ("control", "liverec") for c in clicks)
    assert {e.type for e in events} >= {EventType.dwell, EventType.skip, EventType.add_to_cart}
    # a share of the liverec cohort's visits searched; their clicks name the result lists
    searched = [e for e in impressions if e.context.surface == "search"]
    assert s["searches"] > 0 and searched and all(e.context.query for e in searched)
    search_ids = {e.context.request_id for e in searched}
    assert any(c.context.request_id in search_ids for c in clicks)

    # liverec beats the random cohort over the run; the world still has headroom
    liverec = sum(w["liverec_clicks"] for w in s["windows"]) / sum(
        w["liverec_impressions"] for w in s["windows"]
    )
    rand = sum(w["random_clicks"] for w in s["windows"]) / sum(w["random_impressions"] for w in s["windows"])
    assert liverec > 1.15 * rand, (liverec, rand)
    assert s["oracle_ctr"] > liverec


def test_windows_count_both_cohorts_and_name_the_models() -> None:
    steps = [
        Step(0.5, LIVEREC, 10, 2, "popularity-cooc"),
        Step(1.0, RANDOM, 10, 1),
        Step(6.0, LIVEREC, 10, 3, "transformer@v000001"),
        Step(7.0, LIVEREC, 5, 0, "transformer@v000004"),
        Step(8.0, LIVEREC, 5, 1, "transformer@v000002"),
    ]
    w = windows_of(steps, 10.0, 2)
    assert (w[0].liverec_impressions, w[0].liverec_clicks, w[0].random_impressions, w[0].random_clicks) == (
        10,
        2,
        10,
        1,
    )
    assert (w[1].liverec_impressions, w[1].liverec_clicks, w[1].random_impressions) == (20, 4, 0)
    assert w[0].lift == pytest.approx(0.2 / 0.1 - 1) and w[1].random_ctr == 0.0
    assert model_label(w[0].models) == "popularity-cooc"
    assert model_label(w[1].models) == "v000001..v000004 (3)"
    total = combine(w)
    assert total.liverec_clicks == 6 and total.start_s == 0.0 and total.end_s == 10.0
    assert len(total.models) == 4


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
