"""One write path: every HTTP write reaches one `Engine` method on the engine's writer thread.

The store here is the real SQLite store; `GatedStore` only makes its next write wait at a gate (a
slow disk, a lock held by another process), so a test can look at the server while a write is in
progress: the event loop keeps answering, concurrent requests queue into one transaction, and a
write taken directly through `Engine.ingest` cannot overtake one taken over HTTP.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, Generic, TypeVar

import pytest
from fastapi.testclient import TestClient

from liverec.core.schema import Event, Item
from liverec.serve.app import create_app
from liverec.serve.engine import Engine
from liverec.settings import Settings
from liverec.store import AppendResult
from liverec.store.base import StoreError
from liverec.store.sqlite import SQLiteEventStore
from support.api import Response, event

T = TypeVar("T")
WAIT_S = 20.0  # bounded waits: the CPU is shared, but a hang must become a failure
PROBE_S = 10.0  # how long the event loop may take to answer a probe while a write waits
HOUR = 3600.0


class GatedStore(SQLiteEventStore):
    """The real SQLite store; after `hold`, its next write waits until `release`. With
    ``after_commit`` the append commits first and waits before returning (durable, not yet folded)."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.gate = threading.Event()
        self.gate.set()
        self.waiting = threading.Event()  # set when a write reached the closed gate
        self.after_commit = False
        self.appends: list[list[str]] = []  # the event ids of every append, one list per call
        self._armed = False
        self._arm_lock = threading.Lock()

    def hold(self, after_commit: bool = False) -> None:
        self.after_commit = after_commit
        self.waiting.clear()
        self.gate.clear()
        with self._arm_lock:
            self._armed = True

    def release(self) -> None:
        self.gate.set()

    def _wait(self) -> None:
        with self._arm_lock:
            armed, self._armed = self._armed, False
        if armed:
            self.waiting.set()
            if not self.gate.wait(WAIT_S):
                raise StoreError("the test gate never opened")

    def append(self, events: Sequence[Event]) -> AppendResult:
        self.appends.append([e.event_id for e in events])
        if not self.after_commit:
            self._wait()
        result = super().append(events)
        if self.after_commit:
            self._wait()
        return result

    def upsert_items(self, items: Sequence[Item]) -> int:
        self._wait()
        return super().upsert_items(items)

    def delete_user(self, user_id: str) -> int:
        self._wait()
        return super().delete_user(user_id)


class Call(threading.Thread, Generic[T]):
    """``fn()`` on its own thread (a client, or a direct caller of the engine)."""

    def __init__(self, fn: Callable[[], T]) -> None:
        super().__init__(daemon=True)
        self.fn = fn
        self.result: T | None = None
        self.error: BaseException | None = None
        self.start()

    def run(self) -> None:
        try:
            self.result = self.fn()
        except BaseException as exc:
            self.error = exc

    def get(self, timeout: float = WAIT_S) -> T:
        self.join(timeout)
        assert not self.is_alive(), "still waiting"
        if self.error is not None:
            raise self.error
        assert self.result is not None
        return self.result


def wait_until(check: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + WAIT_S
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.005)


def click(user: str, item: str, event_id: str, ts: float | None = None) -> Event:
    return Event(
        event_id=event_id, user_id=user, item_id=item, type="click", timestamp=ts or time.time() - HOUR
    )


@pytest.fixture
def gated(settings: Settings) -> Iterator[tuple[Engine, GatedStore]]:
    store = GatedStore(settings.data_dir / "events.db")
    engine = Engine(settings, store=store)
    try:
        yield engine, store
    finally:
        store.release()  # never leave a writer waiting
        engine.close()


def on_event_loop() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


class RecordingEngine(Engine):
    """The real engine, noting which write method each write reached and whether on an event loop."""

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        self.calls: list[tuple[str, bool]] = []

    def ingest(self, events: Sequence[Event]) -> AppendResult:
        self.calls.append(("ingest", on_event_loop()))
        return super().ingest(events)

    def upsert_items(self, items: Sequence[Item]) -> int:
        self.calls.append(("upsert_items", on_event_loop()))
        return super().upsert_items(items)

    def delete_user(self, user_id: str) -> dict[str, int]:
        self.calls.append(("delete_user", on_event_loop()))
        return super().delete_user(user_id)


def test_every_http_write_reaches_one_engine_method_off_the_event_loop(settings: Settings) -> None:
    engine = RecordingEngine(settings)
    try:
        with TestClient(create_app(settings, engine=engine)) as client:
            writes: list[tuple[str, Callable[[], Response], str]] = [
                (
                    "events",
                    lambda: client.post("/v1/events", json={"events": [event("U", "a"), event("V", "b")]}),
                    "ingest",
                ),
                ("impressions", lambda: client.get("/v1/users/U/recommendations", params={"k": 1}), "ingest"),
                ("put item", lambda: client.put("/v1/items/m1", json={"title": "Heat"}), "upsert_items"),
                (
                    "post items",
                    lambda: client.post("/v1/items", json={"items": [{"item_id": "m2"}]}),
                    "upsert_items",
                ),
                ("delete user", lambda: client.delete("/v1/users/U"), "delete_user"),
            ]
            for what, write, method in writes:
                before = len(engine.calls)
                r = write()
                assert r.status_code == 200, (what, r.text)
                assert engine.calls[before:] == [(method, False)], what  # once, and not on the loop
    finally:
        engine.close()


WRITES: dict[str, tuple[Callable[[TestClient], Response], Any]] = {
    "events": (
        lambda c: c.post("/v1/events", json=event("W", "a", event_id="w1")),
        {"accepted": 1, "duplicates": 0},
    ),
    "put item": (lambda c: c.put("/v1/items/m1", json={"title": "Heat"}), {"item_id": "m1", "created": True}),
    "post items": (
        lambda c: c.post("/v1/items", json={"items": [{"item_id": "m1"}, {"item_id": "a"}]}),
        {"upserted": 2, "created": 1},
    ),
    "delete user": (lambda c: c.delete("/v1/users/U"), {"events": 2, "user_state": 1}),
    "impressions": (lambda c: c.get("/v1/users/U/recommendations", params={"k": 1}), None),
}


@pytest.mark.parametrize("kind", list(WRITES))
def test_the_event_loop_answers_while_a_write_waits_on_the_store(
    settings: Settings, gated: tuple[Engine, GatedStore], kind: str
) -> None:
    engine, store = gated
    write, expected = WRITES[kind]
    with TestClient(create_app(settings, engine=engine)) as client:
        t = time.time() - HOUR
        body = {"events": [event("U", "a", timestamp=t), event("U", "b", timestamp=t + 1), event("V", "c")]}
        assert client.post("/v1/events", json=body).status_code == 200
        store.hold()
        pending = Call(lambda: write(client))
        assert store.waiting.wait(WAIT_S), "the write never reached the store"
        # while it waits: liveness (no lock) and similar items (the live state's lock) both answer
        probe = Call(lambda: (client.get("/healthz"), client.get("/v1/items/a/similar")))
        probe.join(PROBE_S)
        answered = not probe.is_alive()
        store.release()
        assert answered, f"the event loop was blocked while a {kind} write waited on the store"
        assert [r.status_code for r in probe.get()] == [200, 200]
        r = pending.get()
        assert r.status_code == 200, r.text
        if expected is not None:
            assert r.json() == expected
        else:
            assert [i["item_id"] for i in r.json()["items"]] == ["c"]
            assert sum(s.event.type == "impression" for s in store.iter_events()) == 1


def test_requests_that_arrive_during_a_write_share_the_next_transaction(
    settings: Settings, gated: tuple[Engine, GatedStore]
) -> None:
    engine, store = gated
    with TestClient(create_app(settings, engine=engine)) as client:

        def post(*ids: str) -> Callable[[], Response]:
            body = {"events": [event("u", f"i{n}", event_id=i) for n, i in enumerate(ids)]}
            return lambda: client.post("/v1/events", json=body)

        store.hold()
        first = Call(post("a1"))
        assert store.waiting.wait(WAIT_S)
        queued = []
        for ids in (("x1", "x2"), ("x2", "x3"), ("x4",)):  # one at a time: their queue order is known
            queued.append(Call(post(*ids)))
            wait_until(lambda: engine.writer.queued == len(queued), f"{len(queued)} queued writes")
        store.release()
        assert first.get().json() == {"accepted": 1, "duplicates": 0}
        answers = [c.get().json() for c in queued]
        assert answers == [
            {"accepted": 2, "duplicates": 0},
            {"accepted": 1, "duplicates": 1},  # x2 is credited to the request queued first
            {"accepted": 1, "duplicates": 0},
        ]
        assert store.appends == [["a1"], ["x1", "x2", "x2", "x3", "x4"]]  # one append for all three
        assert [(s.offset, s.event.event_id) for s in store.iter_events()] == [
            (1, "a1"),
            (2, "x1"),
            (3, "x2"),
            (4, "x3"),
            (5, "x4"),
        ]
        assert (engine.state.last_offset, engine.state.events_applied) == (5, 5)  # folded before the answers


def test_a_waiter_that_goes_away_fails_nobody_else_in_its_group(gated: tuple[Engine, GatedStore]) -> None:
    engine, store = gated
    engine.start(models=False)

    async def scenario() -> tuple[AppendResult, AppendResult, asyncio.Task[AppendResult]]:
        store.hold()
        a = asyncio.create_task(engine.ingest_async([click("u", "i", "a")]))
        await asyncio.to_thread(store.waiting.wait, WAIT_S)
        b = asyncio.create_task(engine.ingest_async([click("u", "i", "b")]))
        c = asyncio.create_task(engine.ingest_async([click("u", "i", "c")]))
        while engine.writer.queued < 2:
            await asyncio.sleep(0.005)
        b.cancel()  # its client went away while its batch was queued with c's
        store.release()
        ra, rc = await asyncio.wait_for(asyncio.gather(a, c), WAIT_S)
        return ra, rc, b

    ra, rc, b = asyncio.run(scenario())
    assert b.cancelled()
    assert [s.event.event_id for s in ra.accepted] == ["a"]
    assert [s.event.event_id for s in rc.accepted] == ["c"]
    # a queued write happens even without its waiter: the log, the live state and a retry agree
    assert [s.event.event_id for s in store.iter_events()] == ["a", "b", "c"]
    assert engine.state.events_applied == 3
    assert engine.ingest([click("u", "i", "b")]).duplicates == 1


def test_a_direct_ingest_cannot_overtake_an_http_write_between_its_commit_and_its_fold(
    settings: Settings, gated: tuple[Engine, GatedStore]
) -> None:
    """`Engine.ingest` (the simulator's way in) and POST /v1/events are one writer: memory follows
    log order, so the catalog rows and the user's sequence match what a restart rebuilds."""
    engine, store = gated
    t = time.time() - HOUR
    with TestClient(create_app(settings, engine=engine)) as client:
        store.hold(after_commit=True)  # the HTTP write commits offset 1, then waits before its fold
        http = Call(lambda: client.post("/v1/events", json=event("U", "first", event_id="h", timestamp=t)))
        assert store.waiting.wait(WAIT_S)
        direct = Call(lambda: engine.ingest([click("U", "second", "d", t + 1)]))
        direct.join(1.0)  # a second writer gets its chance to overtake (it must wait instead)
        store.release()
        r = http.get()
        assert r.status_code == 200 and r.json() == {"accepted": 1, "duplicates": 0}
        assert [s.offset for s in direct.get().accepted] == [2]
        live = engine.state.get("U")
        assert live is not None
        live_view = (list(engine.catalog.ids), list(live.items), live.last_offset, engine.state.last_offset)
    rebuilt = Engine(settings).start(models=False)
    try:
        again = rebuilt.state.get("U")
        assert again is not None
        assert live_view == (list(rebuilt.catalog.ids), list(again.items), again.last_offset, 2)
        assert live_view[0] == ["first", "second"]
    finally:
        rebuilt.close()


def test_close_finishes_queued_writes_and_refuses_later_ones(gated: tuple[Engine, GatedStore]) -> None:
    engine, store = gated
    engine.start(models=False)
    store.hold()
    queued = engine.writer.submit([click("u", "i", "e1")])
    assert store.waiting.wait(WAIT_S)

    def close() -> bool:
        engine.writer.close()
        return True

    closing = Call(close)
    closing.join(0.2)
    assert closing.is_alive()  # close waits for the write in progress...
    store.release()
    assert closing.get()
    assert [s.event.event_id for s in queued.result(WAIT_S).accepted] == ["e1"]  # ...which completes
    with pytest.raises(StoreError, match="closed"):
        engine.writer.submit([click("u", "i", "e2")]).result(WAIT_S)
    assert [s.event.event_id for s in store.iter_events()] == ["e1"]
