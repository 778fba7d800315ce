"""Fixtures for the online-trainer tests: the tiny world and trained SASRec of `support.world`, on a
real SQLite store and a real registry in a tmp dir.

A `Rig` is one data dir: the store holds the catalog (text cached) and the world's history (what
v1 was trained on), the registry has v1 live with ``trainer_offset`` = the end of that history, so
a `Follower` starts learning right after it. Streams continue the world: every user keeps walking
their genre's cycle, so there is something real to learn and to score.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from liverec.core.schema import Event, EventType
from liverec.model.text import TextEncoder
from liverec.model.transformer import SASRec
from liverec.registry.registry import ModelRegistry
from liverec.settings import Settings
from liverec.store import open_store
from liverec.store.base import EventStore
from liverec.trainer.filters import FilterConfig
from liverec.trainer.follow import Follower, GateConfig
from liverec.trainer.online import OnlineConfig
from support.world import (
    T0,
    Trained,
    fill_store,
    make_settings,
    next_item,
    walks,
    world_items,
)

N_USERS = 300  # the users v1 was trained on: u0 .. u299
STREAM_T0 = T0 + 3_600.0  # streamed events start an hour after the history
# small, deterministic gate: decisions by event count only (never by wall time)
GATE = GateConfig(publish_events=600, publish_s=1e9, min_eval=60, eval_per_page=64, tolerance=0.02)
ONLINE = OnlineConfig(batch_size=64, threads=1, seed=0)
PAGE = 300  # events per Follower step


def history() -> list[Event]:
    """The world's walks as click events (what v1 learned from), one second apart per user."""
    out = []
    for u, walk in enumerate(walks(N_USERS)):
        for k, item in enumerate(walk):
            out.append(click(f"u{u}", item, T0 + k, event_id=f"h-{u}-{k}"))
    out.sort(key=lambda e: e.timestamp)
    return out


def click(user: str, item: str, ts: float, type: EventType = EventType.click, **fields: Any) -> Event:
    return Event(user_id=user, item_id=item, type=type, timestamp=ts, **fields)


def last_items() -> dict[str, str]:
    return {f"u{u}": walk[-1] for u, walk in enumerate(walks(N_USERS))}


def stream(steps: int, users: int = N_USERS, t0: float = STREAM_T0, gap_s: float = 0.2) -> list[Event]:
    """``steps`` more clicks per user, round robin: each continues the cycle of their genre from
    their last item. Per user the clicks are ``users * gap_s`` seconds apart (well under any limit)."""
    last = last_items()
    out, n = [], 0
    for step in range(steps):
        for u in range(users):
            uid = f"u{u}"
            last[uid] = next_item(last[uid])
            out.append(click(uid, last[uid], t0 + n * gap_s, event_id=f"s-{uid}-{step}"))
            n += 1
    return out


def interleave(a: Sequence[Event], b: Sequence[Event]) -> list[Event]:
    """Both streams merged by timestamp (stable: ``a`` first on ties)."""
    return sorted(itertools.chain(a, b), key=lambda e: e.timestamp)


@dataclass
class Rig:
    """A data dir with a store, a registry (v1 live) and the trained model's vocabulary."""

    settings: Settings
    store: EventStore
    registry: ModelRegistry
    encoder: TextEncoder
    trained: Trained
    v1: str
    followers: list[Follower] = field(default_factory=list)

    def append(self, events: Sequence[Event], batch: int = 5_000) -> int:
        """Append in batches; returns the last offset."""
        for i in range(0, len(events), batch):
            self.store.append(events[i : i + batch])
        return self.store.last_offset()

    def follower(
        self,
        online: OnlineConfig = ONLINE,
        gate: GateConfig = GATE,
        filters: FilterConfig | None = None,
        checkpoint: Path | None = None,
    ) -> Follower:
        f = Follower(
            self.store,
            self.registry,
            online.model_copy(),  # a copy: tests may change its learning rate
            gate,
            self.settings.rewards,
            filters,
            self.encoder,
            checkpoint,
        )
        self.followers.append(f)
        return f

    def live_net(self) -> SASRec:
        return self.registry.load().model


def make_rig(data_dir: Path, trained: Trained, encoder: TextEncoder) -> Rig:
    settings = make_settings(data_dir)
    fill_store(settings, world_items(), history(), encoder)
    store = open_store(settings.store_url)
    registry = ModelRegistry(settings.registry_path)
    v1 = registry.save(
        trained.fresh(),
        trained.vocab,
        {"val": trained.result.best_val},
        extra={"trainer_offset": store.last_offset()},
    )
    registry.promote(v1)
    return Rig(settings, store, registry, encoder, trained, v1)


@pytest.fixture
def rig(tmp_path: Path, trained: Trained, encoder: TextEncoder) -> Iterator[Rig]:
    r = make_rig(tmp_path / "data", trained, encoder)
    try:
        yield r
    finally:
        r.store.close()


def weights(net: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in net.state_dict().items()}


def max_abs(net: torch.nn.Module) -> float:
    return max(float(p.detach().abs().max()) for p in net.parameters())


def top_k(net: SASRec, vocab: Sequence[str], history: Sequence[str], k: int = 10) -> list[str]:
    """The network's own top-k unseen items after ``history`` (item ids)."""
    index = {item_id: r + 1 for r, item_id in enumerate(vocab)}
    seq = torch.tensor([[index[i] for i in history]], dtype=torch.long)
    scores = net.score_last(seq)[0].numpy()
    order = [vocab[r] for r in np.argsort(-scores, kind="stable")]
    return [i for i in order if i not in history][:k]
