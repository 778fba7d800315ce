"""The `Policy` contract: choose a slate from scored candidates, and learn from feedback.

Every slate carries propensities, the probability that the policy shows each item at its position
given the candidates, so that any other policy or model can be judged off-policy from the log.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Slate:
    rows: np.ndarray  # (k,) int64 catalog rows, in display order
    scores: np.ndarray  # (k,) float32 model scores of those rows
    propensities: np.ndarray  # (k,) float64 in (0, 1]: P(row shown at this position | candidates)
    policy: str


@dataclass(frozen=True)
class Feedback:
    """The reward one shown item earned (0 when nothing happened), joined back to its slate."""

    row: int
    position: int
    reward: float
    propensity: float
    context: Mapping[str, Any] | None = None


class Policy(ABC):
    name: str = "policy"

    @abstractmethod
    def select(
        self, candidates: np.ndarray, scores: np.ndarray, k: int, context: Mapping[str, Any] | None = None
    ) -> Slate:
        """Pick up to ``k`` of ``candidates`` ((M,) int64 rows, with (M,) float32 scores, best first)."""

    def update(self, feedback: Sequence[Feedback]) -> None:  # noqa: B027 - stateless policies skip it
        """Learn from rewards of earlier slates."""


class Greedy(Policy):
    """Show the top-k by score; every shown item had propensity 1."""

    name = "greedy"

    def select(
        self, candidates: np.ndarray, scores: np.ndarray, k: int, context: Mapping[str, Any] | None = None
    ) -> Slate:
        order = np.argsort(-scores, kind="stable")[:k]
        return Slate(candidates[order], scores[order], np.ones(len(order)), self.name)
