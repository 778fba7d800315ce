"""The EventStore contract (`liverec.store.base`), checked against every backend.

Each test gets a fresh store: ``memory://``, SQLite in a temp dir, a Postgres schema of its own, a
Redis key prefix of its own (see tests/conftest.py).
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from liverec.core.schema import Event, Item, StoredEvent
from liverec.store import EventStore, embedding_key, open_store
from liverec.store.base import user_hash

BACKENDS = ["memory", "sqlite", "postgres", "redis"]
DURABLE = ["sqlite", "postgres", "redis"]
T0 = 1_700_000_000.0


def _url(request: pytest.FixtureRequest, backend: str, tmp_path: Path) -> str:
    if backend == "memory":
        return "memory://"
    if backend == "sqlite":
        return f"sqlite:///{tmp_path / 'events.db'}"
    return str(request.getfixturevalue(f"{backend}_store_url"))


@pytest.fixture(params=BACKENDS)
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    return _url(request, request.param, tmp_path)


@pytest.fixture(params=DURABLE)
def durable_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    return _url(request, request.param, tmp_path)


@pytest.fixture
def store(store_url: str) -> Iterator[EventStore]:
    with open_store(store_url) as s:
        yield s


def ev(eid: str, user: str = "u1", item: str = "i1", ts: float = T0, **kw: object) -> Event:
    return Event(event_id=eid, user_id=user, item_id=item, type=kw.pop("type", "click"), timestamp=ts, **kw)


def ids(stored: list[StoredEvent]) -> list[str]:
    return [s.event.event_id for s in stored]


def offsets(stored: list[StoredEvent]) -> list[int]:
    return [s.offset for s in stored]


# -- the log ------------------------------------------------------------------------------------
def test_empty_store(store: EventStore) -> None:
    assert store.last_offset() == 0
    assert store.read() == []
    assert list(store.iter_events()) == []
    assert store.count_events() == 0
    assert store.user_history("nobody") == []
    assert store.list_items() == []
    assert store.get_item("nothing") is None
    assert store.get_embeddings(["k"]) == {}
    assert store.stats().events == store.stats().items == store.stats().users == 0
    assert store.append([]).accepted == []


def test_offsets_positive_increasing_contiguous(store: EventStore) -> None:
    first = store.append([ev(f"a{i}", ts=T0 + i) for i in range(5)])
    second = store.append([ev(f"b{i}", ts=T0 + 10 + i) for i in range(3)])
    offs = offsets(first.accepted) + offsets(second.accepted)
    assert offs[0] >= 1
    assert offs == list(range(offs[0], offs[0] + 8))  # no duplicates: no holes
    assert store.last_offset() == offs[-1]
    assert store.count_events() == 8
    assert ids(store.read()) == [f"a{i}" for i in range(5)] + [f"b{i}" for i in range(3)]
    assert store.read() == first.accepted + second.accepted  # what append reported is what is stored


def test_read_after_and_paging(store: EventStore) -> None:
    appended = store.append([ev(f"e{i:02d}", user=f"u{i % 3}", ts=T0 + i) for i in range(23)]).accepted
    assert store.read(0, 5) == appended[:5]
    assert store.read(appended[4].offset, 5) == appended[5:10]
    assert store.read(appended[-1].offset) == []
    pages = list(store.pages(0, page=7))
    assert [len(p) for p in pages] == [7, 7, 7, 2]
    assert [s for p in pages for s in p] == appended
    assert list(store.iter_events(after=appended[9].offset, page=4)) == appended[10:]


def test_duplicates_within_batch_and_against_log(store: EventStore) -> None:
    r = store.append([ev("a", item="x"), ev("b"), ev("a", item="y"), ev("c"), ev("b")])
    assert ids(r.accepted) == ["a", "b", "c"] and r.duplicates == 2
    assert store.read()[0].event.item_id == "x"  # the first occurrence wins
    assert store.get_item("y") is None  # a duplicate leaves no trace, not even a stub item
    r = store.append([ev("b"), ev("d"), ev("a", item="z"), ev("d")])
    assert ids(r.accepted) == ["d"] and r.duplicates == 3
    last = store.last_offset()
    r = store.append([ev("a"), ev("c")])
    assert r.accepted == [] and r.duplicates == 2
    assert ids(store.read()) == ["a", "b", "c", "d"]
    assert store.get_item("z") is None
    # duplicates may burn offsets (SQLite's do), but never move the log backwards
    assert store.append([ev("e")]).accepted[0].offset > max(last, store.read()[-2].offset)


@settings(
    max_examples=25, deadline=None, database=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    batches=st.lists(
        st.lists(st.tuples(st.integers(0, 9), st.integers(0, 2), st.integers(0, 3)), max_size=12),
        min_size=1,
        max_size=4,
    )
)
def test_log_is_first_occurrence_of_each_id(
    store: EventStore, batches: list[list[tuple[int, int, int]]]
) -> None:
    tag = uuid.uuid4().hex[:8]  # the store is shared by all examples: each works in its own ids
    start = store.last_offset()
    seen: set[str] = set()
    expected: list[Event] = []
    for n, batch in enumerate(batches):
        events = [ev(f"{tag}-{e}", user=f"{tag}-u{u}", item=f"i{i}", ts=T0 + n) for e, u, i in batch]
        fresh = []
        for e in events:
            if e.event_id not in seen:
                seen.add(e.event_id)
                fresh.append(e)
        result = store.append(events)
        assert [s.event for s in result.accepted] == fresh
        assert result.duplicates == len(events) - len(fresh)
        expected += fresh
    log = store.read(start, 1000)
    assert [s.event for s in log] == expected
    assert offsets(log) == sorted(set(offsets(log)))
    for u in range(3):
        history = store.user_history(f"{tag}-u{u}")
        assert [s.event for s in history] == [e for e in expected if e.user_id == f"{tag}-u{u}"]


def test_event_fields_round_trip_exactly(store: EventStore) -> None:
    events = [
        ev("none", type="click", value=None, ts=0.0),
        ev("zero", type="rating", value=0.0, ts=T0 + 0.1),
        ev("tiny", type="rating", value=-1e-300, ts=1234567890.123456789),
        ev("big", type="dwell", value=1.7976931348623157e308, ts=98765432109.87654),
        ev("third", type="like", value=1 / 3, ts=T0 + 1 / 7),
        ev(
            "ctx",
            type="impression",
            context={
                "request_id": "req-ü",
                "position": 0,
                "propensity": 0.1,
                "policy": "eps",
                "score": 0.3333333333333333,
                "nested": {"list": [1, 2.5, "ß", None], "flag": True},
            },
        ),
        # every character the id rule (`core.schema.Id`) lets through: no control characters, no '/'
        ev("ユーザー😀 ä b?c#d%e:{f}\\\"'\u2028", user="用户 . tab\u00a0", item="項目 {x}:*[y]"),
    ]
    stored = store.append(events).accepted
    for got in (store.read(), stored, list(store.iter_events())):
        assert [s.event for s in got] == events
    back = {s.event.event_id: s.event for s in store.read()}
    assert back["none"].value is None and back["zero"].value == 0.0
    assert back["third"].timestamp == T0 + 1 / 7 and back["tiny"].value == -1e-300
    ctx = back["ctx"].context
    assert (ctx.request_id, ctx.position, ctx.propensity) == ("req-ü", 0, 0.1)
    assert ctx.model_extra == {
        "score": 0.3333333333333333,
        "nested": {"list": [1, 2.5, "ß", None], "flag": True},
    }
    assert [s.event for s in store.user_history(events[-1].user_id)] == [events[-1]]  # ids are stripped
    assert store.get_item("項目 {x}:*[y]") is not None
    assert store.stats().users == 2
    assert store.delete_user(events[-1].user_id) == 1 and store.stats().users == 1


# -- users --------------------------------------------------------------------------------------
def test_user_history_oldest_first_and_limit(store: EventStore) -> None:
    store.append([ev(f"e{i}", user=f"u{i % 2}", ts=T0 + i) for i in range(10)])
    mine = store.user_history("u1")
    assert ids(mine) == ["e1", "e3", "e5", "e7", "e9"]
    assert offsets(mine) == sorted(offsets(mine))
    assert store.user_history("u1", limit=2) == mine[-2:]
    assert store.user_history("u1", limit=50) == mine
    assert store.user_history("u1", limit=0) == []
    assert store.user_history("u9") == []


def test_delete_user_removes_only_that_user_and_never_reuses_offsets(store: EventStore) -> None:
    store.append([ev(f"e{i}", user=f"u{i % 3}", ts=T0 + i) for i in range(9)])  # u2 owns the last one
    last = store.last_offset()
    assert store.delete_user("u2") == 3
    assert store.delete_user("u2") == 0 and store.delete_user("never-seen") == 0
    assert store.user_history("u2") == []
    assert ids(store.read()) == ["e0", "e1", "e3", "e4", "e6", "e7"]
    assert ids(store.user_history("u0")) == ["e0", "e3", "e6"]
    assert store.count_events() == 6 and store.stats().users == 2
    assert store.last_offset() == last  # the highest offset ever written, deleted or not
    again = store.append([ev("e2", user="u2"), ev("new", user="u0")])  # a forgotten id is new again
    assert ids(again.accepted) == ["e2", "new"]
    assert min(offsets(again.accepted)) > last
    assert store.list_items() != []  # the catalog is not the user's


def test_each_deletion_is_recorded_hashed_with_its_highest_offset(store: EventStore) -> None:
    store.append([ev(f"e{i}", user=f"u{i % 3}", ts=T0 + i) for i in range(9)])  # u1: offsets 2, 5, 8
    assert store.deletions() == [] and store.pending_deletions() == []
    before = time.time()
    assert store.delete_user("u1") == 3
    assert store.delete_user("never-seen") == 0
    first, nobody = store.deletions()
    assert first.seq < nobody.seq and store.deletions(after=first.seq) == [nobody]
    assert first.user_hash == user_hash("u1") == hashlib.sha256(b"u1").hexdigest()
    assert "u1" not in repr(first)  # never the raw id
    assert (first.events, first.max_offset) == (3, 8) and first.pending
    assert before - 1 <= first.deleted_at <= time.time() + 1
    assert (nobody.events, nobody.max_offset) == (0, 0) and not nobody.pending  # nothing to retrain
    assert store.pending_deletions() == [first]
    store.delete_user("u2")
    assert store.honour_deletions(first.seq, at=T0) == 1  # up to a seq: later ones stay pending
    assert store.honour_deletions(first.seq) == 0
    assert store.deletions()[0].honoured_at == T0
    assert [d.user_hash for d in store.pending_deletions()] == [user_hash("u2")]


# -- catalog ------------------------------------------------------------------------------------
def test_events_create_stub_items_in_first_seen_order(store: EventStore) -> None:
    store.upsert_items([Item(item_id="known", title="Known", created_at=5.0)])
    store.append(
        [
            ev("a", item="s2", ts=T0 + 2),
            ev("b", item="known", ts=T0),
            ev("c", item="s1", ts=T0 + 1),
            ev("d", item="s2", ts=T0 + 9),
        ]
    )
    assert [i.item_id for i in store.list_items()] == ["known", "s2", "s1"]
    stub = store.get_item("s2")
    assert stub is not None
    assert (stub.title, stub.text, stub.tags, stub.attributes, stub.available) == ("", "", [], {}, True)
    assert stub.created_at == T0 + 2  # the first event's time
    known = store.get_item("known")
    assert known is not None and known.title == "Known" and known.created_at == 5.0  # not overwritten
    store.append([ev("e", item="s1", ts=T0 + 50)])
    assert [i.item_id for i in store.list_items()] == ["known", "s2", "s1"]
    assert store.get_item("s1") == Item.model_construct(
        item_id="s1", title="", text="", tags=[], attributes={}, created_at=T0 + 1, available=True
    )


def test_upsert_items_counts_new_replaces_fields_keeps_order(store: EventStore) -> None:
    a1 = Item(item_id="A", title="one", tags=["x"], created_at=1.0)
    b = Item(item_id="B", text="ßé 😀", attributes={"price": 9.99, "n": {"k": [1, None]}}, available=False)
    a2 = Item(item_id="A", title="two", tags=["y", "z"], created_at=2.5)
    assert store.upsert_items([a1, b, a2]) == 2  # A counted once; the last A wins, at A's place
    assert store.list_items() == [a2, b]
    assert store.upsert_items([Item(item_id="C"), b.model_copy(update={"title": "B2"})]) == 1
    assert [i.item_id for i in store.list_items()] == ["A", "B", "C"]
    got = store.get_item("B")
    assert got is not None and got.title == "B2" and got.available is False and got.text == "ßé 😀"
    assert got.attributes == {"price": 9.99, "n": {"k": [1, None]}}
    assert store.upsert_items([]) == 0
    assert store.get_item("D") is None
    assert store.stats().items == 3


# -- embeddings and stats -----------------------------------------------------------------------
def test_embeddings_round_trip_float32_exactly(store: EventStore) -> None:
    rng = np.random.default_rng(7)
    special = np.array([0.0, -0.0, 1e-45, -3.4028235e38, np.pi, 1 / 3], dtype=np.float32)
    k1, k2 = embedding_key("enc", "hello"), embedding_key("enc", "world")
    assert k1 != k2 and k1 != embedding_key("enc2", "hello")
    normal = rng.standard_normal(384)  # float64 in: float32 out
    store.put_embeddings({k1: special, k2: normal})
    got = store.get_embeddings([k1, k2, "missing"])
    assert set(got) == {k1, k2}
    assert got[k1].dtype == np.float32 and got[k1].tobytes() == special.tobytes()
    assert got[k2].dtype == np.float32 and np.array_equal(got[k2], normal.astype(np.float32))
    store.put_embeddings({k1: np.ones(3, dtype=np.float32)})
    assert store.get_embeddings([k1])[k1].tolist() == [1.0, 1.0, 1.0]
    assert store.get_embeddings([]) == {}


def test_stats(store: EventStore) -> None:
    store.append([ev(f"e{i}", user=f"u{i % 4}", item=f"i{i % 5}") for i in range(20)])
    store.upsert_items([Item(item_id="extra")])
    s = store.stats()
    assert (s.events, s.items, s.users) == (20, 6, 4)
    store.delete_user("u0")
    s = store.stats()
    assert (s.events, s.items, s.users) == (15, 6, 3)


# -- durability ---------------------------------------------------------------------------------
def test_reopened_store_sees_everything(durable_url: str) -> None:
    vec = np.arange(8, dtype=np.float32) / 3
    with open_store(durable_url) as first:
        first.upsert_items([Item(item_id="i0", title="t", created_at=3.0)])
        first.append([ev(f"e{i}", user=f"u{i % 2}", item=f"i{i % 3}", ts=T0 + i) for i in range(6)])
        first.put_embeddings({"k": vec})
        assert first.delete_user("u1") == 3  # u1 owns the last event: its offset must stay used
        log, items, last = first.read(), first.list_items(), first.last_offset()
    with open_store(durable_url) as second:
        assert second.read() == log and second.list_items() == items
        assert [(d.events, d.max_offset) for d in second.deletions()] == [(3, 6)]
        assert second.last_offset() == last and second.count_events() == 3
        assert second.get_embeddings(["k"])["k"].tobytes() == vec.tobytes()
        assert second.append([ev("e1")]).accepted[0].offset > last  # deleted, so new again
        assert second.append([ev("e0")]).duplicates == 1


# -- concurrency --------------------------------------------------------------------------------
def test_threads_append_while_a_reader_follows(store: EventStore) -> None:
    """Two writers (re-sending each batch once, as a retrying client would) and a follower.

    The follower must never get an offset <= one it has seen, and whenever it has caught up it
    must hold whole batches only (a batch becomes visible at once)."""
    batch, rounds = 5, 30
    done = threading.Event()
    reports: list[tuple[int, str]] = []
    seen: list[StoredEvent] = []
    errors: list[str] = []

    def fail(message: str) -> None:
        if len(errors) < 10:
            errors.append(message)

    def write(tag: str) -> None:
        for n in range(rounds):
            events = [ev(f"{tag}-{n}-{i}", user=f"{tag}{i % 2}", item=f"i{n % 4}") for i in range(batch)]
            result = store.append(events)
            again = store.append(events)
            if len(result.accepted) != batch or again.accepted or again.duplicates != batch:
                fail(f"{tag} round {n}: {len(result.accepted)} accepted, {again}")
            reports.extend((s.offset, s.event.event_id) for s in result.accepted)

    def follow() -> None:
        after = 0
        while True:
            finished = done.is_set()
            got = store.read(after, limit=3)
            if got:
                if got[0].offset <= after or offsets(got) != sorted(set(offsets(got))):
                    fail(f"after {after} got offsets {offsets(got)}")
                after = got[-1].offset
                seen.extend(got)
            else:
                if len(seen) % batch:
                    fail(f"caught up at {after} holding {len(seen)} events: a partial batch")
                if finished:
                    return

    writers = [threading.Thread(target=write, args=(t,)) for t in ("w1", "w2")]
    reader = threading.Thread(target=follow)
    for t in [*writers, reader]:
        t.start()
    for t in writers:
        t.join()
    done.set()
    reader.join()
    assert errors == []
    assert len(seen) == 2 * rounds * batch
    assert sorted((s.offset, s.event.event_id) for s in seen) == sorted(reports)
    assert len({s.event.event_id for s in seen}) == len(seen)
    assert seen == store.read(0, 10_000)


WRITER = """
import json, sys
from liverec.core.schema import Event
from liverec.store import open_store
url, tag, rounds = sys.argv[1], sys.argv[2], int(sys.argv[3])
out = []
with open_store(url) as store:
    print("ready", flush=True)
    sys.stdin.readline()  # start together, so the two really overlap
    for n in range(rounds):
        events = [Event(event_id=f"{tag}-{n}-{i}", user_id=tag, item_id=f"i{i}", type="click")
                  for i in range(4)]
        events.append(Event(event_id=f"shared-{n}", user_id="both", item_id="s", type="click"))
        out += [[s.offset, s.event.event_id] for s in store.append(events).accepted]
print(json.dumps(out))
"""


def test_processes_append_while_a_reader_follows(durable_url: str) -> None:
    """Two processes append to one store, racing for one shared event id per round."""
    rounds = 40
    with open_store(durable_url) as store:
        procs = [
            subprocess.Popen(
                [sys.executable, "-c", WRITER, durable_url, tag, str(rounds)],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for tag in ("p1", "p2")
        ]
        for p in procs:
            assert p.stdout is not None and p.stdout.readline() == "ready\n"
        for p in procs:
            assert p.stdin is not None
            p.stdin.write("go\n")
            p.stdin.flush()
        seen: list[StoredEvent] = []
        after = 0
        while True:
            finished = all(p.poll() is not None for p in procs)
            got = store.read(after, limit=7)
            if got:
                assert got[0].offset > after and offsets(got) == sorted(set(offsets(got)))
                after = got[-1].offset
                seen.extend(got)
            elif finished:
                break
        outputs = [p.communicate(timeout=60) for p in procs]  # closes stdin too
        assert [p.returncode for p in procs] == [0, 0], [err for _, err in outputs]
        reports = [tuple(r) for out, _ in outputs for r in json.loads(out)]
        assert sorted((s.offset, s.event.event_id) for s in seen) == sorted(reports)
        seen_ids = [s.event.event_id for s in seen]
        assert len(seen_ids) == len(set(seen_ids)) == rounds * 9  # 4 + 4 own, and 1 shared per round
        assert {i for i in seen_ids if i.startswith("shared-")} == {f"shared-{n}" for n in range(rounds)}
        assert seen == store.read(0, 10_000)


def test_wait_for_events_wakes_on_an_append_from_another_connection(store_url: str) -> None:
    """What a replica sleeps in: `wait_for_events` times out on a quiet log, returns at once when
    the log is already past the offset, and wakes when another writer (its own connection; the
    same object for memory://) appends."""
    with open_store(store_url) as waiter:
        writer = waiter if store_url == "memory://" else open_store(store_url)
        try:
            t0 = time.monotonic()
            assert waiter.wait_for_events(0, 0.2) is False
            assert time.monotonic() - t0 >= 0.19
            woke: list[tuple[bool, float]] = []

            def wait() -> None:
                woke.append((waiter.wait_for_events(0, 20.0), time.monotonic()))

            thread = threading.Thread(target=wait)
            thread.start()
            time.sleep(0.3)  # the waiter is asleep by now
            assert not woke
            appended = time.monotonic()
            writer.append([ev("e1")])
            thread.join(timeout=20)
            assert woke and woke[0][0] is True
            assert woke[0][1] - appended < 5.0  # woken by the append, not by the 20 s timeout
            assert waiter.wait_for_events(0, 0.0) is True  # already past: no wait
            assert waiter.wait_for_events(1, 0.05) is False
        finally:
            if writer is not waiter:
                writer.close()
