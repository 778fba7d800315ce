"""A fresh model trained offline on the store as it is now: how the learner forgets deleted users'
events that its weights had learned (`Follower.retrain_without` promotes it and purges the rest)."""

from __future__ import annotations

import time
from typing import Any

from liverec.core.split import leave_one_out, sequences_from_events
from liverec.model.text import TextEncoder
from liverec.registry.registry import ModelRegistry, RegistryError
from liverec.settings import RewardWeights, TrainConfig
from liverec.store.base import EventStore
from liverec.trainer.offline import build_model
from liverec.trainer.offline import train as fit


def retrain_from_store(
    store: EventStore,
    registry: ModelRegistry,
    config: dict[str, Any],
    cfg: TrainConfig,
    rewards: RewardWeights | None,
    encoder: TextEncoder | None,
    extra: dict[str, Any],
) -> str:
    """Train ``config`` (a saved model's, ``n_items`` ignored) from scratch on every event in the
    store and register it with no parent (its predecessors held deleted users). Returns the version."""
    events = [s.event for s in store.iter_events()]
    seqs = sequences_from_events(events, store.list_items(), rewards)
    split = leave_one_out(seqs, min_len=3)
    if not split.train:
        raise RegistryError("nothing to retrain on after the deletions: no user with 3 positives")
    config = {k: v for k, v in config.items() if k != "n_items"}
    text = None
    if config.get("text_dim", 0) and encoder is not None:
        text = encoder.encode_cached([seqs.texts.get(i, "") for i in seqs.vocab.ids], store)
    model = build_model(split.n_items, text, config)
    result = fit(model, split.train, split.val_inputs(), split.val, cfg)
    return registry.save(
        model,
        seqs.vocab.to_list(),
        metrics={"val": result.best_val, "best_epoch": result.best_epoch, "train_s": result.seconds},
        parent=None,
        extra={**extra, "trained_at": time.time()},
    )
