"""Row encoding shortcuts (`event_row`, `id_hashes`) give exactly what the general path gives."""

from __future__ import annotations

import random
import uuid
from typing import Any

import numpy as np
from pydantic import ValidationError

from liverec.events.schema import NO_CONTEXT, Event, EventContext, StoredEvent, stored_events
from liverec.store.codec import _dumps, event_row, stored_event
from liverec.store.idset import id_hash, id_hashes


def general_context_json(c: EventContext) -> str:
    """The context column as `event_row` computed it before its fast paths."""
    return _dumps(c.model_dump(exclude_none=True)) if c.model_fields_set or c.model_extra else "{}"


def test_event_without_context_shares_the_default_and_stores_empty_json() -> None:
    ev = Event.model_validate({"user_id": "u", "item_id": "i", "type": "click"})
    assert ev.context is NO_CONTEXT
    assert event_row(ev)[6] == "{}"
    back = stored_event(1, event_row(ev)).event
    assert back.context == ev.context


def test_context_column_matches_model_dump_for_random_contexts() -> None:
    rng = random.Random(0)
    choices: dict[str, list[Any]] = {
        "request_id": ["r1", "", None],
        "position": [0, 7, None],
        "surface": ["home", None],
        "query": ["jazz", None],
        "propensity": [1, 0.25, 1e-7, None],
        "policy": ["greedy", None],
        "model": ["m1", None],
    }
    extras: list[Any] = ["x", None, 3, {"a": None, "b": [1, None]}, [None]]
    checked = 0
    for _ in range(3_000):
        raw = {k: rng.choice(choices[k]) for k in rng.sample(sorted(choices), rng.randint(0, len(choices)))}
        if rng.random() < 0.3:
            raw["page"] = rng.choice(extras)
        try:
            ctx = EventContext.model_validate(raw)
        except ValidationError:
            continue
        ev = Event(user_id="u", item_id="i", type="click", context=ctx)
        assert event_row(ev)[6] == general_context_json(ctx), raw
        checked += 1
    assert checked > 1_000
    # what the server writes for impressions: unvalidated, with a numpy score as an extra
    built = EventContext.model_construct(request_id="r", position=2, propensity=0.5, score=np.float32(0.25))
    ev = Event.model_construct(
        **{**Event(user_id="u", item_id="i", type="impression").__dict__, "context": built}
    )
    assert event_row(ev)[6] == general_context_json(built)


def test_id_hashes_match_id_hash() -> None:
    ids = [uuid.uuid4().hex for _ in range(200)] + ["", "é-ü-€", "x" * 256, "imp:r:0"]
    assert id_hashes(ids) == [id_hash(i) for i in ids]
    assert all(type(h) is int for h in id_hashes(ids))
    assert id_hashes([]) == []


def test_stored_events_are_named_tuples_numbered_from_the_first_offset() -> None:
    events = [Event(user_id="u", item_id=f"i{k}", type="click") for k in range(3)]
    built = stored_events(41, events)
    assert built == [StoredEvent(41 + k, e) for k, e in enumerate(events)]
    assert all(type(s) is StoredEvent for s in built) and built[2].offset == 43
    assert stored_events(1, []) == []
