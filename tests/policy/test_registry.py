"""make_policy: every name builds its class; unknown names and parameters fail loudly."""

from __future__ import annotations

import pytest

from liverec.policy import MMR, POLICIES, EpsilonGreedy, make_policy
from liverec.policy.registry import policy_params


def test_every_name_builds_its_policy_with_defaults() -> None:
    assert set(POLICIES) == {"greedy", "epsilon", "plackett_luce", "thompson", "linucb", "shuffle"}
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


def test_the_settings_table_of_policy_parameters_matches_the_constructors() -> None:
    """`[policy]` is checked at load against `POLICY_PARAMS` (settings imports nothing from liverec);
    this keeps that table equal to what each constructor takes, and every parameter a typed field."""
    from typing import get_args

    from liverec.settings import MMR_KEYS, POLICY_PARAMS, PolicyName, PolicySettings

    assert set(get_args(PolicyName)) == set(POLICY_PARAMS) == set(POLICIES)
    for name in POLICIES:
        assert list(POLICY_PARAMS[name]) == policy_params(name), name
    every = {p for params in POLICY_PARAMS.values() for p in params}
    serving = {"name", "candidates", "new_item_slots", "new_item_positives"}
    assert set(PolicySettings.model_fields) == every | set(MMR_KEYS) | serving
    assert policy_params("greedy") == []  # not object.__init__'s *args, **kwargs
