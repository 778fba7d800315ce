"""`evaluate search`: cases (query = tags, never the title; history before the case, without its
target), the queries-file split by time, the report's keys, search beating BM25 where the query
matches many items and the person picks one, and the online replay scoring before it learns."""

from __future__ import annotations

import zlib
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from liverec.core.metrics import Scorer
from liverec.core.schema import Event, EventType, Item
from liverec.core.split import LeaveOneOut, leave_one_out, sequences_from_events
from liverec.evaluate.baselines import ItemKNN
from liverec.evaluate.search import build_world, evaluate_search, replay, timeline
from liverec.evaluate.search_cases import (
    QueryColumns,
    QueryRow,
    leave_one_out_cases,
    query_cases,
    read_queries,
    split_by_time,
    tag_queries,
)
from liverec.events.datasets import Dataset, DatasetError
from liverec.search.ranker import LinearRanker

T0 = 1_700_000_000.0
CLUSTERS, PER_CLUSTER, RATED = 4, 8, 5


def fake_encode(texts: list[str]) -> np.ndarray:
    """Bag of words with a fixed random vector per word, unit length: a cheap stand-in for MiniLM."""
    out = np.zeros((len(texts), 384), np.float32)
    for i, t in enumerate(texts):
        for w in t.lower().replace(".", " ").replace(",", " ").split():
            out[i] += np.random.default_rng(zlib.crc32(w.encode())).standard_normal(384)
        norm = np.linalg.norm(out[i])
        out[i] /= norm if norm else 1.0
    return out


def knn_personal(split: LeaveOneOut, vectors: np.ndarray | None, seed: int) -> tuple[Scorer, dict[str, Any]]:
    """A personal model learned from the training sequences only (item-kNN), fast and deterministic."""
    model = ItemKNN(neighbors=50, shrink=0.0).fit(split.train, split.n_items)
    return model.score, {"model": "itemknn"}


def item(k: int) -> Item:
    """Item k: cluster k // PER_CLUSTER; tags "alpha" or "beta" across clusters, so a tag query
    matches half the catalog and says nothing about the cluster; a title of its own."""
    return Item(item_id=f"i{k}", title=f"Picture number {k} zz{k}", tags=["alpha" if k % 2 else "beta"])


def taste_world(users: int = 60, seed: int = 0) -> Dataset:
    """Each user stays in one cluster and rates ``RATED`` of its items in a random order, an hour
    apart: the person narrows the catalog to a cluster, the query to half of it."""
    rng = np.random.default_rng(seed)
    events = []
    for u in range(users):
        c = u % CLUSTERS
        for j, k in enumerate(rng.permutation(PER_CLUSTER)[:RATED] + c * PER_CLUSTER):
            t = T0 + 3600.0 * (j * users + u)
            events.append(Event(user_id=f"u{u}", item_id=f"i{k}", type=EventType.click, timestamp=t))
    events.sort(key=lambda e: e.timestamp)
    return Dataset("taste", events, [item(k) for k in range(CLUSTERS * PER_CLUSTER)])


def click(user: str, k: int, t: float) -> Event:
    return Event(user_id=user, item_id=f"i{k}", type=EventType.click, timestamp=T0 + t)


def test_leave_one_out_cases_search_the_targets_tags_with_the_history_before_it() -> None:
    items = [
        Item(item_id=f"i{k}", title=f"Secret Title {k}", tags=["Sci-Fi", "War"] if k else [])
        for k in range(6)
    ]
    # u0 watched i1 early, then others, then i1 again (validation target), then i2 (test target)
    events = [click("u0", k, t) for t, k in enumerate([1, 3, 4, 5, 1, 2])]
    events += [click("u1", k, t) for t, k in enumerate([2, 3, 4, 5, 0])]  # test target i0 has no tags
    seqs = sequences_from_events(events, items)
    split = leave_one_out(seqs, min_len=5)
    train, test = leave_one_out_cases(split, tag_queries(items, seqs.vocab))
    row = seqs.vocab.row
    assert [c.user for c in train] == ["u0", "u1"] and [c.user for c in test] == ["u0"]
    val0, test0 = train[0], test[0]
    assert val0.query == test0.query == "Sci-Fi War"  # the tags, never the title
    assert "Title" not in val0.query and "Secret" not in test0.query
    assert val0.target == row("i1") and test0.target == row("i2")
    # history: what came before, without any event on the target (the early i1 is gone)
    assert list(val0.history) == [row(f"i{k}") for k in (3, 4, 5)]
    assert list(test0.history) == [row(f"i{k}") for k in (1, 3, 4, 5, 1)]
    assert val0.time == T0 + 4 and test0.time == T0 + 5


def test_query_cases_split_newest_time_share_for_test_and_train_strictly_before() -> None:
    items = [Item(item_id=f"i{k}", tags=["x"]) for k in range(5)]
    events = [click("u0", k, t) for t, k in [(0, 0), (10, 1), (20, 2), (30, 3), (40, 1)]]
    seqs = sequences_from_events(events, items)
    rows = [
        QueryRow("u0", T0 + t, q, f"i{k}")
        for t, q, k in [(100, "a", 4), (15, "b", 1), (25, "c", 3), (25, "d", 9), (80, "e", 2), (60, "", 0)]
    ]
    cases, skipped = query_cases(seqs, rows)
    assert skipped == 2  # an unknown item, an empty query
    assert [c.query for c in cases] == ["b", "c", "e", "a"]  # time order
    by_q = {c.query: c for c in cases}
    row = seqs.vocab.row
    # before 15: i0 and i1 (t=10), but i1 is the target: only i0
    assert list(by_q["b"].history) == [row("i0")]
    assert list(by_q["c"].history) == [row("i0"), row("i1"), row("i2")]
    assert list(by_q["a"].history) == [row(f"i{k}") for k in (0, 1, 2, 3, 1)]
    # span 15..100: the newest half of time starts at 57.5 -> "e" (80) and "a" (100) are test
    train, test = split_by_time(cases, 0.5)
    assert [c.query for c in test] == ["e", "a"] and [c.query for c in train] == ["b", "c"]
    assert max(c.time for c in train) < min(c.time for c in test)
    # a training case at the first test case's time would not be before it
    tied = [*cases, by_q["e"].__class__("u1", by_q["e"].time, "f", 0, by_q["e"].history)]
    train, test = split_by_time(tied, 0.5)
    assert all(c.time < min(t.time for t in test) for c in train) and "f" in [c.query for c in test]
    with pytest.raises(ValueError):
        split_by_time(cases[:1], 0.5)


def test_read_queries_columns_and_times(tmp_path: Path) -> None:
    path = tmp_path / "q.csv"
    path.write_text("who,what,q,when\nu1,i2,space war,2024-01-02T00:00:00Z\nu2,i3,cooking,1700000000\n")
    rows = read_queries(path, QueryColumns("who", "what", "q", "when"))
    assert rows == [QueryRow("u1", 1704153600.0, "space war", "i2"), QueryRow("u2", 1.7e9, "cooking", "i3")]
    with pytest.raises(DatasetError, match="no column"):
        read_queries(path)
    path.write_text("user_id,item_id,query,timestamp\nu1,i2,x,yesterday\n")
    with pytest.raises(DatasetError, match=":2:"):
        read_queries(path)


def test_timeline_puts_cases_before_clicks_at_the_same_time() -> None:
    data = taste_world(8)
    w = build_world(data, fake_encode)
    a, b = w.train[0], w.test[0]
    same = type(a)(a.user, b.time, a.query, a.target, a.history)
    kinds = [(c.time, clicked) for _, c, clicked in timeline([same], [b])]
    assert kinds == [(b.time, False), (b.time, True)]


def test_search_beats_bm25_when_the_query_matches_many_items_and_the_person_picks_one() -> None:
    out = evaluate_search(taste_world(), fake_encode, knn_personal, seeds=[0, 1])
    assert set(out["models"]) == {"search", "bm25", "semantic", "recommender"}
    for m in out["models"].values():
        assert {"ndcg@10", "hr@10", "mrr", "ndcg@10_ci95"} <= set(m)
        low, high = m["ndcg@10_ci95"]
        assert low <= m["ndcg@10"] <= high
    assert set(out["diagnostics"]) == {"bm25_unseen", "semantic_unseen"}
    assert out["cases"] == 60 and out["online_vs_frozen_ndcg@10"] is None
    assert out["seeds"] == [0, 1] and len(out["per_seed"]) == 2
    ndcg = {m: v["ndcg@10"] for m, v in out["models"].items()}
    # the query alone halves the catalog (BM25 ties every match), the person alone leaves the unseen
    # items of their cluster: together they leave one or two
    assert ndcg["bm25"] < 0.1 and ndcg["search"] > 0.6
    assert ndcg["search"] > max(ndcg["semantic"], ndcg["recommender"])
    paired = out["paired"]
    assert paired["baseline"] == "recommender" and paired["difference_ci95"][0] > 0
    assert paired["ratio"] == pytest.approx(ndcg["search"] / ndcg["recommender"])
    assert set(out["weights"]) >= {"bm25", "cosine", "personal", "seen", "clicks"}
    assert out["weights"]["seen"] < 0  # a leave-one-out target is never in the history


def test_online_replay_scores_each_case_before_learning_from_it() -> None:
    """The same search three times in the test period: the online ranker finds the target higher
    the second time (its memory learned the first click); frozen ranks it the same every time; and
    the first time both rank it identically (nothing learned yet)."""
    data = taste_world(24)
    t_end = max(e.timestamp for e in data.events)
    rows = [QueryRow(f"u{u}", T0 + 60.0 * u, "alpha", f"i{2 * u + 1}") for u in range(12)]  # training
    rows += [QueryRow("u3", t_end + 3600.0 * k, "alpha", "i27") for k in range(1, 4)]  # test, repeated
    w = build_world(data, fake_encode, rows, test_fraction=0.5)
    assert len(w.test) == 3 and len(w.train) == 12
    ranks, info = replay(w, LinearRanker(), [None] * 3, online=True, log=lambda _: None)
    online, frozen = ranks["search_online"].tolist(), ranks["search_frozen"].tolist()
    assert frozen[0] > 0  # the prior does not find it at once: there is something to learn
    assert online[0] == frozen[0]
    assert frozen == [frozen[0]] * 3
    assert online[1] < online[0] and online[2] <= online[1]
    assert info["clicks"] == 3


def test_online_report_keys() -> None:
    data = taste_world(24)
    rows = [QueryRow(f"u{u}", T0 + 3600.0 * (6 * 24 + u), "alpha", f"i{(u % 4) * 8 + 1}") for u in range(24)]
    rows += [QueryRow(f"u{u}", T0 + 3600.0 * (8 * 24 + u), "alpha", f"i{(u % 4) * 8 + 3}") for u in range(24)]
    out = evaluate_search(data, fake_encode, knn_personal, queries=rows, test_fraction=0.4, online=True)
    assert out["mode"] == "queries"
    assert {"search", "bm25", "semantic", "recommender", "search_online", "search_frozen"} == set(
        out["models"]
    )
    assert out["models"]["search_frozen"] == out["models"]["search"]
    ratio = out["models"]["search_online"]["ndcg@10"] / out["models"]["search_frozen"]["ndcg@10"]
    assert out["online_vs_frozen_ndcg@10"] == pytest.approx(ratio)
    assert out["cases"] + out["training_cases"] == 48
    chosen = out["per_seed"][0]["online_choice"]  # the online learning rate, chosen on training cases
    assert chosen["lr"] in (None, 0.03, 0.1, 0.3) and "holdout_online_ndcg@10" in chosen
