"""Reward of an event, from the per-type weights in Settings.

A positive reward makes an event a positive interaction: it enters the user's sequence, the
popularity counts and the training data. Dislikes and skips are explicit negatives.
"""

from __future__ import annotations

from liverec.events.schema import Event, EventType
from liverec.settings import RewardWeights


def reward(event: Event, weights: RewardWeights) -> float:
    """Scalar reward of one event: weight by type, with value transforms for ratings and dwell."""
    t = event.type
    if t is EventType.rating:
        assert event.value is not None  # schema guarantees a value
        if event.value < weights.rating_positive_min:
            return 0.0
        return weights.rating
    if t is EventType.dwell:
        assert event.value is not None
        if event.value < weights.dwell_positive_s:
            return 0.0
        return weights.dwell * min(1.0, event.value / weights.dwell_norm_s)
    return float(getattr(weights, t.value))


def is_positive(event: Event, weights: RewardWeights) -> bool:
    return reward(event, weights) > 0.0


def is_negative(event: Event, weights: RewardWeights) -> bool:
    return event.type in (EventType.dislike, EventType.skip) or reward(event, weights) < 0.0
