"""Off-policy evaluation: how would another policy have done, judged from logs with propensities.

Array conventions are obp's (Open Bandit Pipeline 0.4.1), so results can be compared exactly:

- ``action`` (n_rounds,) int: the logged action (item index) of each round;
- ``position`` (n_rounds,) int: its slot in the list (all 0 when ``len_list`` is 1);
- ``reward`` (n_rounds,) float;
- ``pscore`` (n_rounds,) float in (0, 1]: the logging policy's probability of that action there;
- ``action_dist`` (n_rounds, n_actions, len_list) float: the evaluation policy's probabilities;
- ``estimated_rewards_by_reg_model`` (n_rounds, n_actions, len_list) float: q̂(x, a, position).

Estimators (value = mean over rounds of a per-round term; w = π_e(a_t | x_t, pos_t) / pscore_t):

- ``ipw``: mean(w r). Unbiased when pscore is the true logging probability and the logging policy
  covers every action the evaluation policy may take; high variance when w is large.
- ``snipw``: sum(w r) / sum(w). Same assumptions, slightly biased, much less variance.
- ``dm``: mean over rounds of Σ_a π_e(a) q̂(x, a). No propensities; as good as q̂ (biased when q̂ is).
- ``dr``: dm + mean(w (r - q̂(x, a_t))). Unbiased if either the propensities or q̂ are right.

Confidence intervals are percentile bootstraps over rounds (seeded ``numpy.random.RandomState``, the
same resampling stream as obp's ``estimate_interval``, so IPW/DM/DR intervals match obp's exactly).
For SNIPW the ratio is recomputed on every resample (obp resamples terms normalised on the full
sample, which understates its variance), so its interval differs from obp's by design.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from liverec.core.metrics import bootstrap_interval
from liverec.events.join import JoinedImpression

ESTIMATORS = ("ipw", "snipw", "dm", "dr")
NEEDS_MODEL = frozenset({"dm", "dr"})


@dataclass(frozen=True)
class Estimate:
    value: float
    ci_low: float
    ci_high: float

    def as_dict(self) -> dict[str, float]:
        return {"value": self.value, "ci_low": self.ci_low, "ci_high": self.ci_high}

    def contains(self, x: float) -> bool:
        return self.ci_low <= x <= self.ci_high


def _positions(position: np.ndarray | None, n: int) -> np.ndarray:
    return np.zeros(n, dtype=int) if position is None else np.asarray(position, dtype=int)


def _check(action: np.ndarray, action_dist: np.ndarray, position: np.ndarray, *others: np.ndarray) -> None:
    if action_dist.ndim != 3:
        raise ValueError(f"action_dist must be (n_rounds, n_actions, len_list), got {action_dist.shape}")
    n, n_actions, len_list = action_dist.shape
    for arr in (action, position, *others):
        if arr.shape != (n,):
            raise ValueError(f"per-round arrays must be ({n},), got {arr.shape}")
    if action.min(initial=0) < 0 or action.max(initial=0) >= n_actions:
        raise ValueError(f"actions must be in [0, {n_actions})")
    if position.min(initial=0) < 0 or position.max(initial=0) >= len_list:
        raise ValueError(f"positions must be in [0, {len_list})")


def importance_weights(
    action: np.ndarray, pscore: np.ndarray, action_dist: np.ndarray, position: np.ndarray | None = None
) -> np.ndarray:
    """w_t = π_e(a_t | x_t, pos_t) / pscore_t, (n_rounds,) float64."""
    action = np.asarray(action, dtype=int)
    pscore = np.asarray(pscore, dtype=float)
    pos = _positions(position, len(action))
    _check(action, action_dist, pos, pscore)
    if not np.all(pscore > 0):
        raise ValueError("pscore must be > 0 (a logged action had zero probability?)")
    return np.asarray(action_dist[np.arange(len(action)), action, pos] / pscore, dtype=float)


def dm_terms(
    action_dist: np.ndarray, estimated_rewards_by_reg_model: np.ndarray, position: np.ndarray
) -> np.ndarray:
    """Σ_a π_e(a | x_t, pos_t) q̂(x_t, a, pos_t) per round, (n_rounds,) float64. Divided by Σ_a π_e
    (1 for a proper distribution) exactly as obp's ``np.average`` does."""
    if estimated_rewards_by_reg_model.shape != action_dist.shape:
        raise ValueError(
            f"estimated rewards {estimated_rewards_by_reg_model.shape} must match action_dist "
            f"{action_dist.shape}"
        )
    rounds = np.arange(action_dist.shape[0])
    q = estimated_rewards_by_reg_model[rounds, :, position]
    pi = action_dist[rounds, :, position]
    return np.asarray(np.average(q, weights=pi, axis=1), dtype=float)


def round_terms(
    estimator: str,
    *,
    reward: np.ndarray,
    action: np.ndarray,
    pscore: np.ndarray,
    action_dist: np.ndarray,
    position: np.ndarray | None = None,
    estimated_rewards_by_reg_model: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray | None]:
    """Per-round terms (n_rounds,) whose mean is the estimate, and for ``snipw`` the weights (the
    estimate is then sum(terms) / sum(weights)); ``None`` for the others."""
    if estimator not in ESTIMATORS:
        raise ValueError(f"unknown estimator {estimator!r}; expected one of {ESTIMATORS}")
    reward = np.asarray(reward, dtype=float)
    action = np.asarray(action, dtype=int)
    pos = _positions(position, len(action))
    w = importance_weights(action, pscore, action_dist, pos)
    if reward.shape != w.shape:
        raise ValueError(f"reward must be {w.shape}, got {reward.shape}")
    if estimator == "ipw":
        return reward * w, None
    if estimator == "snipw":
        return reward * w, w
    if estimated_rewards_by_reg_model is None:
        raise ValueError(f"{estimator} needs estimated_rewards_by_reg_model")
    q = np.asarray(estimated_rewards_by_reg_model, dtype=float)
    dm = dm_terms(action_dist, q, pos)
    if estimator == "dm":
        return dm, None
    q_factual = q[np.arange(len(action)), action, pos]
    return dm + w * (reward - q_factual), None


def _value(terms: np.ndarray, weights: np.ndarray | None) -> float:
    if weights is None:
        return float(terms.mean())
    return float(terms.sum() / weights.sum())


def estimate_policy_value(estimator: str, **inputs: Any) -> float:
    """Point estimate of one estimator (``ipw``, ``snipw``, ``dm``, ``dr``); obp's keyword names."""
    return _value(*round_terms(estimator, **inputs))


def estimate_interval(
    estimator: str,
    *,
    alpha: float = 0.05,
    n_bootstrap_samples: int = 10_000,
    random_state: int | None = None,
    **inputs: Any,
) -> Estimate:
    """Point estimate with its bootstrap percentile interval (seeded, reproducible)."""
    terms, weights = round_terms(estimator, **inputs)
    low, high = bootstrap_interval(terms, weights, alpha, n_bootstrap_samples, random_state)
    return Estimate(_value(terms, weights), low, high)


def estimate_all(
    *,
    reward: np.ndarray,
    action: np.ndarray,
    pscore: np.ndarray,
    action_dist: np.ndarray,
    position: np.ndarray | None = None,
    estimated_rewards_by_reg_model: np.ndarray | None = None,
    alpha: float = 0.05,
    n_bootstrap_samples: int = 10_000,
    random_state: int | None = None,
) -> dict[str, Estimate]:
    """Every estimator the inputs allow (DM and DR only with estimated rewards), same seed each."""
    inputs: dict[str, Any] = {
        "reward": reward,
        "action": action,
        "pscore": pscore,
        "action_dist": action_dist,
        "position": position,
        "estimated_rewards_by_reg_model": estimated_rewards_by_reg_model,
    }
    names = [e for e in ESTIMATORS if estimated_rewards_by_reg_model is not None or e not in NEEDS_MODEL]
    return {
        name: estimate_interval(
            name,
            alpha=alpha,
            n_bootstrap_samples=n_bootstrap_samples,
            random_state=random_state,
            **inputs,
        )
        for name in names
    }


class RewardRegression:
    """q̂(x, a, position) for DM and DR: one classifier per position on [context, action_context[a]],
    optionally cross-fitted (K folds: each round is predicted by a model that never saw it).

    The same semantics as obp's ``RegressionModel(fitting_method="normal")`` (features, a clone of the
    base model per position, ``KFold(shuffle=True, random_state)``), so the two give identical q̂.
    """

    def __init__(
        self,
        n_actions: int,
        len_list: int = 1,
        action_context: np.ndarray | None = None,
        base_model: Any = None,
    ) -> None:
        from sklearn.base import is_classifier

        self.n_actions = n_actions
        self.len_list = len_list
        self.action_context = (
            np.eye(n_actions, dtype=int) if action_context is None else np.asarray(action_context)
        )
        if self.action_context.shape[0] != n_actions:
            raise ValueError(f"action_context must have {n_actions} rows, got {self.action_context.shape}")
        self.base_model = base_model if base_model is not None else default_base_model()
        self._is_classifier = bool(is_classifier(self.base_model))
        self.models: list[Any] = []

    def _features(self, context: np.ndarray, action: np.ndarray) -> np.ndarray:
        return np.c_[context, self.action_context[action]]

    def fit(
        self, context: np.ndarray, action: np.ndarray, reward: np.ndarray, position: np.ndarray | None = None
    ) -> RewardRegression:
        """context (n, d) float, action (n,) int, reward (n,), position (n,) int in [0, len_list)."""
        from sklearn.base import clone

        pos = _positions(position if self.len_list > 1 else None, len(action))
        self.models = []
        for p in range(self.len_list):
            idx = pos == p
            if not idx.any():
                raise ValueError(f"no training data at position {p}")
            model = clone(self.base_model)
            model.fit(self._features(context[idx], action[idx]), reward[idx])
            self.models.append(model)
        return self

    def predict(self, context: np.ndarray) -> np.ndarray:
        """q̂ for every round, action and position: (n, n_actions, len_list) float64."""
        n = context.shape[0]
        out = np.zeros((n, self.n_actions, self.len_list))
        for a in range(self.n_actions):
            x = self._features(context, np.full(n, a, dtype=int))
            for p, model in enumerate(self.models):
                out[:, a, p] = model.predict_proba(x)[:, 1] if self._is_classifier else model.predict(x)
        return out

    def fit_predict(
        self,
        context: np.ndarray,
        action: np.ndarray,
        reward: np.ndarray,
        position: np.ndarray | None = None,
        n_folds: int = 1,
        random_state: int | None = None,
    ) -> np.ndarray:
        """Cross-fitted q̂ (n, n_actions, len_list): with ``n_folds`` > 1 each fold is predicted by a
        model fitted on the other folds (so DR's correction term is not fitted to its own noise)."""
        from sklearn.model_selection import KFold

        if n_folds < 1:
            raise ValueError(f"n_folds must be >= 1, got {n_folds}")
        if n_folds == 1:
            return self.fit(context, action, reward, position).predict(context)
        pos = _positions(position if self.len_list > 1 else None, len(action))
        out = np.zeros((context.shape[0], self.n_actions, self.len_list))
        folds = KFold(n_splits=n_folds, shuffle=True, random_state=random_state)
        for train, test in folds.split(context):
            self.fit(context[train], action[train], reward[train], pos[train])
            out[test] = self.predict(context[test])
        return out


def default_base_model(random_state: int = 12345) -> Any:
    """Logistic regression as in obp's OBD benchmark configuration (C=100, max_iter=10000)."""
    from sklearn.linear_model import LogisticRegression

    return LogisticRegression(C=100, max_iter=10_000, random_state=random_state)


# -- liverec's own logs ---------------------------------------------------------------------------
def logged_report(
    records: Sequence[JoinedImpression],
    policy: str | None = None,
    alpha: float = 0.05,
    n_bootstrap_samples: int = 2_000,
    random_state: int | None = 12345,
) -> dict[str, Any]:
    """Per logged policy: its on-policy value (mean joined reward per impression) and, from its
    propensities, IPW/SNIPW estimates of "uniform random order over the logged slate".

    That target shows each of the slate's k items at a position with probability 1/k, so
    w = (1/k) / propensity. This is a small diagnostic, not a general evaluator: it is unbiased only
    when the logging policy gave every slate item a chance at every position (propensity < 1); with
    a deterministic ranker (propensity 1) it just rescales the logged rewards by 1/k.
    """
    groups: dict[str, list[JoinedImpression]] = {}
    for rec in records:
        name = rec.policy or "(none)"
        if policy is None or name == policy:
            groups.setdefault(name, []).append(rec)
    slate_size: dict[str, int] = {}
    for rec in records:
        if rec.request_id is not None:
            slate_size[rec.request_id] = slate_size.get(rec.request_id, 0) + 1
    out: dict[str, Any] = {}
    for name, recs in sorted(groups.items()):
        reward = np.array([r.reward for r in recs], dtype=float)
        low, high = bootstrap_interval(reward, None, alpha, n_bootstrap_samples, random_state)
        entry: dict[str, Any] = {
            "impressions": len(recs),
            "slates": len({r.request_id for r in recs if r.request_id is not None}),
            "rewarded": int(np.count_nonzero(reward)),
            "on_policy_value": Estimate(float(reward.mean()), low, high).as_dict(),
        }
        logged = [r for r in recs if r.propensity is not None and r.request_id is not None]
        entry["with_propensity"] = len(logged)
        if logged:
            r = np.array([x.reward for x in logged], dtype=float)
            p = np.array([x.propensity for x in logged], dtype=float)
            k = np.array([slate_size[x.request_id] for x in logged if x.request_id is not None], dtype=float)
            w = (1.0 / k) / p
            target: dict[str, Any] = {"mean_weight": float(w.mean())}
            for est, weights in (("ipw", None), ("snipw", w)):
                low, high = bootstrap_interval(r * w, weights, alpha, n_bootstrap_samples, random_state)
                target[est] = Estimate(_value(r * w, weights), low, high).as_dict()
            entry["uniform_over_slate"] = target
        out[name] = entry
    return out
