"""All configuration in one place: defaults < TOML file < ``LIVEREC_*`` environment < explicit arguments.

Nested groups are set from the environment with a double underscore, e.g.
``LIVEREC_SERVER__PORT=9000`` or ``LIVEREC_REWARDS__PURCHASE=5``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

DEFAULT_DATA_DIR = Path("liverec-data")


class ServerSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535)
    max_body_bytes: int = Field(16 * 1024 * 1024, gt=0, description="larger request bodies get 413")
    max_batch_events: int = Field(10_000, gt=0)
    max_future_skew_s: float = Field(3600.0, ge=0, description="events further in the future get 422")
    max_k: int = Field(1000, gt=0, description="largest list a client may ask for")
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


class StateSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    max_sequence: int = Field(200, gt=0, description="positive interactions kept per user")


class PopularitySettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    """Time-decayed popularity blended with item-to-item co-occurrence."""

    half_life_s: float = Field(7 * 86400.0, gt=0, description="popularity half-life, in event time")
    trending_half_life_s: float = Field(86400.0, gt=0, description="half-life of the trending list")
    cooc_window: int = Field(20, gt=0, description="recent positives per user that co-occur")
    cooc_neighbors: int = Field(100, gt=0, description="recent users remembered per item")
    cooc_weight: float = Field(0.8, ge=0, le=1, description="blend: 1 = co-occurrence only, 0 = popularity")


class RulesSettings(BaseModel):
    """Sequential rules added to the Transformer's scores: weight * log(counts + eps) (`model.rules`)."""

    model_config = ConfigDict(extra="forbid")

    weight: float = Field(0.0, ge=0, description="0 = off; the served score adds weight * log prior")
    window: int = Field(10, gt=0, description="positions apart that still count as a pair")
    decay: float = Field(0.8, gt=0, le=1, description="a pair lag apart weighs decay ** (lag - 1)")
    backward: float = Field(0.5, ge=0, description="weight of the reverse direction of a pair")
    history: int = Field(3, gt=0, description="the user's newest items whose rows are summed")
    eps: float = Field(0.01, gt=0, description="count given to a pair never seen")
    max_per_row: int = Field(2000, ge=0, description="followers kept per item, the largest; 0 = all")

    def params(self) -> dict[str, Any]:
        return self.model_dump(exclude={"weight"})


class RewardWeights(BaseModel):
    model_config = ConfigDict(extra="forbid")

    """Reward per event type. A positive reward makes an event a positive interaction."""

    impression: float = 0.0
    click: float = 1.0
    add_to_cart: float = 2.0
    purchase: float = 4.0
    like: float = 1.0
    dislike: float = -1.0
    skip: float = -0.25
    rating: float = 1.0
    dwell: float = 1.0
    rating_positive_min: float = Field(0.0, description="a rating at or above this is a positive")
    dwell_positive_s: float = Field(10.0, ge=0, description="dwell below this many seconds is not positive")
    dwell_norm_s: float = Field(60.0, gt=0, description="dwell reward = weight * min(1, seconds / this)")


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
    model: dict[str, Any] = Field(default_factory=dict, description="TransformerConfig fields, e.g. d_model")
    train: dict[str, Any] = Field(default_factory=dict, description="TrainConfig fields, e.g. epochs, lr")
    online: dict[str, Any] = Field(
        default_factory=dict, description="OnlineConfig fields, e.g. lr, batch_size"
    )
    gate: dict[str, Any] = Field(
        default_factory=dict, description="GateConfig fields, e.g. publish_s, tolerance"
    )
    filters: dict[str, Any] = Field(
        default_factory=dict, description="FilterConfig fields (bot/burst limits)"
    )
    policy: dict[str, Any] = Field(
        default_factory=lambda: {"name": "greedy"},
        description="exploration policy: name (greedy, epsilon, plackett_luce, thompson, linucb), its "
        "parameters, feedback_window_s (how long rewards are attributed to a served slate) and "
        "candidates (how many of the model's top items it chooses from, default 100), new_item_slots "
        "(the last positions of each list kept for the best-scored new items, default 0) and "
        "new_item_positives (an item whose positive interactions weigh less than this in [rewards] "
        "units, a click 1, is new; default 5)",
    )
    join: dict[str, Any] = Field(
        default_factory=dict, description="JoinConfig fields (reward attribution), e.g. window_s"
    )

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


def load_settings(config_file: str | Path | None = None, **overrides: Any) -> Settings:
    """Settings from a TOML file (argument, else ``$LIVEREC_CONFIG``), the environment and overrides."""
    path = config_file or os.environ.get("LIVEREC_CONFIG")
    if not path:
        return Settings(**overrides)
    toml_path = Path(path)
    if not toml_path.is_file():
        raise FileNotFoundError(f"config file not found: {toml_path}")

    class FileSettings(Settings):
        model_config = SettingsConfigDict(toml_file=toml_path)

    return FileSettings(**overrides)
