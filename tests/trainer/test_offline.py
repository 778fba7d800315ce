"""Offline training: early stopping returns the best validation epoch's weights, seeds reproduce a
run, settings typos are refused, and random crops reach every part of a long history."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from pydantic import ValidationError

from liverec.core.features import Seq
from liverec.core.metrics import evaluate
from liverec.core.split import leave_one_out
from liverec.model.transformer import TransformerConfig
from liverec.trainer.offline import (
    EpochLog,
    TrainConfig,
    build_model,
    fit_transformer,
    lr_factor,
    refit_transformer,
    reversed_seq,
    schedule_span,
    scorer,
    shuffle_ties,
    train,
    training_batches,
)
from support.world import same_weights, state_of, world_sequences

N_ITEMS = 30
TINY: dict[str, object] = {"d_model": 16, "n_layers": 1, "n_heads": 1, "max_len": 8, "dropout": 0.1}


def noisy_world(seed: int = 0) -> tuple[list[np.ndarray], list[np.ndarray], np.ndarray]:
    """Random sequences: validation quality wanders from epoch to epoch instead of only rising."""
    rng = np.random.default_rng(seed)
    seqs = [rng.integers(0, N_ITEMS, size=int(rng.integers(4, 10))) for _ in range(120)]
    train_seqs = [s[:-1] for s in seqs]
    return train_seqs, train_seqs, np.array([s[-1] for s in seqs])


def test_training_returns_the_best_validation_epoch_weights() -> None:
    """The returned model is the best epoch's, bit for bit, and scores validation exactly as that
    epoch's logged metrics; without improvement for `patience` evaluations training stops."""
    train_seqs, val_inputs, val_targets = noisy_world()
    torch.manual_seed(0)
    model = build_model(N_ITEMS, None, TINY)
    snapshots: dict[int, dict[str, torch.Tensor]] = {}

    def keep(entry: EpochLog) -> None:
        snapshots[entry.epoch] = state_of(model)

    cfg = TrainConfig(epochs=12, batch_size=32, lr=3e-2, patience=4, seed=0, threads=1)
    result = train(model, train_seqs, val_inputs, val_targets, cfg, on_epoch=keep)

    ndcg = {h.epoch: h.val["ndcg@10"] for h in result.history}
    assert result.best_epoch == max(ndcg, key=lambda e: (ndcg[e], -e))  # the first best epoch
    assert result.best_epoch < result.history[-1].epoch  # the last epoch was not the best
    assert same_weights(state_of(model), snapshots[result.best_epoch])
    assert not model.training
    again = evaluate(scorer(model), val_inputs, val_targets, N_ITEMS)
    assert again == result.best_val == result.history[result.best_epoch - 1].val
    stopped = len(result.history)
    assert stopped == cfg.epochs or stopped == result.best_epoch + cfg.patience
    assert [h.epoch for h in result.history] == list(range(1, stopped + 1))
    assert all(np.isfinite(h.loss) and h.loss > 0 for h in result.history)


def test_patience_stops_training_early() -> None:
    """With patience 1, the first evaluation that does not beat the best ends training."""
    train_seqs, val_inputs, val_targets = noisy_world()
    torch.manual_seed(0)
    model = build_model(N_ITEMS, None, TINY)
    result = train(
        model, train_seqs, val_inputs, val_targets, TrainConfig(epochs=50, lr=3e-2, patience=1, threads=1)
    )
    ndcg = [h.val["ndcg@10"] for h in result.history]
    assert len(ndcg) < 50
    assert ndcg[-1] <= max(ndcg[:-1])  # stopped on a non-improvement ...
    assert all(b > a for a, b in itertools.pairwise(ndcg[:-1]))  # ... the first one


def test_same_seed_same_weights_other_seed_other_weights() -> None:
    """Two runs with one seed (dropout, id dropout and crops included) end bit-identical."""
    split = leave_one_out(world_sequences(90, seed=3), min_len=3)
    model_cfg: dict[str, object] = {**TINY, "id_dropout": 0.2, "max_len": 4}  # histories are cropped
    runs = []
    for seed in (7, 7, 8):
        model, result = fit_transformer(
            split, None, model_cfg, TrainConfig(epochs=3, batch_size=16, seed=seed, threads=1)
        )
        runs.append((state_of(model), [h.loss for h in result.history]))
    assert same_weights(runs[0][0], runs[1][0]) and runs[0][1] == runs[1][1]
    assert not same_weights(runs[0][0], runs[2][0])


def test_unknown_settings_are_rejected_with_their_names() -> None:
    """Typos in [model] fail loudly, naming the bad keys; known keys apply ([train] and the other
    tables: tests/test_settings.py)."""
    with pytest.raises(ValueError, match=r"unknown model setting\(s\): colour, d_modle"):
        build_model(10, None, {"d_modle": 16, "colour": "red", "n_layers": 1})
    model = build_model(10, None, {"d_model": 24, "n_heads": 3, "n_items": 999})
    assert (model.config.d_model, model.config.n_heads, model.config.n_items) == (24, 3, 10)
    assert model.config.text_dim == 0 and model.text_proj is None  # no text given


def test_random_crops_cover_long_histories() -> None:
    """A history longer than max_len is seen through random windows that together cover all of it;
    without crops only its newest max_len + 1 items are ever trained on."""
    long = np.arange(40)
    short = np.arange(100, 104)
    rng = np.random.default_rng(0)
    config = TransformerConfig(n_items=200, max_len=8)
    covered: set[int] = set()
    for _ in range(100):
        for (inp, _), tgt in training_batches([long, short], config, batch_size=4, rng=rng, crop=True):
            assert inp.shape == tgt.shape and inp.shape[1] == 8
            for row_in, row_tgt in zip(inp, tgt, strict=True):
                real_in, real_tgt = row_in[row_in > 0] - 1, row_tgt[row_tgt > 0] - 1
                assert torch.equal(real_in[1:], real_tgt[:-1])  # targets are the inputs shifted by one
                window = torch.cat([real_in[:1], real_tgt]).numpy()
                if window[0] >= 100:
                    assert window.tolist() == short.tolist()  # short histories are never cropped
                else:
                    assert len(window) == 9 and np.array_equal(window, np.arange(window[0], window[0] + 9))
                    covered.update(window.tolist())
    assert covered == set(range(40))

    fixed: set[int] = set()
    for (inp, _), tgt in training_batches([long], config, batch_size=4, rng=rng, crop=False):
        fixed.update((inp[inp > 0] - 1).tolist() + (tgt[tgt > 0] - 1).tolist())
    assert fixed == set(range(31, 40))


def test_cosine_schedule_warms_up_then_decays_to_zero_by_epochs_or_by_the_time_budget() -> None:
    """Warmup rises linearly to the base rate; the cosine then reaches ~0 at the last epoch, or
    at `max_seconds` if that comes first (a time-boxed run ends its decay either way)."""
    cfg = TrainConfig(schedule="cosine", epochs=23, warmup_epochs=3)
    assert lr_factor(cfg, 1) == pytest.approx(0.25)
    assert lr_factor(cfg, 3.5) == pytest.approx(3.5 / 4)
    assert lr_factor(cfg, 4) == pytest.approx(1.0)
    assert lr_factor(cfg, 14) == pytest.approx(0.5)  # halfway through the 20 decay epochs
    assert lr_factor(cfg, 24) == pytest.approx(0.0, abs=1e-12)
    boxed = TrainConfig(schedule="cosine", epochs=1000, warmup_epochs=3, max_seconds=100.0)
    assert lr_factor(boxed, 5, elapsed_s=50.0) == pytest.approx(0.5)  # time share 0.5 > epoch share
    assert lr_factor(boxed, 5, elapsed_s=100.0) == pytest.approx(0.0, abs=1e-12)
    assert lr_factor(boxed, 2, elapsed_s=99.0) == pytest.approx(0.5)  # warmup is by epochs only
    assert lr_factor(TrainConfig(), 7, elapsed_s=1e6) == 1.0  # constant


def test_refit_learns_validation_targets_up_to_the_chosen_epoch_on_the_selection_schedule() -> None:
    """The refit trains a fresh model on train + validation targets, stops at the epoch validation
    chose, with the learning rate of that epoch in the selection run (not a schedule squeezed into
    fewer epochs), and leaves held-out cold items untrained."""
    split = leave_one_out(world_sequences(90, seed=3), min_len=3, cold_fraction=0.2, seed=1)
    cfg = TrainConfig(epochs=8, batch_size=16, seed=2, threads=1, schedule="cosine", warmup_epochs=1)
    _, selection = fit_transformer(split, None, TINY, cfg)
    selection.best_epoch = 3  # as if validation had chosen epoch 3 of the 8
    refit, result = refit_transformer(split, None, TINY, cfg, selection)
    assert len(result.history) == 3 and result.history[-1].epoch == 3
    # the same three epochs on a schedule that ends at epoch 3 give other weights
    torch.manual_seed(cfg.seed)
    squeezed = build_model(split.n_items, None, TINY)
    squeeze = cfg.model_copy(update={"epochs": 3})
    train(squeezed, split.train_with_val(), [], np.empty(0, np.int64), squeeze, exclude=split.cold_items)
    assert not same_weights(state_of(refit), state_of(squeezed))
    # ... and replaying the selection schedule for 3 epochs reproduces the refit exactly
    torch.manual_seed(cfg.seed)
    replay = build_model(split.n_items, None, TINY)
    replayed = cfg.model_copy(update={"epochs": len(selection.history), "stop_after": 3})
    train(replay, split.train_with_val(), [], np.empty(0, np.int64), replayed, exclude=split.cold_items)
    assert same_weights(state_of(refit), state_of(replay))
    # more targets than the selection run saw, none of them a held-out item
    seen = np.concatenate(split.train_with_val())
    assert sum(map(len, split.train_with_val())) > sum(map(len, split.train))
    assert not np.isin(seen, split.cold_items).any()
    assert refit.id_emb.weight[torch.as_tensor(split.cold_items) + 1].abs().sum() == 0


def test_refit_after_patience_keeps_the_schedule_the_selection_run_was_on() -> None:
    """Patience ends a selection run early; its cosine was still spanning `epochs`, so the refit
    decays over `epochs` too, not over the fewer epochs that ran."""
    split = leave_one_out(world_sequences(90, seed=3), min_len=3, cold_fraction=0.2, seed=1)
    cfg = TrainConfig(
        epochs=30, batch_size=16, lr=3e-2, seed=2, threads=1, schedule="cosine", warmup_epochs=1, patience=1
    )
    _, selection = fit_transformer(split, None, TINY, cfg)
    assert len(selection.history) < cfg.epochs  # patience ended it (the setup, checked)
    assert selection.schedule_epochs == cfg.epochs
    refit, _ = refit_transformer(split, None, TINY, cfg, selection)
    torch.manual_seed(cfg.seed)
    replay = build_model(split.n_items, None, TINY)
    replayed = cfg.model_copy(update={"stop_after": selection.best_epoch, "patience": 10**9})
    train(replay, split.train_with_val(), [], np.empty(0, np.int64), replayed, exclude=split.cold_items)
    assert same_weights(state_of(refit), state_of(replay))


def test_schedule_span_projects_a_time_budget_at_the_pace_the_run_kept() -> None:
    """A run stopped by patience after 50 epochs in 200 s of a 290 s budget would have reached
    72 epochs; with 80 epochs allowed and 145 s spent, the epoch count ends it first."""
    assert schedule_span(TrainConfig(epochs=200, max_seconds=290.0), 50, 200.0) == 72
    assert schedule_span(TrainConfig(epochs=80, max_seconds=290.0), 50, 145.0) == 80
    assert schedule_span(TrainConfig(epochs=80), 50, 145.0) == 80
    assert schedule_span(TrainConfig(epochs=80, max_seconds=10.0), 50, 145.0) == 50  # never below the run


def test_shuffle_ties_reorders_only_within_runs_of_equal_timestamps() -> None:
    """Each run of tied timestamps comes back as the same items (types moved along) in some order,
    runs stay in place, and the draws differ; a sequence without ties or times is left alone."""
    items = np.arange(10, 20)
    times = np.array([1, 1, 1, 2, 3, 3, 3, 3, 4, 5], dtype=np.float64)
    types = items % 3
    s = Seq(items, times, types)
    rng = np.random.default_rng(0)
    orders = set()
    for _ in range(50):
        out = shuffle_ties(s, rng)
        assert isinstance(out, Seq) and out.times is not None and out.types is not None
        assert np.array_equal(out.times, times)  # times stay sorted: the runs keep their places
        for t in np.unique(times):
            run = times == t
            assert sorted(out[run].tolist()) == sorted(items[run].tolist())
        assert np.array_equal(out.types, np.asarray(out) % 3)  # each item keeps its own type
        orders.add(tuple(out.tolist()))
    assert len(orders) > 20  # 3! * 4! = 144 orders possible
    untied = Seq(items, np.arange(10.0), types)
    assert shuffle_ties(untied, rng) is untied
    assert shuffle_ties(items, rng) is items  # no times: nothing known to be tied


def test_training_batches_shuffle_ties_only_when_asked() -> None:
    """With ``ties`` each epoch's windows draw a new order of the tied items; without, log order."""
    s = Seq(np.arange(6), np.array([0, 0, 0, 1, 1, 2], dtype=np.float64))
    config = TransformerConfig(n_items=10, max_len=8)

    def window(ties: bool, rng: np.random.Generator) -> list[int]:
        [((inp, _), tgt)] = training_batches([s], config, batch_size=4, rng=rng, crop=False, ties=ties)
        return [int(inp[0, inp[0] > 0][0]) - 1, *(tgt[0, tgt[0] > 0] - 1).tolist()]

    rng = np.random.default_rng(1)
    assert all(window(False, rng) == list(range(6)) for _ in range(10))
    seen = {tuple(window(True, rng)) for _ in range(40)}
    assert len(seen) > 1
    for w in seen:
        assert sorted(w[:3]) == [0, 1, 2] and sorted(w[3:5]) == [3, 4] and w[5] == 5


def test_train_shuffles_ties_only_when_configured_and_only_where_times_tie() -> None:
    """`TrainConfig.shuffle_ties` reaches training: on sequences whose times never tie it changes
    nothing (same weights, bit for bit); on tied ones it trains on other orders (other weights)."""
    rng = np.random.default_rng(0)
    items = [rng.integers(0, N_ITEMS, size=8) for _ in range(40)]
    untied = [Seq(s, np.arange(8.0)) for s in items]
    tied = [Seq(s, np.repeat(np.arange(4.0), 2)) for s in items]
    cfg = TrainConfig(epochs=2, batch_size=16, lr=1e-2, seed=0, threads=1)

    def weights(seqs: list[np.ndarray], shuffle: bool) -> dict[str, torch.Tensor]:
        torch.manual_seed(0)
        model = build_model(N_ITEMS, None, TINY)
        train(model, seqs, [], np.empty(0, np.int64), cfg.model_copy(update={"shuffle_ties": shuffle}))
        return state_of(model)

    assert same_weights(weights(untied, True), weights(untied, False))
    assert same_weights(weights(tied, False), weights(untied, False))  # times alone change nothing
    assert not same_weights(weights(tied, True), weights(tied, False))


def test_reversed_seq_runs_back_to_front_with_ties_kept() -> None:
    s = Seq(np.array([4, 5, 6, 7]), np.array([10.0, 10.0, 13.0, 20.0]), np.array([1, 2, 3, 1]))
    r = reversed_seq(s)
    assert isinstance(r, Seq) and r.times is not None and r.types is not None
    assert r.tolist() == [7, 6, 5, 4]
    assert r.types.tolist() == [1, 3, 2, 1]  # each item keeps its own type
    assert np.all(np.diff(r.times) >= 0)  # times still rise, so ties mean what they did
    assert np.diff(r.times).tolist() == [7.0, 3.0, 0.0]
    assert reversed_seq(np.array([1, 2, 3])).tolist() == [3, 2, 1]


def test_training_batches_reverse_adds_back_to_front_copies() -> None:
    """``reverse`` 1: every history is trained both ways (its next-item pairs and their mirror);
    0: exactly the batches of a call without it, same random draws."""
    seqs = [np.arange(k, k + 5) for k in range(0, 30, 5)]
    config = TransformerConfig(n_items=N_ITEMS, max_len=8)

    def windows(reverse: float, seed: int = 0) -> list[list[int]]:
        out = []
        rng = np.random.default_rng(seed)
        for (inp, _), tgt in training_batches(seqs, config, 4, rng, crop=False, reverse=reverse):
            for b in range(len(inp)):
                real = inp[b][inp[b] > 0] - 1
                out.append([*real.tolist(), int(tgt[b, -1]) - 1])
        return out

    forward = [s.tolist() for s in seqs]
    assert sorted(windows(0.0)) == sorted(forward)
    both = windows(1.0)
    assert sorted(both) == sorted(forward + [s[::-1].tolist() for s in seqs])

    def batches(seed: int, **kw: float) -> list[tuple[torch.Tensor, torch.Tensor]]:
        rng = np.random.default_rng(seed)
        return [(inp, tgt) for (inp, _), tgt in training_batches(seqs, config, 4, rng, crop=False, **kw)]

    pairs = zip(batches(3, reverse=0.0), batches(3), strict=True)
    assert all(torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) for a, b in pairs)
    halves = [len(windows(0.5, seed)) - len(seqs) for seed in range(40)]
    assert 2.4 < np.mean(halves) < 3.6  # about half of the 6 histories each epoch


def test_train_reverse_reaches_training() -> None:
    """`TrainConfig.reverse` changes the weights; at 0 training is the default's, bit for bit; a share
    outside [0, 1] is a clear error."""
    rng = np.random.default_rng(0)
    seqs = [rng.integers(0, N_ITEMS, size=8) for _ in range(40)]
    cfg = TrainConfig(epochs=2, batch_size=16, lr=1e-2, seed=0, threads=1)

    def weights(c: TrainConfig) -> dict[str, torch.Tensor]:
        torch.manual_seed(0)
        model = build_model(N_ITEMS, None, TINY)
        train(model, seqs, [], np.empty(0, np.int64), c)
        return state_of(model)

    assert same_weights(weights(cfg.model_copy(update={"reverse": 0.0})), weights(cfg))
    assert not same_weights(weights(cfg.model_copy(update={"reverse": 1.0})), weights(cfg))
    with pytest.raises(ValidationError, match=r"reverse\n.*less than or equal to 1"):
        TrainConfig.model_validate({**cfg.model_dump(), "reverse": 1.5})  # a share, checked on load


def test_a_shard_takes_every_world_th_batch_and_the_same_count_as_the_others() -> None:
    """Workers of a data-parallel group split an epoch's batches with none shared and equal step
    counts (a worker with an extra step would wait forever on the others' gradients)."""
    from liverec.trainer.distributed import Shard

    batches = list(range(11))
    shares = [Shard(rank=r, world=3).take(batches) for r in range(3)]
    assert shares == [[0, 3, 6], [1, 4, 7], [2, 5, 8]]
    assert Shard.single().take(batches) == batches
    assert Shard(rank=0, world=4).batch_size(256) == 64 and Shard(world=4).batch_size(2) == 1
    assert Shard(world=2, local_world=2).threads(2) == 1 and Shard.single().threads(2) == 2
