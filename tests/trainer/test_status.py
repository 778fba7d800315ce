"""Why no version was published yet: the follower's status file (`trainer.status`), which the
server's `/healthz` admin detail and `liverec learn` show."""

from __future__ import annotations

import json
from pathlib import Path

from liverec.trainer.status import read_status, status_path, write_status

from .conftest import GATE, STREAM_T0, Rig, click, stream


def test_no_status_file_says_what_to_run(tmp_path: Path) -> None:
    assert read_status(tmp_path)["why"].startswith("no model version yet: train one")
    status = read_status(tmp_path, live="v000001")
    assert status["running"] is False and "liverec learn --follow" in status["why"]


def test_the_status_file_is_replaced_atomically_and_aged(tmp_path: Path) -> None:
    write_status(tmp_path, {"at": 0.0, "why": "x"})
    write_status(tmp_path, {"at": 1e18, "why": "y"})
    assert [p.name for p in status_path(tmp_path).parent.iterdir()] == ["status.json"]  # no temp left
    status = read_status(tmp_path)
    assert status["why"] == "y" and status["age_s"] < 0


def test_new_users_clicks_wait_for_examples_then_the_gate_decides(rig: Rig) -> None:
    """300 first clicks of new users score nothing (no history): the status says the gate waits for
    examples and how many it has; after a real stream it names the last decision and its reason."""
    rig.append([click(f"newcomer-{n}", "space-1", STREAM_T0 + n) for n in range(300)])
    f = rig.follower(gate=GATE.model_copy(update={"publish_events": 200}))
    f.run(follow=False)
    status = json.loads(status_path(rig.registry.root).read_text())
    assert status["running"] is False
    assert status["scored"] == 0 and status["min_eval"] == GATE.min_eval
    assert status["events_waiting"] == 300
    assert status["why"].startswith("waiting for examples: the candidate is scored on 0 of the 60")
    assert status["last_decision"] is None
    assert status["live"] == rig.v1

    rig.append(stream(3, t0=STREAM_T0 + 400))
    f.run(follow=False)
    status = read_status(rig.registry.root, live=rig.registry.live())
    last = f.decisions[-1]
    assert status["last_decision"]["reason"] == last.reason
    assert status["last_decision"]["published"] == last.published
    assert status["offset"] == rig.store.last_offset()
    assert status["age_s"] >= 0
