"""From events to per-user sequences, and the leave-one-out-by-time split.

For each user (with at least `min_len` positives): the last positive is the test target, the
second-to-last the validation target, everything before is training data. Hyperparameters are
chosen on validation; test is read once per model.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from liverec.core.features import Seq, event_type_id
from liverec.core.rewards import Rewards
from liverec.core.schema import Event, EventType, Item
from liverec.core.sequence import Engagements
from liverec.core.vocab import Vocab
from liverec.settings import RewardWeights


@dataclass
class Sequences:
    """Positive interactions per user, in time order, as item rows of `vocab`."""

    users: list[str]
    items: list[np.ndarray]  # per user: (T_u,) int64 rows, oldest first
    times: list[np.ndarray]  # per user: (T_u,) float64 epoch seconds
    vocab: Vocab
    texts: dict[str, str] = field(default_factory=dict)  # item id -> content for the text encoder
    types: list[np.ndarray] = field(default_factory=list)  # per user: (T_u,) int64 event-type ids

    @property
    def n_items(self) -> int:
        return len(self.vocab)

    def seq(self, k: int) -> Seq:
        """User k's sequence with its times and event types."""
        return Seq(self.items[k], self.times[k], self.types[k] if self.types else None)

    def n_interactions(self) -> int:
        return int(sum(len(s) for s in self.items))


def sequences_from_events(
    events: Sequence[Event],
    items: Sequence[Item] = (),
    rewards: RewardWeights | None = None,
    min_len: int = 1,
) -> Sequences:
    """Group positive events by user, in (timestamp, log order), one position per engagement
    (`core.sequence`). Items with metadata come first in the vocabulary (catalog order); ids only
    seen in events follow in order of first appearance."""
    reward = Rewards(rewards)
    vocab = Vocab(i.item_id for i in items)
    order = sorted(range(len(events)), key=lambda k: events[k].timestamp)  # stable: ties keep log order
    by_user: dict[str, Engagements] = {}
    for k in order:
        ev = events[k]
        if ev.type is EventType.impression or reward(ev) <= 0:
            continue
        seq = by_user.get(ev.user_id)
        if seq is None:
            seq = by_user[ev.user_id] = Engagements.bounded(None)
        seq.add(vocab.add(ev.item_id), ev.timestamp, event_type_id(ev.type, ev.value))
    users = [u for u, seq in by_user.items() if len(seq.items) >= min_len]
    return Sequences(
        users=users,
        items=[np.asarray(by_user[u].items, dtype=np.int64) for u in users],
        times=[np.asarray(by_user[u].times, dtype=np.float64) for u in users],
        vocab=vocab,
        texts={i.item_id: i.content() for i in items},
        types=[np.asarray(by_user[u].types, dtype=np.int64) for u in users],
    )


@dataclass
class LeaveOneOut:
    """Per user: train prefix, validation target (second-to-last), test target (last)."""

    seqs: Sequences
    train: list[np.ndarray]  # (T_u - 2,) int64 `Seq`s (with times and event types)
    val: np.ndarray  # (U,) int64
    test: np.ndarray  # (U,) int64
    cold_items: np.ndarray = field(default_factory=lambda: np.empty(0, np.int64))  # rows never trained on

    @property
    def n_items(self) -> int:
        return self.seqs.n_items

    def val_inputs(self) -> list[np.ndarray]:
        return self.train

    def test_inputs(self) -> list[np.ndarray]:
        """Train prefix + the validation item (with its time and type)."""
        out: list[np.ndarray] = []
        for k, t in enumerate(self.train):
            _, time, type_id = self.seqs.seq(k).at(-2)
            out.append(
                t.append(int(self.val[k]), time, type_id) if isinstance(t, Seq) else np.append(t, self.val[k])
            )
        return out

    def cold_val(self) -> tuple[list[np.ndarray], np.ndarray]:
        """Validation cases for held-out items, many more than the validation targets that happen to be
        one: per user whose training window had a held-out item, the kept items before its last such
        interaction (input) and that item (target, (U',) int64). Training never saw these targets, nor
        any held-out item; cold-start settings are chosen on them, never on test."""
        if not self.cold_items.size:
            return [], np.empty(0, np.int64)
        is_cold = cold_mask(self.n_items, self.cold_items)
        inputs: list[np.ndarray] = []
        targets: list[int] = []
        for k in range(len(self.train)):
            s = self.seqs.seq(k)
            prefix = s.window(0, len(s) - 2)
            where = np.flatnonzero(is_cold[np.asarray(prefix)])
            if not where.size:
                continue
            before = prefix.window(0, int(where[-1]))
            before = before.keep(~is_cold[np.asarray(before)])
            if len(before):
                inputs.append(before)
                targets.append(int(prefix[where[-1]]))
        return inputs, np.asarray(targets, np.int64)

    def train_with_val(self) -> list[np.ndarray]:
        """Training data for a final fit that may also learn from the validation target (held-out
        cold items stay out of it)."""
        if not self.cold_items.size:
            return self.test_inputs()
        is_cold = cold_mask(self.n_items, self.cold_items)
        out = self.test_inputs()
        return [s.keep(~is_cold[np.asarray(s)]) if isinstance(s, Seq) else s[~is_cold[s]] for s in out]


def cold_mask(n_items: int, cold_items: np.ndarray) -> np.ndarray:
    """(n_items,) bool, True for the held-out rows."""
    mask = np.zeros(n_items, dtype=bool)
    mask[cold_items] = True
    return mask


def leave_one_out(
    seqs: Sequences, min_len: int = 5, cold_fraction: float = 0.0, seed: int = 0
) -> LeaveOneOut:
    """Split users with >= ``min_len`` positives. With ``cold_fraction`` > 0, that share of items is
    held out of training entirely (removed from train prefixes; their text stays known), to measure
    recommending items nobody has interacted with yet."""
    keep = [k for k, s in enumerate(seqs.items) if len(s) >= min_len]
    cold = np.empty(0, dtype=np.int64)
    if cold_fraction > 0:
        rng = np.random.default_rng(seed)
        n_cold = round(cold_fraction * seqs.n_items)
        cold = np.sort(rng.choice(seqs.n_items, size=n_cold, replace=False)).astype(np.int64)
    is_cold = cold_mask(seqs.n_items, cold)
    train: list[np.ndarray] = []
    val, test = [], []
    for k in keep:
        s = seqs.seq(k)
        prefix = s.window(0, len(s) - 2)
        train.append(prefix.keep(~is_cold[np.asarray(prefix)]) if cold.size else prefix)
        val.append(s[-2])
        test.append(s[-1])
    sub = Sequences(
        users=[seqs.users[k] for k in keep],
        items=[seqs.items[k] for k in keep],
        times=[seqs.times[k] for k in keep],
        vocab=seqs.vocab,
        texts=seqs.texts,
        types=[seqs.types[k] for k in keep] if seqs.types else [],
    )
    return LeaveOneOut(sub, train, np.asarray(val, np.int64), np.asarray(test, np.int64), cold)
