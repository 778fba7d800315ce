"""The `Model` contract every scorer follows: score all catalog rows for a user's live state.

Scores are float32 arrays over catalog rows, higher is better. Models are free to learn cheap
statistics online in `observe` (popularity, co-occurrence); weight updates of deep models happen in
the online trainer instead and arrive as new registry versions.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence

import numpy as np

from liverec.core.state import Interaction, UserState


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

    def item_vectors(self, rows: np.ndarray) -> np.ndarray | None:
        """(len(rows), D) float32 item representations (None for models without them)."""
        return None

    @abstractmethod
    def similar(self, row: int, n_items: int) -> np.ndarray:
        """(n_items,) float32 similarity of every row to ``row``."""
