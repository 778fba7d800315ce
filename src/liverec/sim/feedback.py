"""What a simulated user sends back, shared by the in-process simulator and the HTTP demo.

Both turn the `World`'s reaction to a served slate into the same events (joined to the slate by
``request_id`` and ``position``), and both use the same uniformly random logging policy (the
simulator's warm-up, the demo's control cohort), so the two exercise identical traffic.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from liverec.core.schema import Event
from liverec.sim.world import Response

FEEDBACK_DELAY_S = 0.01  # event time between a slate and each piece of feedback on it


def feedback_dicts(
    resp: Response, context: dict[str, Any], now: float, event_ids: Sequence[str]
) -> list[dict[str, Any]]:
    """The world's reaction as API event bodies (what ``POST /v1/events`` takes), in order.

    ``event_ids`` (one per event of ``resp``) are the client's idempotency keys; the k-th event is
    stamped ``now + (k + 1) * FEEDBACK_DELAY_S`` so that feedback follows its impressions.
    """
    if len(event_ids) != len(resp.events):
        raise ValueError(f"{len(event_ids)} event ids for {len(resp.events)} events")
    return [
        {
            "event_id": event_id,
            "user_id": resp.user_id,
            "item_id": ev.item_id,
            "type": ev.type,
            **({"value": ev.value} if ev.value is not None else {}),
            "timestamp": now + (k + 1) * FEEDBACK_DELAY_S,
            "context": {**context, "position": ev.position},
        }
        for k, (event_id, ev) in enumerate(zip(event_ids, resp.events, strict=True))
    ]


def feedback_events(
    resp: Response, context: dict[str, Any], now: float, event_ids: Sequence[str]
) -> list[Event]:
    """`feedback_dicts` validated into `Event`s, as the API's edge would (for in-process ingest)."""
    return [Event.model_validate(d) for d in feedback_dicts(resp, context, now, event_ids)]


def uniform_slate(
    item_ids: Sequence[str], seen: set[str], k: int, rng: np.random.Generator
) -> tuple[list[str], float]:
    """Up to ``k`` distinct unseen items drawn uniformly, and the logged propensity of each: the
    marginal P(a given unseen item at a given position) = 1 / (number of unseen items)."""
    n_unseen = len(item_ids) - len(seen)
    if n_unseen <= 0:
        return [], 1.0
    kk = min(k, n_unseen)
    picked: dict[str, None] = {}
    while len(picked) < kk:
        for j in rng.integers(len(item_ids), size=kk - len(picked)).tolist():
            if item_ids[j] not in seen:
                picked[item_ids[j]] = None
    return list(picked)[:kk], 1.0 / n_unseen


def impression_dicts(
    user_id: str, slate: Sequence[str], propensity: float, context: dict[str, Any], now: float
) -> list[dict[str, Any]]:
    """Impressions of a slate served outside the engine (the random logging policy), as API bodies."""
    rid = context["request_id"]
    return [
        {
            "event_id": f"imp:{rid}:{pos}",
            "user_id": user_id,
            "item_id": item_id,
            "type": "impression",
            "timestamp": now,
            "context": {**context, "position": pos, "propensity": propensity},
        }
        for pos, item_id in enumerate(slate)
    ]
