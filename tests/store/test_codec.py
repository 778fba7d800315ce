"""Row encoding shortcuts (`event_row`, `id_hashes`) give exactly what the general path gives."""

from __future__ import annotations

import random
import uuid
from typing import Any

import numpy as np
import pytest
from pydantic import ValidationError

from liverec.core.schema import (
    NEEDS_VALUE,
    NO_CONTEXT,
    Event,
    EventContext,
    EventType,
    StoredEvent,
    stored_events,
    trusted_context,
)
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


def test_read_back_events_are_the_events_model_construct_would_build() -> None:
    """`stored_event` builds events with `trusted_event`, not `model_construct`: same fields,
    set-fields, equality, hash, dump and frozenness, for every event type, with and without a
    value or context."""
    for k, type_ in enumerate(EventType):
        value = None if k % 2 and type_ not in NEEDS_VALUE else 3.5
        context = NO_CONTEXT if k % 3 else EventContext(request_id="r", position=k)
        ev = Event(user_id="u", item_id=f"i{k}", type=type_, value=value, timestamp=1e9 + k, context=context)
        back = stored_event(k, event_row(ev)).event
        built = Event.model_construct(**dict(ev))
        assert back == built == ev and hash(back) == hash(built)
        assert back.model_fields_set == built.model_fields_set
        assert back.model_dump() == ev.model_dump() and back.type is type_
        with pytest.raises(ValidationError):
            back.user_id = "other"  # type: ignore[misc]


def test_read_back_contexts_are_the_contexts_model_construct_would_build() -> None:
    for values in ({"request_id": "r", "position": 3}, {"propensity": 0.5, "score": 0.25, "arm": "x"}, {}):
        back = trusted_context(dict(values))
        built = EventContext.model_construct(**values)
        assert back == built and back.__dict__ == built.__dict__
        assert back.model_fields_set == built.model_fields_set and back.model_extra == built.model_extra
        assert back.model_dump() == built.model_dump()
