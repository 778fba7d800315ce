"""The `Model` contract every scorer follows: score all catalog rows for a user's live state.

Scores are float32 arrays over catalog rows, higher is better. Models are free to learn cheap
statistics online in `observe` (popularity, co-occurrence); weight updates of deep models happen in
the online trainer instead and arrive as new registry versions.

`influence` is what explanations cite: how much each history position raises a row's score, measured
on the model itself by leaving that position out of the live sequence (not attention weights).

`retrieve` is what serving reads: a `Scores` that answers "the best m rows among these" for any mask.
By default it holds every row's score (`DenseScores`); a model over a large catalog may answer from
an index instead and score only the rows it returns (`model.retrieval`).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Sequence
from typing import Any, TypeVar

import numpy as np

from liverec.core.state import Interaction, UserState

T = TypeVar("T")


class Model(ABC):
    name: str = "model"

    @property
    def version(self) -> str:
        """What served a list: the name, plus a registry version for trained models."""
        return self.name

    def version_for(self, user: UserState | None) -> str:
        """The version that actually scores ``user`` (a model may hand some users to a fallback)."""
        return self.version

    def observe(self, interactions: Sequence[Interaction]) -> None:  # noqa: B027 - optional hook
        """Learn online statistics from new interactions (called in log order)."""

    @abstractmethod
    def score(self, user: UserState | None, n_items: int, user_id: str = "") -> np.ndarray:
        """(n_items,) float32 scores for one user; ``user`` is None for someone never seen."""

    def score_and_embed(
        self, user: UserState | None, n_items: int, user_id: str = ""
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """Scores plus the (D,) float32 user embedding they came from (None for models without one)."""
        return self.score(user, n_items, user_id), None

    def retrieve(self, user: UserState | None, n_items: int, user_id: str = "") -> Scores:
        """What serving reads for one user: the best rows among any mask, with their scores. This
        default scores every row (`score_and_embed`)."""
        return DenseScores(*self.score_and_embed(user, n_items, user_id))

    def retrieval_status(self) -> dict[str, Any]:
        """How `retrieve` finds rows (for `/healthz`): here by scoring every one."""
        return {"approximate": False}

    def item_vectors(self, rows: np.ndarray) -> np.ndarray | None:
        """(len(rows), D) float32 item representations (None for models without them)."""
        return None

    @abstractmethod
    def similar(self, row: int, n_items: int) -> np.ndarray:
        """(n_items,) float32 similarity of every row to ``row``."""

    def text_vectors(self, rows: np.ndarray) -> np.ndarray | None:
        """(len(rows), Dt) float32 unit text embeddings the model holds for ``rows`` (zero rows: no
        text), or None for models without text."""
        return None

    def influence(
        self,
        user: UserState | None,
        rows: np.ndarray,
        positions: Sequence[int],
        n_items: int,
        user_id: str = "",
        base: np.ndarray | None = None,
    ) -> np.ndarray:
        """(P, R) float32: ``score(user)[rows]`` minus the same scores with live-sequence position
        ``positions[p]`` (0 = oldest) left out, everything else as it was. Positive: that history
        item raised the row. ``base``: those served scores, when the caller holds them (a served
        list's), else computed. This default rescores a copy of the state per position, so every
        model follows the contract; models override it with something faster, same numbers."""
        rows = np.asarray(rows, dtype=np.int64)
        out = np.zeros((len(positions), len(rows)), dtype=np.float32)
        if user is None or not user.items or not len(positions):
            return out
        if base is None:
            base = self.score(user, n_items, user_id)[rows]
        for p, pos in enumerate(positions):
            out[p] = score_drop(base, self.score(leave_out(user, pos), n_items, user_id)[rows])
        return out


class Scores(ABC):
    """One user's scores as serving reads them: the best rows among any mask, with their scores."""

    user_vector: np.ndarray | None = None  # (D,) float32 the scores came from (None: no such vector)
    approximate: bool = False  # `top` may miss rows of the exact top (an index answered)

    @abstractmethod
    def top(self, mask: np.ndarray, m: int) -> tuple[np.ndarray, np.ndarray]:
        """(<=m,) int64 rows among ``mask`` (N,) bool with the highest scores, best first, and their
        (<=m,) float32 scores, exact for those rows."""


class DenseScores(Scores):
    """Every row scored: `top` is exact."""

    def __init__(self, scores: np.ndarray, user_vector: np.ndarray | None = None) -> None:
        self.scores = scores  # (N,) float32
        self.user_vector = user_vector

    def top(self, mask: np.ndarray, m: int) -> tuple[np.ndarray, np.ndarray]:
        rows = top_rows(self.scores, mask, m)
        return rows, self.scores[rows]


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


def leave_out(user: UserState, position: int) -> UserState:
    """A copy of ``user`` without live-sequence ``position`` (0 = oldest): what the model would read
    had that engagement not happened. Older engagements keep their order; ``seen`` is unchanged."""
    if not 0 <= position < len(user.items):
        raise IndexError(f"position {position} outside a sequence of {len(user.items)}")

    types = _without(user.types, position) if len(user.types) == len(user.items) else deque(user.types)
    return UserState(
        _without(user.items, position),
        _without(user.times, position),
        types,
        set(user.seen),
        user.last_offset,
    )


def _without(values: deque[T], position: int) -> deque[T]:
    kept = list(values)
    del kept[position]
    return deque(kept, maxlen=values.maxlen)


def score_drop(base: np.ndarray, without: np.ndarray) -> np.ndarray:
    """(R,) float32 ``base - without``; 0 where either is not finite (a row the model cannot score)."""
    ok = np.isfinite(base) & np.isfinite(without)
    return np.where(ok, base - np.where(ok, without, 0.0), 0.0).astype(np.float32)
