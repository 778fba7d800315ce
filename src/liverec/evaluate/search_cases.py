"""The cases `liverec evaluate search` ranks: (user, time, query, target item), each with the user's
history, how they split into training and test cases, and the `World` they are ranked in (the
catalog's texts and vectors, popularity, release times).

- Leave-one-out (no queries file): per user of the offline split, the validation target is a
  training case and the test target a test case; the query is the target's tags (MovieLens: its
  genre names), never its title; the history is what precedes the target in the user's sequence.
- A queries file: every row is a case; the history is the user's positives strictly before its time.
  The cases in the newest ``test_fraction`` of the cases' time span are the test cases, the cases
  before the first of them the training cases (`split_by_time`).

Every history leaves out the events on the case's own target item (a re-watch would give it away).
"""

from __future__ import annotations

import csv
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from liverec.core.features import Seq
from liverec.core.metrics import Scorer
from liverec.core.schema import Item, to_epoch
from liverec.core.split import LeaveOneOut, Sequences, leave_one_out, sequences_from_events
from liverec.core.vocab import Vocab
from liverec.events.datasets import Dataset, DatasetError
from liverec.search.searcher import Searcher
from liverec.settings import RewardWeights

MIN_LEN = 5  # leave-one-out: users with fewer positives are skipped, as in `evaluate offline`
Encode = Callable[[list[str]], np.ndarray]  # texts -> (n, 384) float32 unit vectors


@dataclass(frozen=True)
class Case:
    user: str
    time: float  # epoch seconds
    query: str
    target: int  # catalog row
    history: Seq  # (H,) the user's positive rows before the case, oldest first, without ``target``


@dataclass(frozen=True)
class QueryRow:
    """One row of a queries file."""

    user: str
    time: float
    query: str
    item_id: str


@dataclass(frozen=True)
class QueryColumns:
    user: str = "user_id"
    item: str = "item_id"
    query: str = "query"
    time: str = "timestamp"


def tag_queries(items: Sequence[Item], vocab: Vocab) -> list[str]:
    """Per catalog row: the item's tags joined by spaces ("" without tags or metadata)."""
    out = [""] * len(vocab)
    for it in items:
        row = vocab.row(it.item_id)
        if row is not None:
            out[row] = " ".join(it.tags)
    return out


def without(history: np.ndarray, row: int) -> Seq:
    s = history if isinstance(history, Seq) else Seq(history)
    return s.keep(np.asarray(s) != row)


def leave_one_out_cases(split: LeaveOneOut, queries: Sequence[str]) -> tuple[list[Case], list[Case]]:
    """(training cases, test cases): each user's validation and test targets whose query (tags, by
    row) is not empty. A test case's history includes the validation item."""
    train: list[Case] = []
    test: list[Case] = []
    test_inputs = split.test_inputs()
    for k, user in enumerate(split.seqs.users):
        times = split.seqs.times[k]
        for out, target, history, t in (
            (train, int(split.val[k]), split.train[k], times[-2]),
            (test, int(split.test[k]), test_inputs[k], times[-1]),
        ):
            if queries[target].strip():
                out.append(Case(user, float(t), queries[target], target, without(history, target)))
    return train, test


def read_queries(path: Path, cols: QueryColumns = QueryColumns(), delimiter: str = ",") -> list[QueryRow]:
    """The rows of a queries CSV; a missing column or a bad time is a DatasetError naming the line."""
    try:
        fh = path.open(newline="", encoding="utf-8-sig")
    except OSError as exc:
        raise DatasetError(f"{path}: {exc.strerror or exc}") from None
    with fh:
        reader = csv.DictReader(fh, delimiter=delimiter)
        header = reader.fieldnames or []
        missing = [c for c in (cols.user, cols.item, cols.query, cols.time) if c not in header]
        if missing:
            raise DatasetError(
                f"{path}: no column(s) {', '.join(missing)}; the header has {', '.join(header)}"
            )
        rows = []
        for row in reader:
            try:
                t = to_epoch(row[cols.time])
            except ValueError as exc:
                raise DatasetError(f"{path}:{reader.line_num}: {cols.time}: {exc}") from None
            rows.append(QueryRow(row[cols.user], t, row[cols.query], row[cols.item]))
    return rows


def query_cases(seqs: Sequences, rows: Sequence[QueryRow]) -> tuple[list[Case], int]:
    """(cases in time order, rows skipped): one case per row with a known item and a query."""
    where = {u: k for k, u in enumerate(seqs.users)}
    cases: list[Case] = []
    skipped = 0
    for r in sorted(rows, key=lambda r: r.time):
        target = seqs.vocab.row(r.item_id)
        if target is None or not r.query.strip():
            skipped += 1
            continue
        k = where.get(r.user)
        if k is None:
            history = Seq(np.zeros(0, np.int64), np.zeros(0), np.zeros(0, np.int64) if seqs.types else None)
        else:
            history = seqs.seq(k).keep(seqs.times[k] < r.time)
        cases.append(Case(r.user, r.time, r.query, target, without(history, target)))
    return cases, skipped


def split_by_time(cases: Sequence[Case], test_fraction: float) -> tuple[list[Case], list[Case]]:
    """(training, test): test = the cases in the newest ``test_fraction`` of the cases' time span;
    training = the cases strictly before the first test case. A ValueError if either is empty."""
    if not cases:
        raise ValueError("no cases: no query row names a known item")
    times = np.array([c.time for c in cases])
    cut = times.max() - test_fraction * (times.max() - times.min())
    test = [c for c in cases if c.time >= cut]
    first = min(c.time for c in test)
    train = [c for c in cases if c.time < first]
    if not train:
        raise ValueError("no query comes before the test cases: nothing to train the ranker on")
    return train, test


def sequences_before(seqs: Sequences, t: float) -> Sequences:
    """Each user's positives strictly before ``t`` (users with none dropped), same vocabulary."""
    keep = [k for k, ts in enumerate(seqs.times) if (ts < t).any()]
    cut = [seqs.times[k] < t for k in keep]
    return Sequences(
        users=[seqs.users[k] for k in keep],
        items=[seqs.items[k][m] for k, m in zip(keep, cut, strict=True)],
        times=[seqs.times[k][m] for k, m in zip(keep, cut, strict=True)],
        vocab=seqs.vocab,
        texts=seqs.texts,
        types=[seqs.types[k][m] for k, m in zip(keep, cut, strict=True)] if seqs.types else [],
    )


def personal_scores(
    score: Scorer, cases: Sequence[Case], n: int, batch: int = 512
) -> list[np.ndarray | None]:
    """Per case: (N,) float32 personal scores of its history; None for an empty history."""
    out: list[np.ndarray | None] = [None] * len(cases)
    todo = [i for i, c in enumerate(cases) if len(c.history)]
    for start in range(0, len(todo), batch):
        idx = todo[start : start + batch]
        scores = score([cases[i].history for i in idx])[:, :n]
        for i, row in zip(idx, scores, strict=True):
            out[i] = row
    return out


def timeline(clicks: Sequence[Case], cases: Sequence[Case]) -> Iterator[tuple[int, Case, bool]]:
    """(index, case, is_click) in time order: ``clicks`` as clicks on their targets, ``cases`` to rank.
    At equal times the cases come first: a case sees only what happened strictly before it."""
    events = [(c.time, 1, i) for i, c in enumerate(clicks)] + [(c.time, 0, i) for i, c in enumerate(cases)]
    for _, kind, i in sorted(events):
        yield (i, clicks[i], True) if kind else (i, cases[i], False)


@dataclass
class World:
    """What every seed shares: the cases, the catalog's texts and vectors, the aggregates."""

    train: list[Case]
    test: list[Case]
    split: LeaveOneOut  # what the personal model trains on
    texts: list[str]  # (N,) item text by catalog row
    vectors: np.ndarray  # (N, 384) float32
    queries: dict[str, np.ndarray]  # query -> (384,) vector
    created_at: np.ndarray  # (N,) float64
    pop_train: np.ndarray  # (N,) positives known to the training cases
    pop_test: np.ndarray  # (N,) positives known to the test cases
    mode: str
    skipped: int = 0  # query rows naming no known item (or with an empty query)

    @property
    def n(self) -> int:
        return len(self.texts)

    def searcher(self) -> Searcher:
        s = Searcher()
        s.index(list(range(self.n)), self.texts, self.vectors)
        return s


def counts(seqs: Sequence[np.ndarray], n: int) -> np.ndarray:
    """(n,) float64 positives per row."""
    flat = np.concatenate([np.asarray(s) for s in seqs]) if seqs else np.zeros(0, np.int64)
    return np.bincount(flat, minlength=n)[:n].astype(np.float64)


def build_world(
    data: Dataset,
    encode: Encode,
    queries: Sequence[QueryRow] | None = None,
    test_fraction: float = 0.5,
    rewards: RewardWeights | None = None,
    log: Callable[[str], None] | None = None,
) -> World:
    """Cases, texts, vectors; ValueError when there is nothing to evaluate."""
    seqs = sequences_from_events(data.events, data.items, rewards)
    n = seqs.n_items
    skipped = 0
    if queries is None:
        split = leave_one_out(seqs, min_len=MIN_LEN)
        train, test = leave_one_out_cases(split, tag_queries(data.items, seqs.vocab))
        pop_train, pop_test = counts(split.train, n), counts(split.train_with_val(), n)
        mode = "leave_one_out"
    else:
        cases, skipped = query_cases(seqs, queries)
        train, test = split_by_time(cases, test_fraction)
        head = sequences_before(seqs, min(c.time for c in test))
        split = leave_one_out(head, min_len=3)
        split.cold_items = np.flatnonzero(counts(split.train_with_val(), n) == 0)  # text-only, as new
        pop_train = pop_test = counts(head.items, n)
        mode = "queries"
    if not split.train:
        raise ValueError("too few positives per user to train the personal model")
    if not train or not test:
        raise ValueError("no training or no test case (do the items have tags?)")
    created = np.zeros(n)
    for it in data.items:
        row = seqs.vocab.row(it.item_id)
        if row is not None:
            created[row] = it.created_at
    texts = [seqs.texts.get(i, "") for i in seqs.vocab.ids]
    if log:
        log(f"{len(train):,} training and {len(test):,} test cases over {n:,} items ({mode}); encoding text")
    vectors = np.asarray(encode(texts), dtype=np.float32)
    qs = sorted({c.query for c in train + test})
    qv = np.asarray(encode(qs), dtype=np.float32)
    return World(
        train, test, split, texts, vectors, dict(zip(qs, qv, strict=True)), created, pop_train,
        pop_test, mode, skipped,
    )  # fmt: skip
