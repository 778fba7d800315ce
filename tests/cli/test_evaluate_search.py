"""`liverec evaluate search` end to end on a tiny CSV world: the real MiniLM encoder and a tiny
Transformer; one JSON object on stdout with the keys the issue fixes, leave-one-out and --queries."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner, Result

from liverec.cli import app

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
epochs = 3
threads = 1
"""
GENRES = ["space", "cooking", "football"]
T0 = 1_700_000_000


def run(*args: str) -> Result:
    result = CliRunner().invoke(app, list(args))
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result


@pytest.fixture
def world(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """24 items (8 per genre, tags "<genre> short|long"), 30 users who stay in one genre."""
    monkeypatch.setenv("LIVEREC_DATA_DIR", str(tmp_path / "data"))
    config = tmp_path / "liverec.toml"
    config.write_text(CONFIG)
    items = tmp_path / "items.csv"
    lines = [f"i{k},Title number {k},{GENRES[k // 8]}|{'short' if k % 2 else 'long'}" for k in range(24)]
    items.write_text("item_id,title,tags\n" + "\n".join(lines) + "\n")
    rng = np.random.default_rng(0)
    rows = []
    for u in range(30):
        for j, k in enumerate(rng.permutation(8)[:6] + 8 * (u % 3)):
            rows.append((u, k, T0 + 3600 * (30 * j + u)))
    events = tmp_path / "events.csv"
    events.write_text("user_id,item_id,ts\n" + "\n".join(f"u{u},i{k},{t}" for u, k, t in rows) + "\n")
    end = max(t for _, _, t in rows)
    queries = tmp_path / "queries.csv"
    q = [(u, 8 * (u % 3) + 1 + 2 * (u % 4), end + 60 * n) for n, u in enumerate(list(range(30)) * 2)]
    queries.write_text(
        "who,what,text,when\n" + "\n".join(f"u{u},i{k},{GENRES[k // 8]} short,{t}" for u, k, t in q) + "\n"
    )
    csv = ["--format", "csv", "--time-col", "ts", "--items-file", str(items), "--item-title-col", "title"]
    csv += ["--item-tags-col", "tags", "-c", str(config)]
    return {"events": str(events), "csv": csv, "queries": str(queries)}


def report(result: Result) -> dict[str, Any]:
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)  # stdout is exactly one JSON object


@pytest.mark.slow
def test_evaluate_search_leave_one_out_and_queries(world: dict[str, Any]) -> None:
    out = report(
        run("evaluate", "search", "--data", world["events"], *world["csv"], "--seed", "0", "--seed", "1")
    )
    assert set(out["models"]) == {"search", "bm25", "semantic", "recommender"}
    for m in out["models"].values():
        assert set(m) >= {"ndcg@10", "hr@10", "mrr", "ndcg@10_ci95"}
    assert out["cases"] == 30 and out["mode"] == "leave_one_out" and out["seeds"] == [0, 1]
    assert "online_vs_frozen_ndcg@10" in out and out["online_vs_frozen_ndcg@10"] is None
    # the tags say "<genre> short|long": the genre's four matches; the person knows the genre too
    assert out["models"]["search"]["ndcg@10"] > out["models"]["bm25"]["ndcg@10"]

    q = ["--queries", world["queries"], "--query-user-col", "who", "--query-item-col", "what"]
    q += ["--query-col", "text", "--query-time-col", "when", "--test-fraction", "0.5", "--online"]
    out = report(run("evaluate", "search", "--data", world["events"], *world["csv"], *q))
    assert out["mode"] == "queries" and out["cases"] + out["training_cases"] == 60
    assert {"search_online", "search_frozen"} <= set(out["models"])
    assert out["online_vs_frozen_ndcg@10"] > 0


def test_evaluate_search_bad_queries_file_is_a_clean_error(world: dict[str, Any], tmp_path: Path) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("user_id,item_id\nu1,i1\n")
    result = run("evaluate", "search", "--data", world["events"], *world["csv"], "--queries", str(bad))
    assert result.exit_code == 2 and "no column" in " ".join(result.output.split())
