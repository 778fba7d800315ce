"""GET/POST /v1/search over HTTP: ranking, the live index, the click join, learning, bad queries."""

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from tests.support.api import Api, event, make_settings

from liverec.serve.app import create_app
from liverec.settings import SearchSettings, Settings

CATALOG = {
    "heat": ("Heat", ["Action", "Crime"]),
    "diehard": ("Die Hard", ["Action", "Thriller"]),
    "speed": ("Speed", ["Action", "Thriller"]),
    "toystory": ("Toy Story", ["Animation", "Comedy"]),
    "casablanca": ("Casablanca", ["Drama", "Romance"]),
    "alien": ("Alien", ["Horror", "Sci-Fi"]),
}


def put_catalog(api: Api) -> None:
    for item_id, (title, tags) in CATALOG.items():
        assert api.client.put(f"/v1/items/{item_id}", json={"title": title, "tags": tags}).status_code == 200


def search(api: Api, q: str, **params: Any) -> dict[str, Any]:
    r = api.client.get("/v1/search", params={"q": q, **params})
    assert r.status_code == 200, r.text
    out: dict[str, Any] = r.json()
    return out


def ids(result: dict[str, Any]) -> list[str]:
    return [i["item_id"] for i in result["items"]]


def no_exploration(tmp_path: Path, **search: Any) -> Settings:
    s = make_settings(tmp_path / "data")
    return s.model_copy(update={"search": SearchSettings(epsilon=0.0, **search)})


@pytest.fixture
def api(tmp_path: Path) -> Iterator[Api]:
    """No randomized lists: these tests read the ranking (exploration has its own test)."""
    settings = no_exploration(tmp_path)
    with TestClient(create_app(settings)) as client:
        yield Api(client, settings)


def test_randomized_lists_are_logged_as_such(tmp_path: Path) -> None:
    settings = make_settings(tmp_path / "data")
    settings = settings.model_copy(update={"search": SearchSettings(epsilon=0.5, shuffle_depth=3)})
    with TestClient(create_app(settings)) as client:
        api = Api(client, settings)
        put_catalog(api)
        policies = {search(api, "action", k=3)["policy"] for _ in range(40)}
        assert policies == {"shuffle", "shuffle:random"}
        logged = {s.event.context.policy for s in api.log() if s.event.type == "impression"}
        assert logged == policies


def test_results_match_the_query_and_are_logged_as_search_impressions(api: Api) -> None:
    put_catalog(api)
    out = search(api, "romance drama", user_id="u1", k=3)
    assert ids(out)[0] == "casablanca" and len(out["items"]) == 3
    assert [i["position"] for i in out["items"]] == [0, 1, 2]
    assert all(0 < i["propensity"] <= 1 for i in out["items"])
    logged = [s.event for s in api.log() if s.event.type == "impression"]
    assert [e.item_id for e in logged] == ids(out)
    for pos, ev in enumerate(logged):
        ctx = ev.context
        assert (ctx.surface, ctx.query, ctx.request_id, ctx.position) == (
            "search",
            "romance drama",
            out["request_id"],
            pos,
        )
        assert ctx.propensity == out["items"][pos]["propensity"] and ev.user_id == "u1"


def test_a_new_item_is_searchable_when_its_put_returns_and_gone_when_unavailable(api: Api) -> None:
    put_catalog(api)
    assert "zorro" not in ids(search(api, "masked swordsman zorro"))
    api.client.put("/v1/items/zorro", json={"title": "The Mask of Zorro", "tags": ["Adventure"]})
    assert ids(search(api, "zorro"))[0] == "zorro"
    api.client.put("/v1/items/zorro", json={"title": "The Mask of Zorro", "available": False})
    assert "zorro" not in ids(search(api, "zorro", k=10))
    api.client.put("/v1/items/heat", json={"title": "Heat", "tags": ["Western"]})  # changed text
    assert ids(search(api, "western"))[0] == "heat"


def test_anonymous_search_works_and_keeps_what_the_user_has_seen(api: Api) -> None:
    put_catalog(api)
    assert ids(search(api, "thriller", k=2))  # no user_id
    anonymous = [s.event for s in api.log() if s.event.type == "impression"]
    assert anonymous and all(e.user_id == "/anonymous" for e in anonymous)
    api.ok(event("u1", "alien"))
    assert "alien" in ids(search(api, "horror sci-fi", user_id="u1", k=3))


def test_filters_by_tags_and_availability(api: Api) -> None:
    put_catalog(api)
    api.client.put(
        "/v1/items/gone", json={"title": "Gone Thriller", "tags": ["Thriller"], "available": False}
    )
    body = {"q": "action", "k": 10, "filters": {"tags": ["thriller"]}}
    r = api.client.post("/v1/search", json=body)
    assert r.status_code == 200, r.text
    assert sorted(ids(r.json())) == ["diehard", "speed"]
    r = api.client.post("/v1/search", json={**body, "filters": {"tags": ["Thriller"], "available": False}})
    assert ids(r.json()) == ["gone"]
    r = api.client.post("/v1/search", json={**body, "filters": {"tags": ["Thriller"], "available": None}})
    assert sorted(ids(r.json())) == ["diehard", "gone", "speed"]


def test_bad_queries_are_a_clear_422_and_write_nothing(api: Api) -> None:
    put_catalog(api)
    before = api.counts()
    for q in ["", "   ", "x" * 10_240, "tab\there", "bell\x07"]:
        r = api.client.get("/v1/search", params={"q": q})
        assert r.status_code == 422 and "query" in r.json()["detail"], (q[:20], r.text)
        r = api.client.post("/v1/search", json={"q": q})
        assert r.status_code == 422 and "query" in r.json()["detail"], (q[:20], r.text)
    bad = [
        {"q": "x", "k": 0},
        {"q": "x", "user_id": "a/b"},
        {"q": 5},
        {"q": "x", "filters": {"tags": "x"}},
        {},
    ]
    for body in bad:
        assert api.client.post("/v1/search", json=body).status_code == 422, body
    assert api.client.get("/v1/search").status_code == 422  # no q
    assert api.client.get("/v1/search", params={"q": "x", "k": 10_000}).status_code == 422
    assert api.counts() == before


def test_a_click_on_a_result_moves_it_up_the_next_search(api: Api) -> None:
    put_catalog(api)
    first = ids(search(api, "action", user_id="u1", k=3))
    target = first[-1]
    for n in range(3):
        out = search(api, "action", user_id=f"v{n}", k=3)
        pos = ids(out).index(target)
        api.ok(event(f"v{n}", target, context={"request_id": out["request_id"], "position": pos}))
    assert ids(search(api, "action", user_id="u1", k=3))[0] == target
    assert api.health()["search"]["clicks"] == 3


def test_the_ranker_publishes_behind_its_gate_and_a_restart_replays_the_same_learning(tmp_path: Path) -> None:
    settings = no_exploration(tmp_path, gate_every=4)
    with TestClient(create_app(settings)) as client:
        api = Api(client, settings)
        put_catalog(api)
        for n in range(12):  # people who search "action" pick the crime film
            out = search(api, "action", user_id=f"w{n}", k=3)
            pos = ids(out).index("heat")
            api.ok(
                event(f"w{n}", "heat", "purchase", context={"request_id": out["request_id"], "position": pos})
            )
        before = api.health()["search"]
        assert before["clicks"] == 12 and before["published"] + before["rejected"] == 3
    with TestClient(create_app(settings)) as client:
        after = Api(client, settings).health()["search"]
    assert {k: after[k] for k in ("weights", "clicks", "published", "rejected")} == {
        k: before[k] for k in ("weights", "clicks", "published", "rejected")
    }


def test_a_click_naming_a_position_that_shows_another_item_teaches_nothing(api: Api) -> None:
    put_catalog(api)
    out = search(api, "action", user_id="u1", k=3)
    wrong = ids(out)[1]
    api.ok(event("u1", wrong, context={"request_id": out["request_id"], "position": 0}))
    api.ok(event("u1", "casablanca", context={"request_id": "no-such-request"}))
    assert api.health()["search"]["clicks"] == 0


def test_search_can_be_switched_off(tmp_path: Path) -> None:
    s = make_settings(tmp_path / "data")
    s = s.model_copy(update={"search": SearchSettings(enabled=False)})
    with TestClient(create_app(s)) as client:
        r = client.get("/v1/search", params={"q": "x"})
        assert r.status_code == 404 and "disabled" in r.json()["detail"]
