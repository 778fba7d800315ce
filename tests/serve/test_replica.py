"""Replicas on one shared store (`serve.replica`): each server folds the others' events into its own
live state, counts and policy statistics, in offset order, exactly once, and forgets users another
replica deleted. Run against the real Postgres and Redis (and two engines on one SQLite file)."""

from __future__ import annotations

import random
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from liverec.core.schema import Event
from liverec.serve.engine import Engine
from liverec.serve.replica import replica_status
from liverec.settings import PolicySettings, SearchSettings, ServerSettings, Settings
from liverec.store import open_store
from support.api import start_server
from support.world import wait_until

T0 = 1_700_000_000.0


@pytest.fixture(params=["sqlite", "postgres", "redis"])
def shared_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'shared.db'}"
    return str(request.getfixturevalue(f"{request.param}_store_url"))


def settings_for(url: str, data_dir: Path) -> Settings:
    """A replica: Thompson sampling (so policy statistics are folded too), no search, no snapshots."""
    return Settings(
        data_dir=data_dir,
        store_url=url,
        server=ServerSettings(follow_wait_s=0.5, snapshots=False),
        search=SearchSettings(enabled=False),
        policy=PolicySettings(name="thompson"),
    )


@pytest.fixture
def replicas(shared_url: str, tmp_path: Path) -> Iterator[list[Engine]]:
    engines = [Engine(settings_for(shared_url, tmp_path / f"r{i}")).start(models=False) for i in range(2)]
    yield engines
    for e in engines:
        e.close()


def clicks(user: str, items: list[str], t: float, **kw: Any) -> list[Event]:
    return [
        Event(user_id=user, item_id=item, type="click", timestamp=t + j, **kw) for j, item in enumerate(items)
    ]


def folded(e: Engine) -> dict[str, Any]:
    """What a replica has folded, by ids (catalog rows may differ between replicas)."""
    with e._lock:
        ids = e.catalog.ids
        users = {u: [ids[r] for r in st.items] for u, st in e.state.users.items()}
        seen = {u: sorted(ids[r] for r in st.seen) for u, st in e.state.users.items()}
        n = len(e.catalog)
        counts = dict(zip(ids, e.popularity.counts(n).round(9).tolist(), strict=True))
        return {"users": users, "seen": seen, "counts": counts, "events": e.state.events_applied}


def policy_stats(e: Engine) -> dict[str, tuple[int, int]]:
    """The serving policy's per-item statistics (Thompson: impressions, clicks), by item id."""
    counts: Any = e.recommender.policy.counts  # type: ignore[attr-defined]
    ids = e.catalog.ids
    rows = np.arange(len(ids))
    shown, clicked = counts.get(rows)
    return {ids[r]: (int(shown[r]), int(clicked[r])) for r in rows.tolist() if shown[r]}


def test_a_click_on_one_replica_reaches_the_other_replicas_next_list(replicas: list[Engine]) -> None:
    a, b = replicas
    a.ingest(clicks("fan", ["x1", "x2"], T0) + clicks("crowd", ["x1", "x2", "x3"], T0 + 10))
    wait_until(lambda: b.state.get("fan") is not None, "replica B to fold A's events")
    assert folded(b) == folded(a)
    before = [i.item_id for i in b.recommend("fan", 3, log_impressions=False).items]
    a.ingest(clicks("fan", ["x3"], T0 + 20))  # accepted by A, visible on B
    wait_until(lambda: "x3" in folded(b)["seen"].get("fan", []), "B to see the click A took")
    after = [i.item_id for i in b.recommend("fan", 3, log_impressions=False).items]
    assert "x3" not in after and before != after  # B's list follows the live sequence A extended
    status = replica_status(b)
    assert status["following"] is True and status["lag_offsets"] == 0
    assert status["folded_from_others"] >= 6


def test_concurrent_writers_fold_the_same_log_in_the_same_order_exactly_once(
    replicas: list[Engine], shared_url: str, tmp_path: Path
) -> None:
    """Both replicas take writes at once (some duplicates sent to both): afterwards each holds what a
    fresh server replaying the log builds, and every event is counted once."""
    rng = random.Random(3)
    items = [f"i{k}" for k in range(30)]
    batches: list[list[Event]] = []
    for b in range(40):  # a served list, a click naming it, sometimes a purchase
        user, shown, t = f"u{rng.randrange(12)}", rng.sample(items, 3), T0 + 20 * b
        ctx = {"request_id": f"r{b}", "policy": "thompson", "propensity": 0.5}
        evs = [
            Event(event_id=f"e{b}-{j}", user_id=user, item_id=item, type="impression", timestamp=t,
                  context={**ctx, "position": j})
            for j, item in enumerate(shown)
        ]  # fmt: skip
        j = rng.randrange(3)
        evs.append(Event(event_id=f"e{b}-c", user_id=user, item_id=shown[j], type="click", timestamp=t + 1,
                         context={"request_id": f"r{b}", "position": j}))  # fmt: skip
        if rng.random() < 0.3:
            evs.append(Event(event_id=f"e{b}-p", user_id=user, item_id=rng.choice(items), type="purchase",
                             timestamp=t + 2))  # fmt: skip
        batches.append(evs)

    def write(engine: Engine, mine: list[list[Event]]) -> None:
        for evs in mine:
            engine.ingest(evs)

    a, b = replicas
    to_a, to_b = batches[0::2] + batches[:6], batches[1::2] + batches[:6]  # the first six go to both
    threads = [threading.Thread(target=write, args=(e, m)) for e, m in ((a, to_a), (b, to_b))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    total = sum(len(evs) for evs in batches)
    for e in (a, b):
        wait_until(lambda e=e: e.state.events_applied == total, "both replicas to fold the whole log")  # type: ignore[misc]
    fresh = Engine(settings_for(shared_url, tmp_path / "fresh")).start(models=False, background=False)
    try:
        assert folded(a) == folded(b) == folded(fresh)
        assert folded(a)["events"] == total  # duplicates across replicas accepted once
        stats = [policy_stats(e) for e in (a, b, fresh)]
        assert stats[0] == stats[1] == stats[2] and sum(s for s, _ in stats[0].values()) > 0
    finally:
        fresh.close()


def test_a_user_deleted_on_one_replica_is_forgotten_by_the_other(replicas: list[Engine]) -> None:
    a, b = replicas
    a.ingest(clicks("leaver", ["y1", "y2", "y3"], T0) + clicks("stayer", ["y1"], T0 + 5))
    wait_until(lambda: b.state.get("leaver") is not None, "B to fold the events")
    assert a.delete_user("leaver")["events"] == 3
    wait_until(lambda: b.state.get("leaver") is None, "B to forget the user A deleted")
    assert folded(b)["counts"] == folded(a)["counts"]  # what they added to popularity is gone too
    assert replica_status(b)["deletions_followed"] == 1


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["postgres", "redis"])
def test_kill_9_of_a_replica_mid_write_loses_no_acknowledged_event_and_the_other_serves_on(
    backend: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    """Two `liverec serve` processes on one store; a client writes to A without pause and A is
    killed with SIGKILL mid-stream. Every batch A acknowledged is in the log, B folds all of it,
    B keeps answering and accepting writes, and A restarted catches up to the same state."""
    url = str(request.getfixturevalue(f"{backend}_store_url"))
    env = {
        "LIVEREC_STORE_URL": url,
        "LIVEREC_SEARCH__ENABLED": "false",
        "LIVEREC_SERVER__FOLLOW_WAIT_S": "0.2",
    }
    a = start_server(tmp_path / "a", tmp_path / "a.log", env)
    b = start_server(tmp_path / "b", tmp_path / "b.log", env)
    acknowledged: list[str] = []
    try:
        stop = threading.Event()

        def write() -> None:
            with httpx.Client(base_url=a.url, timeout=5) as client:
                n = 0
                while not stop.is_set():
                    batch = [
                        {"event_id": f"k{n}-{j}", "user_id": f"u{(n + j) % 7}",
                         "item_id": f"i{(n * 3 + j) % 20}", "type": "click", "timestamp": T0 + n}
                        for j in range(5)
                    ]  # fmt: skip
                    try:
                        r = client.post("/v1/events", json={"events": batch})
                    except httpx.TransportError:
                        return  # A is gone: what it acknowledged before is what must survive
                    if r.status_code == 200:
                        acknowledged.extend(e["event_id"] for e in batch)
                    n += 1

        writer = threading.Thread(target=write)
        writer.start()
        wait_until(lambda: len(acknowledged) >= 200, "A to acknowledge some writes", timeout=60)
        a.kill()  # SIGKILL mid-stream
        stop.set()
        writer.join(timeout=30)
        with open_store(url) as st:
            logged = {s.event.event_id for s in st.iter_events()}
            total = st.last_offset()
        assert set(acknowledged) <= logged  # nothing acknowledged was lost

        def b_events() -> int:
            return int(httpx.get(f"{b.url}/healthz", timeout=5).json()["events"])

        wait_until(lambda: b_events() == len(logged), "B to fold everything A wrote", timeout=30)
        assert httpx.get(f"{b.url}/v1/users/u1/recommendations", timeout=5).status_code == 200
        more = {"user_id": "u1", "item_id": "i99", "type": "click", "timestamp": T0 + 10**5}
        assert httpx.post(f"{b.url}/v1/events", json=more, timeout=5).status_code == 200
        lag = httpx.get(f"{b.url}/healthz", timeout=5).json()["replica"]
        assert lag["following"] is True and lag["lag_offsets"] == 0
        metrics = httpx.get(f"{b.url}/metrics", timeout=5).text
        assert "liverec_replica_lag_offsets 0.0" in metrics

        again = start_server(tmp_path / "a", tmp_path / "a2.log", env)  # restarts, replays, follows
        try:

            def a_events() -> int:
                return int(httpx.get(f"{again.url}/healthz", timeout=5).json()["events"])

            with open_store(url) as st:  # B's list for u1 (its impressions) and B's click
                final = st.last_offset()
            assert final > total
            wait_until(lambda: a_events() == final, "the restarted A to hold B's writes too", 30)
            body = httpx.get(f"{again.url}/v1/users/u1/history", timeout=5).json()
            assert body["items"][-1]["item_id"] == "i99"  # B's write, in A's live sequence
        finally:
            again.stop()
    finally:
        a.kill()
        b.stop()
