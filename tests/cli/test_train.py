"""The model life cycle from the command line: import a CSV, `liverec train` (registers, promotes the
first model), `models list|promote|rollback`, `--promote never`, and `evaluate offline` as JSON."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner, Result

from liverec.cli import app
from liverec.model.text import ENCODER_NAME
from liverec.registry.registry import ModelRegistry
from liverec.store import embedding_key, open_store
from support.world import ITEM_IDS, ITEM_TEXT, T0, walks

CONFIG = """
[model]
d_model = 16
n_layers = 1
n_heads = 1
max_len = 8
dropout = 0.0

[train]
batch_size = 64
lr = 0.01
threads = 1
"""


def run(*args: str) -> Result:
    result = CliRunner().invoke(app, list(args))
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result


def said(result: Result) -> str:
    """All output, with rich's line wrapping undone."""
    return " ".join(result.output.split())


@pytest.fixture
def world(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """A tmp data dir (LIVEREC_DATA_DIR), a tiny-model config, and the world imported from CSV."""
    data = tmp_path / "data"
    monkeypatch.setenv("LIVEREC_DATA_DIR", str(data))
    config = tmp_path / "liverec.toml"
    config.write_text(CONFIG)
    events = tmp_path / "events.csv"
    rows = [
        f"u{n},{item},{T0 + 60 * n + j:.0f}"
        for n, walk in enumerate(walks(60, seed=5))
        for j, item in enumerate(walk)
    ]
    events.write_text("user_id,item_id,ts\n" + "\n".join(rows) + "\n")
    items = tmp_path / "items.csv"
    items.write_text("item_id,title\n" + "\n".join(f'{i},"{ITEM_TEXT[i]}"' for i in ITEM_IDS) + "\n")
    result = run(
        "import", str(events), "--format", "csv", "--time-col", "ts", "--items-file", str(items),
        "--item-title-col", "title", "-c", str(config),
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert f"imported {len(rows)} events" in said(result)
    return {"config": str(config), "data": data, "events": len(rows)}


def test_train_register_promote_list_rollback_and_evaluate(world: dict[str, Any]) -> None:
    """The first `train` registers v000001 and makes it live (text encoded and cached); `models list`
    marks it; `train --promote never` registers v000002 without touching LIVE; `models promote` and
    `rollback` steer LIVE, and a rollback with no history exits non-zero saying so; `evaluate
    offline` prints one JSON object with both versions (scored as training recorded) and baselines."""
    cfg = world["config"]
    registry = ModelRegistry(world["data"] / "registry")

    first = run("train", "-c", cfg, "--epochs", "2")
    assert first.exit_code == 0, first.output
    assert "registered v000001" in said(first) and "v000001 is live" in said(first)
    assert registry.list_versions() == ["v000001"] and registry.live() == "v000001"
    meta = registry.meta("v000001")
    assert meta["config"]["d_model"] == 16 and meta["config"]["n_layers"] == 1  # from the TOML file
    assert meta["config"]["text_dim"] == 384 and meta["train"]["epochs"] == 2 and meta["parent"] is None
    assert set(meta["metrics"]["test"]) >= {"ndcg@10", "hr@10", "mrr"}
    with open_store(f"sqlite:///{world['data'] / 'events.db'}") as st:  # item text was encoded, cached
        assert len(st.get_embeddings(_keys())) == len(ITEM_IDS)

    listed = run("models", "list", "-c", cfg)
    assert listed.exit_code == 0, listed.output
    line = next(x for x in listed.output.splitlines() if "v000001" in x)
    assert "*" in line  # marked live
    assert str(len(ITEM_IDS)) in line

    second = run("train", "-c", cfg, "--epochs", "2", "--promote", "never", "--seed", "1")
    assert second.exit_code == 0, second.output
    assert "registered v000002" in said(second) and "is live" not in said(second)
    assert registry.live() == "v000001" and registry.meta("v000002")["parent"] == "v000001"

    promoted = run("models", "promote", "v000002", "-c", cfg)
    assert promoted.exit_code == 0 and "v000002 is live" in said(promoted)
    assert (registry.live(), registry.history()) == ("v000002", ["v000001"])
    rolled = run("models", "rollback", "-c", cfg)
    assert rolled.exit_code == 0 and "v000001 is live" in said(rolled)
    assert (registry.live(), registry.history()) == ("v000001", [])
    nothing = run("models", "rollback", "-c", cfg)
    assert nothing.exit_code != 0 and "nothing to roll back" in said(nothing)
    assert registry.live() == "v000001"
    unknown = run("models", "promote", "v000042", "-c", cfg)
    assert unknown.exit_code != 0 and "no version 'v000042'" in said(unknown)

    # a real process, so that stdout is only what the command prints. Passive OpenMP waiting: the
    # 2-thread ALS fits (75 of them) otherwise spin for ~0.4 s each when the CPU is shared.
    exe = Path(sys.executable).with_name("liverec")
    env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE"}
    evaluated = subprocess.run(
        [str(exe), "evaluate", "offline", "-c", cfg, "--min-len", "3"],
        capture_output=True, text=True, env=env, timeout=600,
    )  # fmt: skip
    assert evaluated.returncode == 0, evaluated.stderr
    report = json.loads(evaluated.stdout)  # stdout is exactly one JSON object
    assert report["items"] == len(ITEM_IDS) and report["users"] == 60
    assert set(report["models"]) == {
        "transformer@v000001",
        "transformer@v000002",
        "popularity",
        "itemknn",
        "als",
        "rules",
    }
    for name, m in report["models"].items():
        assert 0.0 <= m["ndcg@10"] <= m["hr@10"] <= 1.0, name
        low, high = m["ndcg@10_ci95"]  # which 60 users the split holds matters: the interval is wide
        assert low <= m["ndcg@10"] <= high and (high > low or m["ndcg@10"] in (0.0, 1.0)), name
    # the same split as training: the snapshot scores test exactly as training recorded
    for v in ("v000001", "v000002"):
        recorded = registry.meta(v)["metrics"]["test"]
        assert report["models"][f"transformer@{v}"]["ndcg@10"] == pytest.approx(recorded["ndcg@10"], abs=1e-6)
    assert set(report["models"]["itemknn"]["params"]) == {"neighbors", "history"}

    # with [rules] on, each version also as served; the network-alone figures stay what they were
    served = subprocess.run(
        [str(exe), "evaluate", "offline", "-c", cfg, "--min-len", "3", "--no-baselines"],
        capture_output=True, text=True, env={**env, "LIVEREC_RULES__WEIGHT": "1.5"}, timeout=600,
    )  # fmt: skip
    assert served.returncode == 0, served.stderr
    blended = json.loads(served.stdout)["models"]
    assert set(blended) == {f"transformer@{v}{s}" for v in ("v000001", "v000002") for s in ("", "+rules")}
    for v in ("v000001", "v000002"):
        assert blended[f"transformer@{v}"] == report["models"][f"transformer@{v}"]
        assert blended[f"transformer@{v}+rules"]["mrr"] != blended[f"transformer@{v}"]["mrr"]
        assert (
            blended[f"transformer@{v}+rules"]["ndcg@10_ci95"] != blended[f"transformer@{v}"]["ndcg@10_ci95"]
        )


def _keys() -> list[str]:
    return [embedding_key(ENCODER_NAME, ITEM_TEXT[i]) for i in ITEM_IDS]


def test_train_refuses_unknown_model_settings(world: dict[str, Any], tmp_path: Path) -> None:
    """A typo in [model] exits 2 naming the key, and registers nothing."""
    bad = tmp_path / "bad.toml"
    bad.write_text(CONFIG.replace("d_model = 16", "d_modle = 16"))
    result = run("train", "-c", str(bad), "--epochs", "1", "--no-text")
    assert result.exit_code == 2
    assert "unknown key 'd_modle' (did you mean 'd_model'?)" in said(result)
    assert ModelRegistry(world["data"] / "registry").list_versions() == []


@pytest.mark.slow
def test_train_nproc_2_is_ddp_and_registers_one_model(world: dict[str, Any]) -> None:
    """`liverec train --nproc 2` runs two torchrun workers (gloo) that train one model: one version is
    registered and made live, its metadata says two processes trained it, and the validation score it
    records is what the registered weights score (rank 0 evaluated the weights it registered)."""
    from liverec.evaluate.offline import evaluate_snapshot, split_from_store

    exe = Path(sys.executable).with_name("liverec")
    env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE"}
    done = subprocess.run(
        [str(exe), "train", "-c", world["config"], "--epochs", "3", "--nproc", "2"],
        capture_output=True, text=True, env=env, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    out = " ".join((done.stdout + done.stderr).split())
    assert "training with 2 processes" in out and "registered v000001" in out
    assert out.count("registered v") == 1  # rank 1 registers nothing
    registry = ModelRegistry(world["data"] / "registry")
    assert registry.list_versions() == ["v000001"] and registry.live() == "v000001"
    metrics = registry.meta("v000001")["metrics"]
    assert metrics["world_size"] == 2
    with open_store(f"sqlite:///{world['data'] / 'events.db'}") as st:
        split = split_from_store(st, min_len=3)
    val = evaluate_snapshot(registry.load("v000001"), split, on="val")
    assert val["ndcg@10"] == pytest.approx(metrics["val"]["ndcg@10"], abs=1e-5)
