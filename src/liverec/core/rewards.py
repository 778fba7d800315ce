"""Reward of an event, from the per-type weights in Settings.

A positive reward makes an event a positive interaction: it enters the user's sequence, the
popularity counts and the training data. Dislikes and skips are explicit negatives.
"""

from __future__ import annotations

from liverec.core.schema import Event, EventType
from liverec.settings import RewardWeights


class Rewards:
    """Per-type weights as a lookup table (this runs for every event), with value transforms."""

    def __init__(self, weights: RewardWeights | None = None) -> None:
        self.weights = w = weights or RewardWeights()
        self._base = {t: float(getattr(w, t.value)) for t in EventType}

    def __call__(self, event: Event) -> float:
        t = event.type
        if t is EventType.rating:
            value = event.value if event.value is not None else 0.0
            return self._base[t] if value >= self.weights.rating_positive_min else 0.0
        if t is EventType.dwell:
            value = event.value if event.value is not None else 0.0
            if value < self.weights.dwell_positive_s:
                return 0.0
            return self._base[t] * min(1.0, value / self.weights.dwell_norm_s)
        return self._base[t]


def reward(event: Event, weights: RewardWeights) -> float:
    """Scalar reward of one event (convenience form of `Rewards`)."""
    return Rewards(weights)(event)


def is_positive(event: Event, weights: RewardWeights) -> bool:
    return reward(event, weights) > 0.0
