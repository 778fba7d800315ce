"""Sequential rules: which items follow which, counted from every user's sequence and updated per event.

Item b earns ``decay ** (lag - 1)`` from each item a that came ``lag`` <= `window` positions before it
in some user's sequence, and ``backward`` times that from each item after it (Ludewig & Jannach,
2018, "sequential rules"). A user's counts for every item sum the rows of their last `history` items,
the newest weighted most. On ml-100k the two together beat either alone (bench/README.md): the
Transformer generalises through embeddings, the rules remember exact item-to-item transitions a
64-wide embedding cannot hold.

`log_prior` turns the counts into the additive score the served model uses:
``transformer logits + weight * log(counts + eps)``.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from liverec.core.sequence import Engagements
from liverec.core.state import Interaction


@dataclass
class SequentialRules:
    window: int = 10  # positions apart that still count
    decay: float = 0.8  # a pair `lag` apart weighs decay ** (lag - 1), the j-th newest history item too
    backward: float = 0.5  # weight of b -> a relative to a -> b (b after a)
    history: int = 3  # the user's newest items whose rows are summed
    eps: float = 0.01  # count given to a pair never seen, inside the log
    merge_every: int = 50_000  # live additions kept aside before they are merged into the matrix
    max_per_row: int = 2000  # followers kept per item (the largest counts) at each merge; 0 = all
    name: str = "rules"

    def __post_init__(self) -> None:
        if self.window < 1 or self.history < 1:
            raise ValueError("window and history must be at least 1")
        if not 0 < self.decay <= 1 or self.backward < 0 or self.eps <= 0 or self.max_per_row < 0:
            raise ValueError("need 0 < decay <= 1, backward >= 0, eps > 0 and max_per_row >= 0")
        self.n_items = 0
        self._lock = threading.Lock()  # live adds and request-path reads of `_pending`
        self.counts = sp.csr_matrix((0, 0), dtype=np.float64)  # (N, N): row a -> weight of each b
        self.known = np.zeros(0, dtype=bool)  # (N,) items seen in any sequence: the rules know them
        self.uses = np.zeros(0, dtype=np.int64)  # (N,) positions on each item: known = uses > 0
        self._pending: dict[int, dict[int, float]] = {}  # live additions not yet merged, by row
        self._n_pending = 0
        self._recent: dict[str, Engagements] = {}  # per user: the last `window` engagements

    # -- counting -------------------------------------------------------------------------------

    def __getstate__(self) -> dict[str, object]:
        """Pickled for a server's snapshot (`serve.snapshot`): everything but the lock."""
        state = self.__dict__.copy()
        del state["_lock"]
        return state

    def __setstate__(self, state: dict[str, object]) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()

    def fit(self, train: Sequence[np.ndarray], n_items: int) -> SequentialRules:
        """Count every sequence (rows oldest first) from scratch; the baselines' contract."""
        rows, cols, vals = [], [], []
        for s in train:
            s = np.asarray(s, dtype=np.int64)
            for lag in range(1, min(self.window, len(s) - 1) + 1):
                w = np.full(len(s) - lag, self.decay ** (lag - 1))
                rows += [s[:-lag], s[lag:]]
                cols += [s[lag:], s[:-lag]]
                vals += [w, self.backward * w]
        self.n_items = n_items
        self.known = np.zeros(n_items, dtype=bool)
        self.uses = np.zeros(n_items, dtype=np.int64)
        if len(train):
            flat = np.concatenate([np.asarray(s, dtype=np.int64) for s in train])
            self.known[flat] = True
            self.uses = np.bincount(flat, minlength=n_items).astype(np.int64)
        self.counts = self._matrix(rows, cols, vals, n_items)
        self._pending, self._n_pending = {}, 0
        return self

    def observe(self, interactions: Sequence[Interaction]) -> None:
        """Count live positives in log order; what `fit` would count on the same sequences (while no
        row outgrows `max_per_row`)."""
        with self._lock:
            self._observe(interactions)

    def _observe(self, interactions: Sequence[Interaction]) -> None:
        for it in interactions:
            if not it.positive:
                continue
            recent = self._recent.get(it.user_id)
            if recent is None:
                recent = self._recent[it.user_id] = Engagements.bounded(self.window)
            b = it.row
            if recent.repeats(b):  # the same engagement one step deeper: one position
                continue
            for lag, a in enumerate(reversed(recent.items), 1):
                w = self.decay ** (lag - 1)
                self._add(a, b, w)
                self._add(b, a, self.backward * w)
            recent.add(b, it.timestamp, 0)
            self.n_items = max(self.n_items, b + 1)
            if b >= len(self.known):
                self.known = np.concatenate([self.known, np.zeros(max(b + 1, 2 * len(self.known)), bool)])
            if b >= len(self.uses):
                self.uses = np.concatenate([self.uses, np.zeros(len(self.known) - len(self.uses), np.int64)])
            self.known[b] = True
            self.uses[b] += 1
        if self._n_pending >= self.merge_every:
            self._merge()

    def forget(self, interactions: Sequence[Interaction]) -> None:
        """Subtract every pair these interactions added: all of one deleted user's, in log order
        (their pairs depend on their own sequence only). Counted again on a scratch copy, then
        negated into the matrix, so counts end as a fit without the user (up to float rounding;
        unless `max_per_row` had pruned one of their pairs). An item only they used is unknown again."""
        scratch = SequentialRules(self.window, self.decay, self.backward, self.history, self.eps, 10**18, 0)
        scratch._observe(interactions)
        with self._lock:
            for user in {it.user_id for it in interactions}:
                self._recent.pop(user, None)
            for a, row in scratch._pending.items():
                for b, v in row.items():
                    self._add(a, b, -v)
            used = np.flatnonzero(scratch.uses)
            self.uses[used] -= scratch.uses[used]
            self.known[used] = self.uses[used] > 0
            self._merge()
            m = self.counts
            m.data[m.data <= 1e-12 * max(1.0, float(np.abs(m.data).max(initial=0.0)))] = 0.0  # residue
            m.eliminate_zeros()

    def _add(self, a: int, b: int, w: float) -> None:
        row = self._pending.setdefault(a, {})
        row[b] = row.get(b, 0.0) + w
        self._n_pending += 1

    def _merge(self) -> None:
        if not self._pending:
            return
        rows = [np.full(len(r), a) for a, r in self._pending.items()]
        cols = [np.fromiter(r.keys(), np.int64, len(r)) for r in self._pending.values()]
        vals = [np.fromiter(r.values(), np.float64, len(r)) for r in self._pending.values()]
        base = self.counts.tocoo()
        self.counts = self._matrix(
            [base.row, *rows], [base.col, *cols], [base.data, *vals], max(self.n_items, base.shape[0])
        )
        self._pending, self._n_pending = {}, 0

    def _matrix(
        self, rows: list[np.ndarray], cols: list[np.ndarray], vals: list[np.ndarray], n: int
    ) -> sp.csr_matrix:
        if not rows:
            return sp.csr_matrix((n, n), dtype=np.float64)
        m = sp.csr_matrix(
            (np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
            shape=(n, n),
            dtype=np.float64,
        )
        return self._prune(m) if self.max_per_row else m

    def _prune(self, m: sp.csr_matrix) -> sp.csr_matrix:
        """Keep each row's `max_per_row` largest counts: memory grows with items, not with pairs.
        A pruned pair that comes back counts again from zero (so live counts then differ from a fit)."""
        k = self.max_per_row
        lengths = np.diff(m.indptr)
        if not (lengths > k).any():
            return m
        row = np.repeat(np.arange(m.shape[0]), lengths)  # (nnz,) row of each stored count
        order = np.lexsort((-m.data, row))  # by row, largest count first
        rank = np.arange(m.nnz) - m.indptr[row[order]]  # place of each count within its row
        keep = order[rank < k]
        return sp.csr_matrix((m.data[keep], (row[keep], m.indices[keep])), shape=m.shape)

    # -- scoring --------------------------------------------------------------------------------
    def user_counts(self, items: Sequence[int] | np.ndarray, n_items: int) -> np.ndarray:
        """(n_items,) float64 counts after a history of rows ``items`` (oldest first)."""
        recent = [int(a) for a in list(items)[-self.history :]]
        with self._lock:
            m = self.counts
            pending = [dict(self._pending.get(a, {})) for a in recent]
        out = np.zeros(max(n_items, m.shape[1]), dtype=np.float64)
        for j, a in enumerate(reversed(recent)):
            w = self.decay**j
            if a < m.shape[0]:
                lo, hi = m.indptr[a], m.indptr[a + 1]
                np.add.at(out, m.indices[lo:hi], w * m.data[lo:hi])
            for b, v in pending[len(recent) - 1 - j].items():
                if b < len(out):
                    out[b] += w * v
        return out[:n_items]

    def log_prior(self, items: Sequence[int] | np.ndarray, n_items: int) -> np.ndarray:
        """(n_items,) float64 ``log(counts + eps)``: the score the served model adds, times its weight.
        An item the rules have never seen (new, or never interacted with) is not known to follow
        nothing: it gets the mean over known items, so its own score (its text) decides."""
        prior = np.log(self.user_counts(items, n_items) + self.eps)
        known = np.zeros(n_items, dtype=bool)
        m = min(n_items, len(self.known))
        known[:m] = self.known[:m]
        if known.any() and not known.all():
            prior[~known] = prior[known].mean()
        return prior

    def counted(self, items: Sequence[int] | np.ndarray, n_items: int) -> tuple[np.ndarray, np.ndarray]:
        """The non-zero entries of `user_counts`: (S,) int64 unique rows < ``n_items`` (ascending),
        (S,) float64. Every other row's `log_prior` is one of two constants (known or not)."""
        recent = [int(a) for a in list(items)[-self.history :]]
        with self._lock:
            m = self.counts
            pending = [dict(self._pending.get(a, {})) for a in recent]
        idx: list[np.ndarray] = []
        val: list[np.ndarray] = []
        for j, a in enumerate(reversed(recent)):
            w = self.decay**j
            if a < m.shape[0]:
                lo, hi = m.indptr[a], m.indptr[a + 1]
                idx.append(m.indices[lo:hi].astype(np.int64))
                val.append(w * m.data[lo:hi])
            extra = pending[len(recent) - 1 - j]
            if extra:
                idx.append(np.fromiter(extra.keys(), np.int64, len(extra)))
                val.append(w * np.fromiter(extra.values(), np.float64, len(extra)))
        if not idx:
            return np.zeros(0, np.int64), np.zeros(0)
        flat, vals = np.concatenate(idx), np.concatenate(val)
        keep = flat < n_items
        rows, inverse = np.unique(flat[keep], return_inverse=True)
        return rows, np.bincount(inverse, vals[keep], minlength=len(rows))

    def log_prior_at(
        self, items: Sequence[int] | np.ndarray, rows: np.ndarray, n_items: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """``log_prior(items, n_items)[rows]`` and ``user_counts(items, n_items)[rows]``, (R,) float64
        each, without building (n_items,) vectors: explanations need a few rows per variant of a
        history. The known items' mean comes from the non-zero counts (every other known item holds
        ``log(eps)``), so it equals the dense mean up to float rounding."""
        rows = np.asarray(rows, dtype=np.int64)
        nz, vals = self.counted(items, n_items)  # nz ascending, all < n_items
        at = np.minimum(np.searchsorted(nz, rows), max(len(nz) - 1, 0))
        counts = np.zeros(len(rows))
        if len(nz):
            hit = nz[at] == rows
            counts[hit] = vals[at[hit]]
        prior = np.log(counts + self.eps)
        m = min(n_items, len(self.known))
        known = self.known[:m]
        n_known = int(known.sum())
        if 0 < n_known < n_items:
            nz_known = np.zeros(len(nz), bool)
            nz_known[nz < m] = known[nz[nz < m]]
            total = float(np.log(vals[nz_known] + self.eps).sum())
            mean = (total + (n_known - int(nz_known.sum())) * math.log(self.eps)) / n_known
            row_known = np.zeros(len(rows), bool)
            inside = (rows >= 0) & (rows < m)
            row_known[inside] = known[rows[inside]]
            prior[~row_known] = mean
        return prior, counts

    def score(self, seqs: Sequence[np.ndarray]) -> np.ndarray:
        """(B, N) float32 counts after each history; the baselines' contract (after `fit`)."""
        return np.stack([self.user_counts(s, self.n_items) for s in seqs]).astype(np.float32)


def blend(
    score: Callable[[list[np.ndarray]], np.ndarray], rules: SequentialRules, weight: float, n_items: int
) -> Callable[[list[np.ndarray]], np.ndarray]:
    """A scorer of histories: ``score`` (B, N) plus ``weight`` times the rules' log prior (B, N)."""

    def scored(seqs: list[np.ndarray]) -> np.ndarray:
        prior = np.stack([rules.log_prior(s, n_items) for s in seqs]) if seqs else 0.0
        return (score(seqs)[:, :n_items] + weight * prior).astype(np.float32)

    return scored
