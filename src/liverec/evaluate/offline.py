"""`liverec evaluate offline`: registered models and baselines on one leave-one-out split, full
ranking. Baselines' hyperparameters are tuned on the validation target, then refit with it."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Mapping
from dataclasses import replace
from typing import Any, Protocol

import numpy as np

from liverec.core.catalog import Catalog
from liverec.core.metrics import LastBatch, Ranked, Scorer, evaluate, rank_many
from liverec.core.split import LeaveOneOut, Sequences, leave_one_out, sequences_from_events
from liverec.evaluate.baselines import ALS, ItemKNN, Popularity
from liverec.model.popularity import PopularityCooc
from liverec.model.rules import SequentialRules, blend
from liverec.model.sequential import SequentialModel
from liverec.registry.registry import Snapshot
from liverec.settings import RulesSettings
from liverec.store.base import EventStore

Log = Callable[[str], None]


class Baseline(Protocol):
    name: str

    def fit(self, train: list[np.ndarray], n_items: int) -> Any: ...

    def score(self, seqs: list[np.ndarray]) -> np.ndarray: ...


ITEMKNN_GRID: dict[str, list[Any]] = {"neighbors": [20, 50, 100, 200, 500], "history": [0, 10, 20, 50]}
RULES_GRID: dict[str, list[Any]] = {
    "window": [5, 10, 20],
    "decay": [0.5, 0.8, 0.9],
    "backward": [0.0, 0.5, 1.0],
    "history": [3, 5, 10],
}
ALS_GRID: dict[str, list[Any]] = {
    "factors": [16, 32, 64, 128],
    "regularization": [0.01, 0.1, 1.0],
    "alpha": [0.5, 1.0, 2.0, 5.0, 10.0],
}


def sequences_from_store(store: EventStore) -> Sequences:
    """Per-user positive sequences from the whole log, vocabulary in catalog order."""
    return sequences_from_events([s.event for s in store.iter_events()], store.list_items())


def tune(base: Baseline, grid: dict[str, list[Any]], split: LeaveOneOut, log: Log | None = None) -> Baseline:
    """The grid point with the best validation NDCG@10 (test is never looked at)."""
    best: tuple[float, Baseline] | None = None
    keys = list(grid)
    for values in itertools.product(*(grid[k] for k in keys)):
        cand = replace(base, **dict(zip(keys, values, strict=True)))  # type: ignore[type-var]
        cand.fit(split.train, split.n_items)
        score = evaluate(cand.score, split.val_inputs(), split.val, split.n_items)["ndcg@10"]
        if log:
            log(f"{cand.name} {dict(zip(keys, values, strict=True))} val ndcg@10={score:.4f}")
        if best is None or score > best[0]:
            best = (score, cand)
    assert best is not None
    return best[1]


def test_metrics(model: Baseline, split: LeaveOneOut) -> dict[str, float]:
    """Refit on train + validation target, then read the test target once."""
    return test_ranked(model, split).metrics()


def test_ranked(model: Baseline, split: LeaveOneOut) -> Ranked:
    """`test_metrics` before averaging over users: the per-user ranks a confidence interval needs."""
    model.fit(split.train_with_val(), split.n_items)
    return rank_on({"": model.score}, split)[""]


def rank_on(scorers: Mapping[str, Scorer], split: LeaveOneOut, on: str = "test") -> dict[str, Ranked]:
    """`rank_many` on the split's validation or test target, each user's input being what precedes it."""
    inputs, targets = (split.val_inputs(), split.val) if on == "val" else (split.test_inputs(), split.test)
    return rank_many(scorers, inputs, targets, split.n_items)


def baselines(split: LeaveOneOut, seed: int = 0, log: Log | None = None) -> dict[str, dict[str, Any]]:
    """Popularity, tuned item-kNN, tuned implicit ALS and tuned sequential rules: test metrics (with
    NDCG@10's interval over users, `with_interval`) and chosen parameters."""
    out: dict[str, dict[str, Any]] = {"popularity": with_interval(test_ranked(Popularity(), split))}
    for name, base, grid in (
        ("itemknn", ItemKNN(), ITEMKNN_GRID),
        ("als", ALS(seed=seed), ALS_GRID),
        ("rules", SequentialRules(), RULES_GRID),
    ):
        best = tune(base, grid, split, log)
        out[name] = {**with_interval(test_ranked(best, split)), "params": {k: getattr(best, k) for k in grid}}
    return out


def with_interval(ranked: Ranked) -> dict[str, Any]:
    """The metrics, and ``ndcg@10_ci95``: NDCG@10's 95% bootstrap interval over the users."""
    return {**ranked.metrics(), "ndcg@10_ci95": ranked.ndcg_interval()}


def snapshot_model(snap: Snapshot, item_ids: Iterable[str]) -> SequentialModel:
    """A registered model aligned to a split's vocabulary (items it never saw are text-less)."""
    catalog = Catalog()
    for item_id in item_ids:
        catalog.ensure(item_id)
    model = SequentialModel(snap.model, snap.vocab, snap.version, PopularityCooc({}))
    model.sync(catalog)
    return model


def served_rules(split: LeaveOneOut, rules: RulesSettings, on: str = "test") -> SequentialRules:
    """The ``[rules]`` counted on what precedes the ``on`` target (train, or train + validation)."""
    seen = split.train if on == "val" else split.train_with_val()
    return SequentialRules(**rules.params()).fit(seen, split.n_items)


def evaluate_snapshot(
    snap: Snapshot,
    split: LeaveOneOut,
    on: str = "test",
    rules: RulesSettings | None = None,
    counted: SequentialRules | None = None,
) -> dict[str, float]:
    """A registered model on the validation or test target; with ``rules`` (weight > 0), as served
    with sequential rules counted on what precedes that target (`served_rules`; pass them as
    ``counted`` to count once for many versions)."""
    return rank_snapshot_all(snap, split, on, rules, counted)[-1].metrics()


def rank_snapshot_all(
    snap: Snapshot,
    split: LeaveOneOut,
    on: str = "test",
    rules: RulesSettings | None = None,
    counted: SequentialRules | None = None,
) -> list[Ranked]:
    """Per-user ranks of [the network alone] or, with ``rules`` (weight > 0), [alone, as served] (see
    `evaluate_snapshot`), from one pass: the served scores add the rules to the network's."""
    model = snapshot_model(snap, split.seqs.vocab.ids)
    network = LastBatch(model.score_batch)
    scorers: dict[str, Scorer] = {"alone": network}
    if rules is not None and rules.weight > 0:
        if counted is None:
            counted = served_rules(split, rules, on)
        scorers["served"] = blend(network, counted, rules.weight, split.n_items)
    return list(rank_on(scorers, split, on).values())


def split_from_store(store: EventStore, min_len: int = 5) -> LeaveOneOut:
    return leave_one_out(sequences_from_store(store), min_len=min_len)
