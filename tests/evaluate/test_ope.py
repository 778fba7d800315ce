"""OPE estimators on tiny hand-computed examples, bootstrap intervals, and the store-log report."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from liverec.cli.common import app
from liverec.core.schema import Event, EventContext, EventType
from liverec.evaluate.ope import (
    bootstrap_interval,
    estimate_all,
    estimate_interval,
    estimate_policy_value,
    importance_weights,
    logged_report,
)
from liverec.events.join import join_events
from liverec.store import open_store

# 4 rounds, 2 actions, one position. The evaluation policy plays action 0 w.p. 0.8 everywhere.
ACTION = np.array([0, 1, 0, 1])
REWARD = np.array([1.0, 0.0, 1.0, 1.0])
PSCORE = np.array([0.5, 0.5, 0.25, 0.75])
PI_E = np.tile(np.array([0.8, 0.2])[None, :, None], (4, 1, 1))  # (4, 2, 1)
Q_HAT = np.tile(np.array([0.3, 0.6])[None, :, None], (4, 1, 1))  # q̂(x, a) = 0.3 for a=0, 0.6 for a=1
TINY = {"reward": REWARD, "action": ACTION, "pscore": PSCORE, "action_dist": PI_E}
W = [0.8 / 0.5, 0.2 / 0.5, 0.8 / 0.25, 0.2 / 0.75]


def test_ipw_with_known_propensities() -> None:
    np.testing.assert_allclose(importance_weights(ACTION, PSCORE, PI_E), W)
    expected = (1 * W[0] + 0 * W[1] + 1 * W[2] + 1 * W[3]) / 4
    assert estimate_policy_value("ipw", **TINY) == pytest.approx(expected, rel=1e-12)


def test_snipw_normalises_by_the_weights() -> None:
    expected = (W[0] + W[2] + W[3]) / sum(W)
    assert estimate_policy_value("snipw", **TINY) == pytest.approx(expected, rel=1e-12)
    # rewards all 1: SNIPW is exactly 1 whatever the weights, IPW is the mean weight
    ones = {**TINY, "reward": np.ones(4)}
    assert estimate_policy_value("snipw", **ones) == pytest.approx(1.0)
    assert estimate_policy_value("ipw", **ones) == pytest.approx(np.mean(W))


def test_dm_is_the_mean_estimated_reward_under_the_policy() -> None:
    value = estimate_policy_value("dm", **TINY, estimated_rewards_by_reg_model=Q_HAT)
    assert value == pytest.approx(0.8 * 0.3 + 0.2 * 0.6, rel=1e-12)


def test_dr_is_dm_plus_the_ips_correction() -> None:
    residual = [1 - 0.3, 0 - 0.6, 1 - 0.3, 1 - 0.6]  # r - q̂(x, a_logged)
    expected = 0.36 + sum(w * e for w, e in zip(W, residual, strict=True)) / 4
    value = estimate_policy_value("dr", **TINY, estimated_rewards_by_reg_model=Q_HAT)
    assert value == pytest.approx(expected, rel=1e-12)
    # with a perfect q̂ (residuals 0) DR is DM
    exact = np.tile(REWARD[:, None, None], (1, 2, 1))
    assert estimate_policy_value("dr", **TINY, estimated_rewards_by_reg_model=exact) == pytest.approx(
        estimate_policy_value("dm", **TINY, estimated_rewards_by_reg_model=exact)
    )


def test_positions_pick_the_policy_slice_of_their_slot() -> None:
    # 2 slots: the policy favours action 1 in slot 0 and action 0 in slot 1
    pi = np.zeros((2, 2, 2))
    pi[:, :, 0] = [0.1, 0.9]
    pi[:, :, 1] = [0.7, 0.3]
    action, position, pscore = np.array([1, 1]), np.array([0, 1]), np.array([0.5, 0.5])
    np.testing.assert_allclose(importance_weights(action, pscore, pi, position), [0.9 / 0.5, 0.3 / 0.5])
    q = np.zeros((2, 2, 2))
    q[:, 0, :], q[:, 1, :] = 0.2, 0.4
    dm = estimate_policy_value(
        "dm", reward=np.ones(2), action=action, pscore=pscore, action_dist=pi, position=position,
        estimated_rewards_by_reg_model=q,
    )  # fmt: skip
    assert dm == pytest.approx(((0.1 * 0.2 + 0.9 * 0.4) + (0.7 * 0.2 + 0.3 * 0.4)) / 2)


def test_bad_inputs_are_rejected() -> None:
    with pytest.raises(ValueError, match="pscore"):
        estimate_policy_value("ipw", **{**TINY, "pscore": np.array([0.5, 0.0, 0.25, 0.75])})
    with pytest.raises(ValueError, match="estimated_rewards"):
        estimate_policy_value("dr", **TINY)
    with pytest.raises(ValueError, match="actions"):
        estimate_policy_value("ipw", **{**TINY, "action": np.array([0, 2, 0, 1])})
    with pytest.raises(ValueError, match="unknown estimator"):
        estimate_policy_value("switch", **TINY)


def synthetic(n: int, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    n_actions = 5
    pscore_table = rng.dirichlet(np.ones(n_actions), size=n)
    action = np.array([rng.choice(n_actions, p=p) for p in pscore_table])
    return {
        "reward": (rng.random(n) < 0.2 + 0.1 * action).astype(float),
        "action": action,
        "pscore": pscore_table[np.arange(n), action],
        "action_dist": rng.dirichlet(np.ones(n_actions), size=n)[:, :, None],
        "estimated_rewards_by_reg_model": rng.random((n, n_actions, 1)),
    }


def test_intervals_contain_the_estimate_and_are_seeded() -> None:
    data = synthetic(500, seed=1)
    first = estimate_all(**data, n_bootstrap_samples=300, random_state=7)
    again = estimate_all(**data, n_bootstrap_samples=300, random_state=7)
    other = estimate_all(**data, n_bootstrap_samples=300, random_state=8)
    assert set(first) == {"ipw", "snipw", "dm", "dr"}
    assert first == again
    for name, est in first.items():
        assert est.ci_low < est.value < est.ci_high, name
        assert other[name].value == est.value and other[name].ci_low != est.ci_low
    narrow = estimate_interval("ipw", **data, alpha=0.5, n_bootstrap_samples=300, random_state=7)
    assert first["ipw"].ci_low < narrow.ci_low < narrow.ci_high < first["ipw"].ci_high
    no_model = {k: v for k, v in data.items() if k != "estimated_rewards_by_reg_model"}
    assert set(estimate_all(**no_model, n_bootstrap_samples=10)) == {"ipw", "snipw"}


def test_snipw_interval_renormalises_each_resample() -> None:
    terms, weights = np.array([0.0, 2.0, 6.0, 1.0, 0.5]), np.array([1.0, 2.0, 3.0, 0.5, 1.5])
    rng = np.random.RandomState(3)
    stats = []
    for _ in range(200):
        idx = rng.choice(np.arange(5), size=5)
        stats.append(terms[idx].sum() / weights[idx].sum())
    low, high = bootstrap_interval(terms, weights, 0.1, 200, 3)
    assert (low, high) == pytest.approx((np.percentile(stats, 5), np.percentile(stats, 95)), rel=1e-12)


def shown(user: str, rid: str, items: list[str], t: float, policy: str, propensity: float) -> list[Event]:
    return [
        Event(
            event_id=f"imp:{rid}:{pos}",
            user_id=user,
            item_id=item,
            type=EventType.impression,
            timestamp=t,
            context=EventContext(request_id=rid, position=pos, propensity=propensity, policy=policy),
        )
        for pos, item in enumerate(items)
    ]


def store_log() -> list[Event]:
    rng = np.random.default_rng(0)
    log: list[Event] = []
    for r in range(60):
        policy, prop = ("greedy", 1.0) if r % 2 else ("uniform", 0.5)
        items = [f"i{k}" for k in rng.choice(8, size=2, replace=False)]
        log += shown(f"u{r % 7}", f"r{r}", items, 1e9 + 10 * r, policy, prop)
        if rng.random() < 0.5:
            ctx = EventContext(request_id=f"r{r}", position=0)
            click = EventType.click
            log.append(
                Event(
                    user_id=f"u{r % 7}", item_id=items[0], type=click, timestamp=1e9 + 10 * r + 1, context=ctx
                )
            )
    return log


def test_logged_report_on_policy_and_uniform_over_slate() -> None:
    records = join_events(store_log())
    report = logged_report(records, n_bootstrap_samples=200)
    assert set(report) == {"greedy", "uniform"}
    for name, weight in (("greedy", 0.5), ("uniform", 1.0)):  # w = (1/k) / propensity, k = 2
        rewards = [r.reward for r in records if r.policy == name]
        entry = report[name]
        assert entry["impressions"] == len(rewards) == 60 and entry["slates"] == 30
        assert entry["on_policy_value"]["value"] == pytest.approx(np.mean(rewards))
        target = entry["uniform_over_slate"]
        assert target["mean_weight"] == pytest.approx(weight)
        assert target["ipw"]["value"] == pytest.approx(weight * np.mean(rewards))
        assert target["snipw"]["value"] == pytest.approx(np.mean(rewards))
    assert set(logged_report(records, policy="greedy", n_bootstrap_samples=10)) == {"greedy"}


def test_cli_ope_over_a_store(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'events.db'}"
    with open_store(url) as store:
        store.append(store_log())
    result = CliRunner().invoke(
        app, ["evaluate", "ope", "--store", url, "--policy", "uniform", "--n-bootstrap", "100"]
    )
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert list(out["policies"]) == ["uniform"]
    assert out["impressions"] == 120 and out["join"]["attributed"] == out["join"]["rewards"] > 0
    missing = CliRunner().invoke(app, ["evaluate", "ope", "--store", url, "--policy", "nope"])
    assert missing.exit_code == 2
