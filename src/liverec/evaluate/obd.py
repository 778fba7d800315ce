"""The Open Bandit Dataset (ZOZOTOWN) as obp's arrays, read with pandas (obp's own loader breaks on
pandas 3): ``{data}/{random,bts}/{campaign}/{campaign}.csv`` and ``item_context.csv`` beside it.

Preprocessing follows ``obp.dataset.OpenBanditDataset`` 0.4.1 line by line, so the arrays are the ones
obp would build: rows sorted by timestamp (stably: ties keep file order), positions dense-ranked to
0..len_list-1, reward = click, context = one-hot user features with the first level of each dropped
(obp does *not* put the user-item affinities in the context; they are kept in ``affinity``), action
context = every item_context column but ``item_feature_0`` label-encoded (item_id included, as obp
does), then ``item_feature_0``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from liverec.evaluate.ope import RewardRegression, estimate_all

POLICIES = ("random", "bts")
CAMPAIGNS = ("all", "men", "women")
REQUIRED = ("timestamp", "item_id", "position", "click", "propensity_score")


class OBDError(ValueError):
    """The folder does not hold the Open Bandit Dataset layout."""


@dataclass(frozen=True)
class OBDFeedback:
    """Logged bandit feedback of one behaviour policy and campaign; arrays in timestamp order."""

    behavior_policy: str
    campaign: str
    action: np.ndarray  # (n_rounds,) int64 item index
    position: np.ndarray  # (n_rounds,) int64 in [0, len_list)
    reward: np.ndarray  # (n_rounds,) float64 click in {0, 1}
    pscore: np.ndarray  # (n_rounds,) float64 logging propensity
    context: np.ndarray  # (n_rounds, dim_context) float64 one-hot user features
    affinity: np.ndarray  # (n_rounds, n_affinity) float64 user-item affinities
    action_context: np.ndarray  # (n_actions, dim_action_context) float64

    @property
    def n_rounds(self) -> int:
        return len(self.action)

    @property
    def n_actions(self) -> int:
        return int(self.action_context.shape[0])

    @property
    def len_list(self) -> int:
        return int(self.position.max()) + 1

    def on_policy_value(self) -> float:
        """Mean click: the behaviour policy's own value (obp's ground truth for OPE)."""
        return float(self.reward.mean())


def _label_encode(column: pd.Series) -> np.ndarray:
    """sklearn LabelEncoder codes (index into the sorted unique values), (n,) int64."""
    _, codes = np.unique(column.to_numpy(), return_inverse=True)
    return codes.astype(np.int64)


def action_context_from(items: pd.DataFrame) -> np.ndarray:
    """obp's item features: label-encoded columns except item_feature_0, then it; (n_items, d)."""
    if "item_feature_0" not in items.columns:
        raise OBDError("item_context.csv has no item_feature_0 column")
    cats = [_label_encode(items[c]) for c in items.columns if c != "item_feature_0"]
    numeric = items["item_feature_0"].to_numpy(dtype=float)
    return np.column_stack([*cats, numeric]).astype(float)


def read_obd(data_path: str | Path, behavior_policy: str, campaign: str) -> OBDFeedback:
    """Read one ``{behavior_policy}/{campaign}`` folder of the Open Bandit Dataset."""
    if behavior_policy not in POLICIES:
        raise OBDError(f"behavior_policy must be one of {POLICIES}, got {behavior_policy!r}")
    if campaign not in CAMPAIGNS:
        raise OBDError(f"campaign must be one of {CAMPAIGNS}, got {campaign!r}")
    folder = Path(data_path) / behavior_policy / campaign
    logs, item_file = folder / f"{campaign}.csv", folder / "item_context.csv"
    for f in (logs, item_file):
        if not f.is_file():
            raise OBDError(f"missing {f} (expected the OBD layout {{random,bts}}/{{campaign}}/)")
    data = pd.read_csv(logs, index_col=0)
    items = pd.read_csv(item_file, index_col=0)
    missing = [c for c in REQUIRED if c not in data.columns]
    if missing or "item_id" not in items.columns:
        raise OBDError(f"{logs}: missing column(s) {missing or ['item_id (item_context.csv)']}")
    data = data.sort_values("timestamp", kind="stable")

    action = data["item_id"].to_numpy(dtype=np.int64)
    item_ids = items["item_id"].to_numpy(dtype=np.int64)
    if not np.array_equal(item_ids, np.arange(len(items))):
        raise OBDError(f"{item_file}: item_id must be 0..n_items-1 in order")
    if action.min() < 0 or action.max() >= len(items):
        raise OBDError(f"{logs}: item_id outside item_context.csv")
    _, dense = np.unique(data["position"].to_numpy(), return_inverse=True)  # scipy rankdata "dense" - 1
    user_cols = [c for c in data.columns if "user_feature" in c]
    context = pd.get_dummies(data[user_cols], drop_first=True).to_numpy(dtype=float)
    affinity = data[[c for c in data.columns if "affinity" in c]].to_numpy(dtype=float)
    pscore = data["propensity_score"].to_numpy(dtype=float)
    if not np.all((pscore > 0) & (pscore <= 1)):
        raise OBDError(f"{logs}: propensity_score must be in (0, 1]")
    return OBDFeedback(
        behavior_policy=behavior_policy,
        campaign=campaign,
        action=action,
        position=dense.astype(np.int64),
        reward=data["click"].to_numpy(dtype=float),
        pscore=pscore,
        context=context,
        affinity=affinity,
        action_context=action_context_from(items),
    )


def bts_action_dist(
    n_actions: int,
    len_list: int,
    campaign: str,
    n_rounds: int,
    n_sim: int = 100_000,
    random_state: int = 12345,
) -> np.ndarray:
    """The production Bernoulli Thompson Sampling policy's action distribution, (n_rounds, n_actions,
    len_list) float64: obp's ``BernoulliTS(is_zozotown_prior=True, campaign=...)`` and its Monte Carlo
    ``compute_batch_action_dist`` (the policy is context-free, so every round gets the same table)."""
    from obp.policy import BernoulliTS

    policy = BernoulliTS(
        n_actions=n_actions,
        len_list=len_list,
        is_zozotown_prior=True,
        campaign=campaign,
        random_state=random_state,
    )
    return np.asarray(policy.compute_batch_action_dist(n_rounds=n_rounds, n_sim=n_sim), dtype=float)


def obp_point_estimates(inputs: dict[str, Any]) -> dict[str, float]:
    """obp's own IPW, SNIPW, DM and DR on the same inputs (the cross-check)."""
    from obp.ope import (
        DirectMethod,
        DoublyRobust,
        InverseProbabilityWeighting,
        SelfNormalizedInverseProbabilityWeighting,
    )

    estimators = {
        "ipw": InverseProbabilityWeighting(),
        "snipw": SelfNormalizedInverseProbabilityWeighting(),
        "dm": DirectMethod(),
        "dr": DoublyRobust(),
    }
    return {name: float(est.estimate_policy_value(**inputs)) for name, est in estimators.items()}


def obp_intervals(
    inputs: dict[str, Any], alpha: float, n_bootstrap_samples: int, random_state: int
) -> dict[str, dict[str, float]]:
    """obp's bootstrap intervals for IPW, DM and DR (SNIPW's differs by design, see `ope`)."""
    from obp.ope import DirectMethod, DoublyRobust, InverseProbabilityWeighting

    out = {}
    for name, est in (
        ("ipw", InverseProbabilityWeighting()),
        ("dm", DirectMethod()),
        ("dr", DoublyRobust()),
    ):
        ci = est.estimate_interval(
            **inputs, alpha=alpha, n_bootstrap_samples=n_bootstrap_samples, random_state=random_state
        )
        low, high = (float(v) for k, v in ci.items() if k != "mean")
        out[name] = {"ci_low": low, "ci_high": high}
    return out


def obd_report(
    data_path: str | Path,
    campaign: str = "all",
    *,
    n_sim: int = 100_000,
    n_bootstrap_samples: int = 10_000,
    n_folds: int = 3,
    alpha: float = 0.05,
    random_state: int = 12345,
    affinity: bool = False,
    compare_intervals: bool = True,
) -> dict[str, Any]:
    """The standard OBD benchmark: estimate the BTS policy's click rate from the uniform-random logs
    with liverec's estimators and obp's on identical inputs (same action_dist, same q̂), and compare
    both with BTS's own logged click rate."""
    logged = read_obd(data_path, "random", campaign)
    target = read_obd(data_path, "bts", campaign)
    action_dist = bts_action_dist(
        logged.n_actions, logged.len_list, campaign, logged.n_rounds, n_sim, random_state
    )
    context = np.c_[logged.context, logged.affinity] if affinity else logged.context
    q_hat = RewardRegression(logged.n_actions, logged.len_list, logged.action_context).fit_predict(
        context, logged.action, logged.reward, logged.position, n_folds, random_state
    )
    inputs: dict[str, Any] = {
        "reward": logged.reward,
        "action": logged.action,
        "position": logged.position,
        "pscore": logged.pscore,
        "action_dist": action_dist,
        "estimated_rewards_by_reg_model": q_hat,
    }
    ours = estimate_all(
        **inputs, alpha=alpha, n_bootstrap_samples=n_bootstrap_samples, random_state=random_state
    )
    theirs = obp_point_estimates(inputs)
    truth = target.on_policy_value()
    diffs = {k: abs(ours[k].value - theirs[k]) for k in ours}
    report: dict[str, Any] = {
        "estimates": {k: e.as_dict() for k, e in ours.items()},
        "obp_estimates": theirs,
        "on_policy_value": truth,
        "max_abs_diff": max(diffs.values()),
        "parity_1e-6": max(diffs.values()) <= 1e-6,
        "on_policy_in_ci": {k: e.contains(truth) for k, e in ours.items()},
        "relative_error": {k: abs(e.value - truth) / truth for k, e in ours.items()},
        "campaign": campaign,
        "n_rounds": logged.n_rounds,
        "n_actions": logged.n_actions,
        "len_list": logged.len_list,
        "logged_policy_value": logged.on_policy_value(),
        "setup": {
            "logging_policy": "random",
            "evaluation_policy": "bts: obp BernoulliTS(is_zozotown_prior=True).compute_batch_action_dist",
            "n_sim": n_sim,
            "regression": f"LogisticRegression(C=100) per position, {n_folds}-fold cross-fitted",
            "context": "user features one-hot" + (" + affinities" if affinity else ""),
            "alpha": alpha,
            "n_bootstrap_samples": n_bootstrap_samples,
            "random_state": random_state,
        },
    }
    if compare_intervals:
        theirs_ci = obp_intervals(inputs, alpha, n_bootstrap_samples, random_state)
        report["obp_intervals"] = theirs_ci
        report["ci_max_abs_diff"] = max(
            abs(ours[k].as_dict()[b] - ci[b]) for k, ci in theirs_ci.items() for b in ("ci_low", "ci_high")
        )
    return report
