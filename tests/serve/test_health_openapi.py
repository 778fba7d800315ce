"""/healthz, /metrics, and an OpenAPI document that declares every status code a route returns."""

from __future__ import annotations

import time
from collections import defaultdict
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from support.api import Api, Response, event

HOUR = 3600.0
RECS = "/v1/users/{user_id}/recommendations"


def scrape(api: Api) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    r = api.client.get("/metrics")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/plain")
    out = {}
    for family in text_string_to_metric_families(r.text):
        for s in family.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def value(metrics: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str) -> float:
    return metrics.get((name, frozenset(labels.items())), 0.0)


def test_healthz_reports_what_is_served(api: Api) -> None:
    h = api.health()  # no keys configured, on loopback: every caller gets the admin detail
    assert h["status"] == "ok" and h["version"]
    assert h["model"] == "popularity-cooc"
    assert (h["events"], h["users"], h["items"]) == (0, 0, 0)
    assert h["store"] == api.settings.store_url
    t = time.time() - HOUR
    api.ok(
        event("a", "x", timestamp=t), event("b", "x", timestamp=t), event("b", "y", "impression", timestamp=t)
    )
    h = api.health()
    assert (h["events"], h["users"], h["items"]) == (3, 2, 2)  # the impression made no user, but an item


def test_healthz_never_shows_store_secrets(api: Api, caplog: Any) -> None:
    url = "postgresql://u:secret@h/db?password=x&sslpassword=y"
    api.engine.store.url = url  # what a Postgres store would report
    assert api.health()["store"] == "postgresql://u:***@h/db?password=***&sslpassword=***"
    assert "secret" not in api.client.get("/metrics").text


def test_event_counters_move_by_the_right_amounts(api: Api) -> None:
    t = time.time() - HOUR
    limit = api.settings.server.max_batch_events
    m0 = scrape(api)
    api.ok(event("u", "a", event_id="e1", timestamp=t), event("u", "b", event_id="e1", timestamp=t))
    api.ok(event("u", "c", event_id="e2", timestamp=t), event("u", "a", event_id="e1", timestamp=t))
    api.ok(event("u", "d", timestamp=t))
    invalid = api.post(event("u", "a"), event("", "b"), event("u", "c"), event("u", "d", "rating"))
    assert invalid.status_code == 422
    too_many = api.client.post("/v1/events", json=[event("u", f"i{n}") for n in range(limit + 1)])
    assert too_many.status_code == 413
    m1 = scrape(api)

    def delta(name: str, **labels: str) -> float:
        return value(m1, name, **labels) - value(m0, name, **labels)

    assert delta("liverec_events_accepted_total") == 3
    assert delta("liverec_events_duplicate_total") == 2
    assert delta("liverec_events_rejected_total", reason="invalid") == 4
    assert delta("liverec_events_rejected_total", reason="too_large") == limit + 1
    assert value(m1, "liverec_events_accepted_total") == len(api.log())


def test_recommendation_latency_histogram_and_impression_counter(api: Api) -> None:
    t = time.time() - HOUR
    api.ok(*[event(f"u{n}", f"i{n % 4}", timestamp=t) for n in range(12)])
    m0 = scrape(api)
    served = sum(len(api.recs(f"u{n}", k=3)["items"]) for n in range(5))
    assert api.client.get("/v1/users/u1/recommendations", params={"k": 0}).status_code == 422
    m1 = scrape(api)

    def delta(name: str, **labels: str) -> float:
        return value(m1, name, **labels) - value(m0, name, **labels)

    ok = {"method": "GET", "route": RECS, "status": "200"}
    assert delta("liverec_request_seconds_count", **ok) == 5
    assert delta("liverec_request_seconds_bucket", **ok, le="+Inf") == 5
    assert delta("liverec_request_seconds_sum", **ok) > 0
    assert delta("liverec_request_seconds_count", method="GET", route=RECS, status="422") == 1
    assert delta("liverec_impressions_total") == served == 15
    # per route template, never per URL: no label carries a user id
    assert not [k for k in m1 if any(v.startswith("/v1/users/u") for _, v in k[1])]


def test_store_gauges_match_healthz_and_the_disk(api: Api) -> None:
    t = time.time() - HOUR
    api.ok(*[event(f"u{n % 3}", f"i{n % 5}", timestamp=t) for n in range(10)])
    served = len(api.recs("u0", k=2)["items"])
    m = scrape(api)
    h = api.health()
    assert value(m, "liverec_store_events") == h["events"] == 10 + served
    assert value(m, "liverec_store_items") == h["items"] == 5
    assert value(m, "liverec_store_users") == h["users"] == 3
    db = Path(api.settings.store_url.removeprefix("sqlite:///"))
    on_disk = sum(p.stat().st_size for p in (db, Path(f"{db}-wal"), Path(f"{db}-shm")) if p.exists())
    assert value(m, "liverec_store_bytes") == on_disk > 0


def test_body_limit_rejections_are_measured_as_413(api: Api) -> None:
    body = b'{"events": [' + b" " * api.settings.server.max_body_bytes + b"]}"

    def chunks() -> Any:
        yield body[:1000]
        yield body[1000:]

    api.client.post("/v1/events", content=chunks(), headers={"content-type": "application/json"})
    m = scrape(api)
    assert value(m, "liverec_request_seconds_count", method="POST", route="/v1/events", status="413") == 1
    assert value(m, "liverec_request_seconds_count", method="POST", route="/v1/events", status="500") == 0


# -- OpenAPI ---------------------------------------------------------------------------------------
def trigger_every_status(api: Api) -> dict[tuple[str, str], set[int]]:
    """Make every response each route can give, and record (method, route template) -> codes."""
    seen: dict[tuple[str, str], set[int]] = defaultdict(set)
    c = api.client
    t = time.time() - HOUR
    big = b'{"title": "' + b"x" * api.settings.server.max_body_bytes + b'"}'
    long_id = "z" * 300
    limit = api.settings.server.max_batch_events
    raw = {"content-type": "application/json"}

    def hit(method: str, template: str, r: Response) -> None:
        seen[(method, template)].add(r.status_code)

    ev = "/v1/events"
    hit("post", ev, c.post(ev, json=event("u", "x", timestamp=t)))
    hit("post", ev, c.post(ev, content=b"{", headers=raw))
    hit("post", ev, c.post(ev, content=big, headers=raw))
    hit("post", ev, c.post(ev, json=[event("u", "x")] * (limit + 1)))
    hit("post", ev, c.post(ev, json=event("", "x")))
    hit("post", ev, c.post(ev, content=b"{}", headers={"content-type": "text/plain"}))

    hit("get", RECS, c.get("/v1/users/u/recommendations"))
    hit("get", RECS, c.get("/v1/users/u/recommendations", params={"k": 0}))
    hit("get", RECS, c.get("/v1/users/u/recommendations", params={"k": 10**6}))

    hist = "/v1/users/{user_id}/history"
    hit("get", hist, c.get("/v1/users/someone/history"))
    hit("get", hist, c.get(f"/v1/users/{long_id}/history"))

    user = "/v1/users/{user_id}"
    hit("delete", user, c.delete("/v1/users/someone"))
    hit("delete", user, c.delete(f"/v1/users/{long_id}"))

    one = "/v1/items/{item_id}"
    hit("put", one, c.put("/v1/items/x", json={"title": "X"}))
    hit("put", one, c.put("/v1/items/x", content=b"{", headers=raw))
    hit("put", one, c.put("/v1/items/x", content=big, headers=raw))
    hit("put", one, c.put("/v1/items/x", json={"title": 1}))
    hit("put", one, c.put("/v1/items/x", content=b"{}", headers={"content-type": "text/plain"}))
    hit("get", one, c.get("/v1/items/x"))
    hit("get", one, c.get("/v1/items/nope"))
    hit("get", one, c.get(f"/v1/items/{long_id}"))

    many = "/v1/items"
    hit("post", many, c.post(many, json={"items": [{"item_id": "y"}]}))
    hit("post", many, c.post(many, content=b"", headers=raw))
    hit("post", many, c.post(many, content=big, headers=raw))
    hit("post", many, c.post(many, json={"items": [{"item_id": "y"}] * (limit + 1)}))
    hit("post", many, c.post(many, json={"items": [{"item_id": ""}]}))
    hit("post", many, c.post(many, content=b"{}", headers={"content-type": "text/plain"}))
    hit("get", many, c.get(many, params={"limit": 2}))
    hit("get", many, c.get(many, params={"after": "no-such-cursor"}))

    sim = "/v1/items/{item_id}/similar"
    hit("get", sim, c.get("/v1/items/x/similar"))
    hit("get", sim, c.get("/v1/items/nope/similar"))
    hit("get", sim, c.get("/v1/items/x/similar", params={"k": 0}))

    search = "/v1/search"
    hit("get", search, c.get(search, params={"q": "x"}))
    hit("get", search, c.get(search, params={"q": ""}))
    hit("post", search, c.post(search, json={"q": "x", "filters": {"tags": ["X"]}}))
    hit("post", search, c.post(search, content=b"{", headers=raw))
    hit("post", search, c.post(search, content=big, headers=raw))
    hit("post", search, c.post(search, json={"q": "x", "k": 0}))
    hit("post", search, c.post(search, content=b"{}", headers={"content-type": "text/plain"}))

    hit("get", "/healthz", c.get("/healthz"))

    models, promote, rollback = "/v1/models", "/v1/models/{version}/promote", "/v1/models/rollback"
    for version in ("v000001", "v000002"):  # metadata is all that listing and promoting read
        folder = api.settings.registry_path / "versions" / version
        folder.mkdir(parents=True)
        (folder / "meta.json").write_text('{"metrics": {}, "config": {"n_items": 1}}')
    hit("get", models, c.get(models))
    hit("post", rollback, c.post(rollback))  # 409: nothing to roll back to
    hit("post", promote, c.post("/v1/models/v000009/promote"))  # 404
    hit("post", promote, c.post("/v1/models/latest/promote"))  # 422
    hit("post", promote, c.post("/v1/models/v000001/promote"))
    hit("post", promote, c.post("/v1/models/v000002/promote"))
    hit("post", rollback, c.post(rollback))
    broken = api.settings.registry_path / "versions" / "v000003"
    broken.mkdir()
    (broken / "meta.json").write_text("{not json")
    hit("post", promote, c.post("/v1/models/v000003/promote"))  # 409: the registry cannot read it
    hit("get", "/metrics", c.get("/metrics"))

    board, recent = "/v1/dashboard", "/v1/dashboard/users/{user_id}/events"
    hit("get", board, c.get(board))
    hit("get", board, c.get(board, params={"since": -1}))
    hit("get", recent, c.get("/v1/dashboard/users/u/events"))
    hit("get", recent, c.get(f"/v1/dashboard/users/{long_id}/events"))

    # the store goes away: every write answers 503 and says nothing was written
    api.engine.store.close()
    for method, template, r in [
        ("post", ev, c.post(ev, json=event("u", "x", timestamp=t))),
        ("get", RECS, c.get("/v1/users/u/recommendations")),
        ("get", search, c.get(search, params={"q": "x"})),
        ("post", search, c.post(search, json={"q": "x"})),
        ("delete", user, c.delete("/v1/users/u")),
        ("put", one, c.put("/v1/items/x", json={"title": "X"})),
        ("post", many, c.post(many, json={"items": [{"item_id": "y"}]})),
        ("get", recent, c.get("/v1/dashboard/users/u/events")),
    ]:
        assert r.status_code == 503, (method, template, r.text)
        assert "store" in r.json()["detail"]
        hit(method, template, r)
    return seen


def test_openapi_declares_every_status_code_a_route_returns(api: Api) -> None:
    spec = api.client.get("/openapi.json").json()
    declared = {
        (method, path): {int(code) for code in op["responses"]}
        for path, ops in spec["paths"].items()
        for method, op in ops.items()
    }
    triggered = trigger_every_status(api)
    assert set(triggered) == set(declared)  # every route was exercised
    auth = {401, 403}  # with keys configured; this server has none (test_auth.py triggers them)
    for route, codes in triggered.items():
        if route != ("get", "/healthz"):
            assert auth <= declared[route], route
        assert codes == declared[route] - auth, route  # nothing undeclared, nothing declared in vain


def test_store_failure_writes_nothing_and_is_counted(api: Api) -> None:
    t = time.time() - HOUR
    api.ok(event("u", "x", timestamp=t))
    before_state = api.health()["events"]
    m0 = scrape(api)
    api.engine.store.close()
    r = api.post(event("u", "y", timestamp=t), event("v", "y", timestamp=t))
    assert r.status_code == 503
    assert api.health()["events"] == before_state  # live state did not move either
    assert (
        value(scrape(api), "liverec_events_rejected_total", reason="store")
        - value(m0, "liverec_events_rejected_total", reason="store")
        == 2
    )
    assert len(api.log()) == 1  # a fresh connection sees only what was acknowledged


def test_openapi_request_bodies_reference_known_schemas(api: Api) -> None:
    spec = api.client.get("/openapi.json").json()
    schemas = spec["components"]["schemas"]
    refs: list[str] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if isinstance(node.get("$ref"), str):
                refs.append(node["$ref"])
            for v in node.values():
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)

    walk(spec)
    assert refs
    for ref in refs:
        assert ref.startswith("#/components/schemas/")
        assert ref.rsplit("/", 1)[1] in schemas, ref
    body = spec["paths"]["/v1/events"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert {r["$ref"].rsplit("/", 1)[1] for r in body["oneOf"]} == {"Event", "EventBatch"}
    put = spec["paths"]["/v1/items/{item_id}"]["put"]["requestBody"]["content"]["application/json"]["schema"]
    assert put["$ref"].endswith("/ItemIn")
