"""liverec's OPE against obp 0.4.1 on identical inputs, and the OBD reader on a synthetic OBD layout."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from obp.dataset import SyntheticBanditDataset
from obp.ope import (
    DirectMethod,
    DoublyRobust,
    InverseProbabilityWeighting,
    RegressionModel,
    SelfNormalizedInverseProbabilityWeighting,
)
from sklearn.linear_model import LogisticRegression
from typer.testing import CliRunner

from liverec.cli.common import app
from liverec.evaluate.obd import OBDError, read_obd
from liverec.evaluate.ope import RewardRegression, estimate_all, estimate_policy_value

OBP = {
    "ipw": InverseProbabilityWeighting(),
    "snipw": SelfNormalizedInverseProbabilityWeighting(),
    "dm": DirectMethod(),
    "dr": DoublyRobust(),
}


def logged(len_list: int, seed: int, n_rounds: int = 1500) -> tuple[dict[str, Any], dict[str, Any]]:
    """obp's synthetic logged feedback; with len_list > 1 each round is also given a slot, and the
    evaluation policy has its own distribution per slot. Returns (bandit feedback, OPE inputs)."""
    ds = SyntheticBanditDataset(
        n_actions=6, dim_context=4, reward_type="binary", behavior_policy_function=None, random_state=seed
    )
    fb = ds.obtain_batch_bandit_feedback(n_rounds=n_rounds)
    rng = np.random.default_rng(seed)
    position = rng.integers(0, len_list, size=n_rounds)
    action_dist = rng.dirichlet(np.ones(6), size=(n_rounds, len_list)).transpose(0, 2, 1)
    inputs = {
        "reward": fb["reward"],
        "action": fb["action"],
        "position": position,
        "pscore": fb["pscore"],
        "action_dist": action_dist,
    }
    return fb, inputs


@pytest.mark.parametrize("len_list", [1, 3])
def test_reward_model_and_all_four_estimators_match_obp(len_list: int) -> None:
    fb, inputs = logged(len_list, seed=len_list)
    base = LogisticRegression(C=100, max_iter=1000, random_state=0)
    theirs_q = RegressionModel(
        n_actions=6, len_list=len_list, base_model=base, action_context=fb["action_context"]
    ).fit_predict(
        context=fb["context"], action=fb["action"], reward=fb["reward"], position=inputs["position"],
        n_folds=3, random_state=5,
    )  # fmt: skip
    ours_q = RewardRegression(6, len_list, fb["action_context"], base).fit_predict(
        fb["context"], fb["action"], fb["reward"], inputs["position"], n_folds=3, random_state=5
    )
    assert ours_q.shape == (1500, 6, len_list)
    np.testing.assert_allclose(ours_q, theirs_q, rtol=0, atol=1e-10)
    inputs["estimated_rewards_by_reg_model"] = ours_q
    values = {}
    for name, est in OBP.items():
        ours = estimate_policy_value(name, **inputs)
        assert abs(ours - est.estimate_policy_value(**inputs)) < 1e-6, name
        values[name] = ours
    assert len(set(values.values())) == 4  # four different numbers, not one path four times


def test_intervals_match_obp_with_the_same_seed() -> None:
    _, inputs = logged(3, seed=11, n_rounds=400)
    inputs["estimated_rewards_by_reg_model"] = np.random.default_rng(0).random((400, 6, 3))
    ours = estimate_all(**inputs, n_bootstrap_samples=500, random_state=42)
    for name in ("ipw", "dm", "dr"):
        ci = OBP[name].estimate_interval(**inputs, n_bootstrap_samples=500, random_state=42)
        low, high = (v for k, v in ci.items() if k != "mean")
        assert ours[name].ci_low == pytest.approx(low, abs=1e-9)
        assert ours[name].ci_high == pytest.approx(high, abs=1e-9)
    snipw = ours["snipw"]
    assert snipw.ci_low < snipw.value < snipw.ci_high


def write_obd(root: Path, policy: str, campaign: str, n: int, n_items: int, seed: int) -> pd.DataFrame:
    """A small file in the OBD layout (index column, hashed user features, 1-based positions)."""
    rng = np.random.default_rng(seed)
    folder = root / policy / campaign
    folder.mkdir(parents=True)
    stamps = [f"2019-11-24 00:{m // 60:02d}:{m % 60:02d}.000000+00:00" for m in rng.permutation(n)]
    frame = pd.DataFrame(
        {
            "timestamp": stamps,
            "item_id": rng.integers(0, n_items, n),
            "position": rng.integers(1, 4, n),
            "click": (rng.random(n) < (0.3 if policy == "bts" else 0.1)).astype(int),
            "propensity_score": 1.0 / n_items if policy == "random" else rng.uniform(0.01, 0.9, n),
            "user_feature_0": rng.choice(["9b2d", "05c1", "c2e4"], n),
            "user_feature_1": rng.choice(["aa", "bb"], n),
        }
    )
    for a in range(3):
        frame[f"user-item_affinity_{a}"] = rng.random(n).round(3)
    frame.to_csv(folder / f"{campaign}.csv")
    items = pd.DataFrame(
        {
            "item_id": np.arange(n_items),
            "item_feature_0": rng.normal(size=n_items),
            "item_feature_1": rng.choice(["zz", "yy", "xx"], n_items),
            "item_feature_2": rng.choice(["p", "q"], n_items),
            "item_feature_3": rng.choice(["m"], n_items),
        }
    )
    items.to_csv(folder / "item_context.csv")
    return frame


def test_obd_reader_builds_obps_arrays(tmp_path: Path) -> None:
    frame = write_obd(tmp_path, "random", "men", n=300, n_items=34, seed=0)
    fb = read_obd(tmp_path, "random", "men")
    order = np.argsort(frame["timestamp"].to_numpy(), kind="stable")
    np.testing.assert_array_equal(fb.action, frame["item_id"].to_numpy()[order])
    np.testing.assert_array_equal(fb.position, frame["position"].to_numpy()[order] - 1)
    np.testing.assert_array_equal(fb.reward, frame["click"].to_numpy()[order])
    np.testing.assert_allclose(fb.pscore, 1 / 34)
    assert (fb.n_rounds, fb.n_actions, fb.len_list) == (300, 34, 3)
    # one-hot, first level dropped: 2 columns for 3 levels + 1 for 2 levels
    assert fb.context.shape == (300, 3)
    first = frame.iloc[order[0]]
    expected = [first["user_feature_0"] == v for v in ("9b2d", "c2e4")] + [first["user_feature_1"] == "bb"]
    np.testing.assert_array_equal(fb.context[0], np.array(expected, dtype=float))
    assert fb.affinity.shape == (300, 3)
    # action context: item_id, item_feature_1..3 label-encoded, then item_feature_0
    items = pd.read_csv(tmp_path / "random" / "men" / "item_context.csv", index_col=0)
    assert fb.action_context.shape == (34, 5)
    np.testing.assert_array_equal(fb.action_context[:, 0], np.arange(34))
    codes = {"xx": 0, "yy": 1, "zz": 2}
    np.testing.assert_array_equal(fb.action_context[:, 1], items["item_feature_1"].map(codes))
    np.testing.assert_allclose(fb.action_context[:, 4], items["item_feature_0"])
    assert fb.on_policy_value() == pytest.approx(frame["click"].mean())
    with pytest.raises(OBDError, match="missing"):
        read_obd(tmp_path, "bts", "men")


def test_cli_ope_on_a_synthetic_obd_layout(tmp_path: Path) -> None:
    write_obd(tmp_path, "random", "all", n=600, n_items=80, seed=1)  # the 'all' BTS prior has 80 arms
    bts = write_obd(tmp_path, "bts", "all", n=200, n_items=80, seed=2)
    args = ["evaluate", "ope", "--obd", str(tmp_path), "--campaign", "all", "--n-sim", "300"]
    result = CliRunner().invoke(app, [*args, "--n-bootstrap", "200", "--n-folds", "2"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert set(out["estimates"]) == set(out["obp_estimates"]) == {"ipw", "snipw", "dm", "dr"}
    for name, est in out["estimates"].items():
        assert abs(est["value"] - out["obp_estimates"][name]) < 1e-6
        assert est["ci_low"] <= est["value"] <= est["ci_high"]
        assert out["on_policy_in_ci"][name] == (est["ci_low"] <= out["on_policy_value"] <= est["ci_high"])
    assert out["max_abs_diff"] < 1e-6 and out["ci_max_abs_diff"] < 1e-9
    assert out["on_policy_value"] == pytest.approx(bts["click"].mean())
    bad = CliRunner().invoke(app, ["evaluate", "ope", "--obd", str(tmp_path), "--campaign", "kids"])
    assert bad.exit_code == 2
