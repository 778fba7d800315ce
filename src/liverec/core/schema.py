"""The one schema for user feedback (`Event`) and for catalog entries (`Item`).

Validation happens here, at the edge, so that everything behind it can trust its input: ids are
non-empty, numbers are finite, timestamps are timezone-aware UTC and not far in the future.
"""

from __future__ import annotations

import math
import time
import uuid
from collections.abc import Iterable
from datetime import UTC, datetime
from enum import StrEnum
from itertools import count, repeat
from typing import Annotated, Any, NamedTuple

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    field_validator,
    model_validator,
)

# no NUL: Postgres text cannot hold it, and one such event would fail a whole group commit
Id = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=256, pattern=r"^[^\x00]*$")
]
FiniteFloat = Annotated[float, Field(allow_inf_nan=False)]


class EventType(StrEnum):
    impression = "impression"
    click = "click"
    add_to_cart = "add_to_cart"
    purchase = "purchase"
    rating = "rating"
    dwell = "dwell"
    like = "like"
    dislike = "dislike"
    skip = "skip"


NEEDS_VALUE = frozenset({EventType.rating, EventType.dwell})
# Enum member access (`EventType.dwell`) costs ~0.2 µs in Python 3.11: per-event checks use a constant
_DWELL = EventType.dwell


def _new_event_id() -> str:
    return uuid.uuid4().hex


def to_epoch(value: Any) -> float:
    """Epoch seconds (float) from an ISO-8601 string, a datetime or an epoch number (s or ms)."""
    if isinstance(value, bool):
        raise ValueError("timestamp must be ISO-8601 or epoch seconds, not a boolean")
    if isinstance(value, int | float):
        ts = float(value)
        if not math.isfinite(ts):
            raise ValueError("timestamp must be finite")
        return ts / 1000.0 if ts > 1e11 else ts  # epoch milliseconds are accepted too
    if isinstance(value, datetime):
        dt = value if value.tzinfo else value.replace(tzinfo=UTC)
        return dt.timestamp()
    if isinstance(value, str):
        text = value.strip()
        try:
            return to_epoch(float(text))
        except ValueError:
            pass
        try:
            return to_epoch(datetime.fromisoformat(text.replace("Z", "+00:00")))
        except ValueError:
            raise ValueError(f"timestamp {value!r} is neither ISO-8601 nor epoch seconds") from None
    raise ValueError("timestamp must be ISO-8601 or epoch seconds")


class EventContext(BaseModel):
    """Where the event happened. Impressions written by the server fill request_id/position/policy."""

    model_config = ConfigDict(extra="allow", frozen=True)

    request_id: Annotated[str, StringConstraints(max_length=256)] | None = None
    position: Annotated[int, Field(ge=0, le=100_000)] | None = None
    surface: Annotated[str, StringConstraints(max_length=256)] | None = None
    query: Annotated[str, StringConstraints(max_length=4096)] | None = None
    propensity: Annotated[float, Field(gt=0, le=1, allow_inf_nan=False)] | None = None
    policy: Annotated[str, StringConstraints(max_length=256)] | None = None
    model: Annotated[str, StringConstraints(max_length=256)] | None = None


# The context of every event sent without one: validation shares this (frozen) default instead of
# copying it, so writers recognise it by identity and skip serialising it.
NO_CONTEXT = EventContext()


class Event(BaseModel):
    """One piece of user feedback. ``event_id`` is the client's idempotency key."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    event_id: Id = Field(default_factory=_new_event_id)
    user_id: Id
    item_id: Id
    type: EventType
    value: FiniteFloat | None = None
    timestamp: float = Field(default_factory=time.time, description="ISO-8601 or epoch seconds")
    context: EventContext = NO_CONTEXT

    @field_validator("timestamp", mode="before")
    @classmethod
    def _parse_timestamp(cls, value: Any) -> float:
        kind = type(value)
        # fast path for what clients send: epoch seconds (NaN, inf, ms and negatives fail the range)
        if (kind is float or kind is int) and 0 <= value <= 1e11:
            return float(value)
        ts = to_epoch(value)
        if ts < 0:
            raise ValueError("timestamp is before 1970")
        return ts

    @model_validator(mode="after")
    def _value_when_needed(self) -> Event:
        value = self.value
        if value is None:
            if self.type in NEEDS_VALUE:
                raise ValueError(f"a {self.type.value} event needs a numeric 'value'")
        elif value < 0 and self.type is _DWELL:
            raise ValueError("dwell 'value' is seconds and cannot be negative")
        return self

    def check_not_future(self, now: float, max_skew_s: float) -> None:
        """Raise ValueError when the event claims to come from the future (beyond clock skew)."""
        if self.timestamp > now + max_skew_s:
            when = datetime.fromtimestamp(self.timestamp, UTC).isoformat()
            raise ValueError(f"timestamp {when} is more than {max_skew_s:.0f}s in the future")


# Building already-validated events (read back from the log, or made by the server) without
# `model_construct`'s per-call default resolution: 15-35 µs each, and there is one per event read
# and one per item served. The objects are what `model_construct` builds with every field given.
_CONTEXT_FIELDS: dict[str, None] = {name: None for name in EventContext.model_fields}
assert all(f.default is None for f in EventContext.model_fields.values()), "see trusted_context"
_EVENT_FIELDS = frozenset(Event.model_fields)
_new = object.__new__
_set = object.__setattr__


def trusted_context(values: dict[str, Any]) -> EventContext:
    """`EventContext.model_construct(**values)`: declared fields default to None, others are extras."""
    declared = {k: v for k, v in values.items() if k in _CONTEXT_FIELDS}
    ctx = _new(EventContext)
    _set(ctx, "__dict__", _CONTEXT_FIELDS | declared)
    _set(ctx, "__pydantic_fields_set__", set(declared))
    _set(ctx, "__pydantic_extra__", {k: v for k, v in values.items() if k not in _CONTEXT_FIELDS})
    _set(ctx, "__pydantic_private__", None)
    return ctx


def trusted_event(
    event_id: str,
    user_id: str,
    item_id: str,
    type: EventType,
    value: float | None,
    timestamp: float,
    context: EventContext = NO_CONTEXT,
) -> Event:
    """`Event.model_construct` with every field given, for fields that were validated already."""
    ev = _new(Event)
    _set(ev, "__dict__", {
        "event_id": event_id,
        "user_id": user_id,
        "item_id": item_id,
        "type": type,
        "value": value,
        "timestamp": timestamp,
        "context": context,
    })  # fmt: skip
    _set(ev, "__pydantic_fields_set__", set(_EVENT_FIELDS))
    _set(ev, "__pydantic_extra__", None)
    _set(ev, "__pydantic_private__", None)
    return ev


class StoredEvent(NamedTuple):
    """An event as the log holds it: with its offset (increasing in append order).

    A named tuple: one is built per event appended or read, at half a frozen dataclass's cost.
    """

    offset: int
    event: Event


def stored_events(first_offset: int, events: Iterable[Event]) -> list[StoredEvent]:
    """``StoredEvent(first_offset + k, event)`` for the k-th event. Built by ``tuple.__new__``: a named
    tuple's own ``__new__`` is a Python function, and this runs for every event appended."""
    return list(map(tuple.__new__, repeat(StoredEvent), zip(count(first_offset), events)))


class Item(BaseModel):
    """A catalog entry. Text fields feed the text encoder; ``available=False`` hides it from lists."""

    model_config = ConfigDict(extra="forbid")

    item_id: Id
    title: Annotated[str, StringConstraints(max_length=4096)] = ""
    text: Annotated[str, StringConstraints(max_length=65536)] = ""
    tags: list[Annotated[str, StringConstraints(max_length=256)]] = Field(
        default_factory=list, max_length=256
    )
    attributes: dict[str, Any] = Field(default_factory=dict)
    created_at: float = Field(default_factory=time.time)
    available: bool = True

    @field_validator("created_at", mode="before")
    @classmethod
    def _parse_created(cls, value: Any) -> float:
        return to_epoch(value)

    def content(self) -> str:
        """The text the encoder reads: title, text and tags."""
        parts = [self.title, self.text, ", ".join(self.tags)]
        return ". ".join(p for p in parts if p)


class ItemIn(BaseModel):
    """Body of ``PUT /v1/items/{item_id}``: an item without its id."""

    model_config = ConfigDict(extra="forbid")

    title: Annotated[str, StringConstraints(max_length=4096)] = ""
    text: Annotated[str, StringConstraints(max_length=65536)] = ""
    tags: list[Annotated[str, StringConstraints(max_length=256)]] = Field(
        default_factory=list, max_length=256
    )
    attributes: dict[str, Any] = Field(default_factory=dict)
    created_at: float | str | None = None
    available: bool = True

    def with_id(self, item_id: str) -> Item:
        data = self.model_dump(exclude_none=True)
        return Item(item_id=item_id, **data)
