"""All configuration in one place: defaults < TOML file < ``LIVEREC_*`` environment < explicit arguments.

Nested groups are set from the environment with a double underscore, e.g.
``LIVEREC_SERVER__PORT=9000`` or ``LIVEREC_REWARDS__PURCHASE=5``. The tables live in `tables`,
`learning` and `policy`; URL redaction in `secrets`. Import everything from ``liverec.settings``.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field, model_validator
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from liverec.settings.explain import ExplainSettings
from liverec.settings.learning import FilterConfig, GateConfig, ModelSettings, OnlineConfig, TrainConfig
from liverec.settings.policy import MMR_KEYS, POLICY_PARAMS, JoinConfig, PolicyName, PolicySettings
from liverec.settings.retrieval import RetrievalSettings
from liverec.settings.search import SearchSettings
from liverec.settings.secrets import MASK, redact_text, redact_url, url_secrets
from liverec.settings.tables import (
    DEFAULT_DATA_DIR,
    SCOPES,
    ApiKey,
    AuthSettings,
    PopularitySettings,
    PrivacySettings,
    RewardWeights,
    RulesSettings,
    Scope,
    ServerSettings,
    StateSettings,
    Table,
)

__all__ = [
    "DEFAULT_DATA_DIR", "MASK", "MMR_KEYS", "POLICY_PARAMS", "SCOPES", "ApiKey", "AuthSettings",
    "ExplainSettings", "FilterConfig", "GateConfig", "JoinConfig", "ModelSettings", "OnlineConfig",
    "PolicyName", "PolicySettings", "PopularitySettings", "PrivacySettings", "RetrievalSettings",
    "RewardWeights", "RulesSettings",
    "Scope", "SearchSettings", "ServerSettings", "Settings", "StateSettings", "Table", "TrainConfig",
    "load_settings",
    "redact_text", "redact_url", "url_secrets", "value_sources",
]  # fmt: skip


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
    search: SearchSettings = Field(default_factory=SearchSettings, description="search and its ranker")
    explain: ExplainSettings = Field(default_factory=ExplainSettings, description="?explain=true")
    retrieval: RetrievalSettings = Field(
        default_factory=RetrievalSettings, description="candidate retrieval in large catalogs"
    )

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
