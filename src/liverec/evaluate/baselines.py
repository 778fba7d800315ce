"""Peers the Transformer must beat, each with ``fit(train, n_items)`` and ``score(seqs) -> (B, N)``.

- `Popularity`: interaction counts.
- `ItemKNN`: item-item cosine co-occurrence, top-k neighbours per item, summed over the history.
- `ALS`: implicit-feedback matrix factorisation (the `implicit` library); user factors are solved
  from the input sequence, so a history that grew after training is used at scoring time.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.sparse as sp


def interaction_matrix(seqs: list[np.ndarray], n_items: int) -> sp.csr_matrix:
    """(U, N) float32 CSR of interaction counts."""
    rows = np.repeat(np.arange(len(seqs)), [len(s) for s in seqs])
    cols = np.concatenate(seqs) if seqs else np.empty(0, np.int64)
    m = sp.csr_matrix((np.ones(len(cols), np.float32), (rows, cols)), shape=(len(seqs), n_items))
    m.sum_duplicates()
    return m


class Popularity:
    name = "popularity"

    def fit(self, train: list[np.ndarray], n_items: int) -> Popularity:
        self.counts = np.bincount(np.concatenate(train), minlength=n_items).astype(np.float32)
        return self

    def score(self, seqs: list[np.ndarray]) -> np.ndarray:
        return np.broadcast_to(self.counts, (len(seqs), len(self.counts)))


@dataclass
class ItemKNN:
    """score(u, j) = sum over the last ``history`` items i of u of sim(i, j), top-``neighbors`` per i."""

    neighbors: int = 100
    history: int = 0  # 0 = the whole history
    shrink: float = 10.0
    name: str = "itemknn"

    def fit(self, train: list[np.ndarray], n_items: int) -> ItemKNN:
        x = interaction_matrix(train, n_items)
        x.data[:] = 1.0
        co = (x.T @ x).tocsr().astype(np.float32)
        co.setdiag(0.0)
        co.eliminate_zeros()
        deg = np.asarray(x.sum(axis=0)).ravel()
        co = co.tocoo()
        sim = co.data / (np.sqrt(deg[co.row] * deg[co.col]) + self.shrink)
        full = sp.csr_matrix((sim, (co.row, co.col)), shape=(n_items, n_items))
        self.sim = _top_k_rows(full, self.neighbors)
        self.n_items = n_items
        return self

    def score(self, seqs: list[np.ndarray]) -> np.ndarray:
        hist = [s[-self.history :] if self.history else s for s in seqs]
        return np.asarray((interaction_matrix(hist, self.n_items) @ self.sim).todense(), dtype=np.float32)


def _top_k_rows(m: sp.csr_matrix, k: int) -> sp.csr_matrix:
    """Keep the k largest entries of each row."""
    rows, cols, vals = [], [], []
    for r in range(m.shape[0]):
        start, end = m.indptr[r], m.indptr[r + 1]
        if end == start:
            continue
        d, c = m.data[start:end], m.indices[start:end]
        if len(d) > k:
            keep = np.argpartition(-d, k - 1)[:k]
            d, c = d[keep], c[keep]
        rows.append(np.full(len(d), r))
        cols.append(c)
        vals.append(d)
    if not rows:
        return sp.csr_matrix(m.shape, dtype=np.float32)
    return sp.csr_matrix(
        (np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=m.shape, dtype=np.float32
    )


@dataclass
class ALS:
    factors: int = 64
    regularization: float = 0.05
    alpha: float = 10.0
    iterations: int = 15
    seed: int = 0
    threads: int = 2
    name: str = "als"

    def fit(self, train: list[np.ndarray], n_items: int) -> ALS:
        from implicit.cpu.als import AlternatingLeastSquares

        self.n_items = n_items
        self.model: Any = AlternatingLeastSquares(
            factors=self.factors,
            regularization=self.regularization,
            alpha=self.alpha,
            iterations=self.iterations,
            random_state=self.seed,
            num_threads=self.threads,
        )
        self.model.fit(interaction_matrix(train, n_items), show_progress=False)
        return self

    def score(self, seqs: list[np.ndarray]) -> np.ndarray:
        users = interaction_matrix(seqs, self.n_items)
        factors = self.model.recalculate_user(np.arange(len(seqs)), users)  # (B, F)
        return np.asarray(factors @ self.model.item_factors.T, dtype=np.float32)
