"""`split`: per-request results from one append of a group of requests."""

from __future__ import annotations

from liverec.core.schema import Event, StoredEvent
from liverec.serve.ingest import split
from liverec.store import AppendResult


def ev(eid: str) -> Event:
    return Event(event_id=eid, user_id="u", item_id="i", type="click", timestamp=1_700_000_000.0)


def test_split_without_duplicates_gives_every_request_all_its_events() -> None:
    batches = [[ev("a"), ev("b")], [ev("c")], [ev("d"), ev("e"), ev("f")]]
    flat = [e for b in batches for e in b]
    stored = [StoredEvent(k + 1, e) for k, e in enumerate(flat)]
    appended = AppendResult(stored, 0)
    assert split(batches, appended) == [
        AppendResult(stored[0:2], 0),
        AppendResult(stored[2:3], 0),
        AppendResult(stored[3:6], 0),
    ]


def test_split_credits_the_first_occurrence_of_a_repeated_id() -> None:
    batches = [[ev("a"), ev("b")], [ev("b"), ev("c")], [ev("a")]]
    a, b, c = StoredEvent(1, ev("a")), StoredEvent(2, ev("b")), StoredEvent(3, ev("c"))
    appended = AppendResult([a, b, c], 2)
    assert split(batches, appended) == [
        AppendResult([a, b], 0),
        AppendResult([c], 1),
        AppendResult([], 1),
    ]


def test_split_of_one_request_is_the_append_itself() -> None:
    appended = AppendResult([StoredEvent(7, ev("x"))], 1)
    assert split([[ev("x"), ev("x")]], appended) == [appended]
