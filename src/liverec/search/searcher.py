"""`Searcher`: query -> candidates (BM25 top ∪ semantic top ∪ the user's model top) -> features ->
ranker scores. The server, `liverec evaluate search` and the simulator all rank through it.

The indexes are live (`index.LexicalIndex`, `index.SemanticIndex`); what is searchable is decided at
query time by ``allowed`` (the catalog's available rows), so an item made unavailable disappears on
the next query.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from liverec.search.features import Signals, feature_matrix, query_key
from liverec.search.index import LexicalIndex, SemanticIndex
from liverec.search.ranker import ClickMemory, LinearRanker


@dataclass(frozen=True)
class Ranked:
    """One query's candidates, best first by the ranker."""

    query_key: str
    rows: np.ndarray  # (M,) int64 catalog rows
    features: np.ndarray  # (M, F) float32
    scores: np.ndarray  # (M,) float64 ranker scores


class Searcher:
    """The live indexes plus the click memory; the ranker is passed per call (live or candidate)."""

    def __init__(self, depth: int = 300, freshness_half_life_days: float = 30.0) -> None:
        self.depth = depth  # candidates per retriever
        self.half_life = freshness_half_life_days
        self.lexical = LexicalIndex()
        self.semantic = SemanticIndex()
        self.memory = ClickMemory()
        self.lock = threading.Lock()  # the memory: written by learning, read by ranking

    def index(self, rows: Sequence[int], texts: Sequence[str], vectors: np.ndarray | None) -> None:
        """New or changed items: their text (empty: unsearchable) and (len, 384) text vectors."""
        self.lexical.upsert(rows, texts)
        if vectors is not None:
            self.semantic.upsert(rows, vectors)

    def signals(
        self,
        query: str,
        query_vector: np.ndarray,
        n: int,
        popularity: np.ndarray,
        created_at: np.ndarray,
        now: float,
        personal: np.ndarray | None = None,
        seen: np.ndarray | None = None,
        match: tuple[np.ndarray, np.ndarray] | None = None,
    ) -> Signals:
        """``match``: `match` computed earlier (outside a caller's lock), padded to ``n`` here."""
        bm25, cosine = match if match is not None else self.match(query, query_vector, n)
        if bm25.size < n:  # items that arrived since: not matched by this query
            bm25, cosine = np.pad(bm25, (0, n - bm25.size)), np.pad(cosine, (0, n - cosine.size))
        return Signals(
            bm25=bm25[:n],
            cosine=cosine[:n],
            personal=personal,
            popularity=popularity,
            created_at=created_at,
            now=now,
            seen=seen,
        )

    def match(self, query: str, query_vector: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
        """(n,) float32 BM25 and (n,) float32 cosine of every row < n: the query-only part of the
        signals, which needs no lock but the indexes' own."""
        return self.lexical.scores(query, n), self.semantic.scores(query_vector, n)

    def candidates(self, sig: Signals, allowed: np.ndarray, depth: int | None = None) -> np.ndarray:
        """(M,) int64 allowed rows: the top ``depth`` by BM25 (> 0), by cosine and by the personal
        score, united. ``depth`` >= the catalog size ranks every allowed row (evaluation)."""
        d = self.depth if depth is None else depth
        n = allowed.size
        if d >= n:
            return np.flatnonzero(allowed)
        parts = [_top(sig.bm25, allowed & (sig.bm25 > 0), d), _top(sig.cosine, allowed, d)]
        if sig.personal is not None:
            parts.append(_top(sig.personal, allowed & np.isfinite(sig.personal), d))
        return np.unique(np.concatenate(parts))

    def rank(
        self,
        query: str,
        sig: Signals,
        allowed: np.ndarray,
        ranker: LinearRanker,
        depth: int | None = None,
    ) -> Ranked:
        key = query_key(query)
        rows = self.candidates(sig, allowed, depth)
        with self.lock:
            clicks = self.memory.values(key, rows, sig.now)
        x = feature_matrix(rows, sig, clicks, self.half_life)
        s = ranker.score(x)
        order = np.argsort(-s, kind="stable")
        return Ranked(key, rows[order], x[order], s[order])

    def remember_click(self, key: str, row: int, weight: float, now: float) -> None:
        with self.lock:
            self.memory.add(key, row, weight, now)


def _top(scores: np.ndarray, mask: np.ndarray, k: int) -> np.ndarray:
    """(<=k,) int64 rows of ``mask`` with the highest ``scores`` (unordered)."""
    rows = np.flatnonzero(mask)
    if rows.size > k:
        rows = rows[np.argpartition(-scores[rows], k - 1)[:k]]
    return rows
