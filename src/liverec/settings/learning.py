"""The learning tables: the Transformer (`[model]`), offline training, the online learner, its
publishing gate and its event filters."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from liverec.settings.tables import Table


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


# Which `[policy]` parameters each policy takes: its constructor's keyword arguments (tested against
# `liverec.policy.registry.POLICIES`); the constructors own the defaults. `mmr` and
# `mmr_pool_factor` wrap any policy in MMR re-ranking.
