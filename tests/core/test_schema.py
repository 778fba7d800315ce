"""The event and item schema: timestamps in every accepted form, ids, and the future-skew check."""

from __future__ import annotations

import math
import time
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from pydantic import ValidationError

from liverec.core.schema import Event, EventContext, EventType, Item, ItemIn, to_epoch

T = datetime(2024, 3, 10, 12, 30, 15, tzinfo=UTC)
EPOCH = T.timestamp()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2024-03-10T12:30:15Z", EPOCH),
        ("2024-03-10T12:30:15+00:00", EPOCH),
        ("2024-03-10T14:30:15+02:00", EPOCH),
        ("2024-03-10T07:00:15-05:30", EPOCH),
        ("2024-03-10T12:30:15.250Z", EPOCH + 0.25),
        ("2024-03-10 12:30:15", EPOCH),  # naive means UTC
        ("  2024-03-10T12:30:15Z  ", EPOCH),
        (str(int(EPOCH)), EPOCH),
        (f"{EPOCH + 0.5}", EPOCH + 0.5),
        (str(int(EPOCH * 1000)), EPOCH),  # epoch milliseconds as text
    ],
)
def test_timestamp_strings(text: str, expected: float) -> None:
    assert to_epoch(text) == pytest.approx(expected, abs=1e-6)
    assert Event(user_id="u", item_id="i", type=EventType.click, timestamp=text).timestamp == pytest.approx(
        expected, abs=1e-6
    )


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (int(EPOCH), EPOCH),
        (EPOCH + 0.125, EPOCH + 0.125),
        (int(EPOCH) * 1000 + 125, EPOCH + 0.125),  # milliseconds
        (float(int(EPOCH) * 1000), EPOCH),
        (0, 0.0),
        (T, EPOCH),
        (T.astimezone(timezone(timedelta(hours=9))), EPOCH),  # same instant, other zone
        (T.replace(tzinfo=None), EPOCH),  # naive datetime means UTC
    ],
)
def test_timestamp_numbers_and_datetimes(value: Any, expected: float) -> None:
    assert to_epoch(value) == pytest.approx(expected, abs=1e-6)
    assert Event(user_id="u", item_id="i", type="click", timestamp=value).timestamp == pytest.approx(
        expected, abs=1e-6
    )


@pytest.mark.parametrize(
    "bad", [True, None, [EPOCH], "yesterday", "2024-13-40T00:00:00Z", math.nan, math.inf, "nan"]
)
def test_bad_timestamps_are_rejected(bad: Any) -> None:
    with pytest.raises(ValueError):
        to_epoch(bad)
    with pytest.raises(ValidationError) as exc:
        Event(user_id="u", item_id="i", type="click", timestamp=bad)
    assert exc.value.errors()[0]["loc"] == ("timestamp",)


def test_timestamps_before_1970_are_rejected() -> None:
    with pytest.raises(ValidationError, match="1970"):
        Event(user_id="u", item_id="i", type="click", timestamp="1969-12-31T23:59:59Z")


def test_default_timestamp_is_now_and_default_ids_are_unique() -> None:
    before = time.time()
    events = [Event(user_id="u", item_id="i", type="click") for _ in range(100)]
    after = time.time()
    assert all(before <= e.timestamp <= after for e in events)
    assert len({e.event_id for e in events}) == 100


def test_future_check_allows_clock_skew_only() -> None:
    now = EPOCH
    ok = Event(user_id="u", item_id="i", type="click", timestamp=now + 59)
    ok.check_not_future(now, max_skew_s=60)
    late = Event(user_id="u", item_id="i", type="click", timestamp=now + 61)
    with pytest.raises(ValueError, match="future"):
        late.check_not_future(now, max_skew_s=60)


def test_ids_are_stripped_and_must_not_be_blank() -> None:
    ev = Event(user_id="  u1 ", item_id="\ti1\n", type="click", event_id=" e ")
    assert (ev.user_id, ev.item_id, ev.event_id) == ("u1", "i1", "e")
    for field in ("user_id", "item_id", "event_id"):
        fields: dict[str, Any] = {"user_id": "u", "item_id": "i", "type": "click", field: "  "}
        with pytest.raises(ValidationError) as exc:
            Event.model_validate(fields)
        assert exc.value.errors()[0]["loc"] == (field,)
    with pytest.raises(ValidationError):
        Event(user_id="u" * 257, item_id="i", type="click")


def test_values_needed_finite_and_dwell_not_negative() -> None:
    with pytest.raises(ValidationError, match="value"):
        Event(user_id="u", item_id="i", type="rating")
    with pytest.raises(ValidationError, match="negative"):
        Event(user_id="u", item_id="i", type="dwell", value=-1)
    with pytest.raises(ValidationError):
        Event(user_id="u", item_id="i", type="rating", value=math.nan)
    assert Event(user_id="u", item_id="i", type="click", value=2.0).value == 2.0  # optional elsewhere
    assert Event(user_id="u", item_id="i", type="rating", value=-3).value == -3.0


def test_context_bounds_and_extras() -> None:
    ctx = EventContext.model_validate({"propensity": 1, "position": 0, "page": "home"})
    assert ctx.propensity == 1.0
    assert ctx.model_extra == {"page": "home"}
    for bad in ({"propensity": 0}, {"propensity": 1.0001}, {"propensity": math.nan}, {"position": -1}):
        with pytest.raises(ValidationError):
            EventContext.model_validate(bad)


def test_unknown_fields_and_types_are_rejected() -> None:
    with pytest.raises(ValidationError, match="Extra inputs"):
        Event.model_validate({"user_id": "u", "item_id": "i", "type": "click", "colour": "red"})
    with pytest.raises(ValidationError):
        Event.model_validate({"user_id": "u", "item_id": "i", "type": "teleport"})
    assert {t.value for t in EventType} >= {"impression", "click", "purchase", "rating", "dwell"}


def test_items_parse_created_at_and_build_content() -> None:
    item = Item(
        item_id="m", title="Heat", text="LA heist", tags=["crime", "drama"], created_at="2024-03-10T12:30:15Z"
    )
    assert item.created_at == EPOCH
    assert item.content() == "Heat. LA heist. crime, drama"
    assert Item(item_id="m", tags=["x"]).content() == "x"
    with pytest.raises(ValidationError):
        Item(item_id="m", created_at="soon")
    with pytest.raises(ValidationError):
        Item(item_id="m", tags=["t"] * 257)


def test_item_in_takes_its_id_from_the_path() -> None:
    body = ItemIn.model_validate({"title": "Heat", "created_at": "2024-03-10T12:30:15Z", "available": False})
    item = body.with_id("m1")
    assert (item.item_id, item.title, item.created_at, item.available) == ("m1", "Heat", EPOCH, False)
    before = time.time()
    assert ItemIn().with_id("m2").created_at >= before  # no created_at: now
    with pytest.raises(ValidationError):
        ItemIn.model_validate({"item_id": "m1"})


@pytest.mark.parametrize(
    "value", [0, 0.0, -0.0, 1, EPOCH, int(EPOCH), 1e11, 1e11 + 1, int(1e11) + 1, EPOCH * 1000, 2.5e14]
)
def test_numeric_timestamps_validate_like_to_epoch(value: float) -> None:
    ts = Event(user_id="u", item_id="i", type="click", timestamp=value).timestamp
    assert ts == to_epoch(value) and type(ts) is float


@pytest.mark.parametrize(
    "value", [-1, -0.5, -1e12, math.nan, -math.inf, 1e15, 2**70, 1e20, "1e20", 1e23, 1e300, -1e300]
)
def test_negative_or_non_finite_numeric_timestamps_are_rejected(value: float) -> None:
    with pytest.raises(ValidationError) as exc:
        Event(user_id="u", item_id="i", type="click", timestamp=value)
    assert exc.value.errors()[0]["loc"] == ("timestamp",)


def test_an_item_may_predate_1970_but_not_the_year_1() -> None:
    """A catalog of films has release dates before 1970 (ml-100k: Belle de jour, 1967); events never do."""
    assert Item(item_id="old", created_at=-86_400.0 * 365 * 3).created_at < 0
    assert Item(item_id="old", created_at="1967-05-24").created_at < 0
    with pytest.raises(ValidationError, match="before the year 1"):
        Item(item_id="older", created_at=-1e12)
    with pytest.raises(ValidationError, match="before 1970"):
        Event(user_id="u", item_id="i", type="click", timestamp=-1.0)
