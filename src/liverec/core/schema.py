"""The one schema for user feedback (`Event`) and for catalog entries (`Item`).

Validation happens here, at the edge, so that everything behind it can trust its input: ids follow
the one id rule (`Id`), numbers are finite, timestamps are in range and not far in the future, and
free-form JSON (`context` extras, item `attributes`) is bounded in depth and size, so that nothing a
client sends can fail later inside a shared group commit.
"""

from __future__ import annotations

import math
import time
import uuid
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from enum import StrEnum
from itertools import count, repeat
from typing import Annotated, Any, NamedTuple

import orjson
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationInfo,
    WithJsonSchema,
    field_validator,
    model_validator,
)

# The one id rule, for event, user and item ids in bodies and in every URL path. An id must
# round-trip through a URL path segment, so that whatever is accepted can be read and deleted again:
# surrounding whitespace is stripped (the same everywhere: `"  a "` is `a` in a body and in a path);
# then 1-256 characters, no control characters (NUL cannot be stored in Postgres text), no `/` (it
# would split the path even as %2F), and not `.` or `..` (clients resolve those as dot-segments).
_ID_CHAR = r"[^\x00-\x1f\x7f/]"
ID_PATTERN = rf"^(?:{_ID_CHAR}*[^\x00-\x1f\x7f/.]{_ID_CHAR}*|\.{{3,}})$"
ID_RULE = (
    "1-256 characters after surrounding whitespace is stripped; no control characters, no '/', "
    "and not '.' or '..'"
)
Id = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=256, pattern=ID_PATTERN),
    Field(description=f"an id: {ID_RULE}"),
]
FiniteFloat = Annotated[float, Field(allow_inf_nan=False)]
# Free text without NUL: Postgres text cannot hold it, so one such row would fail its whole write.
_NO_NUL = r"^[^\x00]*$"

# Epoch seconds accepted anywhere: 1970-01-01 .. 9999-12-31 (a datetime cannot go further).
MAX_EPOCH_S = 253_402_300_799.0
MIN_EPOCH_S = -62_135_596_800.0  # 0001-01-01 UTC, the oldest a datetime holds
TIMESTAMP_SCHEMA = WithJsonSchema(
    {
        "anyOf": [
            {"type": "number", "minimum": 0, "maximum": MAX_EPOCH_S * 1000},
            {"type": "string", "maxLength": 64},
        ],
        "description": "epoch seconds (milliseconds above 1e11) or an ISO-8601 string; "
        "1970-01-01 to 9999-12-31 UTC",
    }
)
CREATED_AT_SCHEMA = WithJsonSchema(
    {
        "anyOf": [
            {"type": "number", "minimum": MIN_EPOCH_S, "maximum": MAX_EPOCH_S * 1000},
            {"type": "string", "maxLength": 64},
        ],
        "description": "epoch seconds (milliseconds above 1e11) or an ISO-8601 string; "
        "0001-01-01 to 9999-12-31 UTC (an item may predate 1970: a film's release date)",
    }
)


class JsonLimits(NamedTuple):
    """Bounds on free-form JSON (`context` extras, item `attributes`). The server passes its
    `[server]` values as validation context ``{"limits": JsonLimits(...)}``; without one, these."""

    max_depth: int = 8
    max_bytes: int = 16 * 1024


DEFAULT_LIMITS = JsonLimits()


def limits_of(info: ValidationInfo) -> JsonLimits:
    ctx = info.context
    limits = ctx.get("limits") if isinstance(ctx, dict) else None
    return limits if isinstance(limits, JsonLimits) else DEFAULT_LIMITS


def check_json(value: Any, what: str, limits: JsonLimits) -> None:
    """Raise ValueError unless ``value`` is JSON within ``limits``: the store serialises it later, on
    the shared writer thread, where a failure would hit every request in the group."""
    level: list[Any] = [value]
    depth = 0
    while level:  # level by level, so a hostile depth costs no recursion
        depth += 1
        if depth > limits.max_depth:
            raise ValueError(f"{what} is nested deeper than {limits.max_depth} levels")
        below: list[Any] = []
        for v in level:
            children = v.values() if isinstance(v, dict) else v if isinstance(v, list) else ()
            below.extend(c for c in children if isinstance(c, dict | list))
        level = below
    try:
        size = len(orjson.dumps(value))
    except (TypeError, orjson.JSONEncodeError) as exc:
        raise ValueError(f"{what} is not JSON: {exc}") from None
    if size > limits.max_bytes:
        raise ValueError(f"{what} is {size} bytes as JSON; the limit is {limits.max_bytes}")


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


def epoch_in_range(value: Any, oldest: float = 0.0) -> float:
    """`to_epoch`, then ``oldest``..9999 UTC: a datetime holds no more (`fromtimestamp(1e17)` raises
    OverflowError, a 500 later). Events are never before 1970; an item's ``created_at`` may be
    (a film's release date), down to year 1 (`MIN_EPOCH_S`)."""
    ts = to_epoch(value)
    if ts < oldest:
        raise ValueError("timestamp is before 1970" if oldest == 0.0 else "timestamp is before the year 1")
    if ts > MAX_EPOCH_S:
        raise ValueError("timestamp is after the year 9999")
    return ts


class EventContext(BaseModel):
    """Where the event happened. Impressions written by the server fill request_id/position/policy."""

    model_config = ConfigDict(extra="allow", frozen=True)

    request_id: Annotated[str, StringConstraints(max_length=256, pattern=_NO_NUL)] | None = None
    position: Annotated[int, Field(ge=0, le=100_000, strict=True)] | None = None
    surface: Annotated[str, StringConstraints(max_length=256, pattern=_NO_NUL)] | None = None
    query: Annotated[str, StringConstraints(max_length=4096, pattern=_NO_NUL)] | None = None
    propensity: Annotated[float, Field(gt=0, le=1, allow_inf_nan=False, strict=True)] | None = None
    policy: Annotated[str, StringConstraints(max_length=256, pattern=_NO_NUL)] | None = None
    model: Annotated[str, StringConstraints(max_length=256, pattern=_NO_NUL)] | None = None

    @model_validator(mode="after")
    def _bounded(self, info: ValidationInfo) -> EventContext:
        extra = self.__pydantic_extra__
        if extra:  # the declared fields are bounded by their types; the extras by the limits
            check_json(extra, "context", limits_of(info))
        return self


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
    timestamp: Annotated[float, TIMESTAMP_SCHEMA] = Field(default_factory=time.time)
    context: EventContext = NO_CONTEXT

    @field_validator("timestamp", mode="before")
    @classmethod
    def _parse_timestamp(cls, value: Any) -> float:
        kind = type(value)
        # fast path for what clients send: epoch seconds (NaN, inf, ms and negatives fail the range)
        if (kind is float or kind is int) and 0 <= value <= 1e11:
            return float(value)
        return epoch_in_range(value)

    @field_validator("value", mode="before")
    @classmethod
    def _not_a_boolean(cls, value: Any) -> Any:
        if value is True or value is False:  # an int to Python, never a meant number
            raise ValueError("value must be a number, not a boolean")
        return value

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
            try:
                when = datetime.fromtimestamp(self.timestamp, UTC).isoformat()
            except (OverflowError, OSError, ValueError):  # an event built without validation
                when = f"{self.timestamp:g}"
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


Title = Annotated[str, StringConstraints(max_length=4096, pattern=_NO_NUL)]
Text = Annotated[str, StringConstraints(max_length=65536, pattern=_NO_NUL)]
Tag = Annotated[str, StringConstraints(max_length=256, pattern=_NO_NUL)]
Attributes = Annotated[
    dict[str, Any], Field(description="free-form JSON, bounded in nesting depth and serialised size")
]


def _bounded_attributes(value: dict[str, Any], info: ValidationInfo) -> dict[str, Any]:
    if value:
        check_json(value, "attributes", limits_of(info))
    return value


class Item(BaseModel):
    """A catalog entry. Text fields feed the text encoder; ``available=False`` hides it from lists."""

    model_config = ConfigDict(extra="forbid")

    item_id: Id
    title: Title = ""
    text: Text = ""
    tags: list[Tag] = Field(default_factory=list, max_length=256)
    attributes: Attributes = Field(default_factory=dict)
    created_at: Annotated[float, CREATED_AT_SCHEMA] = Field(default_factory=time.time)
    available: bool = Field(True, strict=True)

    @field_validator("created_at", mode="before")
    @classmethod
    def _parse_created(cls, value: Any) -> float:
        return epoch_in_range(value, oldest=MIN_EPOCH_S)

    _bounded = field_validator("attributes")(_bounded_attributes)

    def content(self) -> str:
        """The text the encoder reads: title, text and tags."""
        parts = [self.title, self.text, ", ".join(self.tags)]
        return ". ".join(p for p in parts if p)


class ItemIn(BaseModel):
    """Body of ``PUT /v1/items/{item_id}``: an item without its id."""

    model_config = ConfigDict(extra="forbid")

    title: Title = ""
    text: Text = ""
    tags: list[Tag] = Field(default_factory=list, max_length=256)
    attributes: Attributes = Field(default_factory=dict)
    created_at: Annotated[float | str | None, CREATED_AT_SCHEMA] = None
    available: bool = Field(True, strict=True)

    _bounded = field_validator("attributes")(_bounded_attributes)

    def with_id(self, item_id: str, limits: JsonLimits = DEFAULT_LIMITS) -> Item:
        """The full item, validated as one: ``item_id`` and ``created_at`` follow the same rules."""
        data = self.model_dump(exclude_none=True)
        return Item.model_validate({"item_id": item_id, **data}, context={"limits": limits})


def error_message(err: Mapping[str, Any]) -> str:
    """A pydantic error's message for clients: an id that breaks the id rule says the rule, not
    the regular expression that encodes it."""
    ctx = err.get("ctx")
    if err.get("type") == "string_pattern_mismatch" and ctx and ctx.get("pattern") == ID_PATTERN:
        return f"not a valid id: {ID_RULE}"
    return str(err.get("msg", "invalid"))
