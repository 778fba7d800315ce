"""Recommendations react to the very next event, are logged as impressions, and survive a restart."""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from liverec.serve.app import create_app
from liverec.settings import ServerSettings, Settings, StateSettings
from support.api import Api, event

HOUR = 3600.0
DAY = 86_400.0


def world(t: float) -> list[dict[str, Any]]:
    """Five popular items p0..p4 (10, 9, ... clicks by a crowd that clicked nothing else), and three
    fans who clicked x then y (fan0 also w): y and w co-occur with x, the p's never do."""
    events = [event(f"crowd{j}-{n}", f"p{j}", timestamp=t) for j in range(5) for n in range(10 - j)]
    for n in range(3):
        events += [event(f"fan{n}", "x", timestamp=t), event(f"fan{n}", "y", timestamp=t + 1)]
    events.append(event("fan0", "w", timestamp=t + 2))
    return events


def rank(ids: list[str], item: str) -> int:
    return ids.index(item) if item in ids else len(ids)


def test_a_click_changes_the_very_next_recommendations(api: Api) -> None:
    t = time.time() - HOUR
    api.load(world(t))
    api.ok(event("U", "a", timestamp=t))  # U has a history that co-occurs with nothing
    before = api.rec_ids("U", k=20)
    assert "a" not in before  # already seen
    assert before[:5] == ["p0", "p1", "p2", "p3", "p4"]  # no co-occurrence yet: popularity rules

    api.ok(event("U", "x", timestamp=t + 10))
    after = api.rec_ids("U", k=20)  # the very next request

    assert "x" not in after  # seen items are excluded...
    assert "x" in api.rec_ids("U", k=20, exclude_seen="false")  # ...unless the client asks for them
    assert after[0] == "y"  # the strongest co-occurrence of x
    for item in ("y", "w"):  # every item co-occurring with x moved up
        assert rank(after, item) < rank(before, item), (item, before, after)
    assert rank(after, "y") < rank(after, "w")  # 3 fans share y, 1 shares w
    assert after.index("w") < after.index("p0")
    # the popular items kept their order among themselves
    assert [i for i in after if i.startswith("p")] == ["p0", "p1", "p2", "p3", "p4"]


def test_served_lists_are_logged_as_impressions_joined_by_request_id(api: Api) -> None:
    t = time.time() - HOUR
    api.load(world(t))
    api.ok(event("U", "x", timestamp=t))
    impressions_before = sum(s.event.type == "impression" for s in api.log())

    rec = api.recs("U", k=4)
    assert len(rec["items"]) == 4
    log = [s.event for s in api.log() if s.event.type == "impression"]
    assert len(log) == impressions_before + 4
    mine = sorted(
        (e for e in log if e.context.request_id == rec["request_id"]), key=lambda e: e.context.position or 0
    )
    assert [e.item_id for e in mine] == [i["item_id"] for i in rec["items"]]
    assert [e.context.position for e in mine] == [0, 1, 2, 3]
    for e, item in zip(mine, rec["items"], strict=True):
        assert e.user_id == "U"
        assert e.context.policy == rec["policy"] == "greedy"
        assert e.context.model == rec["model"]
        assert e.context.propensity == pytest.approx(item["propensity"])
        assert 0 < e.context.propensity <= 1  # type: ignore[operator]
    assert len({e.event_id for e in mine}) == 4

    second = api.recs("U", k=4)  # a new list gets a new request id and its own impressions
    assert second["request_id"] != rec["request_id"]
    assert sum(s.event.context.request_id == second["request_id"] for s in api.log()) == 4


def test_impressions_are_not_seen_and_not_positive(api: Api) -> None:
    t = time.time() - HOUR
    api.load(world(t))
    api.ok(event("U", "x", timestamp=t))
    first = api.recs("U", k=6)
    state = api.engine.state.get("U")
    assert state is not None
    seq, seen = list(state.items), set(state.seen)

    second = api.recs("U", k=6)  # the first list's impressions neither hid nor boosted anything
    assert [i["item_id"] for i in second["items"]] == [i["item_id"] for i in first["items"]]
    assert [i["score"] for i in second["items"]] == pytest.approx([i["score"] for i in first["items"]])
    assert (list(state.items), set(state.seen)) == (seq, seen)

    # an impression sent by a client is not a positive either: y stays recommended
    api.ok(event("U", "y", "impression", timestamp=t + 5))
    assert "y" in api.rec_ids("U", k=6)
    # whereas a click hides it
    api.ok(event("U", "y", timestamp=t + 6))
    assert "y" not in api.rec_ids("U", k=6)

    # a stranger's list is logged but gives the stranger no live state
    users = api.health()["users"]
    api.recs("stranger", k=3)
    assert api.engine.state.get("stranger") is None
    assert api.health()["users"] == users
    assert sum(s.event.user_id == "stranger" for s in api.log()) == 3


def test_new_users_get_trending_items_by_recent_clicks(api: Api) -> None:
    """Trending decays with the short half-life: 10 clicks three days ago lose to 3 clicks now,
    which the long popularity half-life would rank the other way round."""
    now = time.time() - 60
    clicks = {"old-hit": (10, now - 3 * DAY), "fresh": (3, now), "half-day": (1, now - 12 * HOUR)}
    clicks |= {"fresher": (4, now - 60), "ancient": (40, now - 20 * DAY)}
    events = [
        event(f"{item}-fan{n}", item, timestamp=ts)
        for item, (count, ts) in clicks.items()
        for n in range(count)
    ]
    api.load(events)

    def order(half_life: float) -> list[str]:
        score = {i: c * math.pow(2.0, -(now - ts) / half_life) for i, (c, ts) in clicks.items()}
        return sorted(score, key=lambda i: -score[i])

    expected = order(api.settings.popularity.trending_half_life_s)
    assert expected != order(api.settings.popularity.half_life_s)  # the test tells the two apart
    assert api.rec_ids("newcomer", k=10) == expected
    assert api.rec_ids("another-newcomer", k=2) == expected[:2]

    # trending follows the clicks as they come: a burst now puts "ancient" on top
    api.load([event(f"burst{n}", "ancient", timestamp=now + 1) for n in range(8)])
    assert api.rec_ids("newcomer", k=1) == ["ancient"]


def state_snapshot(api: Api) -> dict[str, tuple[list[str], set[str]]]:
    ids = api.engine.catalog.ids
    return {
        user: ([ids[r] for r in st.items], {ids[r] for r in st.seen})
        for user, st in api.engine.state.users.items()
    }


def test_restart_rebuilds_the_same_state_from_the_log(tmp_path: Path) -> None:
    settings = Settings(
        data_dir=tmp_path / "data",
        server=ServerSettings(max_batch_events=50),
        state=StateSettings(max_sequence=3),
    )
    t = time.time() - HOUR
    users = ("U", "V", "fan1", "newcomer")
    with TestClient(create_app(settings)) as client:
        api = Api(client, settings)
        api.load(world(t))
        history = ["x", "p3", "y", "p4", "w"]  # more than max_sequence positives
        api.load([event("U", item, timestamp=t + 10 + n) for n, item in enumerate(history)])
        api.load([event("V", "p0", "dislike", timestamp=t + 20), event("V", "x", timestamp=t + 21)])
        api.ok(event("V", "only-shown", "impression", timestamp=t + 22))  # an item no one clicked
        before = {u: api.recs(u, k=12) for u in users}
        assert "only-shown" in [i["item_id"] for i in before["newcomer"]["items"]]
        state_before = state_snapshot(api)
        health_before = api.health()
        assert state_before["U"][0] == history[-3:]  # bounded by max_sequence, newest kept
        assert state_before["U"][1] == set(history)  # but everything is remembered as seen
        assert state_before["V"] == (["x"], {"p0", "x"})  # a dislike is seen, not a positive

    with TestClient(create_app(settings)) as client:  # a new process would do exactly this
        api = Api(client, settings)
        assert state_snapshot(api) == state_before
        health = api.health()
        assert health["events"] == len(api.log()) == health_before["events"]  # impressions included
        assert (health["users"], health["items"]) == (health_before["users"], health_before["items"])
        for u in users:
            after = api.recs(u, k=12)
            assert [i["item_id"] for i in after["items"]] == [i["item_id"] for i in before[u]["items"]]
            assert [i["score"] for i in after["items"]] == pytest.approx(
                [i["score"] for i in before[u]["items"]], rel=1e-5
            )
