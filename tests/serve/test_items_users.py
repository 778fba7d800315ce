"""The catalog routes (PUT/POST/GET items, similar items, availability) and DELETE /v1/users/{id}."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from liverec.core.schema import Event, Item
from liverec.serve.app import create_app
from liverec.serve.engine import Engine
from liverec.settings import RulesSettings, Settings
from liverec.store import open_store
from liverec.store.memory import MemoryEventStore
from support.api import NOW, Api, event

HOUR = 3600.0


def item(item_id: str, **fields: Any) -> dict[str, Any]:
    return {"item_id": item_id, "title": f"Title of {item_id}"} | fields


# -- PUT / GET -------------------------------------------------------------------------------------
def test_put_creates_then_replaces(api: Api) -> None:
    r = api.client.put(
        "/v1/items/m1", json={"title": "Heat", "tags": ["crime"], "attributes": {"year": 1995}}
    )
    assert r.status_code == 200
    assert r.json() == {"item_id": "m1", "created": True}
    got = api.client.get("/v1/items/m1").json()
    assert (got["title"], got["tags"], got["attributes"], got["available"]) == (
        "Heat",
        ["crime"],
        {"year": 1995},
        True,
    )

    r = api.client.put("/v1/items/m1", json={"title": "Heat (1995)", "text": "LA heist", "available": False})
    assert r.json() == {"item_id": "m1", "created": False}
    got = api.client.get("/v1/items/m1").json()
    assert got["title"] == "Heat (1995)"
    assert got["text"] == "LA heist"
    assert got["tags"] == []  # replaced, not merged
    assert got["available"] is False
    with open_store(api.settings.store_url) as st:  # durable, not just in memory
        stored = st.get_item("m1")
    assert stored is not None
    assert stored.title == "Heat (1995)"
    assert [i.item_id for i in st_items(api)] == ["m1"]


def st_items(api: Api) -> list[Any]:
    with open_store(api.settings.store_url) as st:
        return st.list_items()


@pytest.mark.parametrize(
    ("body", "status", "field"),
    [
        (b'{"title": "x", "attributes": {"score": NaN}}', 400, None),
        (b'{"title": "x", "created_at": Infinity}', 400, None),
        (b'{"title": ', 400, None),
        (b"", 400, None),
        (b'{"title": 5}', 422, "title"),
        (b'{"title": "x", "colour": "red"}', 422, "colour"),
        (b'{"tags": "comedy"}', 422, "tags"),
        (b'{"available": "sometimes"}', 422, "available"),
        (b'{"created_at": "last week"}', 422, "created_at"),
        (b'{"item_id": "other"}', 422, "item_id"),
        (b"[1, 2]", 422, "(item)"),
    ],
)
def test_put_rejects_bad_items_and_writes_nothing(
    api: Api, body: bytes, status: int, field: str | None
) -> None:
    api.client.put("/v1/items/keep", json={"title": "kept"})
    r = api.client.put("/v1/items/m1", content=body, headers={"content-type": "application/json"})
    assert r.status_code == status, r.text
    detail = r.json()["detail"]
    assert isinstance(detail, str) and detail
    if field is not None:
        fields = {e["field"] for err in r.json()["errors"] for e in err["errors"]}
        assert field in fields
    assert api.client.get("/v1/items/m1").status_code == 404
    assert [i.item_id for i in st_items(api)] == ["keep"]


def test_put_rejects_a_whitespace_id(api: Api) -> None:
    r = api.client.put("/v1/items/%20%20", json={"title": "blank"})
    assert r.status_code == 422
    assert st_items(api) == []


def test_get_unknown_item_is_404(api: Api) -> None:
    r = api.client.get("/v1/items/nope")
    assert r.status_code == 404
    assert "nope" in r.json()["detail"]


# -- POST batch ------------------------------------------------------------------------------------
def test_post_batch_upserts_and_counts_created(api: Api) -> None:
    api.client.put("/v1/items/a", json={"title": "old a"})
    r = api.client.post("/v1/items", json={"items": [item("a"), item("b", tags=["t"]), item("c")]})
    assert r.status_code == 200
    assert r.json() == {"upserted": 3, "created": 2}
    assert api.client.get("/v1/items/a").json()["title"] == "Title of a"
    assert [i.item_id for i in st_items(api)] == ["a", "b", "c"]  # creation order kept


def test_post_batch_is_all_or_nothing_with_per_item_errors(api: Api) -> None:
    batch = [
        item("a"),
        item("b", tags="not-a-list"),
        item("c"),
        item("", title="no id"),
        {"title": "no id at all"},
    ]
    r = api.client.post("/v1/items", json={"items": batch})
    assert r.status_code == 422
    body = r.json()
    assert "3 of 5" in body["detail"]
    errors = {e["index"]: {f["field"] for f in e["errors"]} for e in body["errors"]}
    assert errors == {1: {"tags"}, 3: {"item_id"}, 4: {"item_id"}}
    for i in ("a", "b", "c"):
        assert api.client.get(f"/v1/items/{i}").status_code == 404
    assert st_items(api) == []


@pytest.mark.parametrize(
    "body",
    [b'{"items": [{"item_id": "a", "attributes": {"x": NaN}}]}', b"{", b"", b"  "],
)
def test_post_batch_malformed_is_400(api: Api, body: bytes) -> None:
    r = api.client.post("/v1/items", content=body, headers={"content-type": "application/json"})
    assert r.status_code == 400
    assert st_items(api) == []


@pytest.mark.parametrize("body", [{"items": "a"}, {"things": []}, {"items": [], "more": 1}, [item("a")]])
def test_post_batch_wrong_shape_is_422(api: Api, body: Any) -> None:
    r = api.client.post("/v1/items", json=body)
    assert r.status_code == 422
    assert st_items(api) == []


def test_post_batch_over_the_limit_is_413(api: Api) -> None:
    limit = api.settings.server.max_batch_events
    r = api.client.post("/v1/items", json={"items": [item(f"i{n}") for n in range(limit + 1)]})
    assert r.status_code == 413
    assert st_items(api) == []


# -- stubs, availability, similar ------------------------------------------------------------------
def test_an_event_for_an_unknown_item_creates_a_stub(api: Api) -> None:
    ts = time.time() - HOUR
    api.ok(event("u", "brand-new", timestamp=ts))
    r = api.client.get("/v1/items/brand-new")
    assert r.status_code == 200
    stub = r.json()
    assert stub["item_id"] == "brand-new"
    assert stub["available"] is True
    assert stub["created_at"] == pytest.approx(ts)
    # a later PUT fills the stub in place: no second row
    assert api.client.put("/v1/items/brand-new", json={"title": "Now described"}).json()["created"] is False
    assert api.client.get("/v1/items/brand-new").json()["title"] == "Now described"
    assert [i.item_id for i in st_items(api)] == ["brand-new"]


def cooc_world(t: float) -> list[dict[str, Any]]:
    """x co-occurs with y (3 users), z (1 user); w and v are popular but never clicked with x."""
    events = [event(f"yfan{n}", i, timestamp=t + k) for n in range(3) for k, i in enumerate(("x", "y"))]
    events += [event("zfan", "x", timestamp=t), event("zfan", "z", timestamp=t + 1)]
    events += [event(f"crowd{n}", "w", timestamp=t) for n in range(6)]
    events += [event(f"crowd{n}", "v", timestamp=t) for n in range(6, 9)]
    return events


def test_similar_items_order_and_404(api: Api) -> None:
    api.load(cooc_world(time.time() - HOUR))
    r = api.client.get("/v1/items/x/similar", params={"k": 10})
    assert r.status_code == 200
    body = r.json()
    ids = [i["item_id"] for i in body["items"]]
    assert body["item_id"] == "x"
    assert ids == ["y", "z", "w", "v"]  # co-occurrence first, then popularity for the rest
    assert "x" not in ids
    scores = [i["score"] for i in body["items"]]
    assert scores == sorted(scores, reverse=True)
    assert api.client.get("/v1/items/x/similar", params={"k": 1}).json()["items"][0]["item_id"] == "y"

    assert api.client.get("/v1/items/nope/similar").status_code == 404
    assert api.client.get("/v1/items/x/similar", params={"k": 0}).status_code == 422
    too_many = api.settings.server.max_k + 1
    assert api.client.get("/v1/items/x/similar", params={"k": too_many}).status_code == 422


def test_unavailable_items_are_never_recommended(api: Api) -> None:
    t = time.time() - HOUR
    api.load(cooc_world(t))
    api.ok(event("U", "x", timestamp=t + 5))
    assert api.rec_ids("U", k=10)[0] == "y"  # y is the natural top pick for U...
    assert api.rec_ids("newcomer", k=10)[0] == "w"  # ...and w for a stranger
    assert "y" in [i["item_id"] for i in api.client.get("/v1/items/x/similar").json()["items"]]

    for hidden in ("y", "w"):
        assert api.client.put(f"/v1/items/{hidden}", json={"available": False}).status_code == 200
    hidden_ids = {"y", "w"}
    for user in ("U", "newcomer", "yfan0", "crowd1"):
        for exclude_seen in ("true", "false"):
            assert not hidden_ids & set(api.rec_ids(user, k=50, exclude_seen=exclude_seen)), user
    similar = {i["item_id"] for i in api.client.get("/v1/items/x/similar", params={"k": 50}).json()["items"]}
    assert not hidden_ids & similar
    # events on a hidden item are still accepted, and do not make it available again
    api.ok(event("someone", "y", timestamp=t + 6))
    assert "y" not in api.rec_ids("newcomer", k=50)

    api.client.post("/v1/items", json={"items": [item("y", available=True)]})
    assert "y" in api.rec_ids("U", k=10)  # back once available: the exclusion above was real


def test_hidden_items_stay_hidden_after_a_restart(settings: Settings) -> None:
    with TestClient(create_app(settings)) as client:
        api = Api(client, settings)
        api.load(cooc_world(time.time() - HOUR))
        before = api.rec_ids("newcomer", k=50)
        assert "w" in before
        api.client.put("/v1/items/w", json={"available": False})
    with TestClient(create_app(settings)) as client:
        again = Api(client, settings)
        assert again.rec_ids("newcomer", k=50) == [i for i in before if i != "w"]


# -- DELETE /v1/users/{id} -------------------------------------------------------------------------
def test_delete_user_forgets_their_events_and_state(api: Api) -> None:
    t = time.time() - HOUR
    api.load(cooc_world(t))
    api.load([event("U", "x", timestamp=t + 5), event("U", "v", "dislike", timestamp=t + 6)])
    api.load([event("V", "x", timestamp=t + 5), event("V", "z", timestamp=t + 7)])
    personal = api.rec_ids("U", k=10)
    trending = api.rec_ids("stranger", k=10)
    assert personal != trending  # otherwise "falls back to trending" proves nothing
    v_recs = api.recs("V", k=10)
    v_log = [s for s in api.log() if s.event.user_id == "V"]
    v_state = api.engine.state.get("V")
    assert v_state is not None
    v_seq, v_seen = list(v_state.items), set(v_state.seen)
    n_events = sum(s.event.user_id == "U" for s in api.log())  # 2 events + 1 list of impressions
    assert n_events == 2 + len(personal)

    r = api.client.delete("/v1/users/U")
    assert r.status_code == 200
    assert r.json() == {"events": n_events, "user_state": 1}
    assert not [s for s in api.log() if s.event.user_id == "U"]
    assert api.engine.state.get("U") is None
    # a new user's list, as any stranger's now (trending without U's clicks, so not `trending`)
    assert api.rec_ids("U", k=10) == api.rec_ids("another-stranger", k=10)

    assert [s for s in api.log() if s.event.user_id == "V"] == v_log  # V untouched
    assert (list(v_state.items), set(v_state.seen)) == (v_seq, v_seen)
    # V's list may change: U's clicks left popularity and co-occurrence (exactly: see the
    # fresh-engine test below); it holds the same items, V's own state being untouched
    v_again = api.recs("V", k=10)
    assert {i["item_id"] for i in v_again["items"]} == {i["item_id"] for i in v_recs["items"]}

    # deleting again: nothing left but the impressions of the list just served
    r = api.client.delete("/v1/users/U")
    assert r.json() == {"events": len(trending), "user_state": 0}
    assert api.client.delete("/v1/users/nobody").json() == {"events": 0, "user_state": 0}


def test_delete_user_survives_a_restart(settings: Settings) -> None:
    t = time.time() - HOUR
    with TestClient(create_app(settings)) as client:
        api = Api(client, settings)
        api.load(
            [event("U", "a", timestamp=t), event("U", "b", timestamp=t + 1), event("V", "a", timestamp=t)]
        )
        assert api.client.delete("/v1/users/U").json() == {"events": 2, "user_state": 1}
    with TestClient(create_app(settings)) as client:
        again = Api(client, settings)
        assert again.engine.state.get("U") is None
        assert again.engine.state.get("V") is not None
        assert again.health()["events"] == 1


# -- deletion: exact removal from every live statistic ----------------------------------------------
def _engine_on(settings: Settings, items: list[Item], events: list[Event]) -> Engine:
    store = MemoryEventStore()
    store.upsert_items(items)  # one catalog order for both engines: rows compare one to one
    engine = Engine(settings, store=store).start(models=False, background=False)
    for k in range(0, len(events), 97):  # several folds, as live traffic would
        engine.ingest(events[k : k + 97])
    return engine


def test_delete_user_counts_equal_a_fresh_engine_fed_the_log_without_them(tmp_path: Path) -> None:
    """Popularity, trending, item use counts, co-occurrence neighbours and the sequential rules
    after DELETE equal those of an engine that never saw the user; so do everyone's lists."""
    rng = np.random.default_rng(3)
    settings = Settings(data_dir=tmp_path, rules=RulesSettings(weight=0.5))
    items = [Item(item_id=f"i{k}", title=f"item {k}", created_at=1.0) for k in range(30)]
    t = time.time() - 2 * 86_400.0
    kinds = ["click", "click", "purchase", "add_to_cart", "dislike", "like"]
    events = []
    for n in range(1_500):
        user = "gone" if n % 7 == 0 else f"u{rng.integers(25)}"
        kind = str(rng.choice(kinds))
        item_id = f"i{rng.integers(30)}"
        events.append(Event(user_id=user, item_id=item_id, type=kind, timestamp=t + n * 60.0))
        if n % 11 == 0:  # the same item again, one step deeper
            events.append(Event(user_id=user, item_id=item_id, type="purchase", timestamp=t + n * 60.0 + 1))
    deleted = _engine_on(settings, items, events)
    fresh = _engine_on(settings, items, [e for e in events if e.user_id != "gone"])
    assert deleted.delete_user("gone")["events"] == sum(e.user_id == "gone" for e in events)

    n, now = len(items), t + 2_000 * 60.0
    a, b = deleted.popularity, fresh.popularity
    np.testing.assert_allclose(a.popular.at(now, n), b.popular.at(now, n), rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(a.trending.at(now, n), b.trending.at(now, n), rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(a.counts(n), b.counts(n), rtol=1e-12, atol=1e-12)
    assert {r: list(d) for r, d in a.recent_users.items() if d} == {
        r: list(d) for r, d in b.recent_users.items() if d
    }
    assert deleted.rules is not None and fresh.rules is not None
    fresh.rules._merge()
    np.testing.assert_allclose(deleted.rules.counts.toarray(), fresh.rules.counts.toarray(), atol=1e-9)
    assert (deleted.rules.known[:n] == fresh.rules.known[:n]).all()
    assert "gone" not in deleted.rules._recent and "gone" not in deleted.state.users
    for user in ["u1", "u7", "stranger"]:
        got = deleted.recommend(user, k=10, log_impressions=False)
        want = fresh.recommend(user, k=10, log_impressions=False)
        assert [i.item_id for i in got.items] == [i.item_id for i in want.items]
        np.testing.assert_allclose([i.score for i in got.items], [i.score for i in want.items], rtol=1e-6)
    # a user who comes back starts fresh: nothing of before is in their state
    deleted.ingest([Event(user_id="gone", item_id="i3", type="click", timestamp=now)])
    st = deleted.state.get("gone")
    assert st is not None and list(st.items) == [deleted.catalog.row("i3")]
    health = deleted.pending_deletions()
    assert health["count"] == 1 and 0 <= health["oldest_age_s"] < 60
    deleted.close()
    fresh.close()


def test_healthz_lists_pending_deletions_without_ids(api: Api) -> None:
    api.load([event("secret-user", "a"), event("secret-user", "b")])
    api.client.delete("/v1/users/secret-user")
    r = api.client.get("/healthz")
    assert "secret-user" not in r.text
    assert r.json()["deletions_pending"]["count"] == 1


def test_history_is_the_live_sequence_the_model_reads(api: Api) -> None:
    api.ok(
        event("h", "a", "click", timestamp=NOW - 300),
        event("h", "a", "purchase", timestamp=NOW - 290),  # deepens the same engagement
        event("h", "b", "rating", value=4, timestamp=NOW - 200),
        event("h", "c", "skip", timestamp=NOW - 100),  # touched, not an engagement
    )
    r = api.client.get("/v1/users/h/history")
    assert r.status_code == 200, r.text
    out = r.json()
    assert [(i["item_id"], i["type"], i["stars"]) for i in out["items"]] == [
        ("a", "purchase", None),
        ("b", "rating", 4),
    ]
    assert out["items"][0]["timestamp"] == pytest.approx(NOW - 300) and out["seen"] == 3
    assert api.client.get("/v1/users/nobody/history").json() == {"user_id": "nobody", "items": [], "seen": 0}
    assert api.client.get("/v1/users/a%2Fb/history").status_code in (404, 422)
    api.client.delete("/v1/users/h")
    assert api.client.get("/v1/users/h/history").json()["items"] == []
