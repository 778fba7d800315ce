"""The serving policy's table (`[policy]`, typed per policy without changing the TOML users write)
and the reward join (`[join]`, the one window)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import ConfigDict, Field, model_validator

from liverec.settings.tables import Table

PolicyName = Literal["greedy", "epsilon", "plackett_luce", "thompson", "linucb", "shuffle"]

POLICY_PARAMS: dict[str, tuple[str, ...]] = {
    "greedy": (),
    "epsilon": ("epsilon", "seed"),
    "plackett_luce": ("temperature", "seed", "n_propensity_samples", "min_propensity"),
    "thompson": (
        "sigma",
        "lam",
        "a",
        "b",
        "min_impressions",
        "cold_weight",
        "n_propensity_samples",
        "min_propensity",
        "seed",
        "user_weight",
        "user_lam",
        "user_window",
    ),
    "linucb": ("alpha", "lam", "user_weight", "user_lam", "user_window"),
    "shuffle": ("epsilon", "depth", "seed"),
}
MMR_KEYS = ("mmr", "mmr_pool_factor")


class PolicySettings(Table):
    """The serving policy (`[policy]`): `name`, the serving knobs, and the named policy's parameters.

    A parameter left out (None) takes the policy constructor's default, so defaults live in one
    place; a parameter the named policy does not take is an error here, at load time."""

    name: PolicyName = Field("greedy", description="exploration policy")
    candidates: int = Field(
        100, ge=1, description="how many of the model's top items the policy chooses from"
    )
    new_item_slots: int = Field(
        0, ge=0, description="the last positions of each list kept for the best-scored new items"
    )
    new_item_positives: float = Field(
        5.0,
        ge=0,
        description="an item whose positive interactions weigh less than this in [rewards] units "
        "(a click 1) is new",
    )
    mmr: float | None = Field(
        None,
        ge=0,
        le=1,
        description="any policy: re-rank its slates with MMR, this the relevance weight (1 = relevance "
        "only, 0 = diversity only); unset = no MMR",
    )
    mmr_pool_factor: float | None = Field(
        None, ge=1, description="with mmr: the policy ranks ceil(this * k) candidates for MMR to choose from"
    )
    epsilon: float | None = Field(
        None,
        ge=0,
        le=1,
        description="epsilon: chance per position of a random candidate instead of the best; "
        "shuffle: chance per slate that its top depth are shown in random order",
    )
    depth: int | None = Field(None, ge=1, description="shuffle: how many top positions a shuffle reorders")
    temperature: float | None = Field(
        None, gt=0, description="plackett_luce: softmax temperature (lower = greedier)"
    )
    sigma: float | None = Field(
        None, ge=0, description="thompson: reward noise scale of the posterior draws (larger = explores more)"
    )
    alpha: float | None = Field(
        None, ge=0, description="linucb: width of the confidence bonus (0 = greedy on the posterior mean)"
    )
    lam: float | None = Field(
        None,
        gt=0,
        description="thompson, linucb: prior precision around theta = 1 (larger = trusts the model score "
        "longer)",
    )
    a: float | None = Field(
        None, gt=0, description="thompson: Beta prior of a cold item's click rate, clicks"
    )
    b: float | None = Field(None, gt=0, description="thompson: ... and non-clicks")
    min_impressions: int | None = Field(
        None, ge=0, description="thompson: impressions after which an item stops being cold"
    )
    cold_weight: float | None = Field(
        None, ge=0, le=1, description="thompson: how much of a cold item's score its Beta draw replaces"
    )
    user_weight: float | None = Field(
        None, ge=0, description="thompson, linucb: weight of the per-user posterior (0 = off)"
    )
    user_lam: float | None = Field(
        None, gt=0, description="thompson, linucb: prior precision of the per-user posterior"
    )
    user_window: int | None = Field(
        None, ge=1, description="thompson, linucb: recent shown items the per-user posterior keeps"
    )
    n_propensity_samples: int | None = Field(
        None, ge=0, description="plackett_luce, thompson: Monte Carlo draws behind a logged propensity"
    )
    min_propensity: float | None = Field(
        None, gt=0, le=1, description="plackett_luce, thompson: floor of the logged propensity estimates"
    )
    seed: int | None = Field(
        None,
        description="epsilon, plackett_luce, thompson, shuffle: seed of the policy's draws (unset: fresh)",
    )

    @model_validator(mode="after")
    def _params_fit_the_policy(self) -> PolicySettings:
        accepted = POLICY_PARAMS[self.name]
        every = {p for params in POLICY_PARAMS.values() for p in params}
        foreign = sorted(p for p in every - set(accepted) if getattr(self, p) is not None)
        if foreign:
            raise ValueError(
                f"unknown parameter(s) for policy {self.name!r}: {', '.join(foreign)}; "
                f"accepted: {', '.join([*accepted, *MMR_KEYS])}"
            )
        if self.mmr_pool_factor is not None and self.mmr is None:
            raise ValueError("mmr_pool_factor needs mmr (the relevance weight)")
        return self

    def params(self) -> dict[str, Any]:
        """The keyword arguments set for `liverec.policy.registry.make_policy(name, ...)`."""
        keys = (*POLICY_PARAMS[self.name], *MMR_KEYS)
        return {k: getattr(self, k) for k in keys if getattr(self, k) is not None}


class JoinConfig(Table):
    """Reward attribution (`[join]`; `events.join.RewardJoiner`): one configuration for every join,
    the server's policy feedback, `liverec evaluate ope` and the simulator, so all see identical joins.

    ``window_s`` is 300 s. It is also a learning policy's feedback delay (an impression's reward
    reaches `Policy.update` only when its window closes) and what sizes the open impressions held in
    memory. Clicks, likes, skips and dwell follow an impression within seconds to minutes, so five
    minutes credits them and a bandit hears about them within five minutes; a longer window would
    delay every update by as much, and hold that many more open impressions. A conversion later than
    the window is unattributed (counted in the join's stats): raise ``window_s`` to credit it, and the
    server and evaluation move together. (Before, the server used 300 s and evaluation 1,800 s.)

    ``aggregate="sum"`` (default) values an impression by everything it led to (click + purchase =
    1 + 4); ``"max"`` by the best single outcome (repeat clicks count once, click + purchase = 4).
    Negatives add in under ``sum``; under ``max`` they only matter when nothing positive happened.
    """

    model_config = ConfigDict(frozen=True)

    window_s: float = Field(
        300.0, ge=0, description="rewards up to this long after an impression are attributed to it"
    )
    aggregate: Literal["sum", "max"] = Field(
        "sum", description="an impression's reward: the sum of what it led to, or its best single outcome"
    )
    grace_s: float = Field(
        0.0, ge=0, description="extra event time to wait for out-of-order events before closing"
    )
    max_open: int = Field(
        1_000_000, ge=1, description="hard cap on open impressions; beyond it the oldest close early"
    )
