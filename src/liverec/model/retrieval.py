"""Candidate retrieval over a large catalog: an approximate index finds rows, exact scores rank them.

Scoring every item is one (N, D) @ (D,) product, linear in the catalog (~0.6 ms at 10k items, tens
of ms at 1M). Above `[retrieval] ann_above` items the served Transformer instead asks a
maximum-inner-product index over its item table (`core.ann.MipsIndex`) for the best rows among a
mask, and scores only those rows exactly, so every score it serves is the exact score of that row;
what it can trade is a row of the exact top that the index did not return (recall, measured by
bench/ann.py).

The mask is applied inside the index's scan (a row outside it never takes a place). When the
probed cells hold fewer than m allowed rows the search widens (four times the cells, up to all of
them); a mask that leaves at most `exact_below` rows (a few new items, say) is scored exactly.

The sequential rules' term (`model.rules`) is not an inner product, so it is handled exactly: the
rows the user's recent items have counts for (at most `history` x `max_per_row`) are always scored;
every other row's term is one of two constants (`log(eps)` for items the rules know, their mean
for items they do not), so the index answers for each of those two groups separately and the
union is scored with the term (`SequentialRules.log_prior_at`, rows only).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from liverec.core.ann import MipsIndex
from liverec.model.base import Scores
from liverec.model.rules import SequentialRules
from liverec.settings import RetrievalSettings


class ItemIndex:
    """A served item table's maximum-inner-product index, following the table as it changes."""

    def __init__(self, settings: RetrievalSettings, dim: int) -> None:
        self.settings = settings
        self.mips = MipsIndex(dim, settings.ann_above, settings.nprobe, settings.nlist, settings.sample)
        self.searches = 0  # users answered from the index
        self.widened = 0  # searches that probed more cells, for lack of allowed rows
        self.exact = 0  # masks small enough to score exactly instead

    def active(self, n_items: int) -> bool:
        """Whether a catalog of ``n_items`` is served from the index (built, and large enough)."""
        return self.mips.ready and n_items >= self.settings.ann_above > 0

    def follow(self, table: np.ndarray, rows: np.ndarray) -> None:
        """After ``rows`` (R,) of ``table`` (N, D) appeared or changed: build when due (the table
        reached `ann_above` rows, or doubled since the last build), else re-add those rows."""
        if not self.mips.maybe_rebuild(table) and len(rows):
            self.mips.update(rows, table[rows])

    def status(self) -> dict[str, Any]:
        return self.mips.status() | {
            "ann_above": self.settings.ann_above,
            "nprobe": self.settings.nprobe,
            "searches": self.searches,
            "widened": self.widened,
            "exact_masks": self.exact,
        }


class RulesTerm:
    """``weight * log_prior`` of one user's history, for rows only (`SequentialRules.log_prior_at`)."""

    def __init__(self, rules: SequentialRules, weight: float, items: Sequence[int], n_items: int) -> None:
        self.rules, self.weight, self.n_items = rules, weight, n_items
        self.items = np.fromiter(items, dtype=np.int64)  # (L,) the user's history, oldest first
        self.counted = rules.counted(self.items, n_items)[0]  # (S,) rows with a count, ascending

    def groups(self, mask: np.ndarray) -> tuple[np.ndarray, list[np.ndarray]]:
        """(rows of ``mask`` with a count, [rest of ``mask`` the rules know, rest they do not]): each
        group's term is one constant, so its best rows by inner product are its best by score."""
        fixed = self.counted[mask[self.counted]]
        rest = mask.copy()
        rest[fixed] = False
        known = np.zeros(len(mask), dtype=bool)  # (N,)
        m = min(len(mask), len(self.rules.known))
        known[:m] = self.rules.known[:m]
        return fixed, [rest & known, rest & ~known]

    def at(self, rows: np.ndarray) -> np.ndarray:
        """(R,) float32 the term for ``rows``."""
        prior = self.rules.log_prior_at(self.items, rows, self.n_items)[0]
        return (self.weight * prior).astype(np.float32)


class AnnScores(Scores):
    """One user's scores, served from the index: `top` returns index rows scored exactly."""

    approximate = True

    def __init__(self, h: np.ndarray, table: np.ndarray, index: ItemIndex, rules: RulesTerm | None) -> None:
        self.user_vector = self.h = h  # (D,) float32
        self.table = table  # (N', D) float32, the table the index follows (a snapshot)
        self.index = index
        self.rules = rules

    def top(self, mask: np.ndarray, m: int) -> tuple[np.ndarray, np.ndarray]:
        if m <= 0:
            return np.zeros(0, np.int64), np.zeros(0, np.float32)
        if self.rules is None:
            fixed, groups = np.zeros(0, np.int64), [mask]
        else:
            fixed, groups = self.rules.groups(mask)
        rows = np.unique(np.concatenate([fixed, *(self._search(g, m) for g in groups)]))
        scores = self.scores(rows)  # (R,)
        order = np.argsort(-scores, kind="stable")[:m]
        return rows[order], scores[order]

    def scores(self, rows: np.ndarray) -> np.ndarray:
        """(R,) float32 exact scores of ``rows``; -inf for rows the table does not hold yet."""
        out = self._inner(rows)
        if self.rules is not None:
            out += self.rules.at(rows)
        return out

    def _inner(self, rows: np.ndarray) -> np.ndarray:
        """(R,) float32 inner products with the user vector (-inf past the table): within one of the
        rules' groups the term is one constant, so these rank a group as its scores do."""
        out = np.full(len(rows), -np.inf, dtype=np.float32)
        ok = rows < len(self.table)
        out[ok] = self.table[rows[ok]] @ self.h
        return out

    def _search(self, mask: np.ndarray, m: int) -> np.ndarray:
        """(<=m,) rows of ``mask`` with the largest inner products: exact for a small mask, else from
        the index, widened while the probed cells hold too few allowed rows."""
        count = int(np.count_nonzero(mask))
        if count == 0:
            return np.zeros(0, np.int64)
        settings, mips = self.index.settings, self.index.mips
        if count > max(settings.exact_below, m):
            nprobe, cells = settings.nprobe, mips.ivf.cells
            while True:
                rows = mips.search(self.h, m, mask, nprobe)
                if len(rows) >= m or nprobe >= cells:
                    break
                nprobe *= 4
                self.index.widened += 1
            if len(rows) >= m:
                return rows
        self.index.exact += 1
        rows = np.flatnonzero(mask)
        if len(rows) > m:
            rows = rows[np.argpartition(-self._inner(rows), m - 1)[:m]]
        return rows
