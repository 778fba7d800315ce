"""`OnlineLearner`: learns from every event, one mini-batch at a time.

Each new positive event becomes an example (input = the user's sequence before it, target = the
item). A mini-batch mixes fresh examples with replayed history, so the model adapts without
forgetting. Explicit negatives (dislike, skip) push their item down (unlikelihood). Adam with
gradient clipping and a decaying learning rate updates the weights; an exponential moving average
(EMA) of them is what gets published. New items get an embedding row on first sight, initialised
from their text; items unseen for `item_ttl_s` stop being trained as candidates.

The same class serves `liverec learn --follow` and the prequential evaluation.
"""

from __future__ import annotations

import copy
import math
from collections import OrderedDict, deque
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from itertools import islice

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from liverec.core.features import event_type_id
from liverec.core.metrics import target_ranks
from liverec.core.rewards import Rewards
from liverec.core.schema import EventType, StoredEvent
from liverec.core.sequence import Engagements
from liverec.core.vocab import Vocab
from liverec.model.transformer import SASRec
from liverec.settings import OnlineConfig, RewardWeights
from liverec.store.base import user_hash
from liverec.trainer.filters import EventFilter
from liverec.trainer.replay import ReplayBuffer

TextFn = Callable[[list[str]], dict[str, np.ndarray]]  # item ids -> text embeddings (384,) float32
NEGATIVE_TYPES = (EventType.dislike, EventType.skip)
SHOWN_CAPACITY = 100_000  # impressions remembered for their propensities (`ips_max`); oldest go first


@dataclass
class LearnStats:
    events: int = 0
    positives: int = 0
    negatives: int = 0
    held_back: int = 0
    steps: int = 0
    new_items: int = 0
    loss: float = 0.0


@dataclass(slots=True)
class Track(Engagements):
    """One user's engagements as the learner sees them (`Engagements` over model indices), read as
    fixed-width example windows."""

    @classmethod
    def empty(cls, max_len: int) -> Track:
        return cls(deque(maxlen=max_len), deque(maxlen=max_len), deque(maxlen=max_len))

    def example(self, length: int, extra: Sequence[tuple[int, int]] = ()) -> np.ndarray:
        """(2, length) int32 input window: item indices, event types (left-padded). ``extra``
        appends (index, type) entries not folded in yet (prequential scoring)."""
        out = np.zeros((2, length), dtype=np.int32)
        added = list(extra)[-length:]
        m = min(length - len(added), len(self.items))  # entries taken from the track
        start = length - m - len(added)
        if m > 0:
            out[0, start : start + m] = _tail(self.items, m)
            out[1, start : start + m] = _tail(self.types, m)
        if added:
            out[:, length - len(added) :] = np.asarray(added, dtype=np.int32).T
        return out


def _sum(grads: Sequence[Tensor | None]) -> Tensor | None:
    """Sum of the shards' gradients for one parameter, in shard order (None: unused by all)."""
    present = [g for g in grads if g is not None]
    if not present:
        return None
    out = present[0].clone() if len(present) > 1 else present[0]
    for g in present[1:]:
        out += g
    return out


def _tail(values: deque[int], n: int) -> list[int]:
    """The last ``n`` entries of a deque, oldest first, without copying the rest of it."""
    tail = list(islice(reversed(values), n))
    tail.reverse()
    return tail


class OnlineLearner:
    def __init__(
        self,
        net: SASRec,
        vocab: Sequence[str],
        cfg: OnlineConfig | None = None,
        rewards: RewardWeights | None = None,
        text_fn: TextFn | None = None,
        event_filter: EventFilter | None = None,
    ) -> None:
        self.cfg = c = cfg or OnlineConfig()
        torch.manual_seed(c.seed)
        torch.set_num_threads(c.threads)
        self.net = net
        self.ema = copy.deepcopy(net).eval()
        if c.compile:
            net.compile_encoder()
        self.vocab = Vocab.from_list(list(vocab))
        self.reward = Rewards(rewards)
        self.text_fn = text_fn
        self.filter = event_filter
        self.users: dict[str, Track] = {}
        self.replay = ReplayBuffer(c.replay_capacity, (2, c.window), c.replay_half_life, c.seed)
        self.opt = torch.optim.AdamW(net.parameters(), lr=c.lr, weight_decay=c.weight_decay, foreach=True)
        self._pool = ThreadPoolExecutor(c.shards - 1, "liverec-shard") if c.shards > 1 else None
        self.last_seen = np.zeros(net.config.n_items + 1, dtype=np.float64)
        self.shown: OrderedDict[tuple[str, str], float] = OrderedDict()  # (user, item) -> propensity
        self.clock = 0.0
        self.steps = 0
        self.examples = 0
        self.offset = 0  # the last log offset folded in

    # -- vocabulary growth ----------------------------------------------------------------------
    def _index(self, item_id: str, new_ids: list[str]) -> int:
        row = self.vocab.row(item_id)
        if row is None:
            row = self.vocab.add(item_id)
            new_ids.append(item_id)
        return row + 1

    def _grow(self, new_ids: list[str]) -> None:
        """Add embedding rows for new items to both nets (and Adam's state), text-initialised."""
        n_new = len(self.vocab) - self.net.config.n_items
        if n_new <= 0:
            return
        old = self.net.id_emb.weight
        state = self.opt.state.pop(old, None)
        self.net.grow(n_new)
        self.ema.grow(n_new)
        new = self.net.id_emb.weight
        for group in self.opt.param_groups:
            group["params"] = [new if p is old else p for p in group["params"]]
        if state:
            self.opt.state[new] = state
            pad_moments(self.opt)
        self.last_seen = np.concatenate([self.last_seen, np.zeros(n_new)])
        if self.text_fn is not None and new_ids:
            texts = self.text_fn(new_ids)
            rows = [self.vocab.row(i) for i in texts]
            if rows:
                idx = torch.tensor([r + 1 for r in rows if r is not None])
                vecs = torch.from_numpy(np.stack(list(texts.values())).astype(np.float32))
                self.net.set_text(idx, vecs)
                self.ema.set_text(idx, vecs)

    # -- learning -------------------------------------------------------------------------------
    def screen(self, stored: Sequence[StoredEvent]) -> list[bool]:
        """The event filter's verdict on each event, in log order (True = may be learned from), for
        a caller that needs it before `fold` (pass it on as ``admitted``: each event is checked once)."""
        f = self.filter
        if f is None:
            return [True] * len(stored)
        return [s.event.type is EventType.impression or f.check(s.event) is None for s in stored]

    def fold(
        self, stored: Sequence[StoredEvent], train: bool = True, admitted: Sequence[bool] | None = None
    ) -> LearnStats:
        """Fold events (in log order) into user sequences and, with ``train``, learn from them.
        ``admitted``: the filter's verdicts from `screen` (else the filter runs here)."""
        stats = LearnStats()
        w = self.cfg.window
        fresh_in: list[np.ndarray] = []
        fresh_tgt: list[int] = []
        fresh_w: list[float] = []
        fresh_owner: list[int] = []
        neg_in: list[np.ndarray] = []
        neg_tgt: list[int] = []
        new_ids: list[str] = []
        max_len = self.net.config.max_len
        for k, s in enumerate(stored):
            ev = s.event
            self.offset = max(self.offset, s.offset)
            if ev.type is EventType.impression:
                if self.cfg.ips_max > 0 and ev.context.propensity is not None:
                    self._remember_shown(ev.user_id, ev.item_id, ev.context.propensity)
                continue
            stats.events += 1
            ok = admitted[k] if admitted is not None else self.filter is None or self.filter.check(ev) is None
            if not ok:
                stats.held_back += 1
                continue
            idx = self._index(ev.item_id, new_ids)
            track = self.users.get(ev.user_id)
            if track is None:
                track = self.users[ev.user_id] = Track.empty(max_len)
            r = self.reward(ev)
            if r > 0:
                stats.positives += 1
                if track.items and not track.repeats(idx):  # a repeat teaches nothing servable
                    fresh_in.append(track.example(w))
                    fresh_tgt.append(idx)
                    fresh_w.append(self._weight(ev.user_id, ev.item_id))
                    fresh_owner.append(owner_key(ev.user_id))
                track.add(idx, ev.timestamp, event_type_id(ev.type, ev.value))
                self.clock = max(self.clock, ev.timestamp)
                if idx < len(self.last_seen):
                    self.last_seen[idx] = max(self.last_seen[idx], ev.timestamp)
            elif ev.type in NEGATIVE_TYPES or r < 0:
                stats.negatives += 1
                if track.items:
                    neg_in.append(track.example(w))
                    neg_tgt.append(idx)
        self._grow(new_ids)
        stats.new_items = len(new_ids)
        if new_ids:
            for item_id in new_ids:  # their first events happened in this batch
                self.last_seen[self.vocab.row(item_id) + 1] = self.clock  # type: ignore[operator]
        if train and fresh_tgt:
            stats.loss, stats.steps = self._train(
                np.stack(fresh_in),
                np.asarray(fresh_tgt, np.int32),
                np.asarray(fresh_w),
                neg_in,
                neg_tgt,
                np.asarray(fresh_owner, np.int64),
            )
        elif fresh_tgt:
            self.replay.add(
                np.stack(fresh_in),
                np.asarray(fresh_tgt, np.int32),
                np.asarray(fresh_w),
                np.asarray(fresh_owner, np.int64),
            )
        return stats

    def forget(self, user_hashes: set[str]) -> int:
        """Drop deleted users (by `store.base.user_hash`, as the store records them): their track,
        their remembered impressions and their examples in the replay buffer. Returns how many
        tracked users went. Weights already trained on them wait for the deadline retrain."""
        gone = [u for u in self.users if user_hash(u) in user_hashes]
        for u in gone:
            del self.users[u]
        for key in [k for k in self.shown if user_hash(k[0]) in user_hashes]:
            del self.shown[key]
        self.replay.drop({int(h[:15], 16) for h in user_hashes})
        return len(gone)

    def _remember_shown(self, user_id: str, item_id: str, propensity: float) -> None:
        self.shown[(user_id, item_id)] = propensity
        self.shown.move_to_end((user_id, item_id))
        if len(self.shown) > SHOWN_CAPACITY:
            self.shown.popitem(last=False)

    def _weight(self, user_id: str, item_id: str) -> float:
        """1 / propensity of the user's latest impression of the item (capped at `ips_max`); 1 when
        weighting is off or the positive came from no logged impression (search, direct visits)."""
        if self.cfg.ips_max <= 0:
            return 1.0
        p = self.shown.pop((user_id, item_id), None)
        return 1.0 if p is None else min(self.cfg.ips_max, 1.0 / max(p, 1e-12))

    def _train(
        self,
        inp: np.ndarray,
        tgt: np.ndarray,
        weights: np.ndarray,
        neg_in: list[np.ndarray],
        neg_tgt: list[int],
        owners: np.ndarray | None = None,
    ) -> tuple[float, int]:
        c = self.cfg
        per_step = max(1, round(c.batch_size * (1.0 - c.replay_ratio)))
        losses = []
        for start in range(0, len(tgt), per_step):
            f_in, f_tgt = inp[start : start + per_step], tgt[start : start + per_step]
            f_w = weights[start : start + per_step]
            r_in, r_tgt, r_w = self.replay.sample(
                round(len(f_tgt) * c.replay_ratio / max(1e-9, 1 - c.replay_ratio))
            )
            batch_in = np.concatenate([f_in, r_in])
            batch_tgt = np.concatenate([f_tgt, r_tgt])
            batch_w = np.concatenate([f_w, r_w])
            negs = (np.stack(neg_in), np.asarray(neg_tgt, np.int64)) if neg_in and start == 0 else None
            losses.append(self._step(batch_in, batch_tgt, negs, batch_w))
            self.replay.add(f_in, f_tgt, f_w, None if owners is None else owners[start : start + per_step])
            self.examples += len(f_tgt)
        return float(np.mean(losses)), len(losses)

    def _candidates_mask(self) -> torch.Tensor | None:
        """(M+1,) bool: items expired by `item_ttl_s` (never scored in training), or None."""
        if not self.cfg.item_ttl_s:
            return None
        stale = self.last_seen < self.clock - self.cfg.item_ttl_s
        stale[0] = True
        return torch.from_numpy(stale)

    def hidden(self, net: SASRec, examples: np.ndarray, table: torch.Tensor) -> torch.Tensor:
        """(B, D) last hidden state for (B, 2, W) examples (items, event types).
        Columns that are padding in every example are cut first: positions count back from the
        newest item, so that changes nothing but the work."""
        used = (examples[:, 0] != 0).any(axis=0)  # (W,) columns with a real item somewhere
        start = int(used.argmax()) if used.any() else examples.shape[2] - 1
        x = torch.from_numpy(examples[:, :, start:].astype(np.int64))
        types = x[:, 1] if net.config.event_types else None
        return net.forward(x[:, 0], types, table=table, last=True)[:, -1]

    def _step(
        self,
        inp: np.ndarray,
        tgt: np.ndarray,
        negs: tuple[np.ndarray, np.ndarray] | None,
        weights: np.ndarray | None = None,
    ) -> float:
        """One update: ``inp`` (B, 2, W) examples, ``tgt`` (B,) target model indices, ``weights``
        (B,) float example weights (None = all 1).

        The batch is cut into `shards` parts whose forward and backward run in parallel threads
        against one detached item table; their gradients are summed in a fixed order (so a seed
        fixes the result), then pushed once through the table into the id and text-projection
        weights."""
        c = self.cfg
        self.net.train(c.dropout)  # eval mode = no dropout; gradients flow either way
        for group in self.opt.param_groups:
            group["lr"] = c.lr / math.sqrt(1.0 + self.steps / c.lr_decay_steps)
        table = self.net.item_table()  # (M+1, D)
        leaf = table.detach().requires_grad_()  # every shard's gradient w.r.t. the table lands here
        mask = self._candidates_mask()  # (M+1,) bool or None
        w = None if weights is None or not np.any(weights != 1.0) else weights.astype(np.float32)
        total = float(len(tgt) if w is None else w.sum())
        # the id and text-projection weights are reached only through the table
        params = [p for n, p in self.net.named_parameters() if n not in SASRec.TABLE_PARAMETERS]

        def shard(rows: np.ndarray, with_negs: bool) -> tuple[float, tuple[Tensor | None, ...]]:
            loss = self._shard_loss(leaf, inp[rows], tgt[rows], None if w is None else w[rows], total, mask)
            if with_negs and negs is not None and c.unlikelihood > 0:
                loss = loss + c.unlikelihood * self._unlikelihood(leaf, negs, mask)
            return float(loss.item()), torch.autograd.grad(loss, [*params, leaf], allow_unused=True)

        # shards of similar window lengths, so that each cuts its own padding (see `hidden`)
        order = np.argsort((inp[:, 0] != 0).sum(axis=1), kind="stable")
        parts = [p for p in np.array_split(order, c.shards) if len(p)]
        futures = [self._pool.submit(shard, p, False) for p in parts[1:]] if self._pool else []
        results = [shard(parts[0], True), *(f.result() for f in futures)]
        self.opt.zero_grad(set_to_none=True)
        *grads, table_grad = [_sum(g) for g in zip(*(r[1] for r in results), strict=True)]
        for p, g in zip(params, grads, strict=True):
            p.grad = g
        if table_grad is not None:  # once, on the summed gradient: (M+1, D) -> ids, text projection
            table.backward(table_grad)
        if c.grad_clip:
            torch.nn.utils.clip_grad_norm_(self.net.parameters(), c.grad_clip)
        self.opt.step()
        self.steps += 1
        self._update_ema()
        return sum(r[0] for r in results)

    def _shard_loss(
        self,
        table: Tensor,
        inp: np.ndarray,
        tgt: np.ndarray,
        weights: np.ndarray | None,
        total: float,
        mask: Tensor | None,
    ) -> Tensor:
        """This shard's part of the batch's mean (weighted) cross-entropy: sum / ``total``.
        ``table`` (M+1, D); ``mask`` (M+1,) bool expired items (None: none), never the target."""
        h = self.hidden(self.net, inp, table)  # (b, D)
        logits = (h @ table.T).index_fill(1, torch.tensor([0]), -torch.inf)  # (b, M+1), no padding
        targets = torch.from_numpy(tgt.astype(np.int64))
        if mask is not None:
            mask_b = mask.unsqueeze(0).expand_as(logits).clone()
            mask_b[torch.arange(len(targets)), targets] = False  # the target is always a candidate
            logits = logits.masked_fill(mask_b, -torch.inf)
        nll = F.cross_entropy(logits, targets, reduction="none")  # (b,)
        if weights is not None:
            nll = nll * torch.from_numpy(weights)
        return nll.sum() / total

    def _unlikelihood(
        self, table: Tensor, negs: tuple[np.ndarray, np.ndarray], mask: Tensor | None
    ) -> Tensor:
        """Mean -log(1 - p(item)) of explicit negatives: ``negs`` = (B, 2, W) windows, (B,) items."""
        hn = self.hidden(self.net, negs[0], table)
        logits = (hn @ table.T).index_fill(1, torch.tensor([0]), -torch.inf)
        if mask is not None:
            logits = logits.masked_fill(mask, -torch.inf)
        p = torch.softmax(logits, dim=1)
        p_neg = p[torch.arange(len(negs[1])), torch.from_numpy(negs[1])]
        return -torch.log1p(-p_neg.clamp(max=1 - 1e-6)).mean()

    @torch.no_grad()
    def _update_ema(self) -> None:
        """ema = d * ema + (1 - d) * weights, in one fused call over all parameters (buffers, the
        text embeddings, change only when items arrive: `_grow` sets them in both nets)."""
        d = self.cfg.ema_decay
        torch._foreach_lerp_(list(self.ema.parameters()), list(self.net.parameters()), 1.0 - d)

    # -- scoring (prequential evaluation) -------------------------------------------------------
    def window_of(
        self, user_id: str, length: int | None = None, extra: Sequence[tuple[int, int]] = ()
    ) -> np.ndarray:
        """(2, length) input window of the user's current sequence, for scoring before learning."""
        track = self.users.get(user_id) or Track.empty(self.net.config.max_len)
        return track.example(length or self.net.config.max_len, extra)

    def seen_of(self, user_id: str) -> np.ndarray:
        track = self.users.get(user_id)
        return np.fromiter(track.items, dtype=np.int64) if track else np.empty(0, np.int64)

    @torch.no_grad()
    def scores(self, net: SASRec, examples: np.ndarray) -> np.ndarray:
        """(B, M+1) float32 scores (column 0 = padding) after each (2, W) example window."""
        table = net.item_table()
        return (self.hidden(net, examples, table) @ table.T).numpy()

    def rank(
        self, net: SASRec, examples: np.ndarray, targets: np.ndarray, seen: Sequence[np.ndarray]
    ) -> np.ndarray:
        """Test-then-train: (B,) 0-based full-ranking rank (`core.metrics.target_ranks`) of each target
        model index after its (2, W) example window, the user's earlier items (``seen``, model
        indices) excluded. Call it before the events are folded in."""
        scores = self.scores(net, examples)[:, 1:]  # (B, M): the padding column dropped
        n = scores.shape[1]
        return target_ranks(scores, np.minimum(targets, n) - 1, [s[s <= n] - 1 for s in seen])

    # -- checkpoints ----------------------------------------------------------------------------
    def state_dict(self) -> dict[str, object]:
        return {
            "net": self.net.state_dict(),
            "ema": self.ema.state_dict(),
            "opt": self.opt.state_dict(),
            "config": self.net.config.to_dict(),
            "vocab": self.vocab.to_list(),
            "offset": self.offset,
            "steps": self.steps,
            "examples": self.examples,
            "clock": self.clock,
        }


def owner_key(user_id: str) -> int:
    """The replay buffer's key of a user: 60 bits of `user_hash`, so a deletion record (which holds
    only the hash) finds the user's examples."""
    return int(user_hash(user_id)[:15], 16)


def pad_moments(opt: torch.optim.Optimizer) -> None:
    """Zero Adam moments for the rows a parameter gained since its state was saved (a grown item
    table, an upgraded event-type table): a new row starts as if never stepped."""
    for p, state in opt.state.items():
        for key in ("exp_avg", "exp_avg_sq"):
            t = state.get(key)
            if isinstance(t, torch.Tensor) and t.dim() and t.shape[1:] == p.shape[1:] and len(t) < len(p):
                state[key] = torch.cat([t, t.new_zeros(len(p) - len(t), *t.shape[1:])])
