"""Prequential ("test-then-train") evaluation on a time-ordered log.

The first part of the log trains the Transformer offline. The rest is streamed: for every streamed
positive event, each model is first asked for the user's top-10 given the live sequence up to that
moment, and only then learns (river's progressive validation; predictions use weights at most
`delay` events old). Compared on exactly the same events and sequences:

- frozen: the offline model, reading live sequences, never updated;
- online: the same offline model, updated by `OnlineLearner` from every event;
- popularity: interaction counts, updated online.

Only events whose user already has history are scored (a sequence model needs one), the same
events for every model. Items the user already interacted with are excluded.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from liverec.core.features import event_type_id
from liverec.core.metrics import ndcg_per_user, target_ranks
from liverec.core.rewards import Rewards
from liverec.core.schema import EventType, StoredEvent
from liverec.core.sequence import Engagements
from liverec.core.split import leave_one_out, sequences_from_events
from liverec.events.datasets import Dataset
from liverec.trainer.offline import ModelOverrides, TrainConfig, fit_transformer
from liverec.trainer.online import OnlineConfig, OnlineLearner

Log = Callable[[str], None]


@dataclass
class Tally:
    ranks: list[np.ndarray]

    def metrics(self, n_windows: int) -> dict[str, Any]:
        r = np.concatenate(self.ranks) if self.ranks else np.empty(0, np.int64)
        hit = r < 10
        ndcg = ndcg_per_user(r, 10)
        windows = []
        for w in np.array_split(np.arange(len(r)), n_windows):
            if len(w):
                windows.append(
                    {
                        "start": int(w[0]),
                        "end": int(w[-1]) + 1,
                        "ndcg@10": float(ndcg[w].mean()),
                        "hr@10": float(hit[w].mean()),
                    }
                )
        return {
            "ndcg@10": float(ndcg.mean()) if len(r) else 0.0,
            "hr@10": float(hit.mean()) if len(r) else 0.0,
            "events": len(r),
            "windows": windows,
        }


def prequential(
    data: Dataset,
    text: np.ndarray | None,
    model: ModelOverrides,
    train: TrainConfig,
    online: OnlineConfig,
    offline_fraction: float = 0.5,
    delay: int = 64,
    n_windows: int = 10,
    log: Log | None = None,
) -> dict[str, Any]:
    """Run the comparison; returns {"models": {...}, "events_streamed": n, ...}."""
    events = sorted(data.events, key=lambda e: e.timestamp)
    cut = int(len(events) * offline_fraction)
    head, tail = events[:cut], events[cut:]
    seqs = sequences_from_events(head, data.items)
    for ev in tail:  # every catalog item is known from the start (with its text)
        seqs.vocab.add(ev.item_id)
    split = leave_one_out(seqs, min_len=3)
    counts = np.bincount(np.concatenate(split.train_with_val()), minlength=seqs.n_items)
    split.cold_items = np.flatnonzero(counts == 0)  # never consumed offline: keep them text-only
    if text is not None and len(text) < seqs.n_items:
        text = np.concatenate([text, np.zeros((seqs.n_items - len(text), text.shape[1]), np.float32)])
    if log:
        log(f"offline: {len(head):,} events, {len(split.train)} users; streaming {len(tail):,} events")
    net, result = fit_transformer(split, text, model, train)
    if log:
        log(f"offline model: val ndcg@10 {result.best_val.get('ndcg@10', 0):.4f} in {result.seconds:.0f}s")

    learner = OnlineLearner(copy.deepcopy(net), seqs.vocab.to_list(), online)
    frozen = copy.deepcopy(net).eval()
    reward = Rewards()
    learner.fold([StoredEvent(k + 1, ev) for k, ev in enumerate(head)], train=False)
    seen: dict[str, set[int]] = {u: set(t.items) for u, t in learner.users.items()}
    pop = np.zeros(seqs.n_items + 1)
    for track in learner.users.values():
        np.add.at(pop, np.fromiter(track.items, np.int64), 1.0)
    tallies = {"online": Tally([]), "frozen": Tally([]), "popularity": Tally([])}
    max_len = net.config.max_len
    streamed = 0
    for start in range(0, len(tail), delay):
        chunk = tail[start : start + delay]
        windows, targets, excl = [], [], []
        pending: dict[str, Engagements] = {}  # this chunk's engagements, folded after it is scored
        for ev in chunk:
            if ev.type is EventType.impression or reward(ev) <= 0:
                continue
            idx = learner.vocab.row(ev.item_id)
            assert idx is not None
            before = pending.setdefault(ev.user_id, Engagements.bounded(None))
            history = learner.users.get(ev.user_id)
            type_id = event_type_id(ev.type, ev.value)
            newest = before if before.items else history
            if newest is not None and newest.repeats(idx + 1):
                if before.items:
                    before.add(idx + 1, ev.timestamp, type_id)  # deepens the pending engagement
                continue  # the same engagement again: nothing to predict (the learner skips it too)
            user_seen = seen.setdefault(ev.user_id, set())
            if (history is not None and history.items) or before.items:
                extra = list(zip(before.items, before.types, strict=True))
                windows.append(learner.window_of(ev.user_id, max_len, extra))
                targets.append(idx + 1)
                excl.append(np.fromiter(user_seen, np.int64))
            before.add(idx + 1, ev.timestamp, type_id)
            user_seen.add(idx + 1)
        if targets:
            w, t = np.stack(windows), np.asarray(targets)
            tallies["online"].ranks.append(learner.rank(learner.ema, w, t, excl))
            tallies["frozen"].ranks.append(learner.rank(frozen, w, t, excl))
            # popularity over model indices: column 0 (padding) dropped, as `OnlineLearner.rank` does
            tallies["popularity"].ranks.append(
                target_ranks(np.tile(pop[1:], (len(t), 1)), t - 1, [e - 1 for e in excl])
            )
        learner.fold([StoredEvent(cut + start + k + 1, ev) for k, ev in enumerate(chunk)])
        for add in pending.values():
            np.add.at(pop, np.fromiter(add.items, np.int64, len(add.items)), 1.0)
        streamed += len(chunk)
        if log and (start // delay) % 100 == 0:
            done = {k: v.metrics(1)["ndcg@10"] for k, v in tallies.items()}
            log(
                f"  streamed {streamed:,}/{len(tail):,}: "
                + ", ".join(f"{k} {v:.4f}" for k, v in done.items())
            )
    return {
        "models": {k: v.metrics(n_windows) for k, v in tallies.items()},
        "events_streamed": streamed,
        "offline_events": len(head),
        "offline_val_ndcg@10": result.best_val.get("ndcg@10", 0.0),
        "delay_events": delay,
    }
