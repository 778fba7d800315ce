"""`Recommender`: model scores -> mask (seen, unavailable) -> top candidates -> policy -> slate.

The model is read once per call, so swapping ``recommender.model`` (a hot reload) is atomic. Its
scores come as a `Scores` (`Model.retrieve`): every row scored, or, for the Transformer over a large
catalog, an index that returns the best rows of a mask with their exact scores (`model.retrieval`);
the mask, the candidate pool and the new-item slots read them the same way.
"""

from __future__ import annotations

import math
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from liverec.core.catalog import Catalog
from liverec.core.schema import Event, EventType, trusted_context, trusted_event
from liverec.core.state import LiveState
from liverec.model.base import DenseScores, Model, Scores, top_rows
from liverec.policy.base import Greedy, Policy, Slate

if TYPE_CHECKING:
    from liverec.serve.explain import Explanation


@dataclass(frozen=True)
class ScoredItem:
    """``filler``: the model had no evidence for the item (score 0, or none: reported as 0); it only
    pads the list to k, so a client can tell an empty world from a weak recommendation."""

    item_id: str
    score: float
    propensity: float = 1.0
    filler: bool = False


def scored_items(
    ids: Sequence[str], rows: list[int], scores: list[float], props: list[float]
) -> list[ScoredItem]:
    """The served items, each marked `filler` when its score carries no evidence (0 or not finite)."""
    out = []
    for r, s, p in zip(rows, scores, props, strict=True):
        evidence = math.isfinite(s) and s != 0.0
        out.append(ScoredItem(ids[r], s if evidence else 0.0, p, not evidence))
    return out


@dataclass(frozen=True)
class Recommendation:
    request_id: str
    model: str
    policy: str
    items: list[ScoredItem] = field(default_factory=list)
    slate: Slate | None = None  # what the policy chose, with its propensities
    context: Mapping[str, Any] | None = None  # what it chose from (vectors), for its feedback
    explanations: list[Explanation] | None = None  # one per item, with ``explain`` (`serve.explain`)


def fresh_rows(
    scores: np.ndarray | Scores, mask: np.ndarray, new: np.ndarray, taken: np.ndarray, m: int
) -> tuple[np.ndarray, np.ndarray]:
    """(<=m,) int64 the best-scored rows of ``mask`` that are ``new`` (N,) bool and not in ``taken``,
    and their scores: what fills the new-item slots. Calibrated scores rarely put an item nobody has
    touched in a top 10 (its text is weaker evidence than others' clicks), so a slot is how it gets
    seen at all. ``scores``: (N,) every row's, or a `Scores`."""
    allowed = mask & new
    allowed[taken] = False
    found = scores if isinstance(scores, Scores) else DenseScores(scores)
    return found.top(allowed, m)


def with_new_slots(
    slate: Slate,
    scores: np.ndarray | Scores,
    mask: np.ndarray,
    new: np.ndarray,
    slots: int,
    n_candidates: int,
) -> Slate:
    """``slate`` (chosen from ``n_candidates`` candidates) with its last ``slots`` positions given to
    `fresh_rows`; the policy's own rows stay where new ones run out. The head keeps its propensities.
    A slot row is fixed once the head is: its conditional propensity is exactly 1, and so is its
    marginal under a deterministic policy (logged as 1 under any). Slot rows get candidate indices
    from ``n_candidates`` on, in order: the caller appends their vectors to the context's."""
    keep = max(len(slate.rows) - slots, 0)
    fresh, fresh_scores = fresh_rows(scores, mask, new, slate.rows[:keep], slots)
    if fresh.size == 0:
        return slate
    tail = [j for j in range(keep, len(slate.rows)) if slate.rows[j] not in fresh][: slots - fresh.size]
    pos = np.r_[np.arange(keep), tail].astype(np.int64)  # the policy's positions that stay
    ones = np.ones(fresh.size)
    cond = slate.conditional_propensities
    if tail or cond is None:  # a slate probability is known only for the head + slots order
        cond, whole = None, 1.0 if slate.slate_propensity == 1.0 else None
    else:
        cond = np.r_[cond[:keep], ones]
        whole = float(np.prod(cond))
    index = None if slate.index is None else np.r_[slate.index[pos], n_candidates + np.arange(fresh.size)]
    return Slate(
        rows=np.r_[slate.rows[pos], fresh].astype(np.int64),
        scores=np.r_[slate.scores[pos], fresh_scores].astype(np.float32),
        propensities=np.r_[slate.propensities[pos], ones],
        policy=f"{slate.policy}+new{slots}",
        slate_propensity=whole,
        conditional_propensities=cond,
        index=index,
    )


class Recommender:
    def __init__(
        self,
        catalog: Catalog,
        state: LiveState,
        model: Model,
        policy: Policy | None = None,
        candidates: int = 100,
        new_item_slots: int = 0,
        is_new: Callable[[int], np.ndarray] | None = None,
    ) -> None:
        """``new_item_slots``: the last positions of each list go to the best-scored items that
        ``is_new(n)`` (N,) bool marks and the list's head does not already show; 0 = none."""
        if new_item_slots < 0:
            raise ValueError(f"new_item_slots must be >= 0, got {new_item_slots}")
        if new_item_slots and is_new is None:
            raise ValueError("new_item_slots needs is_new: which items count as new")
        self.catalog = catalog
        self.state = state
        self.model = model
        self.policy = policy or Greedy()
        self.candidates = candidates
        self.new_item_slots = new_item_slots
        self.is_new = is_new

    def recommend(
        self, user_id: str, k: int = 10, exclude_seen: bool = True, exclude: Iterable[str] = ()
    ) -> Recommendation:
        model = self.model
        user = self.state.get(user_id)
        n = len(self.catalog)
        found = model.retrieve(user, n, user_id)  # every row's scores, or an index over them
        user_vector = found.user_vector  # (D,) | None
        mask = self.catalog.available.copy()
        if exclude_seen and user is not None and user.seen:
            mask[np.fromiter(user.seen, dtype=np.int64, count=len(user.seen))] = False
        extra = self.catalog.rows(exclude)
        if extra:
            mask[extra] = False
        cands, cand_scores = found.top(mask, max(self.candidates, k))  # (M,), (M,)
        vectors = user_vector is not None and self.policy.uses_vectors
        context = {
            "user_id": user_id,
            "user_vector": user_vector,
            "item_vectors": model.item_vectors(cands) if vectors else None,
            "candidates": len(cands),  # slot rows get indices from here on (`with_new_slots`)
        }
        slate = self.policy.select(cands, cand_scores, k, context)
        if self.new_item_slots and self.is_new is not None:
            slate = with_new_slots(
                slate, found, mask, self.is_new(n), min(self.new_item_slots, k), len(cands)
            )
            shown = context["item_vectors"]
            if shown is not None and slate.index is not None:  # the slot rows' vectors, in index order
                added = model.item_vectors(slate.rows[slate.index >= len(cands)])
                context["item_vectors"] = shown if added is None else np.concatenate([shown, added])
        items = scored_items(
            self.catalog.ids, slate.rows.tolist(), slate.scores.tolist(), slate.propensities.tolist()
        )
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
        rows = top_rows(sim, mask, k)
        return scored_items(self.catalog.ids, rows.tolist(), sim[rows].tolist(), [1.0] * len(rows))


def impressions(
    user_id: str, rec: Recommendation, now: float | None = None, cap: int | None = None
) -> list[Event]:
    """The impression events for a served list: one per position, joined to it by request_id; with
    ``cap`` only the first ``cap`` positions (`[server] max_logged_impressions`): a k=1000 list
    would otherwise write 1,000 rows per request. Off-policy evaluation uses logged positions only."""
    ts = time.time() if now is None else now
    shown = rec.items if cap is None else rec.items[:cap]
    return [
        trusted_event(
            f"imp:{rec.request_id}:{pos}",
            user_id,
            item.item_id,
            EventType.impression,
            None,
            ts,
            trusted_context(
                {
                    "request_id": rec.request_id,
                    "position": pos,
                    "propensity": item.propensity,
                    "policy": rec.policy,
                    "model": rec.model,
                    "score": item.score,
                }
            ),
        )
        for pos, item in enumerate(shown)
    ]
