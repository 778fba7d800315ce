"""Full-ranking metrics: every item is a candidate (no sampled negatives); items the user already
interacted with are excluded. Ties count against the target (a constant scorer scores zero)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

Scorer = Callable[[list[np.ndarray]], np.ndarray]  # input sequences -> (B, N) float32 scores


def target_ranks(scores: np.ndarray, targets: np.ndarray, exclude: Sequence[np.ndarray]) -> np.ndarray:
    """(B,) int64 0-based rank of each target among non-excluded items; scores (B, N)."""
    scores = np.array(scores, dtype=np.float32, copy=True)
    for b, ex in enumerate(exclude):
        ex = ex[ex != targets[b]]
        scores[b, ex] = -np.inf
    target_scores = scores[np.arange(len(targets)), targets][:, None]
    return (scores >= target_scores).sum(axis=1) - 1  # ties are counted ahead of the target


def top_k(scores: np.ndarray, exclude: Sequence[np.ndarray], k: int) -> np.ndarray:
    """(B, k) rows of the top-k non-excluded items per user."""
    scores = np.array(scores, dtype=np.float32, copy=True)
    for b, ex in enumerate(exclude):
        scores[b, ex] = -np.inf
    k = min(k, scores.shape[1])
    part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    order = np.argsort(-np.take_along_axis(scores, part, axis=1), axis=1)
    return np.take_along_axis(part, order, axis=1)


def ndcg_per_user(ranks: np.ndarray, k: int = 10) -> np.ndarray:
    """(U,) float64 NDCG@k of each user's single target, from its 0-based ``ranks`` (U,)."""
    return np.where(ranks < k, 1.0 / np.log2(ranks + 2.0), 0.0)


def ranking_metrics(ranks: np.ndarray, ks: Sequence[int] = (10, 20)) -> dict[str, float]:
    out: dict[str, float] = {}
    for k in ks:
        out[f"hr@{k}"] = float((ranks < k).mean())
        out[f"ndcg@{k}"] = float(ndcg_per_user(ranks, k).mean())
    out["mrr"] = float((1.0 / (ranks + 1.0)).mean())
    return out


class Ranked(NamedTuple):
    """One scorer's evaluation before averaging: what confidence intervals resample."""

    ranks: np.ndarray  # (U,) int64 0-based rank of each user's target
    shown: np.ndarray  # (N,) bool items in at least one user's top 10 (catalog coverage)

    def metrics(self, ks: Sequence[int] = (10, 20)) -> dict[str, float]:
        out = ranking_metrics(self.ranks, ks)
        out["coverage@10"] = float(self.shown.mean())
        out["users"] = float(len(self.ranks))
        return out

    def ndcg_interval(self, k: int = 10, alpha: float = 0.05, seed: int = 0) -> list[float]:
        """[low, high] percentile-bootstrap interval of NDCG@k over the users (10,000 resamples,
        seeded): how much the figure depends on which users the split happened to hold."""
        return list(bootstrap_interval(ndcg_per_user(self.ranks, k), None, alpha, 10_000, seed))


def evaluate(
    scorer: Scorer,
    inputs: list[np.ndarray],
    targets: np.ndarray,
    n_items: int,
    batch: int = 256,
    ks: Sequence[int] = (10, 20),
    subset: np.ndarray | None = None,
) -> dict[str, float]:
    """Metrics of ``scorer`` over users (optionally only ``subset`` of them), plus catalog coverage@10."""
    return rank_many({"": scorer}, inputs, targets, n_items, batch, subset)[""].metrics(ks)


def rank_many(
    scorers: Mapping[str, Scorer],
    inputs: list[np.ndarray],
    targets: np.ndarray,
    n_items: int,
    batch: int = 256,
    subset: np.ndarray | None = None,
) -> dict[str, Ranked]:
    """Each scorer's per-user target ranks, in one pass over the users. Every scorer gets each batch
    as the same list object, so one built on another through `LastBatch` (a blend) reuses its scores."""
    idx = np.arange(len(inputs)) if subset is None else np.asarray(subset)
    ranks: dict[str, list[np.ndarray]] = {name: [] for name in scorers}
    shown = {name: np.zeros(n_items, dtype=bool) for name in scorers}
    for start in range(0, len(idx), batch):
        b = idx[start : start + batch]
        seqs = [inputs[i] for i in b]
        for name, scorer in scorers.items():
            scores = scorer(seqs)[:, :n_items]
            ranks[name].append(target_ranks(scores, targets[b], seqs))
            shown[name][top_k(scores, seqs, 10).ravel()] = True
    return {
        name: Ranked(np.concatenate(ranks[name]) if ranks[name] else np.empty(0, np.int64), shown[name])
        for name in scorers
    }


class LastBatch:
    """``score`` remembering its last batch: scorers built on it, called in turn on one batch (see
    `rank_many`), score the batch once. Holding the list keeps its identity from being reused."""

    def __init__(self, score: Scorer) -> None:
        self.score = score
        self._seqs: list[np.ndarray] | None = None
        self._scores = np.zeros((0, 0), np.float32)

    def __call__(self, seqs: list[np.ndarray]) -> np.ndarray:
        if seqs is not self._seqs:
            self._seqs, self._scores = seqs, self.score(seqs)
        return self._scores


_CHUNK_CELLS = 2_000_000  # bootstrap indices drawn per chunk (16 MB of int64)


def bootstrap_interval(
    terms: np.ndarray,
    weights: np.ndarray | None = None,
    alpha: float = 0.05,
    n_bootstrap_samples: int = 10_000,
    random_state: int | None = None,
) -> tuple[float, float]:
    """Percentile bootstrap (1 - alpha) interval of mean(terms), or of sum(terms) / sum(weights).

    Resamples rounds with replacement; draw b is ``RandomState(seed).randint(0, n, n)`` in order,
    the same stream as obp's ``random_.choice(samples, size=n)`` loop.
    """
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    if n_bootstrap_samples < 1:
        raise ValueError("n_bootstrap_samples must be >= 1")
    n = len(terms)
    if n == 0:
        raise ValueError("no rounds to bootstrap")
    rng = np.random.RandomState(random_state)
    stats = np.empty(n_bootstrap_samples)
    chunk = max(1, _CHUNK_CELLS // n)
    for start in range(0, n_bootstrap_samples, chunk):
        rows = min(chunk, n_bootstrap_samples - start)
        idx = rng.randint(0, n, size=(rows, n))
        if weights is None:
            stats[start : start + rows] = terms[idx].mean(axis=1)
        else:
            stats[start : start + rows] = terms[idx].sum(axis=1) / weights[idx].sum(axis=1)
    low = float(np.percentile(stats, 100 * (alpha / 2)))
    high = float(np.percentile(stats, 100 * (1.0 - alpha / 2)))
    return low, high


@dataclass
class SliceScore:
    """Running NDCG@10 / HR@10 of one model over a prequential slice (the online gate's score):
    sums, so it stays constant in size however long the learner runs."""

    ndcg: float = 0.0
    hits: float = 0.0
    n: int = 0

    def add(self, ranks: np.ndarray) -> None:
        self.ndcg += float(ndcg_per_user(ranks, 10).sum())
        self.hits += float((ranks < 10).sum())
        self.n += len(ranks)

    def value(self) -> dict[str, float]:
        return {"ndcg@10": self.ndcg / max(self.n, 1), "hr@10": self.hits / max(self.n, 1), "n": self.n}
