"""Offline evaluation: ranks and metrics against hand-computed cases, the leave-one-out split,
baselines on worlds with a known answer, and tuning that looks at validation only."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pytest

from liverec.core.features import EVENT_TYPE_IDS
from liverec.core.metrics import (
    LastBatch,
    Ranked,
    bootstrap_interval,
    evaluate,
    ndcg_per_user,
    rank_many,
    ranking_metrics,
    target_ranks,
    top_k,
)
from liverec.core.schema import Event, EventType, Item
from liverec.core.split import LeaveOneOut, Sequences, leave_one_out, sequences_from_events
from liverec.core.vocab import Vocab
from liverec.evaluate.baselines import ItemKNN, Popularity
from liverec.evaluate.offline import test_metrics as refit_and_test
from liverec.evaluate.offline import test_ranked as refit_and_rank
from liverec.evaluate.offline import tune


def ints(*values: int) -> np.ndarray:
    return np.array(values, dtype=np.int64)


def test_target_ranks_count_ties_against_the_target_and_ignore_excluded_items() -> None:
    row = [0.1, 0.5, 0.3, 0.5, 0.0]
    scores = np.array([row, row, row, [0.9, 0.5, 0.3, 0.5, 0.0], [0.2] * 5], dtype=np.float32)
    targets = ints(2, 1, 1, 4, 0)
    exclude = [ints(), ints(), ints(3), ints(0, 4, 1), ints()]
    ranks = target_ranks(scores, targets, exclude)
    # 2: two 0.5s ahead; 1: the other 0.5 ties and counts ahead; 1 without item 3: first;
    # 4: 0 and 1 are excluded (the target's own exclusion is ignored), 3 and 2 remain ahead;
    # a constant row: everything ties, the target comes last
    assert ranks.tolist() == [2, 1, 0, 2, 4]
    assert scores[3, 0] == np.float32(0.9)  # the caller's scores are not modified


def test_ranking_metrics_by_hand() -> None:
    ranks = ints(0, 1, 12, 9)
    m = ranking_metrics(ranks, ks=(1, 10))
    assert m["hr@1"] == 0.25 and m["hr@10"] == 0.75
    assert m["ndcg@1"] == 0.25
    assert m["ndcg@10"] == pytest.approx((1 + 1 / math.log2(3) + 1 / math.log2(11)) / 4)
    assert m["mrr"] == pytest.approx((1 + 1 / 2 + 1 / 13 + 1 / 10) / 4)


def test_evaluate_excludes_seen_items_and_reports_coverage() -> None:
    """A fixed ranking (item j scores N - j): seen items are skipped, coverage counts the items
    shown in anyone's top 10, and a constant scorer gets nothing."""
    n = 30
    inputs = [ints(0, 1), ints(5)]
    targets = ints(3, 20)

    def ranking(seqs: list[np.ndarray]) -> np.ndarray:
        return np.tile(np.arange(n, 0, -1, dtype=np.float32), (len(seqs), 1))

    m = evaluate(ranking, inputs, targets, n)
    ranks = np.array([1, 19])  # 3: only item 2 ahead; 20: items 0..19 but the seen 5
    assert m["hr@10"] == 0.5 and m["hr@20"] == 1.0
    assert m["mrr"] == pytest.approx(float(np.mean(1 / (ranks + 1))))
    assert m["coverage@10"] == pytest.approx(12 / n)  # items 0..11 appear in a top 10
    assert m["users"] == 2.0
    assert top_k(ranking(inputs), inputs, 3).tolist() == [[2, 3, 4], [0, 1, 2]]
    only_first = evaluate(ranking, inputs, targets, n, subset=ints(0))
    assert only_first["users"] == 1.0 and only_first["mrr"] == 0.5

    constant = evaluate(lambda seqs: np.ones((len(seqs), n), np.float32), inputs, targets, n)
    assert constant["hr@20"] == 0.0 and constant["ndcg@10"] == 0.0


def test_rank_many_scores_a_shared_base_once_per_batch() -> None:
    """A blend built on `LastBatch` gets each batch's base scores without a second call, and every
    scorer's metrics equal what `evaluate` gives it alone."""
    rng = np.random.default_rng(0)
    n, users = 40, 10
    inputs = [rng.choice(n, size=3, replace=False) for _ in range(users)]
    targets = rng.integers(0, n, size=users)
    table = rng.random((users, n)).astype(np.float32)
    calls: list[int] = []

    def base(seqs: list[np.ndarray]) -> np.ndarray:
        calls.append(len(seqs))
        return np.stack([table[int(s[0]) % users] for s in seqs])

    bias = np.linspace(0.0, 0.5, n, dtype=np.float32)
    shared = LastBatch(base)
    ranked = rank_many(
        {"alone": shared, "blend": lambda seqs: shared(seqs) + bias}, inputs, targets, n, batch=4
    )
    many = {name: r.metrics() for name, r in ranked.items()}
    assert calls == [4, 4, 2]  # one call per batch, not two
    assert many["alone"] == evaluate(base, inputs, targets, n, batch=4)
    assert many["blend"] == evaluate(lambda seqs: base(seqs) + bias, inputs, targets, n, batch=4)
    assert many["blend"] != many["alone"]


def test_rank_many_keeps_each_users_rank_and_agrees_with_evaluate() -> None:
    """Per-user ranks (what a confidence interval resamples) in user order, with the same metrics
    `evaluate` reports; the subset keeps its users' order."""
    rng = np.random.default_rng(1)
    n, users = 50, 9
    inputs = [rng.choice(n, size=4, replace=False) for _ in range(users)]
    targets = rng.integers(0, n, size=users)
    table = rng.random((users, n)).astype(np.float32)

    def score(seqs: list[np.ndarray]) -> np.ndarray:
        return np.stack([table[int(s[0]) % users] for s in seqs])

    ranked = rank_many({"s": score}, inputs, targets, n, batch=4)["s"]
    one_by_one = [target_ranks(score([inputs[u]]), targets[u : u + 1], [inputs[u]])[0] for u in range(users)]
    assert ranked.ranks.tolist() == one_by_one
    assert ranked.metrics() == evaluate(score, inputs, targets, n, batch=4)
    subset = ints(5, 1, 7)
    part = rank_many({"s": score}, inputs, targets, n, subset=subset)["s"]
    assert part.ranks.tolist() == [one_by_one[u] for u in (5, 1, 7)]
    assert ndcg_per_user(ints(0, 1, 9, 10)).tolist() == pytest.approx(
        [1.0, 1 / math.log2(3), 1 / math.log2(11), 0.0]
    )
    assert ndcg_per_user(ranked.ranks).mean() == pytest.approx(ranked.metrics()["ndcg@10"])


def test_ndcg_interval_brackets_the_mean_and_narrows_with_more_users() -> None:
    """The interval `liverec evaluate offline` reports: seeded, around the mean, zero width when every
    user scores the same, and about sqrt(4) = 2x narrower with four times the users."""
    rng = np.random.default_rng(3)
    shown = np.zeros(5, dtype=bool)
    few = Ranked(rng.integers(0, 30, size=200), shown)
    many = Ranked(np.tile(few.ranks, 4), shown)
    low, high = few.ndcg_interval()
    assert low < few.metrics()["ndcg@10"] < high
    assert few.ndcg_interval() == [low, high]  # seeded
    wide, narrow = high - low, np.subtract(*many.ndcg_interval()[::-1])
    assert 1.6 < wide / narrow < 2.5
    assert Ranked(ints(0, 0, 0), shown).ndcg_interval() == [1.0, 1.0]


def test_a_paired_ratio_interval_is_narrower_than_its_parts_suggest() -> None:
    """The benchmark's "transformer_vs_als" interval resamples users jointly: two models whose
    per-user scores move together have a tight ratio even when each mean alone is uncertain."""
    rng = np.random.default_rng(2)
    base = rng.exponential(0.1, size=900)  # users differ a lot
    better = 1.3 * base + rng.normal(0, 0.005, size=900)  # a model 1.3x as good on every user
    lo, hi = bootstrap_interval(better, base, 0.05, 2_000, random_state=0)
    point = better.sum() / base.sum()
    assert lo < point < hi and abs(point - 1.3) < 0.01 and hi - lo < 0.02
    mean_lo, mean_hi = bootstrap_interval(base, None, 0.05, 2_000, random_state=0)
    assert (mean_hi - mean_lo) / base.mean() > 0.1  # alone, each mean is uncertain by >10%
    shuffled = rng.permutation(better)  # the pairing broken: the ratio is as uncertain as the means
    lo2, hi2 = bootstrap_interval(shuffled, base, 0.05, 2_000, random_state=0)
    assert hi2 - lo2 > 10 * (hi - lo)


def sequences(rows: list[list[int]], n_items: int) -> Sequences:
    items = [np.asarray(r, dtype=np.int64) for r in rows]
    return Sequences(
        users=[f"u{k}" for k in range(len(rows))],
        items=items,
        times=[np.arange(len(r), dtype=np.float64) for r in rows],
        vocab=Vocab(f"i{k}" for k in range(n_items)),
    )


def test_leave_one_out_holds_out_the_last_two_and_respects_min_len() -> None:
    seqs = sequences([[0, 1, 2, 3, 4], [5, 6, 7], [1, 2, 3, 4, 5, 6], [7, 8, 9, 0]], 10)
    split = leave_one_out(seqs, min_len=4)
    assert split.seqs.users == ["u0", "u2", "u3"]  # u1 has 3 < 4 positives
    assert [t.tolist() for t in split.train] == [[0, 1, 2], [1, 2, 3, 4], [7, 8]]
    assert split.val.tolist() == [3, 5, 9] and split.test.tolist() == [4, 6, 0]
    assert split.val_inputs() is split.train
    assert [t.tolist() for t in split.test_inputs()] == [[0, 1, 2, 3], [1, 2, 3, 4, 5], [7, 8, 9]]
    assert [t.tolist() for t in split.train_with_val()] == [t.tolist() for t in split.test_inputs()]
    assert split.cold_items.size == 0 and split.n_items == 10
    assert len(leave_one_out(seqs, min_len=5).train) == 2


def test_cold_fraction_holds_items_out_of_training_prefixes() -> None:
    rng = np.random.default_rng(0)
    rows = [rng.integers(0, 20, size=12).tolist() for _ in range(30)]
    plain = leave_one_out(sequences(rows, 20), min_len=3)
    split = leave_one_out(sequences(rows, 20), min_len=3, cold_fraction=0.25, seed=4)
    cold = set(split.cold_items.tolist())
    assert len(cold) == 5  # 25 % of 20 items
    assert leave_one_out(
        sequences(rows, 20), min_len=3, cold_fraction=0.25, seed=4
    ).cold_items.tolist() == sorted(cold)
    for full, cut in zip(plain.train, split.train, strict=True):
        assert not cold & set(cut.tolist())
        assert cut.tolist() == [i for i in full.tolist() if i not in cold]  # order kept
    assert np.array_equal(split.val, plain.val) and np.array_equal(split.test, plain.test)


def test_cold_val_cases_are_each_users_last_held_out_item_before_validation() -> None:
    """Input: the user's kept (warm) items before their last held-out-item interaction in the training
    window; target: that item. Users with none, or with nothing warm before it, give no case."""
    rows = [[0, 4, 1, 5, 2, 3, 6], [4, 0, 1, 2, 3], [0, 1, 2, 5, 4], [4, 5, 0, 1, 2, 3]]
    split = leave_one_out(sequences(rows, 10), min_len=4, cold_fraction=0.2, seed=1)
    assert split.cold_items.tolist() == [4, 5]  # (fixed by the seed; checked so the cases below hold)
    inputs, targets = split.cold_val()
    # u0: window 0 4 1 5 2 -> last held out is 5, kept before it 0 1; u1: window 4 0 1, nothing warm
    # before 4; u2: window 0 1 2 (its 5 and 4 are the validation and test targets); u3: 4 5 0 1, 5
    # has nothing warm before it
    assert [np.asarray(s).tolist() for s in inputs] == [[0, 1]] and targets.tolist() == [5]
    inputs, targets = leave_one_out(sequences(rows, 10), min_len=4).cold_val()  # nothing held out
    assert inputs == [] and targets.size == 0


def test_sequences_from_events_keep_positives_in_time_order() -> None:
    t = 1_700_000_000.0
    events = [
        Event(user_id="a", item_id="x", type=EventType.click, timestamp=t + 2),
        Event(user_id="a", item_id="new", type=EventType.purchase, timestamp=t + 1),
        Event(user_id="a", item_id="y", type=EventType.impression, timestamp=t + 3),
        Event(user_id="a", item_id="y", type=EventType.dislike, timestamp=t + 4),
        Event(user_id="b", item_id="y", type=EventType.click, timestamp=t),
    ]
    items = [Item(item_id="y", title="Why"), Item(item_id="x", title="Ex", tags=["letter"])]
    seqs = sequences_from_events(events, items)
    assert seqs.vocab.ids == ["y", "x", "new"]  # catalog first, then by first appearance
    assert seqs.users == ["b", "a"]
    assert [s.tolist() for s in seqs.items] == [[0], [2, 1]]
    assert seqs.times[1].tolist() == [t + 1, t + 2]
    assert seqs.texts == {"y": "Why", "x": "Ex. letter"}
    assert sequences_from_events(events, items, min_len=2).users == ["a"]
    # click then purchase of x, right after each other: one position, typed as the purchase
    again = [*events, Event(user_id="a", item_id="x", type=EventType.purchase, timestamp=t + 5)]
    seqs = sequences_from_events(again, items)
    assert seqs.items[1].tolist() == [2, 1]
    assert seqs.types is not None and seqs.types[1].tolist()[-1] == EVENT_TYPE_IDS[EventType.purchase]


# -- baselines -------------------------------------------------------------------------------------
def test_popularity_recommends_the_most_popular_unseen_item() -> None:
    train = [ints(1, 2, 3), ints(1, 2, 3), ints(1, 2), ints(1, 0)]  # counts: 1:4, 2:3, 3:2, 0:1
    pop = Popularity().fit(train, 5)
    histories = [ints(), ints(1), ints(1, 2), ints(2, 1, 3)]
    assert top_k(pop.score(histories), histories, 1).ravel().tolist() == [1, 2, 3, 0]


def test_item_knn_recovers_co_occurrence() -> None:
    """Pairs (0, 1), (2, 3), (4, 5), (6, 7) are bought together; one user links 0 and 2 weakly."""
    pairs = [(0, 1), (2, 3), (4, 5), (6, 7)]
    train = [ints(a, b) for a, b in pairs] + [ints(b, a) for a, b in pairs] + [ints(0, 2)]
    knn = ItemKNN().fit(train, 8)
    singles = [ints(a) for a, _ in pairs] + [ints(b) for _, b in pairs]
    partners = [b for _, b in pairs] + [a for a, _ in pairs]
    assert top_k(knn.score(singles), singles, 1).ravel().tolist() == partners
    both = knn.score([ints(0, 2)])[0]
    assert both[1] > 0 and both[3] > 0 and both[5] == 0  # neighbours of each history item
    last_only = ItemKNN(history=1).fit(train, 8).score([ints(0, 2)])[0]
    assert last_only[1] == 0 and last_only[3] > 0  # only item 2 counts
    nearest = ItemKNN(neighbors=1).fit(train, 8).score([ints(0)])[0]
    assert np.flatnonzero(nearest).tolist() == [1]  # the weak 0-2 link is cut


@dataclass
class Favourite:
    """A test baseline with one parameter: it always ranks ``item`` first."""

    item: int = 0
    name: str = "favourite"
    fits: list[int] = field(default_factory=list)

    def fit(self, train: list[np.ndarray], n_items: int) -> Favourite:
        self.n_items = n_items
        self.fits.append(len(train))
        return self

    def score(self, seqs: list[np.ndarray]) -> np.ndarray:
        out = np.zeros((len(seqs), self.n_items), np.float32)
        out[:, self.item] = 1.0
        return out


def test_tune_picks_by_validation_never_by_test() -> None:
    """Validation targets are all item 3, test targets all item 7: the grid point best on test (7)
    loses to the one best on validation (3)."""
    seqs = sequences([[0, 1, 3, 7], [1, 2, 3, 7], [2, 0, 3, 7]], 30)
    split: LeaveOneOut = leave_one_out(seqs, min_len=4)
    assert split.val.tolist() == [3, 3, 3] and split.test.tolist() == [7, 7, 7]
    lines: list[str] = []
    best = tune(Favourite(), {"item": [7, 3, 5]}, split, log=lines.append)
    assert isinstance(best, Favourite) and best.item == 3
    assert len(lines) == 3 and "val ndcg@10=1.0000" in lines[1] and "val ndcg@10=0.0000" in lines[0]
    on_test = {item: refit_and_test(Favourite(item), split)["ndcg@10"] for item in (7, 3, 5)}
    assert max(on_test, key=lambda i: on_test[i]) == 7 != best.item
    ranked = refit_and_rank(Favourite(7), split)
    assert ranked.ranks.tolist() == [0, 0, 0] and ranked.metrics()["ndcg@10"] == on_test[7]
