"""`make_policy(name, **params)`: a policy by name, with its hyperparameters as keyword arguments.

    make_policy("epsilon", epsilon=0.05, seed=0)
    make_policy("thompson", sigma=0.3, mmr=0.7)  # ``mmr`` / ``mmr_pool_factor``: wrap in `MMR`

Unknown names and unknown or misspelled parameters raise ``ValueError`` naming what is accepted.
A ``[policy]`` settings table is checked when the settings load (`liverec.settings.PolicySettings`);
`policy_from_settings` builds its policy.
"""

from __future__ import annotations

import inspect
from typing import Any

from liverec.policy.base import Greedy, Policy
from liverec.policy.epsilon import EpsilonGreedy
from liverec.policy.linucb import LinUCB
from liverec.policy.plackett_luce import PlackettLuce
from liverec.policy.rerank import MMR
from liverec.policy.shuffle import ShuffleTopK
from liverec.policy.thompson import ThompsonSampling
from liverec.settings import PolicySettings

POLICIES: dict[str, type[Policy]] = {
    "greedy": Greedy,
    "epsilon": EpsilonGreedy,
    "plackett_luce": PlackettLuce,
    "thompson": ThompsonSampling,
    "linucb": LinUCB,
    "shuffle": ShuffleTopK,
}
MMR_PARAMS = {"mmr": "lam", "mmr_pool_factor": "pool_factor"}


def policy_params(name: str) -> list[str]:
    """The keyword arguments policy ``name`` accepts (besides ``mmr`` and ``mmr_pool_factor``)."""
    return list(policy_defaults(name))


def policy_defaults(name: str) -> dict[str, Any]:
    """Each keyword argument of policy ``name`` with its default: the one place policy defaults live
    (`PolicySettings` leaves a parameter unset to mean this)."""
    if name not in POLICIES:
        raise ValueError(f"unknown policy {name!r}; known: {', '.join(sorted(POLICIES))}")
    params = inspect.signature(POLICIES[name].__init__).parameters.values()
    return {p.name: p.default for p in params if p.name != "self" and p.kind is p.POSITIONAL_OR_KEYWORD}


def make_policy(name: str, **params: Any) -> Policy:
    """A new policy ``name`` built with ``params``; ``mmr=lam`` wraps it in MMR re-ranking."""
    accepted = policy_params(name)
    wrap = {MMR_PARAMS[p]: params.pop(p) for p in list(params) if p in MMR_PARAMS}
    unknown = sorted(set(params) - set(accepted))
    if unknown:
        raise ValueError(
            f"unknown parameter(s) for policy {name!r}: {', '.join(unknown)}; "
            f"accepted: {', '.join([*accepted, *MMR_PARAMS]) or 'none'}"
        )
    policy = POLICIES[name](**params)
    if wrap.get("lam") is None:
        if wrap:
            raise ValueError("mmr_pool_factor needs mmr (the relevance weight lam)")
        return policy
    return MMR(policy, **wrap)


def policy_from_settings(settings: PolicySettings) -> Policy:
    """The serving policy of a ``[policy]`` table (validated when the settings loaded)."""
    return make_policy(settings.name, **settings.params())
