"""`split`: per-request counts from one append of a group of requests."""

from __future__ import annotations

from liverec.core.schema import Event, StoredEvent
from liverec.serve.ingest import Ingested, split
from liverec.store import AppendResult


def ev(eid: str) -> Event:
    return Event(event_id=eid, user_id="u", item_id="i", type="click", timestamp=1_700_000_000.0)


def test_split_without_duplicates_gives_every_request_all_its_events() -> None:
    batches = [[ev("a"), ev("b")], [ev("c")], [ev("d"), ev("e"), ev("f")]]
    flat = [e for b in batches for e in b]
    appended = AppendResult([StoredEvent(k + 1, e) for k, e in enumerate(flat)], 0)
    assert split(batches, appended) == [Ingested(2, 0), Ingested(1, 0), Ingested(3, 0)]


def test_split_credits_the_first_occurrence_of_a_repeated_id() -> None:
    batches = [[ev("a"), ev("b")], [ev("b"), ev("c")], [ev("a")]]
    appended = AppendResult([StoredEvent(1, ev("a")), StoredEvent(2, ev("b")), StoredEvent(3, ev("c"))], 2)
    assert split(batches, appended) == [Ingested(2, 0), Ingested(1, 1), Ingested(0, 1)]
