"""Issue 25 items 2-4 at the HTTP edge: JSON bodies only (415), CORS off unless allowed, free-form
JSON bounded (422, never a 500 later), out-of-range timestamps 422, one 422 shape, and every
accepted id addressable (the id rule of `core.schema.Id` on bodies and paths alike)."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from fastapi.testclient import TestClient

from liverec.serve.app import create_app
from support.api import Api, event, make_settings


def nested(depth: int) -> Any:
    """``depth`` levels of objects around a number."""
    value: Any = 1
    for _ in range(depth):
        value = {"a": value}
    return value


# -- 415 -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", None])
def test_a_body_that_is_not_json_is_415_and_writes_nothing(api: Api, content_type: str | None) -> None:
    headers = {"content-type": content_type} if content_type else {}
    body = b'{"user_id": "u", "item_id": "i", "type": "click"}'
    for method, url in [("POST", "/v1/events"), ("PUT", "/v1/items/x"), ("POST", "/v1/items")]:
        r = api.client.request(method, url, content=body, headers=headers)
        assert r.status_code == 415, (method, url, r.text)
        assert "application/json" in r.json()["detail"]
    assert api.log() == []


def test_json_with_a_charset_is_fine(api: Api) -> None:
    body = b'{"user_id": "u", "item_id": "i", "type": "click"}'
    r = api.client.post(
        "/v1/events", content=body, headers={"content-type": "Application/JSON; charset=utf-8"}
    )
    assert r.status_code == 200, r.text


# -- CORS ------------------------------------------------------------------------------------------
def preflight(client: TestClient, origin: str) -> Any:
    headers = {
        "origin": origin,
        "access-control-request-method": "POST",
        "access-control-request-headers": "content-type",
    }
    return client.options("/v1/events", headers=headers)


def test_cors_is_off_by_default(api: Api) -> None:
    r = api.client.get("/healthz", headers={"origin": "https://evil.example"})
    assert "access-control-allow-origin" not in r.headers
    assert "access-control-allow-origin" not in preflight(api.client, "https://evil.example").headers


def test_cors_allows_only_the_listed_origins(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, cors_origins=["https://shop.example"])
    with TestClient(create_app(settings)) as client:
        ok = preflight(client, "https://shop.example")
        assert ok.status_code == 200
        assert ok.headers["access-control-allow-origin"] == "https://shop.example"
        assert "access-control-allow-origin" not in preflight(client, "https://evil.example").headers


# -- bounded free-form JSON --------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("context", "msg"),
    [
        ({"x": nested(300)}, "nested deeper than 8"),
        ({"x": nested(8)}, "nested deeper than 8"),  # the context itself is level 1: 9 levels
        ({"blob": "x" * 20_000}, "bytes as JSON"),
    ],
)
def test_context_beyond_the_limits_is_422(api: Api, context: dict[str, Any], msg: str) -> None:
    r = api.post(event("u", "i", context=context))
    assert r.status_code == 422, r.text
    assert msg in r.json()["errors"][0]["errors"][0]["msg"]
    assert api.log() == []


def test_context_within_the_limits_is_stored(api: Api) -> None:
    api.ok(event("u", "i", context={"x": nested(7), "blob": "x" * 1000}))
    assert api.log()[0].event.context.model_extra == {"x": nested(7), "blob": "x" * 1000}


@pytest.mark.parametrize("attributes", [{"x": nested(300)}, {"x": nested(8)}, {"blob": "y" * 20_000}])
def test_item_attributes_beyond_the_limits_are_422(api: Api, attributes: dict[str, Any]) -> None:
    assert api.client.put("/v1/items/x", json={"attributes": attributes}).status_code == 422
    r = api.client.post("/v1/items", json={"items": [{"item_id": "y", "attributes": attributes}]})
    assert r.status_code == 422, r.text
    assert api.client.get("/v1/items/x").status_code == 404


def test_the_limits_are_settings(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, max_json_depth=3, max_json_bytes=100)
    with TestClient(create_app(settings)) as client:
        deep = {"user_id": "u", "item_id": "i", "type": "click", "context": {"x": nested(3)}}
        assert client.post("/v1/events", json=deep).status_code == 422
        big = deep | {"context": {"x": "z" * 200}}
        assert client.post("/v1/events", json=big).status_code == 422
        fine = deep | {"context": {"x": nested(2)}}
        assert client.post("/v1/events", json=fine).status_code == 200


# -- no 5xx on any input -----------------------------------------------------------------------------
@pytest.mark.parametrize("ts", [1e20, "1e20", 1e23, 1e300, -1e300, "-1e300", 2**70, 1e15])
def test_out_of_range_timestamps_are_422(api: Api, ts: Any) -> None:
    r = api.post(event("u", "i", timestamp=ts))
    assert r.status_code == 422, r.text
    assert r.json()["errors"][0]["errors"][0]["field"] == "timestamp"
    r = api.client.put("/v1/items/x", json={"created_at": ts})
    assert r.status_code == 422, r.text
    r = api.client.post("/v1/items", json={"items": [{"item_id": "x", "created_at": ts}]})
    assert r.status_code == 422, r.text


@pytest.mark.parametrize(
    ("url", "body"),
    [
        ("/v1/events", event("u", "i", context={"position": False})),
        ("/v1/events", event("u", "i", context={"propensity": True})),
        ("/v1/events", event("u", "i", "rating", value=True)),
        ("/v1/items/x", {"available": 0}),
        ("/v1/items", {"items": [{"item_id": "x", "available": 1}]}),
        ("/v1/events", {"events": []}),
    ],
    ids=["position-false", "propensity-true", "value-true", "available-0", "batch-available-1", "empty"],
)
def test_strict_types_and_empty_batches_are_422(api: Api, url: str, body: Any) -> None:
    method = "PUT" if url == "/v1/items/x" else "POST"
    r = api.client.request(method, url, json=body)
    assert r.status_code == 422, r.text


def test_every_422_has_one_shape(api: Api) -> None:
    shapes = [
        api.client.get("/v1/users/u/recommendations", params={"k": 0}),
        api.client.get("/v1/users/u/recommendations", params={"k": 10**6}),
        api.client.get("/v1/users/u/recommendations", params={"k": "x"}),
        api.client.get("/v1/items/x/similar", params={"k": 10**6}),
        api.client.delete("/v1/users/%20%20"),  # blank once stripped
        api.post(event("", "i")),
    ]
    for r in shapes:
        assert r.status_code == 422, r.text
        body = r.json()
        assert isinstance(body["detail"], str) and body["detail"], body
        assert [set(e) for e in body["errors"]] == [{"index", "errors"}], body
        assert all(set(f) == {"field", "msg"} for f in body["errors"][0]["errors"]), body
    assert shapes[1].json()["errors"][0]["errors"][0]["field"] == "k"


def test_openapi_declares_max_k_and_non_empty_batches(api: Api) -> None:
    spec = api.client.get("/openapi.json").json()
    recs = spec["paths"]["/v1/users/{user_id}/recommendations"]["get"]
    k = next(p for p in recs["parameters"] if p["name"] == "k")
    assert k["schema"]["maximum"] == api.settings.server.max_k
    assert spec["components"]["schemas"]["EventBatch"]["properties"]["events"]["minItems"] == 1


# -- every accepted id is addressable ----------------------------------------------------------------
@pytest.mark.parametrize("bad", ["a/b", ".", "..", " .. ", "a\x01b", "tab\there", "del\x7f", "nul\x00"])
def test_ids_that_cannot_round_trip_a_url_path_are_422_with_the_rule(api: Api, bad: str) -> None:
    for body in (event(bad, "i"), event("u", bad), event("u", "i", event_id=bad)):
        r = api.post(body)
        assert r.status_code == 422, (bad, r.text)
        assert "not a valid id" in r.json()["errors"][0]["errors"][0]["msg"]
    # in a path they are refused too, or never reach the route (clients resolve "." and "..")
    assert api.client.put(f"/v1/items/{quote(bad, safe='')}", json={}).status_code in (404, 405, 422)
    r = api.client.post("/v1/items", json={"items": [{"item_id": bad}]})
    assert r.status_code == 422 and "not a valid id" in r.text
    assert api.log() == []


@pytest.mark.parametrize(
    "good", ["padded", "  padded  ", "a b", "100%", "a?b#c", "é-ü", "...", ".hidden", "x" * 256, "a+b"]
)
def test_every_accepted_id_is_read_and_deleted_through_its_url(api: Api, good: str) -> None:
    """Stripped the same way in a body and in a path: what was stored is what the URL addresses."""
    api.ok(event(good, good))
    path = quote(good, safe="")
    r = api.client.put(f"/v1/items/{path}", json={"title": "T"})
    assert r.status_code == 200, r.text
    assert r.json()["item_id"] == good.strip()
    got = api.client.get(f"/v1/items/{path}")
    assert got.status_code == 200 and got.json()["title"] == "T"
    assert api.client.get(f"/v1/items/{path}/similar").status_code == 200
    assert api.client.get(f"/v1/users/{path}/recommendations").status_code == 200
    deleted = api.client.delete(f"/v1/users/{path}")
    assert deleted.status_code == 200, deleted.text
    assert deleted.json()["events"] >= 1  # the click (and the impressions just served)
    assert not [s for s in api.log() if s.event.user_id == good.strip()]
