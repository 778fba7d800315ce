"""Row <-> object conversion shared by the SQL backends. Rows were validated on the way in,
so the way out skips validation (`trusted_event`): rebuilding state from 1M events stays fast."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import orjson

from liverec.core.schema import (
    NO_CONTEXT,
    Event,
    EventType,
    Item,
    StoredEvent,
    trusted_context,
    trusted_event,
)

EventRow = tuple[str, str, str, str, float | None, float, str]
_TYPE_TEXT = {t: t.value for t in EventType}  # `EventType.value` is a Python property: ~0.2 µs a call
_TYPE_OF = {t.value: t for t in EventType}  # `EventType(text)` goes through `Enum.__new__`


# The SQL backends' column lists, in the order `event_row` and `item_row` give them.
EVENT_COLS = "event_id, user_id, item_id, type, value, ts, context"
ITEM_COLS = "item_id, title, text, tags, attributes, created_at, available"


def event_row(ev: Event) -> EventRow:
    """The columns of an event. Runs for every event appended, so the common cases are cheap."""
    c = ev.context
    if c is NO_CONTEXT or not (c.model_fields_set or c.model_extra):
        ctx = "{}"
    elif c.model_extra:
        ctx = _dumps(c.model_dump(exclude_none=True))
    else:  # declared fields only, all plain scalars: what `model_dump` gives, without its overhead
        ctx = _dumps({k: v for k, v in c.__dict__.items() if v is not None})
    return (ev.event_id, ev.user_id, ev.item_id, _TYPE_TEXT[ev.type], ev.value, ev.timestamp, ctx)


def stored_event(offset: int, row: Sequence[Any]) -> StoredEvent:
    event_id, user_id, item_id, type_, value, ts, ctx = row
    context = trusted_context(orjson.loads(ctx)) if ctx and ctx != "{}" else NO_CONTEXT
    ev = trusted_event(event_id, user_id, item_id, _TYPE_OF[type_], value, ts, context)
    return StoredEvent(offset=offset, event=ev)


def item_row(item: Item) -> tuple[str, str, str, str, str, float, int]:
    return (
        item.item_id,
        item.title,
        item.text,
        _dumps(item.tags),
        _dumps(item.attributes),
        item.created_at,
        int(item.available),
    )


def item_from_row(row: Sequence[Any]) -> Item:
    item_id, title, text, tags, attributes, created_at, available = row
    return Item.model_construct(
        item_id=item_id,
        title=title,
        text=text,
        tags=orjson.loads(tags),
        attributes=orjson.loads(attributes),
        created_at=created_at,
        available=bool(available),
    )


def stub_item(item_id: str, created_at: float) -> Item:
    """The catalog entry made for an item first seen in an event."""
    return Item.model_construct(
        item_id=item_id, title="", text="", tags=[], attributes={}, created_at=created_at, available=True
    )


def stub_row(item_id: str, created_at: float) -> tuple[str, str, str, str, str, float, int]:
    """`item_row(stub_item(...))` without building the model: this runs for every appended batch."""
    return (item_id, "", "", "[]", "{}", created_at, 1)


def vector_bytes(vec: np.ndarray) -> bytes:
    return np.ascontiguousarray(vec, dtype=np.float32).tobytes()


def vector_from(blob: bytes) -> np.ndarray:
    return np.frombuffer(blob, dtype=np.float32).copy()


def _dumps(obj: Any) -> str:
    return orjson.dumps(obj, option=orjson.OPT_SERIALIZE_NUMPY).decode()
