"""The small typed tables: server, state, popularity, rules, rewards, privacy and auth, and the
`Table` base every table builds on (unknown keys are errors that suggest the closest name)."""

from __future__ import annotations

import difflib
import hashlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator

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
    follow_log: bool = Field(
        True,
        description="fold the events other servers append to the same store (replicas on Postgres or "
        "Redis): Postgres LISTEN/NOTIFY, Redis XREAD BLOCK, polling for SQLite",
    )
    follow_wait_s: float = Field(
        1.0, gt=0, le=60, description="longest sleep of the log follower between checks"
    )
    snapshots: bool = Field(
        True,
        description="start from the newest snapshot of the folded state and replay only the log's tail; "
        "snapshot periodically and at clean shutdown",
    )
    snapshot_dir: Path | None = Field(
        None, description="where snapshots go (default: data_dir/snapshots); keep it private to the server"
    )
    snapshot_every_s: float = Field(
        300.0, ge=0, description="seconds between periodic snapshots (0 = only at shutdown)"
    )
    snapshot_min_events: int = Field(
        10_000, ge=0, description="a periodic snapshot waits for at least this many new events"
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
