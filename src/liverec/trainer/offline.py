"""Offline training of the Transformer: next-item cross-entropy at every position, early stopping on
validation NDCG@10, fixed seeds, both cores.

Batches group users of similar history length (less padding); long histories are randomly cropped
each epoch so every part of them is trained on, not only the newest `max_len` items; with
`shuffle_ties`, interactions that share a timestamp are put in a fresh order each epoch; with
`reverse`, a share of the histories is also trained back to front.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import numpy as np
import torch

from liverec.core.features import Seq
from liverec.core.metrics import evaluate
from liverec.core.split import LeaveOneOut
from liverec.model.inputs import Inputs, left_pad, model_inputs
from liverec.model.transformer import SASRec, TransformerConfig
from liverec.settings import ModelSettings, TrainConfig
from liverec.trainer.distributed import Shard

# what a model is built from: the [model] settings, or a dict of some of their fields (benchmarks)
ModelOverrides = ModelSettings | Mapping[str, object]


@dataclass
class EpochLog:
    epoch: int
    loss: float
    seconds: float
    interactions_per_s: float
    val: dict[str, float] = field(default_factory=dict)
    # for progress and time estimates (`liverec train`): the most epochs the run can go to, the
    # seconds since it started, and the epoch early stopping ends it at if validation stops improving
    epochs: int = 0
    elapsed_s: float = 0.0
    stops_by: int = 0


@dataclass
class TrainResult:
    best_epoch: int
    best_val: dict[str, float]
    history: list[EpochLog]
    seconds: float
    # the epochs the learning-rate schedule spans: the epochs run, or, when patience ended the run
    # early, the epochs its schedule would have run to (`epochs`, or where `max_seconds` projects)
    schedule_epochs: int = 0

    @property
    def interactions_per_s(self) -> float:
        """Training throughput: target interactions per second, averaged over epochs."""
        speeds = [h.interactions_per_s for h in self.history]
        return float(np.mean(speeds)) if speeds else 0.0


class WeightAverage:
    """An exponential moving average of a model's weights (buffers copied as they are)."""

    def __init__(self, model: SASRec, decay: float) -> None:
        self.model = copy.deepcopy(model).eval()
        self.decay = decay

    @torch.no_grad()
    def update(self, model: SASRec) -> None:
        for p_avg, p in zip(self.model.parameters(), model.parameters(), strict=True):
            p_avg.mul_(self.decay).add_(p.detach(), alpha=1.0 - self.decay)
        for b_avg, b in zip(self.model.buffers(), model.buffers(), strict=True):
            b_avg.copy_(b)


def lr_factor(cfg: TrainConfig, epoch: float, elapsed_s: float = 0.0) -> float:
    """Multiplier of the base learning rate at ``epoch`` (1-based; fractions inside an epoch) after
    ``elapsed_s`` seconds of training. The cosine's progress is the larger of the epoch share and
    the time-budget share, so a run cut by `max_seconds` ends its decay near zero either way."""
    if cfg.schedule == "constant":
        return 1.0
    if epoch < cfg.warmup_epochs + 1:
        return epoch / (cfg.warmup_epochs + 1)
    span = max(1, cfg.epochs - cfg.warmup_epochs)
    progress = (epoch - cfg.warmup_epochs - 1) / span
    if cfg.max_seconds:
        progress = max(progress, elapsed_s / cfg.max_seconds)
    return 0.5 * (1.0 + math.cos(math.pi * min(1.0, max(0.0, progress))))


def seed_everything(seed: int) -> None:
    torch.manual_seed(seed)
    np.random.seed(seed)


def _window(s: np.ndarray, start: int, stop: int) -> np.ndarray:
    return s.window(start, stop) if isinstance(s, Seq) else s[start:stop]


def shuffle_ties(s: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """``s`` with each run of equal timestamps in a random order (event types move along; runs never
    mix). A sequence without times, or without ties, comes back as it is."""
    if not isinstance(s, Seq) or s.times is None or len(s) < 2:
        return s
    times = s.times
    run = np.concatenate([[0], np.cumsum(np.diff(times) != 0)])  # (L,) run index, non-decreasing
    if run[-1] == len(s) - 1:  # no ties
        return s
    order = np.lexsort((rng.random(len(s)), run))
    return Seq(np.asarray(s)[order], times[order], None if s.types is None else s.types[order])


def reversed_seq(s: np.ndarray) -> np.ndarray:
    """``s`` back to front, newest first. Times are negated, so they still rise along the sequence
    and ties stay ties (`shuffle_ties` reads them)."""
    if not isinstance(s, Seq):
        return np.asarray(s)[::-1].copy()
    return Seq(
        np.asarray(s)[::-1],
        None if s.times is None else -s.times[::-1],
        None if s.types is None else s.types[::-1],
    )


def training_batches(
    seqs: list[np.ndarray],
    config: TransformerConfig,
    batch_size: int,
    rng: np.random.Generator,
    crop: bool,
    ties: bool = False,
    reverse: float = 0.0,
) -> list[tuple[Inputs, torch.Tensor]]:
    """(inputs, targets) batches: inputs are items 0..T-1 of a window (with their features), targets
    (B, T) int64 the items 1..T. ``ties``: see `TrainConfig.shuffle_ties`; ``reverse``: see
    `TrainConfig.reverse` (a reversed copy is one more window, batched like the others)."""
    max_len = config.max_len
    windows = []
    chosen = [s for s in seqs if len(s) >= 2]
    if reverse > 0:
        chosen += [reversed_seq(s) for s in chosen if rng.random() < reverse]
    for s in chosen:
        if ties:
            s = shuffle_ties(s, rng)
        end = len(s)
        if crop and len(s) > max_len + 1:
            end = int(rng.integers(max_len + 1, len(s) + 1))
        windows.append(_window(s, max(0, end - max_len - 1), end))
    order = np.argsort([len(w) for w in windows], kind="stable")
    batches = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
    rng.shuffle(batches)
    out = []
    for b in batches:
        ws = [windows[i] for i in b]
        inputs = model_inputs([_window(w, 0, len(w) - 1) for w in ws], config)
        targets = left_pad([np.asarray(w)[1:] for w in ws])  # (B, T) next items, model indices
        out.append((inputs, targets))
    return out


def scorer(model: SASRec, batch: int = 256) -> Callable[[list[np.ndarray]], np.ndarray]:
    """Input sequences (catalog rows, `Seq` with features if the model uses them) -> (B, N)
    float32 scores, in eval mode."""

    def score(seqs: list[np.ndarray]) -> np.ndarray:
        was_training = model.training
        model.eval()
        try:
            with torch.no_grad():
                table = model.item_table()
                parts = []
                for i in range(0, len(seqs), batch):
                    items, types = model_inputs(seqs[i : i + batch], model.config)
                    parts.append(model.score_last(items, types, table=table).numpy())
        finally:
            model.train(was_training)
        return np.concatenate(parts) if parts else np.zeros((0, model.config.n_items), np.float32)

    return score


def train(
    model: SASRec,
    train_seqs: list[np.ndarray],
    val_inputs: list[np.ndarray],
    val_targets: np.ndarray,
    cfg: TrainConfig,
    exclude: np.ndarray | None = None,
    on_epoch: Callable[[EpochLog], None] | None = None,
    shard: Shard | None = None,
) -> TrainResult:
    """Train in place; on return the model holds the weights of the best validation epoch.
    ``exclude``: catalog rows never scored in training (items held out for cold-start checks).
    ``shard``: this worker's place in a data-parallel group (`trainer.distributed`); None = alone.
    In a group, validation and every stop decision are rank 0's, and so is the returned model's
    best-epoch choice; ``interactions_per_s`` counts the whole group."""
    shard = shard or Shard.single()
    seed_everything(cfg.seed)
    torch.set_num_threads(shard.threads(cfg.threads))
    rng = np.random.default_rng(cfg.seed)
    n = model.config.n_items
    excl = None
    if exclude is not None and len(exclude):
        excl = torch.zeros(n + 1, dtype=torch.bool)
        held_out = torch.as_tensor(exclude) + 1  # model indices
        excl[held_out] = True
        model.forget_ids(held_out)  # held-out items: untrained, like items arriving later
    log_q = None
    if model.config.loss == "sampled":
        counts = np.bincount(np.concatenate(train_seqs) + 1, minlength=n + 1).astype(np.float64) + 1.0
        log_q = torch.from_numpy(np.log(counts / counts.sum())).float()
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    ema = WeightAverage(model, cfg.ema_decay) if cfg.ema_decay > 0 else None
    step_loss = shard.wrap(model)  # forward(...) = model.loss(...), gradients averaged in a group
    if cfg.compile:
        model.compile_encoder()
    if shard.world > 1:
        torch.manual_seed(cfg.seed + shard.rank)  # dropout and sampled negatives differ per worker
    best: tuple[float, int, dict[str, torch.Tensor], dict[str, float]] | None = None
    history: list[EpochLog] = []
    stale = 0
    patience_ended = False
    t_start = time.perf_counter()
    for epoch in range(1, cfg.epochs + 1):
        model.train()
        t0 = time.perf_counter()
        total, count = 0.0, 0
        batches = training_batches(
            train_seqs,
            model.config,
            shard.batch_size(cfg.batch_size),
            rng,
            cfg.crop,
            cfg.shuffle_ties,
            cfg.reverse,
        )
        batches = shard.take(batches)  # every worker built the same list (same rng); its share
        for step, ((inp, types), tgt) in enumerate(batches):
            factor = lr_factor(cfg, epoch + step / len(batches), time.perf_counter() - t_start)
            for group in opt.param_groups:
                group["lr"] = cfg.lr * factor
            loss = step_loss(inp, tgt, types, exclude=excl, log_q=log_q)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.grad_clip:
                torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            opt.step()
            if ema is not None:
                ema.update(model)
            k = int((tgt != 0).sum())
            total += loss.item() * k
            count += k
        seconds = time.perf_counter() - t0
        group_loss, group_count = shard.total(total, count)  # the whole group's targets
        entry = EpochLog(epoch, group_loss / max(group_count, 1), seconds, group_count / max(seconds, 1e-9))
        if len(val_targets) and (epoch % cfg.eval_every == 0 or epoch == cfg.epochs):
            if shard.lead:
                entry.val = evaluate(scorer(ema.model if ema else model), val_inputs, val_targets, n)
            (score,) = shard.decide(entry.val.get("ndcg@10", 0.0))
            if best is None or score > best[0]:
                best = (score, epoch, copy.deepcopy((ema.model if ema else model).state_dict()), entry.val)
                stale = 0
            else:
                stale += 1
        history.append(entry)
        if on_epoch:
            last = min(cfg.epochs, cfg.stop_after or cfg.epochs)
            entry.epochs, entry.elapsed_s = last, time.perf_counter() - t_start
            early = epoch + (cfg.patience - stale) * cfg.eval_every if len(val_targets) else last
            entry.stops_by = min(last, early)
            on_epoch(entry)
        if stale >= cfg.patience:
            patience_ended = epoch < cfg.epochs
            break
        if epoch == cfg.stop_after:
            break
        (over,) = shard.decide(
            float(bool(cfg.max_seconds) and time.perf_counter() - t_start > cfg.max_seconds)
        )
        if over:
            break
    if best is not None:
        model.load_state_dict(best[2])
    if excl is not None:  # with the unknown-item embedding as trained, not as initialised
        model.forget_ids(held_out)
    model._compiled = None  # hand back a plain eager module (picklable, copyable, servable)
    model.eval()
    seconds = time.perf_counter() - t_start
    return TrainResult(
        best_epoch=best[1] if best else 0,
        best_val=best[3] if best else {},
        history=history,
        seconds=seconds,
        schedule_epochs=schedule_span(cfg, len(history), seconds) if patience_ended else len(history),
    )


def schedule_span(cfg: TrainConfig, ran: int, seconds: float) -> int:
    """The epochs a run stopped by patience after ``ran`` epochs and ``seconds`` would have gone
    on to: `epochs`, or fewer where `max_seconds` would have ended it at the pace it kept."""
    if not cfg.max_seconds:
        return cfg.epochs
    return max(ran, min(cfg.epochs, round(ran * cfg.max_seconds / max(seconds, 1e-9))))


def build_model(n_items: int, text: np.ndarray | None, overrides: ModelOverrides | None = None) -> SASRec:
    """A fresh SASRec for ``n_items`` items; ``text`` (N, 384) float32 item text embeddings or None.
    ``overrides``: see `ModelOverrides`; a key that is no model setting is an error."""
    fields = overrides.model_dump() if isinstance(overrides, ModelSettings) else dict(overrides or {})
    unknown = set(fields) - set(TransformerConfig.model_fields)
    if unknown:
        raise ValueError(f"unknown model setting(s): {', '.join(sorted(unknown))}")
    fields["n_items"] = n_items
    if text is None:
        fields["text_dim"] = 0
    config = TransformerConfig.model_validate(fields)
    model = SASRec(config)
    if text is not None and config.text_dim:
        model.set_text(torch.arange(1, n_items + 1), torch.from_numpy(np.asarray(text, dtype=np.float32)))
    return model


def fit_transformer(
    split: LeaveOneOut,
    text: np.ndarray | None,
    model_overrides: ModelOverrides | None,
    cfg: TrainConfig,
    on_epoch: Callable[[EpochLog], None] | None = None,
) -> tuple[SASRec, TrainResult]:
    """Build and train on a leave-one-out split (held-out cold items are never scored in training)."""
    seed_everything(cfg.seed)  # the initial weights depend on the seed too
    model = build_model(split.n_items, text, model_overrides)
    result = train(
        model, split.train, split.val_inputs(), split.val, cfg, exclude=split.cold_items, on_epoch=on_epoch
    )
    return model, result


def refit_transformer(
    split: LeaveOneOut,
    text: np.ndarray | None,
    model_overrides: ModelOverrides | None,
    cfg: TrainConfig,
    selection: TrainResult,
    on_epoch: Callable[[EpochLog], None] | None = None,
) -> tuple[SASRec, TrainResult]:
    """A fresh model trained on train + validation targets, as the baselines are refit before the
    single read of the test target. ``selection`` is the early-stopped run on the same split: the
    refit replays its learning-rate schedule (by epoch, over the epochs that schedule spans, even
    where patience cut the run short) and stops at the epoch validation chose. Nothing here reads
    the test target."""
    seed_everything(cfg.seed)
    model = build_model(split.n_items, text, model_overrides)
    fixed = cfg.model_copy(
        update={
            "epochs": max(1, selection.schedule_epochs or len(selection.history)),
            "stop_after": max(1, selection.best_epoch),
            "max_seconds": 0.0,
            "eval_every": 10**9,
            "patience": 10**9,
        }
    )
    result = train(
        model,
        split.train_with_val(),
        [],
        np.empty(0, np.int64),
        fixed,
        exclude=split.cold_items,
        on_epoch=on_epoch,
    )
    return model, result
