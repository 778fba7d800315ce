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
class Match:
    """The query-only part of a search's signals: needs no lock but the indexes' own."""

    bm25: np.ndarray  # (n,) float32 BM25 of every row
    cosine: np.ndarray | None  # (n,) float32 cosine of every row: small catalogs (an exact scan)
    semantic: np.ndarray | None  # (<=depth,) int64 the ANN's nearest rows: large catalogs

    def padded(self, n: int) -> Match:
        """The same for ``n`` rows: items that arrived since were not matched by this query."""
        if self.bm25.size >= n:
            return self
        pad = (0, n - self.bm25.size)
        cos = None if self.cosine is None else np.pad(self.cosine, pad)
        return Match(np.pad(self.bm25, pad), cos, self.semantic)


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
        match: Match | None = None,
    ) -> Signals:
        """``match``: `match` computed earlier (outside a caller's lock)."""
        m = (match or self.match(query, query_vector, n)).padded(n)
        return Signals(
            bm25=m.bm25[:n],
            cosine=None if m.cosine is None else m.cosine[:n],
            personal=personal,
            popularity=popularity,
            created_at=created_at,
            now=now,
            seen=seen,
            semantic=m.semantic,
            query_vector=query_vector,
        )

    def match(self, query: str, query_vector: np.ndarray, n: int) -> Match:
        """BM25 of every row < n; the cosine of every row, or on a large catalog (the ANN built) the
        ``depth`` nearest rows only (their cosines, and the other candidates', come in `rank`)."""
        bm25 = self.lexical.scores(query, n)
        if self.semantic.ann.ready:
            return Match(bm25, None, self.semantic.top(query_vector, self.depth)[0])
        return Match(bm25, self.semantic.scores(query_vector, n), None)

    def candidates(self, sig: Signals, allowed: np.ndarray, depth: int | None = None) -> np.ndarray:
        """(M,) int64 allowed rows: the top ``depth`` by BM25 (> 0), by cosine and by the personal
        score, united. ``depth`` >= the catalog size ranks every allowed row (evaluation)."""
        d = self.depth if depth is None else depth
        n = allowed.size
        if d >= n:
            return np.flatnonzero(allowed)
        if sig.cosine is not None:
            near = _top(sig.cosine, allowed, d)
        else:  # the ANN's nearest, of those allowed
            near = sig.semantic if sig.semantic is not None else np.zeros(0, np.int64)
            near = near[(near < n) & allowed[np.minimum(near, n - 1)]]
        parts = [_top(sig.bm25, allowed & (sig.bm25 > 0), d), near]
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
        if sig.cosine is not None:
            cosine = sig.cosine[rows]
        else:
            qv = sig.query_vector if sig.query_vector is not None else np.zeros(self.semantic.dim)
            cosine = self.semantic.scores_at(qv, rows)
        x = feature_matrix(rows, sig, clicks, cosine, self.half_life)
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
