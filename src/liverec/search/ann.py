"""Approximate nearest neighbours for the semantic index: a faiss IVF over the item vectors, kept live.

An exact scan of 100,000 x 384 float32 vectors costs ~7 ms per query on one core here, most of a
search request. An inverted file (faiss ``IndexIVFFlat``, inner product on unit vectors = cosine)
clusters the vectors into ``nlist ~ sqrt(N)`` cells and scans the ``nprobe`` cells nearest the
query: ~5% of the catalog. It is built (k-means on up to 50,000 vectors, then every vector added)
once the catalog holds ``min_size`` vectors, and again whenever it has doubled since, so the cells
keep fitting; in between, written vectors are removed and re-added by id, so a new item is found
at once. Below ``min_size`` the exact scan is fast enough and nothing here runs.
"""

from __future__ import annotations

import math
import threading

import numpy as np


class IvfIndex:
    def __init__(self, dim: int, min_size: int = 20_000, nprobe: int = 16) -> None:
        self.dim = dim
        self.min_size = min_size
        self.nprobe = nprobe
        self._index: object | None = None  # faiss.IndexIVFFlat once built
        self._built_at = 0  # vectors it was built over
        self._lock = threading.Lock()  # faiss IVF: no search during an add or remove

    @property
    def ready(self) -> bool:
        return self._index is not None

    def maybe_rebuild(self, mat: np.ndarray, has: np.ndarray) -> bool:
        """Build over rows of ``mat`` (C, dim) where ``has`` (C,) when big enough or doubled."""
        count = int(has.sum())
        if count < self.min_size or (self._index is not None and count < 2 * self._built_at):
            return False
        import faiss

        faiss.omp_set_num_threads(1)  # a request's thread; the server sizes its own parallelism
        rows = np.flatnonzero(has).astype(np.int64)
        vecs = np.ascontiguousarray(mat[rows], dtype=np.float32)
        nlist = max(16, int(math.sqrt(count)))
        quantizer = faiss.IndexFlatIP(self.dim)
        index = faiss.IndexIVFFlat(quantizer, self.dim, nlist, faiss.METRIC_INNER_PRODUCT)
        sample = vecs[np.random.default_rng(0).choice(count, min(count, 50_000), replace=False)]
        index.train(sample)
        index.add_with_ids(vecs, rows)
        index.nprobe = self.nprobe
        with self._lock:
            self._index, self._built_at = index, count
        return True

    def update(self, gone: np.ndarray, add: np.ndarray, vectors: np.ndarray) -> None:
        """Rows ``gone`` (G,) lose their vectors; rows ``add`` (A,) get ``vectors`` (A, dim), unit."""
        index = self._index
        if index is None:
            return
        drop = np.concatenate([gone, add]).astype(np.int64)
        with self._lock:
            if drop.size:
                index.remove_ids(drop)  # type: ignore[attr-defined]
            if add.size:
                index.add_with_ids(np.ascontiguousarray(vectors, dtype=np.float32), add.astype(np.int64))  # type: ignore[attr-defined]

    def search(self, query: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray] | None:
        """(<=k,) int64 rows and float32 cosines, best first; None when not built."""
        index = self._index
        if index is None or k <= 0:
            return None
        with self._lock:
            scores, ids = index.search(query.reshape(1, -1).astype(np.float32), k)  # type: ignore[attr-defined]
        keep = ids[0] >= 0
        return ids[0][keep].astype(np.int64), scores[0][keep].astype(np.float32)
