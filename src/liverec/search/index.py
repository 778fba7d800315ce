"""Live retrieval indexes behind ``GET /v1/search``: lexical BM25 and semantic cosine, by catalog row.

`LexicalIndex` makes the static bm25s index live with a main + delta design (like Lucene segments):
the main bm25s index covers a snapshot of the corpus; rows changed since (upserted or removed) are
masked out of the main, and upserted rows are scored from a small delta with the snapshot's
statistics. What is approximate between compactions, exactly:

- a delta doc's term with a snapshot df uses the snapshot IDF (snapshot N and df, which still count
  masked docs and not the delta), and every delta doc uses the snapshot avgdl;
- a term the snapshot never saw uses df = delta docs holding it, N = snapshot docs + delta docs; with
  an empty snapshot (everything in the delta) avgdl is the delta's own, so scores are exact BM25;
- main docs keep the scores bm25s computed at the snapshot, though N, df and avgdl have drifted.

`compact()` (run by itself once more than ``max_delta`` rows changed) rebuilds the main over the
current corpus and restores exact bm25s scores. Readers take one reference to an immutable state and
never lock; writers serialise on a lock and publish a new state (copy-on-write), so a reader never
sees a half-applied upsert or a half-built main.
"""

from __future__ import annotations

import logging
import re
import threading
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import bm25s
import numpy as np
from bm25s.scoring import _build_idf_array, _select_idf_scorer, _select_tfc_scorer
from bm25s.stopwords import STOPWORDS_EN

from liverec.core.ann import IvfIndex

_WORD = re.compile(r"[^\W_]+")  # runs of Unicode letters/digits; "_" and punctuation split
_STOP = frozenset(STOPWORDS_EN)  # Lucene's classic English list (33 words), as bm25s ships it
_METHOD = "lucene"
_IDF = _select_idf_scorer(_METHOD)  # bm25s's own idf(df, N) and tfc(tf, l_d, l_avg, k1, b)
_TFC = _select_tfc_scorer(_METHOD)


def tokenize(text: str) -> list[str]:
    """The one tokenizer for documents and queries, so both sides always agree: lowercase, split on
    non-alphanumerics ("sci-fi" -> "sci", "fi"), drop English stopwords."""
    return [w for w in _WORD.findall(text.lower()) if w not in _STOP]


def _top_k(scores: np.ndarray, cand: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The best k of scores[cand], best first, ties by row ascending (cand is ascending)."""
    vals = scores[cand]  # (C,) float32
    if k < len(cand):
        part = np.argpartition(-vals, k - 1)[:k]
        cand, vals = cand[part], vals[part]
    order = np.lexsort((cand, -vals))
    return cand[order].astype(np.int64), vals[order].astype(np.float32)


_NONE = (np.zeros(0, np.int64), np.zeros(0, np.float32))


@dataclass(frozen=True)
class _Main:
    """One immutable bm25s snapshot ("segment") and the statistics the delta is scored with."""

    bm25: Any  # bm25s.BM25 over the snapshot's docs in row order; None when the snapshot is empty
    rows: np.ndarray  # (M,) int64 catalog row of main doc i, ascending
    idf: np.ndarray  # (V,) float32 IDF per bm25s vocab id, as bm25s computed it for this snapshot
    avgdl: float  # mean doc length (tokens) of the snapshot


@dataclass(frozen=True)
class _Delta:
    """Changes since the snapshot. Replaced on every write, never mutated once published."""

    dead: np.ndarray  # (M,) bool: main doc masked (its row changed or was removed since the snapshot)
    lengths: dict[int, int]  # row -> doc length (tokens) of every delta doc
    postings: dict[str, dict[int, int]]  # token -> {row: term frequency} over the delta docs


@dataclass(frozen=True)
class _State:
    main: _Main
    delta: _Delta
    n_rows: int  # 1 + the largest row ever indexed: how long top()'s score array is


def _build_main(docs: Mapping[int, tuple[str, ...]], k1: float, b: float) -> _Main:
    rows = np.array(sorted(docs), dtype=np.int64)
    if len(rows) == 0:
        return _Main(None, rows, np.zeros(0, np.float32), 0.0)
    corpus = [list(docs[r]) for r in rows.tolist()]
    bm25 = bm25s.BM25(k1=k1, b=b, method=_METHOD)
    bm25.index(corpus, create_empty_token=False, show_progress=False)
    df = np.diff(bm25.scores["indptr"])  # (V,) one CSC entry per (doc, distinct token): docs per token
    idf = _build_idf_array(dict(enumerate(df.tolist())), n_docs=len(rows), compute_idf_fn=_IDF)
    return _Main(bm25, rows, idf, float(np.mean([len(d) for d in corpus])))


class LexicalIndex:
    """BM25 (bm25s, Lucene variant, k1, b) over item text, updated live: an upsert is searchable as
    soon as it returns. Query terms repeated in a query count once per occurrence, as in bm25s.

    A text with no indexable token (empty, or only stopwords) removes the row: it could never match.
    Compaction runs synchronously inside the upsert that takes the delta past ``max_delta`` changed
    rows (1-2 s at 100k items on a 2-core VM, see bench/search_index.py); readers keep using the old
    state meanwhile, and an upsert that does not overflow the delta takes well under 1 ms.
    """

    def __init__(self, k1: float = 1.5, b: float = 0.75, max_delta: int = 1000) -> None:
        self.k1, self.b, self.max_delta = k1, b, max_delta
        logging.getLogger("bm25s").setLevel(logging.WARNING)  # it logs every build at DEBUG
        self._lock = threading.Lock()  # serialises writers; readers never take it
        self._docs: dict[int, tuple[str, ...]] = {}  # writer side: the current tokens of every row
        self._changed: set[int] = set()  # writer side: rows upserted or removed since the snapshot
        main = _build_main({}, k1, b)
        self._state = _State(main, _Delta(np.zeros(0, bool), {}, {}), 0)

    def upsert(self, rows: Sequence[int], texts: Sequence[str]) -> None:
        """New or changed item texts; an empty text removes the row."""
        if len(rows) != len(texts):
            raise ValueError(f"{len(rows)} rows but {len(texts)} texts")
        new = {int(r): tuple(tokenize(t)) for r, t in zip(rows, texts, strict=True)}  # last one wins
        with self._lock:
            self._apply(new)

    def remove(self, rows: Sequence[int]) -> None:
        """The rows stop matching at once (unknown rows are ignored)."""
        with self._lock:
            self._apply({int(r): () for r in rows})

    def compact(self) -> None:
        """Rebuild the main bm25s index over the current corpus (delta folded in): exact scores again."""
        with self._lock:
            self._compact(self._state.n_rows)

    def __len__(self) -> int:
        return len(self._docs)  # rows indexed

    def terms(self, row: int) -> frozenset[str]:
        """The row's indexed tokens (empty: not indexed): what a query can match it on. One dict read
        of a tuple writers replace whole, so no lock is needed."""
        return frozenset(self._docs.get(int(row), ()))

    def scores(self, query: str, n: int) -> np.ndarray:
        """(n,) float32 BM25 score of every row < n (0 where the row is not indexed or matches nothing)."""
        out = np.zeros(n, np.float32)  # (n,) float32
        tokens = tokenize(query)
        if tokens and n > 0:
            self._add_scores(self._state, tokens, out)
        return out

    def top(self, query: str, k: int, allowed: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(<=k,) int64 rows and (<=k,) float32 scores, best first, only rows with score > 0 (and
        allowed[row] where given; allowed is (n,) bool and may be shorter than the largest row: rows
        beyond it are not allowed)."""
        st = self._state
        tokens = tokenize(query)
        n = st.n_rows if allowed is None else min(st.n_rows, len(allowed))
        if k <= 0 or not tokens or n == 0:
            return _NONE
        s = np.zeros(n, np.float32)  # (n,) float32
        self._add_scores(st, tokens, s)
        if allowed is not None:
            s[~np.asarray(allowed[:n], dtype=bool)] = 0.0
        return _top_k(s, np.flatnonzero(s > 0), k)

    def _add_scores(self, st: _State, tokens: list[str], out: np.ndarray) -> None:
        """Add the scores of main and delta docs with rows < len(out) into out, from one state."""
        n, main, delta = len(out), st.main, st.delta
        ids = main.bm25.get_tokens_ids(tokens) if main.bm25 is not None else []
        if ids:
            s = main.bm25.get_scores_from_ids(ids)  # (M,) float32, bm25s's own scoring
            s[delta.dead] = 0.0
            m = int(np.searchsorted(main.rows, n))
            if m and main.rows[m - 1] == m - 1:  # rows 0..m-1 all in main: a plain slice
                out[:m] += s[:m]
            else:
                out[main.rows[:m]] += s[:m]
        if not delta.lengths:
            return
        n_main = len(main.rows)
        l_avg = main.avgdl if n_main else float(np.mean(list(delta.lengths.values())))
        vocab = main.bm25.vocab_dict if main.bm25 is not None else {}
        for tok in tokens:
            post = delta.postings.get(tok)
            if not post:
                continue
            vid = vocab.get(tok)
            idf = float(main.idf[vid]) if vid is not None else _IDF(len(post), N=n_main + len(delta.lengths))
            rows = np.fromiter(post.keys(), np.int64, len(post))  # (P,) int64, distinct
            tf = np.fromiter(post.values(), np.float64, len(post))  # (P,) float64
            l_d = np.fromiter((delta.lengths[r] for r in post), np.float64, len(post))  # (P,) float64
            sc = idf * _TFC(tf_array=tf, l_d=l_d, l_avg=l_avg, k1=self.k1, b=self.b)  # (P,) float64
            keep = rows < n
            out[rows[keep]] += sc[keep].astype(np.float32)

    def _apply(self, new: dict[int, tuple[str, ...]]) -> None:
        """Fold changed rows into a copy of the delta and publish it (or compact). Holds the lock."""
        if any(r < 0 for r in new):
            raise ValueError("rows must be >= 0")
        st = self._state
        old = {r: self._docs[r] for r in new if r in st.delta.lengths}  # their previous delta docs
        for row, tokens in new.items():
            if tokens:
                self._docs[row] = tokens
            else:
                self._docs.pop(row, None)
        self._changed.update(new)
        n_rows = max(st.n_rows, 1 + max((r for r, t in new.items() if t), default=-1))
        if len(self._changed) > self.max_delta:  # bulk loads skip the delta altogether
            self._compact(n_rows)
            return
        lengths, postings = dict(st.delta.lengths), dict(st.delta.postings)
        copied: set[str] = set()  # tokens whose posting dict is already this write's own copy

        def posting(tok: str) -> dict[int, int]:
            if tok not in copied:
                copied.add(tok)
                postings[tok] = dict(postings.get(tok, {}))
            return postings.setdefault(tok, {})

        for row, tokens in old.items():
            for tok in set(tokens):
                posting(tok).pop(row, None)
            del lengths[row]
        for row, tokens in new.items():
            if tokens:
                lengths[row] = len(tokens)
                for tok, tf in Counter(tokens).items():
                    posting(tok)[row] = tf
        for tok in copied:
            if not postings.get(tok):
                postings.pop(tok, None)
        main_rows, dead = st.main.rows, st.delta.dead
        at = np.searchsorted(main_rows, np.fromiter(new, np.int64, len(new)))  # (R,) int64
        at = at[at < len(main_rows)]
        at = at[np.isin(main_rows[at], list(new))]  # main docs of the changed rows
        if len(at) and not dead[at].all():
            dead = dead.copy()
            dead[at] = True
        self._state = _State(st.main, _Delta(dead, lengths, postings), n_rows)

    def _compact(self, n_rows: int) -> None:
        """Build the new main off to the side, then swap it in with one reference store. Holds the lock."""
        main = _build_main(self._docs, self.k1, self.b)
        self._changed.clear()
        self._state = _State(main, _Delta(np.zeros(len(main.rows), bool), {}, {}), n_rows)


class SemanticIndex:
    """Cosine over L2-normalised item vectors kept in one growing (capacity, dim) float32 matrix.

    A vector is written in place into its row, so a query running during the write of that very row
    may see the old vector, the new one, or (for that one query) a mix; rows are published to top()
    only after their vector is written. Growth allocates a new matrix and swaps one reference.
    """

    def __init__(self, dim: int = 384, ann_min: int = 20_000, nprobe: int = 16) -> None:
        self.dim = dim
        self.ann = IvfIndex(dim, ann_min, nprobe)  # `top` for large catalogs (`core.ann`)
        self._lock = threading.Lock()  # serialises writers; readers never take it
        mat = np.zeros((0, dim), np.float32)  # (capacity, dim) float32, unit rows or zero rows
        has = np.zeros(0, bool)  # (capacity,) bool: row has a vector
        self._view: tuple[np.ndarray, np.ndarray, int] = (mat, has, 0)  # + 1 + largest row with a vector
        self._count = 0

    def upsert(self, rows: Sequence[int], vectors: np.ndarray) -> None:
        """(len(rows), dim) vectors, normalised here; an all-zero (or non-finite) vector removes the row."""
        r = np.asarray(rows, dtype=np.int64).reshape(-1)  # (R,) int64
        v = np.asarray(vectors, dtype=np.float32)  # (R, dim) float32
        if v.shape != (len(r), self.dim):
            raise ValueError(f"vectors of shape {v.shape}, want {(len(r), self.dim)}")
        if len(r) == 0:
            return
        if r.min() < 0:
            raise ValueError("rows must be >= 0")
        last = len(r) - 1 - np.unique(r[::-1], return_index=True)[1]  # the last of each duplicate row
        r, v = r[last], v[last]
        norms = np.linalg.norm(v, axis=1)  # (R,) float32
        live = np.isfinite(norms) & (norms > 0)
        v = v[live] / norms[live, None]
        gone, add = r[~live], r[live]
        top = int(add.max()) + 1 if len(add) else 0
        with self._lock:
            mat, has, hw = self._view
            if top > len(mat):  # grow by doubling, into new arrays readers do not hold yet
                cap = max(top, 2 * len(mat), 16)
                mat = np.concatenate([mat, np.zeros((cap - len(mat), self.dim), np.float32)])
                has = np.concatenate([has, np.zeros(cap - len(has), bool)])
            gone = gone[gone < len(mat)]
            has[gone] = False  # unpublish, then clear
            mat[gone] = 0.0
            mat[add] = v  # write, then publish
            has[add] = True
            self._count = int(has.sum())
            self._view = (mat, has, max(hw, top))
            if not self.ann.maybe_rebuild(mat, has):
                self.ann.update(gone, add, v)

    def remove(self, rows: Sequence[int]) -> None:
        """The rows lose their vectors at once (unknown rows are ignored)."""
        self.upsert(rows, np.zeros((len(rows), self.dim), np.float32))

    def __len__(self) -> int:
        return self._count  # rows with a vector

    def _unit(self, query: np.ndarray) -> np.ndarray | None:
        q = np.asarray(query, dtype=np.float32).reshape(-1)  # (dim,) float32
        if q.shape != (self.dim,):
            raise ValueError(f"query of shape {q.shape}, want {(self.dim,)}")
        norm = float(np.linalg.norm(q))
        return q / norm if np.isfinite(norm) and norm > 0 else None

    def scores(self, query: np.ndarray, n: int) -> np.ndarray:
        """(n,) float32 cosine of every row < n, 0 for rows without a vector (or a zero query)."""
        out = np.zeros(n, np.float32)  # (n,) float32
        q = self._unit(query)
        mat, _, hw = self._view
        m = min(n, hw)
        if q is not None and m > 0:
            out[:m] = mat[:m] @ q
        return out

    def vectors(self, rows: np.ndarray) -> np.ndarray:
        """(R, dim) float32 unit vectors of ``rows`` (R,) int64; zero rows where a row has none."""
        mat, _, hw = self._view
        out = np.zeros((rows.size, self.dim), np.float32)
        inside = rows < hw
        out[inside] = mat[rows[inside]]
        return out

    def scores_at(self, query: np.ndarray, rows: np.ndarray) -> np.ndarray:
        """(R,) float32 cosine of ``rows`` (R,) int64 (0 for rows without a vector): exact, cheap."""
        out = np.zeros(rows.size, np.float32)
        q = self._unit(query)
        mat, _, hw = self._view
        inside = rows < hw
        if q is not None and inside.any():
            out[inside] = mat[rows[inside]] @ q
        return out

    def top(
        self, query: np.ndarray, k: int, allowed: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """(<=k,) int64 rows and float32 cosines, best first, rows with a vector (and allowed) only.
        Approximate (`core.ann`) once the catalog is large; exact when the ANN cannot fill k."""
        q = self._unit(query)
        mat, has, hw = self._view
        n = hw if allowed is None else min(hw, len(allowed))
        if q is None or k <= 0 or n == 0:
            return _NONE
        found = self.ann.search(q, 2 * k) if self.ann.ready else None
        if found is not None:
            rows, vals = found
            ok = rows < n
            ok[ok] = has[rows[ok]] if allowed is None else has[rows[ok]] & allowed[rows[ok]]
            if int(ok.sum()) >= k:  # a filter that leaves fewer: scan exactly instead
                return rows[ok][:k], vals[ok][:k]
        ok = has[:n] if allowed is None else has[:n] & np.asarray(allowed[:n], dtype=bool)  # (n,) bool
        cand = np.flatnonzero(ok)
        return _top_k(mat[:n] @ q, cand, k) if len(cand) else _NONE
