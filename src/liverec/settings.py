"""All configuration in one place: defaults < TOML file < ``LIVEREC_*`` environment < explicit arguments.

Nested groups are set from the environment with a double underscore, e.g.
``LIVEREC_SERVER__PORT=9000`` or ``LIVEREC_REWARDS__PURCHASE=5``.
"""

from __future__ import annotations

import difflib
import hashlib
import os
import re
import warnings
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, Literal
from urllib.parse import parse_qsl, unquote, urlsplit

from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

DEFAULT_DATA_DIR = Path("liverec-data")


class Table(BaseModel):
    """A settings table. An unknown key is an error naming it, the nearest known key and all known
    ones: a typo must fail at start-up, not silently leave the default in place."""

    model_config = ConfigDict(extra="forbid")

    @model_validator(mode="before")
    @classmethod
    def _known_keys(cls, data: Any) -> Any:
        if isinstance(data, Mapping):
            known = list(cls.model_fields)
            unknown = [str(k) for k in data if k not in cls.model_fields]
            if unknown:
                hints = []
                for key in unknown:
                    near = difflib.get_close_matches(key, known, n=1)
                    hints.append(repr(key) + (f" (did you mean {near[0]!r}?)" if near else ""))
                raise ValueError(f"unknown key {', '.join(hints)}; known keys: {', '.join(sorted(known))}")
        return data


class ServerSettings(Table):
    host: str = Field("127.0.0.1", description="address the HTTP API listens on")
    port: int = Field(8000, ge=0, le=65535, description="port the HTTP API listens on")
    max_body_bytes: int = Field(16 * 1024 * 1024, gt=0, description="larger request bodies get 413")
    max_batch_events: int = Field(10_000, gt=0, description="larger event batches get 413")
    max_future_skew_s: float = Field(3600.0, ge=0, description="events further in the future get 422")
    max_k: int = Field(1000, gt=0, description="largest list a client may ask for")
    max_json_depth: int = Field(
        8, ge=1, le=64, description="deepest nesting of an event's context or item's attributes (422 beyond)"
    )
    max_json_bytes: int = Field(
        16 * 1024, gt=0, description="largest event context or item attributes as JSON, in bytes (422 beyond)"
    )
    cors_origins: list[str] = Field(
        default_factory=list,
        description="browser origins allowed to call the API (CORS); empty = CORS off",
    )
    max_logged_impressions: int = Field(
        50,
        ge=0,
        description="impressions logged per served list: its first positions, with their propensities; "
        "positions beyond are not logged and off-policy evaluation cannot use them (docs/ope.md)",
    )
    reload_poll_s: float = Field(
        0.5, gt=0, description="how often the server looks for a newly promoted model"
    )
    compute_threads: int = Field(
        1, gt=0, description="torch/BLAS threads for scoring; 1 = lowest tail latency"
    )
    gc_threshold: int = Field(
        50_000,
        ge=0,
        description="gen-0 garbage-collection threshold while serving (0 = Python's 700); the "
        "state rebuilt at start is frozen out of collection, which halves ingest CPU",
    )


class StateSettings(Table):
    max_sequence: int = Field(200, gt=0, description="positive interactions kept per user")


class PopularitySettings(Table):
    """Time-decayed popularity blended with item-to-item co-occurrence."""

    half_life_s: float = Field(7 * 86400.0, gt=0, description="popularity half-life, in event time")
    trending_half_life_s: float = Field(86400.0, gt=0, description="half-life of the trending list")
    cooc_window: int = Field(20, gt=0, description="recent positives per user that co-occur")
    cooc_neighbors: int = Field(100, gt=0, description="recent users remembered per item")
    cooc_weight: float = Field(0.8, ge=0, le=1, description="blend: 1 = co-occurrence only, 0 = popularity")
    max_gap_half_lives: float = Field(
        8.0,
        ge=0,
        description="a silence in event time longer than this many half-lives (of each list) decays as "
        "if it were this long: live traffic after an imported historical log starts from its popular "
        "items (weighing 2^-8 of a new click each) instead of from nothing; 0 = off",
    )


class RulesSettings(Table):
    """Sequential rules added to the Transformer's scores: weight * log(counts + eps) (`model.rules`)."""

    weight: float = Field(0.0, ge=0, description="0 = off; the served score adds weight * log prior")
    window: int = Field(10, gt=0, description="positions apart that still count as a pair")
    decay: float = Field(0.8, gt=0, le=1, description="a pair lag apart weighs decay ** (lag - 1)")
    backward: float = Field(0.5, ge=0, description="weight of the reverse direction of a pair")
    history: int = Field(3, gt=0, description="the user's newest items whose rows are summed")
    eps: float = Field(0.01, gt=0, description="count given to a pair never seen")
    max_per_row: int = Field(2000, ge=0, description="followers kept per item, the largest; 0 = all")

    def params(self) -> dict[str, Any]:
        return self.model_dump(exclude={"weight"})


class RewardWeights(Table):
    """Reward per event type. A positive reward makes an event a positive interaction."""

    impression: float = Field(0.0, description="being shown; 0: an impression alone is no interaction")
    click: float = Field(1.0, description="reward of a click")
    add_to_cart: float = Field(2.0, description="reward of an add-to-cart")
    purchase: float = Field(4.0, description="reward of a purchase")
    like: float = Field(1.0, description="reward of a like")
    dislike: float = Field(-1.0, description="reward of a dislike (an explicit negative)")
    skip: float = Field(-0.25, description="reward of a skip (a mild negative)")
    rating: float = Field(1.0, description="reward of a rating at or above rating_positive_min (else 0)")
    dwell: float = Field(1.0, description="reward of a long enough dwell (scaled by dwell_norm_s)")
    rating_positive_min: float = Field(0.0, description="a rating at or above this is a positive")
    dwell_positive_s: float = Field(10.0, ge=0, description="dwell below this many seconds is not positive")
    dwell_norm_s: float = Field(60.0, gt=0, description="dwell reward = weight * min(1, seconds / this)")


class ModelSettings(Table):
    """The Transformer's hyperparameters (`[model]`); `model.transformer.TransformerConfig` is these
    plus the catalog size. docs/model.md says which configuration uses each and why it is there."""

    text_dim: int = Field(
        384, ge=0, description="width of the item text embeddings (all-MiniLM-L6-v2: 384); 0 = no text"
    )
    d_model: int = Field(64, gt=0, description="width of the hidden states and item representations")
    n_layers: int = Field(2, gt=0, description="Transformer blocks")
    n_heads: int = Field(2, gt=0, description="attention heads per block; must divide d_model")
    max_len: int = Field(200, gt=0, description="newest interactions the model reads per user")
    dropout: float = Field(0.2, ge=0, lt=1, description="dropout on embeddings, attention and MLP outputs")
    id_dropout: float = Field(
        0.0,
        ge=0,
        le=1,
        description="share of items whose id embedding is swapped for a learned unknown-item one at each "
        "training step: the model learns to score an item by its text alone, and untrained (new) items "
        "start from that vector",
    )
    text_loss: float = Field(
        0.0,
        ge=0,
        description="> 0: the id_dropout share of items leaves the main loss alone and is scored by text "
        "alone in a second loss of this weight, so known items keep their ids in the main loss",
    )
    event_types: bool = Field(
        False, description="add an embedding of each interaction's event type (a rating by its stars)"
    )
    loss: Literal["full", "sampled"] = Field(
        "full",
        description='"full": softmax over the whole catalog; "sampled": n_negatives shared negatives '
        "drawn by popularity, with logQ correction (catalogs too large for the full softmax)",
    )
    n_negatives: int = Field(1024, gt=0, description='negatives per batch of loss = "sampled"')

    @model_validator(mode="after")
    def _consistent(self) -> ModelSettings:
        if self.d_model % self.n_heads:
            raise ValueError(f"n_heads ({self.n_heads}) must divide d_model ({self.d_model})")
        if self.text_loss and not (self.id_dropout and self.text_dim):
            raise ValueError("text_loss needs id_dropout > 0 and text_dim > 0 (its items are scored by text)")
        return self


class TrainConfig(Table):
    """Offline training (`[train]`): `liverec train`, `liverec evaluate prequential`'s first model
    and the simulator's. `trainer.offline.train` reads it as it is."""

    epochs: int = Field(200, ge=1, description="most epochs to run; early stopping usually ends sooner")
    batch_size: int = Field(128, ge=1, description="users per batch")
    lr: float = Field(1e-3, gt=0, description="AdamW learning rate (the peak, under the cosine schedule)")
    weight_decay: float = Field(0.0, ge=0, description="AdamW weight decay")
    grad_clip: float = Field(1.0, ge=0, description="gradient-norm clip; 0 = off")
    patience: int = Field(
        10, ge=1, description="evaluations without a better validation NDCG@10 before stopping"
    )
    eval_every: int = Field(1, ge=1, description="epochs between validation evaluations")
    crop: bool = Field(
        True, description="random crops of histories longer than max_len, so every part is trained on"
    )
    seed: int = Field(0, ge=0, description="seed of the initial weights, batch order and crops")
    threads: int = Field(2, ge=1, description="torch intra-op threads")
    max_seconds: float = Field(0.0, ge=0, description="time budget of the run; 0 = none")
    ema_decay: float = Field(
        0.0, ge=0, lt=1, description="> 0: evaluate and keep an exponential moving average of the weights"
    )
    compile: bool = Field(
        False, description="torch.compile the encoder (faster epochs after a one-off compile)"
    )
    schedule: Literal["constant", "cosine"] = Field(
        "constant",
        description='"cosine": linear warmup, then cosine decay to 0 over the run; the run ends after '
        "epochs or max_seconds, whichever comes first, so a time-boxed run still ends its decay at the "
        "budget",
    )
    warmup_epochs: int = Field(3, ge=0, description="epochs of linear warmup under the cosine schedule")
    stop_after: int = Field(
        0, ge=0, description="> 0: end after this epoch, the schedule still spanning epochs (a refit)"
    )
    shuffle_ties: bool = Field(
        False,
        description="each epoch, put interactions logged at the same timestamp in a fresh random order: "
        "their log order says nothing when a source records whole sessions at once (ml-100k: half of "
        "all neighbouring ratings share their second, in an order its README calls random)",
    )
    reverse: float = Field(
        0.0,
        ge=0,
        le=1,
        description="each epoch, this share of the histories is also trained back to front (newest "
        "first): the model learns which items go together in either order, as sequential rules count "
        "pairs both ways",
    )


class OnlineConfig(Table):
    """The online learner (`[online]`): `liverec learn`, `liverec serve --learn`, prequential
    evaluation and the simulator (`trainer.online.OnlineLearner`)."""

    batch_size: int = Field(256, ge=1, description="examples per step, fresh + replayed")
    replay_ratio: float = Field(
        0.25, ge=0, le=1, description="share of each step taken from the replay buffer"
    )
    replay_capacity: int = Field(100_000, ge=1, description="examples the replay buffer holds")
    replay_half_life: float = Field(
        50_000.0, gt=0, description="a replayed example's sampling weight halves every this many examples"
    )
    window: int = Field(
        20, ge=1, description="input length of online examples (the newest items carry the next one)"
    )
    dropout: bool = Field(
        False,
        description="online steps run without dropout by default: EMA and replay regularise, and it is "
        "30% faster",
    )
    lr: float = Field(3e-4, gt=0, description="Adam learning rate at step 0")
    lr_decay_steps: float = Field(20_000.0, gt=0, description="lr_t = lr / sqrt(1 + t / lr_decay_steps)")
    weight_decay: float = Field(0.0, ge=0, description="AdamW weight decay")
    grad_clip: float = Field(1.0, ge=0, description="gradient-norm clip; 0 = off")
    ema_decay: float = Field(
        0.98, ge=0, le=1, description="per step; the moving average of the weights is what gets published"
    )
    unlikelihood: float = Field(0.5, ge=0, description="weight of the explicit-negative (dislike, skip) term")
    ips_max: float = Field(
        0.0,
        ge=0,
        description="> 0: weight a positive by 1 / propensity of the impression it came from (inverse "
        "propensity, capped at this), so items a policy shows more are not learned as better",
    )
    item_ttl_s: float = Field(
        0.0, ge=0, description="items unseen this long stop being trained as candidates; 0 = never"
    )
    compile: bool = Field(False, description="torch.compile the encoder (see `SASRec.compile_encoder`)")
    seed: int = Field(0, ge=0, description="seed of the replay sampling and the weights' updates")
    threads: int = Field(1, ge=1, description="intra-op threads of each step's ops")
    shards: int = Field(
        2,
        ge=1,
        description="each step's batch is cut into this many shards whose forward and backward run in "
        "parallel threads (one sync per step, not per op, so a shard preempted by the server costs little)",
    )
    nice: int = Field(
        10, ge=0, le=19, description="`liverec learn` lowers its CPU priority this much: requests come first"
    )


class GateConfig(Table):
    """When the online learner publishes (`[gate]`): a candidate ships only if its NDCG@10 on the
    newest events is not worse than live's beyond `tolerance` (`trainer.follow.Follower`)."""

    publish_events: int = Field(2_000, ge=1, description="publish a candidate after this many new events ...")
    publish_s: float = Field(5.0, ge=0, description="... or this many seconds, whichever comes first")
    min_eval: int = Field(200, ge=0, description="scored positives needed on the slice before a decision")
    eval_per_page: int = Field(
        64, ge=1, description="at most this many positives of each page are scored (a uniform sample)"
    )
    tolerance: float = Field(
        0.01, ge=0, description="the candidate may be this much below live (NDCG@10) and still ship"
    )
    keep_versions: int = Field(20, ge=1, description="older online versions are pruned from the registry")


class FilterConfig(Table):
    """What the online learner holds back (`[filters]`; `trainer.filters.EventFilter`), and with
    ``serving`` what the server's live counts leave out. Events stay in the log; these only decide
    what is learned or counted from."""

    duplicate_window_s: float = Field(
        2.0, ge=0, description="the same (user, item, type) again within this is dropped (double clicks)"
    )
    max_repeats: int = Field(
        3,
        ge=0,
        description="a user clicking the same item more often than this within repeat_window_s is "
        "quarantined (the first clicks still count)",
    )
    repeat_window_s: float = Field(3600.0, ge=0, description="the window of max_repeats")
    user_max_per_minute: int = Field(
        120, ge=1, description="more events than this from one user in a minute quarantine the user (bots)"
    )
    item_max_per_minute: int = Field(
        300,
        ge=1,
        description="an item taking more events than this in a minute from fewer than item_min_users users "
        "is quarantined (click farms); keep it below (item_min_users - 1) * user_max_per_minute, else no "
        "farm of few users could ever reach it",
    )
    item_min_users: int = Field(5, ge=1, description="distinct users below which an item burst is a farm")
    quarantine_s: float = Field(3600.0, ge=0, description="how long a quarantined user or item is held back")
    serving: bool = Field(
        True,
        description="also screen the server's live popularity, trending, co-occurrence and rules counts "
        "(and a learning policy's feedback); the events still go to the log and the user's own state",
    )


PolicyName = Literal["greedy", "epsilon", "plackett_luce", "thompson", "linucb"]
# Which `[policy]` parameters each policy takes: its constructor's keyword arguments (tested against
# `liverec.policy.registry.POLICIES`); the constructors own the defaults. `mmr` and
# `mmr_pool_factor` wrap any policy in MMR re-ranking.
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
        None, ge=0, le=1, description="epsilon: chance per position of a random candidate instead of the best"
    )
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
        None, description="epsilon, plackett_luce, thompson: seed of the policy's draws (unset: fresh)"
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


class PrivacySettings(Table):
    """User deletion (`[privacy]`): how long a model version trained on a deleted user's events may
    stay live. The online learner retrains from the store (which no longer holds those events) and
    publishes the result before the deadline of the oldest deletion it has not yet honoured."""

    retrain_deadline_s: float = Field(
        86400.0, gt=0, description="a deleted user's events leave the live model within this many seconds"
    )
    retrain_lead: float = Field(
        0.5,
        gt=0,
        le=1,
        description="share of the deadline after which the learner starts the retrain (the rest is margin)",
    )


Scope = Literal["read", "write", "admin"]
SCOPES: tuple[Scope, ...] = ("read", "write", "admin")
MIN_KEY_CHARS = 16


class ApiKey(Table):
    """One API key (`[[auth.keys]]`). The file may hold the key itself or only its sha256, so that
    it holds no secret; the key is a `SecretStr`, so printing the settings never shows it."""

    name: str = Field(
        min_length=1,
        max_length=64,
        pattern=r"^[A-Za-z0-9_.-]+$",
        description="shown in logs and metrics, never the key",
    )
    key: SecretStr | None = Field(
        None,
        min_length=MIN_KEY_CHARS,
        description="the secret clients send as 'Authorization: Bearer <key>' (at least 16 characters)",
    )
    key_sha256: str | None = Field(
        None,
        pattern=r"^[0-9a-fA-F]{64}$",
        description="instead of key: the sha256 of the key, hex, so the file holds no secret",
    )
    scopes: list[Scope] = Field(
        min_length=1, description="read | write | admin (admin also grants read and write)"
    )

    @model_validator(mode="after")
    def _one_secret(self) -> ApiKey:
        if (self.key is None) == (self.key_sha256 is None):
            raise ValueError(f"API key {self.name!r}: give exactly one of key or key_sha256")
        return self

    def digest(self) -> bytes:
        """The sha256 of the key: what a presented key's digest is compared with."""
        if self.key is not None:
            return hashlib.sha256(self.key.get_secret_value().encode()).digest()
        return bytes.fromhex(str(self.key_sha256))


class AuthSettings(Table):
    """Who may call the HTTP API (`[auth]`). With no keys the server runs open (every request has
    every scope), which it allows only on a loopback address unless ``insecure`` is set."""

    keys: list[ApiKey] = Field(default_factory=list, description="the API keys, [[auth.keys]] tables")
    insecure: bool = Field(
        False, description="serve with no keys on a non-loopback address (anyone who can connect is admin)"
    )

    @model_validator(mode="after")
    def _distinct(self) -> AuthSettings:
        names = [k.name for k in self.keys]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"API key names must be unique: {', '.join(dupes)}")
        digests = [k.digest() for k in self.keys]
        if len(set(digests)) != len(digests):
            raise ValueError("two API keys have the same secret; give each client its own key")
        return self


class Settings(BaseSettings):
    """liverec configuration. Pass ``config_file`` (or set ``LIVEREC_CONFIG``) to read a TOML file."""

    model_config = SettingsConfigDict(
        env_prefix="LIVEREC_", env_nested_delimiter="__", extra="forbid", validate_default=True
    )

    data_dir: Path = DEFAULT_DATA_DIR
    store_url: str = Field("", description="sqlite:///path, memory://, postgresql://..., redis://...")
    registry_dir: Path | None = None
    server: ServerSettings = ServerSettings()
    state: StateSettings = StateSettings()
    popularity: PopularitySettings = PopularitySettings()
    rules: RulesSettings = RulesSettings()
    rewards: RewardWeights = RewardWeights()
    model: ModelSettings = Field(default_factory=ModelSettings, description="the Transformer's settings")
    train: TrainConfig = Field(default_factory=TrainConfig, description="offline training")
    online: OnlineConfig = Field(default_factory=OnlineConfig, description="the online learner")
    gate: GateConfig = Field(default_factory=GateConfig, description="when the online learner publishes")
    filters: FilterConfig = Field(default_factory=FilterConfig, description="what the learner holds back")
    policy: PolicySettings = Field(default_factory=PolicySettings, description="the serving policy")
    join: JoinConfig = Field(default_factory=JoinConfig, description="reward attribution, one window")
    auth: AuthSettings = Field(default_factory=AuthSettings, description="API keys and their scopes")
    privacy: PrivacySettings = Field(default_factory=PrivacySettings, description="user deletion")

    @model_validator(mode="before")
    @classmethod
    def _feedback_window_alias(cls, data: Any) -> Any:
        """``[policy] feedback_window_s`` (deprecated) sets ``[join] window_s``: the server's feedback
        and off-policy evaluation join rewards in one window, so there is one setting for it."""
        if not isinstance(data, dict) or not isinstance(data.get("policy"), Mapping):
            return data
        policy = dict(data["policy"])
        if "feedback_window_s" not in policy:
            return data
        window = policy.pop("feedback_window_s")
        join = data.get("join", {})
        join = dict(join.model_dump(exclude_unset=True) if isinstance(join, BaseModel) else join)
        if "window_s" in join and _differ(join["window_s"], window):
            raise ValueError(
                f"[policy] feedback_window_s = {window} and [join] window_s = {join['window_s']} differ; "
                "the server and evaluation join rewards in one window: set only [join] window_s"
            )
        warnings.warn(
            "[policy] feedback_window_s is deprecated: set [join] window_s (one window for the server's "
            "feedback and off-policy evaluation)",
            FutureWarning,
            stacklevel=2,
        )
        join.setdefault("window_s", window)
        return {**data, "policy": policy, "join": join}

    @model_validator(mode="after")
    def _derive_paths(self) -> Settings:
        if not self.store_url:
            self.store_url = f"sqlite:///{self.data_dir / 'events.db'}"
        if self.registry_dir is None:
            self.registry_dir = self.data_dir / "registry"
        return self

    @property
    def registry_path(self) -> Path:
        """The model registry folder (``registry_dir``, else ``data_dir/registry``)."""
        return self.registry_dir or self.data_dir / "registry"

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Highest priority first: explicit arguments, then LIVEREC_* variables, then the TOML file.
        return (init_settings, env_settings, TomlConfigSettingsSource(settings_cls))


def _differ(a: Any, b: Any) -> bool:
    """Whether two numbers differ (values that are no numbers are left to the field's validation)."""
    try:
        return float(a) != float(b)
    except (TypeError, ValueError):
        return False


def _config_path(config_file: str | Path | None) -> Path | None:
    """The TOML file to read (argument, else ``$LIVEREC_CONFIG``), or None."""
    path = config_file or os.environ.get("LIVEREC_CONFIG")
    if not path:
        return None
    toml_path = Path(path)
    if not toml_path.is_file():
        raise FileNotFoundError(f"config file not found: {toml_path}")
    return toml_path


def load_settings(config_file: str | Path | None = None, **overrides: Any) -> Settings:
    """Settings from a TOML file (argument, else ``$LIVEREC_CONFIG``), the environment and overrides."""
    toml_path = _config_path(config_file)
    if toml_path is None:
        return Settings(**overrides)

    class FileSettings(Settings):
        model_config = SettingsConfigDict(toml_file=toml_path)

    return FileSettings(**overrides)


DERIVED = ("store_url", "registry_dir")  # default to a path under data_dir


def value_sources(config_file: str | Path | None = None, **overrides: Any) -> dict[str, str]:
    """Where `load_settings` (same arguments) took each value that is not a plain default from:
    dotted key -> ``"argument"``, ``"env LIVEREC_X__Y"``, ``"file PATH"`` or ``"default (from
    data_dir)"``; the highest-priority source wins, as in `load_settings` (`liverec config`)."""
    path = _config_path(config_file)
    found: dict[str, str] = {}
    if path is not None:
        for key in _leaves(TomlConfigSettingsSource(Settings, toml_file=path)()):
            found[key] = f"file {path}"
    environ = {name.upper(): name for name in os.environ}
    for key in _leaves(EnvSettingsSource(Settings)()):
        parts = key.upper().split(".")
        names = ["LIVEREC_" + "__".join(parts[:n]) for n in range(len(parts), 0, -1)]
        found[key] = "env " + next((environ[n] for n in names if n in environ), names[0])
    for key in _leaves(overrides):
        found[key] = "argument"
    alias = found.pop("policy.feedback_window_s", None)
    if alias is not None:
        found.setdefault("join.window_s", f"{alias} as [policy] feedback_window_s (deprecated)")
    for key in DERIVED:
        found.setdefault(key, "default (from data_dir)")
    return found


def _leaves(values: Mapping[str, Any], prefix: str = "") -> Iterator[str]:
    for key, value in values.items():
        if isinstance(value, BaseModel):
            value = value.model_dump(exclude_unset=True)
        if isinstance(value, Mapping) and value:
            yield from _leaves(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}"


# query parameters (and conninfo keys) whose values are secrets: password, passfile, sslpassword,
# access_token, api_key, secret, ... (a path such as sslkey is masked too: erring on the safe side)
_SECRET_NAME = re.compile(r"pass|pwd|secret|token|key|auth|credential|signature", re.IGNORECASE)
_CONNINFO_SECRET = re.compile(
    r"(\b[\w.-]*(?:pass|pwd|secret|token|key|auth|credential)[\w.-]*\s*=\s*)('[^']*'|\S+)", re.I
)
MASK = "***"


def redact_url(url: str) -> str:
    """``url`` with every secret masked, for logs, errors, /healthz and output: the password in the
    user-info part (``postgresql://u:***@host/db``) and the values of query parameters named like a
    secret (``?password=***&sslpassword=***``, tokens, keys). The one redaction function: every
    place that shows a store URL calls it. It never raises (a malformed URL is still masked)."""
    if "://" not in url:  # a libpq conninfo string ("host=h password=x") or no URL at all
        return _CONNINFO_SECRET.sub(lambda m: m.group(1) + MASK, url)
    scheme, rest = url.split("://", 1)
    path_at = min((i for i in (rest.find("/"), rest.find("?"), rest.find("#")) if i >= 0), default=len(rest))
    netloc, tail = rest[:path_at], rest[path_at:]
    if "@" in netloc:
        userinfo, host = netloc.rsplit("@", 1)
        if ":" in userinfo:
            userinfo = userinfo.split(":", 1)[0] + ":" + MASK
        netloc = f"{userinfo}@{host}"
    tail, hash_, fragment = tail.partition("#")
    path, q, query = tail.partition("?")
    if query:
        pairs = []
        for pair in query.split("&"):
            name, eq, _value = pair.partition("=")
            pairs.append(f"{name}={MASK}" if eq and _SECRET_NAME.search(unquote(name)) else pair)
        query = "&".join(pairs)
    return f"{scheme}://{netloc}{path}{q}{query}{hash_}{fragment}"


def url_secrets(url: str) -> list[str]:
    """The secret values inside ``url`` (as written and percent-decoded), longest first: what
    `redact_text` masks in a message that may quote them (a driver's error text)."""
    found: set[str] = set()
    try:
        parts = urlsplit(url)
        if parts.password:
            found.add(parts.password)
        for name, value in parse_qsl(parts.query, keep_blank_values=False):
            if _SECRET_NAME.search(name):
                found.add(value)
    except ValueError:
        pass
    found |= {unquote(v) for v in found}
    # a secret of one or two characters would turn every such letter of a message into ***
    return sorted((v for v in found if len(v) >= 3), key=len, reverse=True)


def redact_text(text: str, url: str) -> str:
    """``text`` (an error message about ``url``) with the URL redacted and every secret value of
    the URL masked wherever it appears: drivers sometimes quote the connection string."""
    text = text.replace(url, redact_url(url))
    for secret in url_secrets(url):
        text = text.replace(secret, MASK)
    return text
