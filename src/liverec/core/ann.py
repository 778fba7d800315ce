"""Approximate nearest neighbours over catalog rows' vectors: a faiss IVF, kept live.

Shared by search's semantic index (cosine over unit MiniLM vectors, `IvfIndex` with inner product)
and the served Transformer's candidate retrieval (inner product over item vectors of any norm,
`MipsIndex`).

An exact scan of 100,000 x 384 float32 vectors costs ~7 ms per query on one core here. An inverted
file (faiss ``IndexIVFFlat``) clusters the vectors into ``nlist`` cells (default ~sqrt(N)) and scans
the ``nprobe`` cells nearest the query. It is built (k-means on a sample, then every vector added)
once the catalog holds ``min_size`` vectors, and again whenever it has doubled since, so the cells
keep fitting; in between, written vectors are removed and re-added by id (a hash table maps ids to
their cells), so a new item is found at once. Below ``min_size`` nothing here runs.

A query may carry a filter (``allowed``, (N,) bool by row): the scan skips rows outside it (a faiss
bitmap selector), so a masked row never takes a place in the answer.
"""

from __future__ import annotations

import math
import threading
import time
from typing import Any, Literal

import numpy as np

Metric = Literal["ip", "l2"]


class IvfIndex:
    def __init__(
        self,
        dim: int,
        min_size: int = 20_000,
        nprobe: int = 16,
        nlist: int = 0,
        metric: Metric = "ip",
        sample: int = 50_000,
    ) -> None:
        """``nlist`` 0: max(16, sqrt(N)) cells at each build. ``metric`` "ip": `search` returns inner
        products, best (largest) first; "l2": squared distances, nearest first. ``sample``: vectors
        the k-means is trained on (at least 39 per cell, faiss' minimum, when the catalog has them)."""
        self.dim = dim
        self.min_size = min_size
        self.nprobe = nprobe
        self.nlist = nlist
        self.metric: Metric = metric
        self.sample = sample
        self._index: Any = None  # faiss.IndexIVFFlat once built
        self._built_at = 0  # vectors it was built over
        self._cells = 0  # its nlist
        self._top = 0  # 1 + the largest id it holds (a filter's bitmap covers every id)
        self.build_s = 0.0  # seconds the last build took
        self._lock = threading.Lock()  # faiss IVF: no search during an add or remove

    @property
    def ready(self) -> bool:
        return self._index is not None

    @property
    def cells(self) -> int:
        """nlist of the index built (0: none yet)."""
        return self._cells

    def due(self, count: int) -> bool:
        """Whether ``count`` vectors call for a (re)build: enough of them, or twice the last build's."""
        return count >= max(self.min_size, 1) and (self._index is None or count >= 2 * self._built_at)

    def maybe_rebuild(self, mat: np.ndarray, has: np.ndarray) -> bool:
        """Build over rows of ``mat`` (C, dim) where ``has`` (C,) when big enough or doubled."""
        if not self.due(int(has.sum())):
            return False
        rows = np.flatnonzero(has).astype(np.int64)
        self.build(mat[rows], rows)
        return True

    def build(self, vectors: np.ndarray, rows: np.ndarray) -> None:
        """A fresh index over ``vectors`` (R, dim) with ids ``rows`` (R,) int64; swapped in whole."""
        import faiss

        t0 = time.perf_counter()
        faiss.omp_set_num_threads(1)  # a request's thread; the server sizes its own parallelism
        vecs = np.ascontiguousarray(vectors, dtype=np.float32)
        count = len(vecs)
        nlist = self.nlist or max(16, int(math.sqrt(count)))
        nlist = max(1, min(nlist, count // 39 or 1))  # faiss wants >= 39 training vectors per cell
        l2 = self.metric == "l2"
        quantizer = faiss.IndexFlatL2(self.dim) if l2 else faiss.IndexFlatIP(self.dim)
        metric = faiss.METRIC_L2 if l2 else faiss.METRIC_INNER_PRODUCT
        index = faiss.IndexIVFFlat(quantizer, self.dim, nlist, metric)
        take = min(count, max(self.sample, 39 * nlist))
        index.train(vecs[np.random.default_rng(0).choice(count, take, replace=False)])
        index.set_direct_map_type(faiss.DirectMap.Hashtable)  # type: ignore[attr-defined]  # remove by id, no scan
        index.add_with_ids(vecs, np.asarray(rows, dtype=np.int64))
        index.nprobe = self.nprobe
        top = int(rows.max()) + 1 if len(rows) else 0
        with self._lock:
            self._index, self._built_at, self._cells = index, count, nlist
            self._top = top
        self.build_s = time.perf_counter() - t0

    def update(self, gone: np.ndarray, add: np.ndarray, vectors: np.ndarray) -> None:
        """Rows ``gone`` (G,) lose their vectors; rows ``add`` (A,) get ``vectors`` (A, dim)."""
        index = self._index
        if index is None:
            return
        drop = np.concatenate([gone, add]).astype(np.int64)
        with self._lock:
            if drop.size:
                index.remove_ids(drop)
            if add.size:
                index.add_with_ids(np.ascontiguousarray(vectors, dtype=np.float32), add.astype(np.int64))
                self._top = max(self._top, int(add.max()) + 1)

    def search(
        self, query: np.ndarray, k: int, allowed: np.ndarray | None = None, nprobe: int = 0
    ) -> tuple[np.ndarray, np.ndarray] | None:
        """(<=k,) int64 rows and float32 scores (inner products, or squared distances for "l2"), best
        first, only rows ``allowed`` (N,) bool marks when given; ``nprobe`` 0: the index's. None when
        not built."""
        index = self._index
        if index is None or k <= 0:
            return None
        import faiss

        q = np.ascontiguousarray(query.reshape(1, -1), dtype=np.float32)
        with self._lock:
            params = faiss.SearchParametersIVF()
            params.nprobe = min(nprobe or self.nprobe, self._cells)
            if allowed is not None:
                bits = _bitmap(allowed, self._top)  # held until the search returns
                params.sel = faiss.IDSelectorBitmap(len(bits), faiss.swig_ptr(bits))  # n: bytes
            scores, ids = index.search(q, k, params=params)
        keep = ids[0] >= 0
        return ids[0][keep].astype(np.int64), scores[0][keep].astype(np.float32)

    def status(self) -> dict[str, Any]:
        """What /healthz shows of it: built over how many vectors, cells, probes, build time."""
        return {
            "built": self.ready,
            "built_over": self._built_at,
            "nlist": self._cells,
            "nprobe": self.nprobe,
            "build_s": round(self.build_s, 2),
        }


def _bitmap(allowed: np.ndarray, top: int) -> np.ndarray:
    """(ceil(max(N, top) / 8),) uint8, bit r little-endian = ``allowed[r]``; ids past N are out."""
    mask = np.asarray(allowed, dtype=bool)
    if len(mask) < top:
        mask = np.concatenate([mask, np.zeros(top - len(mask), bool)])
    return np.packbits(mask, bitorder="little")


class MipsIndex:
    """Maximum inner product over vectors of any norm, as nearest neighbours (Bachrach et al., 2014).

    An IVF with inner product clusters and probes well only on unit vectors: with norms spread
    (a trained item table's run 3x), a long vector in a far cell outscores the probed ones. Each
    vector x becomes the unit vector ``[x / M, sqrt(1 - |x|^2 / M^2)]`` (M: the largest norm at the
    build, times ``headroom``) and the query ``[q / |q|, 0]``; then ``|q' - x'|^2 = 2 - 2 q.x / (|q| M)``,
    so the nearest rows are those with the largest ``q.x``, and the cells are cells of a sphere.
    A vector added later beyond M (rare, with headroom) keeps a last coordinate of 0: it is still
    found, ranked as if its norm were M (`over_bound` counts them; the next rebuild resets M)."""

    def __init__(
        self,
        dim: int,
        min_size: int,
        nprobe: int,
        nlist: int = 0,
        sample: int = 50_000,
        headroom: float = 1.25,
    ) -> None:
        self.dim = dim
        self.ivf = IvfIndex(dim + 1, min_size, nprobe, nlist, "l2", sample)
        self.headroom = headroom
        self.bound = 0.0  # M
        self.over_bound = 0

    @property
    def ready(self) -> bool:
        return self.ivf.ready

    def maybe_rebuild(self, mat: np.ndarray) -> bool:
        """Build over every row of ``mat`` (N, dim) when big enough or doubled since the last build."""
        if not self.ivf.due(len(mat)):
            return False
        norms = np.linalg.norm(mat, axis=1)  # (N,)
        bound = self.headroom * float(norms.max(initial=0.0)) or 1.0
        self.ivf.build(self._augment(mat, bound), np.arange(len(mat), dtype=np.int64))
        self.bound, self.over_bound = bound, 0
        return True

    def update(self, rows: np.ndarray, vectors: np.ndarray) -> None:
        """Rows ``rows`` (R,) int64, new or changed, now hold ``vectors`` (R, dim)."""
        if self.ready and len(rows):
            self.ivf.update(rows[:0], rows, self._augment(vectors, self.bound))

    def search(
        self, query: np.ndarray, k: int, allowed: np.ndarray | None = None, nprobe: int = 0
    ) -> np.ndarray:
        """(<=k,) int64 rows with (approximately) the largest inner products with ``query`` (D,),
        best first, ``allowed`` only; empty when not built or the query is zero."""
        norm = float(np.linalg.norm(query))
        if not self.ready or not math.isfinite(norm) or norm == 0:
            return np.zeros(0, np.int64)
        q = np.append(np.asarray(query, dtype=np.float32) / norm, np.float32(0.0))  # (D + 1,)
        found = self.ivf.search(q, k, allowed, nprobe)
        return np.zeros(0, np.int64) if found is None else found[0]

    def _augment(self, vectors: np.ndarray, bound: float) -> np.ndarray:
        """(R, dim + 1) float32 unit vectors (`MipsIndex`)."""
        x = np.asarray(vectors, dtype=np.float32) / np.float32(bound)  # (R, D)
        sq = np.einsum("ij,ij->i", x, x)  # (R,)
        self.over_bound += int((sq > 1.0).sum()) if self.ready else 0
        extra = np.sqrt(np.clip(1.0 - sq, 0.0, None)).astype(np.float32)
        return np.ascontiguousarray(np.concatenate([x, extra[:, None]], axis=1))

    def status(self) -> dict[str, Any]:
        return self.ivf.status() | {"norm_bound": round(self.bound, 4), "over_bound": self.over_bound}
