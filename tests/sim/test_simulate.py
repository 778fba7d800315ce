"""`liverec simulate` on tiny worlds: the real engine, policies, learner and registry in-process.

Regret is measured against the world's oracle (zero for the oracle itself, positive for random);
a frozen model keeps its weights while the online learner publishes new ones that the engine
serves; every visit goes through the engine (impressions with propensities, feedback joined by
request id); a seed fixes a run; the CLI prints one JSON object.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
import torch
from typer.testing import CliRunner

from liverec.cli import app
from liverec.core.schema import EventType
from liverec.serve.engine import Engine
from liverec.sim.report import SimResult
from liverec.sim.simulate import T0, MemoEncoder, SimConfig, simulate


@pytest.fixture(scope="module")
def encoder() -> MemoEncoder:
    """One real MiniLM for the module; every run of a seed shares its item texts."""
    os.environ["HF_HUB_OFFLINE"] = "1"
    return MemoEncoder()


def tiny(**overrides: Any) -> SimConfig:
    """A world of 30 users and 60 items (new ones arriving), a one-layer 16-d Transformer."""
    cfg = SimConfig(
        users=30,
        items=60,
        warmup=500,
        interactions=120,
        k=5,
        candidates=30,
        windows=3,
        drift=0.05,
        arrival_rate=0.05,
        model_params={"d_model": 16, "n_layers": 1, "n_heads": 1, "max_len": 10, "dropout": 0.0},
        train_params={"epochs": 3, "batch_size": 64, "lr": 1e-2, "patience": 3},
        learn_every=10,
        gate_params={"publish_events": 30, "min_eval": 10},
    )
    for key, value in overrides.items():
        setattr(cfg, key, value)
    return cfg


def comparable(r: SimResult) -> dict[str, Any]:
    out = r.to_json()
    out.pop("seconds")
    out["initial_model"].pop("train_s", None)
    return out


def test_oracle_has_no_regret_and_random_has_some(encoder: MemoEncoder) -> None:
    oracle = simulate(tiny(policy="oracle", model="popularity", learner="frozen"), encoder)
    rand = simulate(tiny(policy="random", model="popularity", learner="frozen"), encoder)
    assert oracle.interactions == rand.interactions == 120
    assert abs(oracle.regret) < 1e-9
    assert oracle.oracle_reward > 0 and abs(oracle.expected_reward - oracle.oracle_reward) < 1e-9
    assert rand.regret > 0.2 * rand.oracle_reward  # random is far from the best slate
    assert all(w.regret >= -1e-9 for w in rand.windows)
    assert sum(w.regret for w in rand.windows) == pytest.approx(rand.regret)


def test_frozen_keeps_its_weights_online_publishes_new_ones_through_the_engine(encoder: MemoEncoder) -> None:
    seen: dict[str, dict[str, Any]] = {}

    def look(name: str) -> Any:
        def inspect(engine: Engine) -> None:
            assert engine.manager is not None and engine.manager.current is not None
            served = engine.manager.current
            first = engine.registry.load("v000001").model
            n = first.config.n_items + 1  # rows of the items the first model was trained on
            same = all(
                torch.equal(
                    value[:n] if key in ("id_emb.weight", "text_emb") else value, first.state_dict()[key]
                )
                for key, value in served.net.state_dict().items()
            )
            events = [s.event for s in engine.store.read(0, 10**7)]
            seen[name] = {
                "same": same,
                "version": served.registry_version,
                "events": events,
                "catalog": len(engine.catalog),
            }

        return inspect

    frozen = simulate(tiny(policy="greedy", learner="frozen"), encoder, on_engine=look("frozen"))
    online = simulate(tiny(policy="thompson", learner="online"), encoder, on_engine=look("online"))

    assert seen["frozen"]["same"] and seen["frozen"]["version"] == "v000001"
    assert [v for _, v in frozen.versions] == ["transformer@v000001"] and frozen.publications == 0
    assert not seen["online"]["same"] and seen["online"]["version"] != "v000001"
    assert online.publications >= 1 and len(online.versions) >= 2
    assert online.versions[-1][1] == f"transformer@{seen['online']['version']}"

    for name, result in (("frozen", frozen), ("online", online)):
        events = seen[name]["events"]
        live = [e for e in events if e.context.policy not in (None, "random")]
        impressions = [e for e in live if e.type is EventType.impression]
        assert len(impressions) == result.impressions > 0  # the engine logged every served item
        assert all(0 < (e.context.propensity or 0) <= 1 and e.context.request_id for e in impressions)
        served = {(e.context.request_id, e.context.position, e.item_id) for e in impressions}
        clicks = [e for e in live if e.type is EventType.click]
        assert len(clicks) == result.cumulative_reward > 0
        assert all((c.context.request_id, c.context.position, c.item_id) in served for c in clicks)
        assert {e.context.policy for e in impressions} == {"greedy" if name == "frozen" else "thompson"}
        assert seen[name]["catalog"] > 60  # new items arrived


def test_a_seed_fixes_a_run(encoder: MemoEncoder) -> None:
    a = simulate(tiny(policy="linucb", learner="online", seed=3), encoder)
    b = simulate(tiny(policy="linucb", learner="online", seed=3), encoder)
    assert a.publications >= 1 and a.cumulative_reward > 0  # learned, published and served something
    assert comparable(a) == comparable(b)


def test_cli_prints_one_json_object_with_the_three_numbers(tmp_path: Path) -> None:
    plot = tmp_path / "sim.png"
    args = ["simulate", "--policy", "epsilon", "--policy-param", "epsilon=0.2", "--model", "popularity"]
    args += ["--learner", "frozen", "--interactions", "120", "--users", "20", "--items", "40"]
    args += ["--warmup", "200", "--seed", "1", "--windows", "4", "--plot", str(plot)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert list(out)[:3] == ["cumulative_reward", "regret", "ctr"]
    assert out["cumulative_reward"] >= 0 and out["regret"] > 0 and 0 <= out["ctr"] <= 1
    assert out["config"]["policy_params"] == {"epsilon": 0.2} and len(out["windows"]) == 4
    assert plot.stat().st_size > 0 and out["plot"] == str(plot)

    bad = CliRunner().invoke(app, ["simulate", "--model", "popularity", "--learner", "online"])
    assert bad.exit_code == 2 and "frozen" in bad.output


def test_the_policy_learns_from_each_visit_by_the_next_one(encoder: MemoEncoder) -> None:
    """Served lists are logged in the simulator's event time, so the reward join (window dt / 2)
    closes each visit's impressions when the next visit's events arrive. (Logged on the wall clock
    instead, they waited seconds of real time, hundreds of visits, and runs depended on speed.)"""
    seen: dict[str, Any] = {}

    def inspect(engine: Engine) -> None:
        assert engine.feedback is not None
        seen["updates"] = engine.recommender.policy.linear.n_updates  # type: ignore[attr-defined]
        live = [s.event for s in engine.store.read(0, 10**7) if s.event.context.policy == "linucb"]
        seen["last_ts"] = max(e.timestamp for e in live)
        # slates served with vectors (users with a history); the last visit's is still open
        with_vectors = engine.feedback.served
        last = live[-1].context.request_id
        seen["closed"] = sum(len(s.items) for rid, s in with_vectors.items() if rid != last)

    cfg = tiny(policy="linucb", learner="frozen")
    result = simulate(cfg, encoder, on_engine=inspect)
    assert seen["closed"] > 0.5 * result.impressions
    assert seen["updates"] == seen["closed"]  # every closed slate with vectors taught the policy
    assert seen["last_ts"] <= T0 + cfg.warmup + cfg.interactions * cfg.dt_s  # event time, not the clock
