"""make_policy: every name builds its class; unknown names and parameters fail loudly."""

from __future__ import annotations

import pytest

from liverec.policy import MMR, POLICIES, EpsilonGreedy, make_policy
from liverec.policy.registry import policy_params


def test_every_name_builds_its_policy_with_defaults() -> None:
    assert set(POLICIES) == {"greedy", "epsilon", "plackett_luce", "thompson", "linucb"}
    for name, cls in POLICIES.items():
        policy = make_policy(name)
        assert type(policy) is cls and policy.name == name


def test_params_are_passed_and_mmr_wraps() -> None:
    policy = make_policy("epsilon", epsilon=0.25, seed=3)
    assert isinstance(policy, EpsilonGreedy) and policy.epsilon == 0.25 and policy.seed == 3
    wrapped = make_policy("thompson", sigma=0.2, mmr=0.6, mmr_pool_factor=2)
    assert isinstance(wrapped, MMR) and wrapped.lam == 0.6 and wrapped.pool_factor == 2
    assert wrapped.name == "mmr(thompson)"


def test_unknown_names_and_params_raise_clearly() -> None:
    with pytest.raises(ValueError, match="unknown policy 'ucb'; known: epsilon, greedy"):
        make_policy("ucb")
    with pytest.raises(
        ValueError, match=r"unknown parameter\(s\) for policy 'epsilon': eps; accepted: epsilon"
    ):
        make_policy("epsilon", eps=0.1)
    with pytest.raises(ValueError, match="greedy"):
        make_policy("greedy", seed=1)
    with pytest.raises(ValueError, match="needs mmr"):
        make_policy("greedy", mmr_pool_factor=2)
    with pytest.raises(ValueError):
        make_policy("epsilon", epsilon=2.0)
    assert policy_params("linucb") == ["alpha", "lam", "user_weight", "user_lam", "user_window"]
