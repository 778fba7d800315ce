"""`Recommender`: model scores -> mask (seen, unavailable) -> top candidates -> policy -> slate.

The model is read once per call, so swapping ``recommender.model`` (a hot reload) is atomic.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from liverec.events.state import LiveState
from liverec.model.base import Model
from liverec.policy.base import Greedy, Policy, Slate
from liverec.store.catalog import Catalog


@dataclass(frozen=True)
class ScoredItem:
    item_id: str
    score: float
    propensity: float = 1.0


@dataclass(frozen=True)
class Recommendation:
    request_id: str
    model: str
    policy: str
    items: list[ScoredItem] = field(default_factory=list)
    slate: Slate | None = None  # what the policy chose, with its propensities
    context: Mapping[str, Any] | None = None  # what it chose from (vectors), for its feedback


def top_rows(scores: np.ndarray, mask: np.ndarray, m: int) -> np.ndarray:
    """(<=m,) int64 rows with the highest scores among ``mask``, best first."""
    allowed = np.flatnonzero(mask)
    if allowed.size == 0 or m <= 0:
        return allowed[:0]
    s = scores[allowed]
    if allowed.size > m:
        part = np.argpartition(-s, m - 1)[:m]
        allowed, s = allowed[part], s[part]
    return allowed[np.argsort(-s, kind="stable")]


class Recommender:
    def __init__(
        self,
        catalog: Catalog,
        state: LiveState,
        model: Model,
        policy: Policy | None = None,
        candidates: int = 100,
    ) -> None:
        self.catalog = catalog
        self.state = state
        self.model = model
        self.policy = policy or Greedy()
        self.candidates = candidates

    def recommend(
        self, user_id: str, k: int = 10, exclude_seen: bool = True, exclude: Iterable[str] = ()
    ) -> Recommendation:
        model = self.model
        user = self.state.get(user_id)
        n = len(self.catalog)
        scores, user_vector = model.score_and_embed(user, n, user_id)  # (N,), (D,) | None
        mask = self.catalog.available.copy()
        if exclude_seen and user is not None and user.seen:
            mask[np.fromiter(user.seen, dtype=np.int64, count=len(user.seen))] = False
        extra = self.catalog.rows(exclude)
        if extra:
            mask[extra] = False
        cands = top_rows(scores, mask, max(self.candidates, k))
        vectors = user_vector is not None and self.policy.uses_vectors
        context = {
            "user_id": user_id,
            "user_vector": user_vector,
            "item_vectors": model.item_vectors(cands) if vectors else None,
        }
        slate = self.policy.select(cands, scores[cands], k, context)
        ids = self.catalog.ids
        items = [
            ScoredItem(ids[r], float(s), float(p))
            for r, s, p in zip(
                slate.rows.tolist(), slate.scores.tolist(), slate.propensities.tolist(), strict=True
            )
        ]
        return Recommendation(uuid.uuid4().hex, model.version_for(user), slate.policy, items, slate, context)

    def similar(self, item_id: str, k: int = 10) -> list[ScoredItem] | None:
        """Items most similar to ``item_id``; None when the item is unknown."""
        row = self.catalog.row(item_id)
        if row is None:
            return None
        n = len(self.catalog)
        sim = self.model.similar(row, n)
        mask = self.catalog.available.copy()
        mask[row] = False
        ids = self.catalog.ids
        return [ScoredItem(ids[r], float(sim[r])) for r in top_rows(sim, mask, k).tolist()]
