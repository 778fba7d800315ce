"""The dashboard's data (`GET /v1/dashboard`, `GET /v1/dashboard/users/{id}/events`): the numbers for a
known set of events (CTR and reward by policy, model and cohort, exploration, rejected, duplicate and
held-back events, quarantines, new items' exposure, rates and latency), gate decisions and rollback
in the models view, and who may see them. The page itself is driven in a real browser in
`test_dashboard_browser.py`."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from liverec.core.catalog import Catalog
from liverec.core.rewards import Rewards
from liverec.core.schema import Event, StoredEvent
from liverec.serve.app import create_app
from liverec.serve.dashboard import QualityBoard, Tally
from liverec.serve.traffic import Sampler, quantile
from liverec.settings import AuthSettings, FilterConfig, RewardWeights, ServerSettings, Settings
from liverec.trainer.status import write_status
from support.api import Api, event

W = RewardWeights()
T = time.time() - 120.0


def board(api: Api, **params: Any) -> dict[str, Any]:
    r = api.client.get("/v1/dashboard", params=params)
    assert r.status_code == 200, r.text
    out: dict[str, Any] = r.json()
    return out


def by_key(groups: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {g["key"]: g for g in groups}


def shown(user: str, items: list[str], rid: str, ts: float = T, **ctx: Any) -> list[dict[str, Any]]:
    """A client-side list's impressions (as the demo's control cohort logs them)."""
    return [
        event(user, item, "impression", timestamp=ts, context={"request_id": rid, "position": p, **ctx})
        for p, item in enumerate(items)
    ]


def test_ctr_and_reward_by_policy_model_and_cohort(api: Api) -> None:
    control = {"policy": "random", "surface": "demo-control", "cohort": "control", "propensity": 0.01}
    api.ok(*shown("c1", ["a", "b", "c", "d"], "r1", **control))
    api.ok(event("c1", "b", "click", timestamp=T + 1, context={"request_id": "r1", "cohort": "control"}))
    api.ok(*shown("c2", ["a", "e"], "r2", **control))
    api.ok(
        event("c2", "e", "click", timestamp=T + 1, context={"request_id": "r2"}),
        event("c2", "e", "purchase", timestamp=T + 2, context={"request_id": "r2"}),
    )
    # a user of the liverec cohort: their own events name it, the server's impressions do not
    api.ok(event("L", "a", "click", timestamp=T, context={"cohort": "liverec"}))
    rec = api.recs("L", k=3)
    assert len(rec["items"]) == 3 and rec["policy"] == "greedy"
    first = rec["items"][0]["item_id"]
    api.ok(event("L", first, "click", timestamp=time.time(), context={"request_id": rec["request_id"]}))
    api.ok(event("L", first, "skip", timestamp=time.time(), context={"request_id": rec["request_id"]}))
    # not attributable: an unknown request, and a click past the window of r1's impressions
    api.ok(event("c1", "c", "click", timestamp=T, context={"request_id": "nope"}))
    window = api.settings.join.window_s
    api.ok(event("c1", "a", "click", timestamp=T + window + 5, context={"request_id": "r1"}))

    q = board(api)["quality"]
    policy, cohort, model = by_key(q["by_policy"]), by_key(q["by_cohort"]), by_key(q["by_model"])
    assert (policy["random"]["impressions"], policy["random"]["clicks"]) == (6, 2)
    assert policy["random"]["ctr"] == pytest.approx(2 / 6)
    assert policy["random"]["reward"] == pytest.approx(2 * W.click + W.purchase)
    assert policy["random"]["feedback"] == 3 and policy["random"]["exploration_share"] == 1.0
    assert (policy["greedy"]["impressions"], policy["greedy"]["clicks"]) == (3, 1)
    assert policy["greedy"]["reward"] == pytest.approx(W.click + W.skip)
    assert policy["greedy"]["exploration_share"] == 0.0  # propensity 1: no exploration
    assert set(cohort) == {"control", "liverec"}
    assert cohort["control"]["ctr"] == pytest.approx(2 / 6)
    assert cohort["liverec"]["ctr"] == pytest.approx(1 / 3)
    assert model["(none)"]["impressions"] == 6 and model[rec["model"]]["impressions"] == 3
    assert (q["attributed"], q["unattributed"]) == (5, 2)
    assert q["window_s"] == window
    # the time series: this server is live, so every fold went into a 5 s bucket
    assert q["series"]["t"] and q["series"]["values"]["ctr:cohort:control"][-1] == pytest.approx(2 / 6)


def test_a_users_first_lists_join_the_cohort_they_name_later(api: Api) -> None:
    """The server's impressions name no cohort; the user's feedback does: their earlier lists (inside
    the window) move from `default` to it, in the totals and in the time series."""
    api.ok(*[event(f"crowd{n}", f"i{n % 3}", timestamp=T) for n in range(6)])  # something to list
    first = api.recs("n", k=2)
    assert len(first["items"]) == 2
    assert by_key(board(api)["quality"]["by_cohort"])["default"]["impressions"] == 2
    second = api.recs("n", k=2)
    click = {"request_id": second["request_id"], "cohort": "liverec"}
    api.ok(event("n", second["items"][0]["item_id"], "click", timestamp=time.time(), context=click))
    q = board(api)["quality"]
    assert [(g["key"], g["impressions"], g["clicks"]) for g in q["by_cohort"]] == [("liverec", 4, 1)]
    assert "ctr:cohort:default" not in q["series"]["values"] or all(
        v is None for v in q["series"]["values"]["ctr:cohort:default"][-1:]
    )
    assert q["series"]["values"]["ctr:cohort:liverec"][-1] == pytest.approx(1 / 4)
    api.recs("n", k=2)  # known now: counted under liverec at once
    assert by_key(board(api)["quality"]["by_cohort"])["liverec"]["impressions"] == 6
    assert first["request_id"] != second["request_id"]


def test_surface_is_the_cohort_when_none_is_named(api: Api) -> None:
    api.ok(*shown("s", ["a", "b"], "q1", policy="shuffle", surface="search"))
    api.ok(event("s", "a", "click", timestamp=T + 1, context={"request_id": "q1", "surface": "search"}))
    cohort = by_key(board(api)["quality"]["by_cohort"])
    assert cohort["search"]["ctr"] == 0.5


@pytest.fixture
def strict(tmp_path: Path) -> Iterator[Api]:
    """A server whose serving filter quarantines a user after 5 events in a minute."""
    settings = Settings(
        data_dir=tmp_path / "data",
        server=ServerSettings(max_batch_events=50),
        filters=FilterConfig(user_max_per_minute=5, quarantine_s=3600.0),
    )
    with TestClient(create_app(settings)) as client:
        yield Api(client, settings)


def test_rejected_duplicate_and_held_back_events(strict: Api) -> None:
    api = strict
    api.ok(event("u", "x", event_id="e1", timestamp=T), event("u", "y", event_id="e2", timestamp=T + 10))
    assert api.ok(event("u", "x", event_id="e1", timestamp=T))["duplicates"] == 1
    assert api.post(event("u", "x", "rating"), event("u", "y"), event("u", "z")).status_code == 422
    too_many = [event("u", f"i{n}") for n in range(51)]
    assert api.client.post("/v1/events", json={"events": too_many}).status_code == 413
    api.ok(event("u", "y", timestamp=T + 11))  # same user, item and type within 2 s: a duplicate
    # a bot: 8 clicks within a minute; the 6th trips the burst rule, the rest find it quarantined
    api.ok(*[event("bot", f"b{n}", timestamp=T + n) for n in range(8)])

    d = board(api)["data_quality"]
    assert d["rejected"] == {"invalid": 3, "too_large": 51}
    assert d["duplicates"] == 1
    assert d["filter_enabled"] is True
    assert d["held"]["duplicate"] == 1 and d["held"]["user_burst"] == 1
    assert d["held"]["user_quarantined"] == 2
    assert [q["id"] for q in d["quarantined_users"]] == ["bot"] and d["quarantined_items"] == []
    assert d["quarantined_users"][0]["until"] == pytest.approx(T + 5 + 3600.0)


def test_new_items_and_their_exposure(api: Api) -> None:
    old = time.time() - 3 * 86_400
    r = api.client.post(
        "/v1/items",
        json={"items": [{"item_id": "old", "created_at": old}, {"item_id": "fresh"}, {"item_id": "fresher"}]},
    )
    assert r.status_code == 200, r.text
    api.ok(*shown("v", ["fresh", "old", "fresh"], "n1", policy="random"))
    api.ok(event("v", "fresh", "click", timestamp=T + 1, context={"request_id": "n1", "position": 0}))
    c = board(api)["catalog"]
    assert (c["items"], c["created_last_hour"], c["created_last_day"]) == (3, 2, 2)
    newest = {i["item_id"]: i for i in c["newest"]}
    assert [i["item_id"] for i in c["newest"]][-1] == "old"
    assert (newest["fresh"]["impressions"], newest["fresh"]["clicks"]) == (2, 1)
    assert (newest["fresher"]["impressions"], newest["old"]["impressions"]) == (0, 1)


def test_sampler_rates_latency_and_freshness(api: Api) -> None:
    """One sample is the difference of two readings of the request metrics and the folded log; the
    dashboard's own calls are not traffic."""
    sampler = Sampler(api.client.app.state.metrics)  # type: ignore[attr-defined]
    sampler.engine = api.engine
    t0 = time.time()
    assert sampler.tick(now=t0) is None  # the baseline
    api.ok(*[event("u", f"i{n}", timestamp=T + n) for n in range(6)])
    api.ok(*shown("u", ["a", "b"], "r9"))
    for _ in range(3):
        api.recs("u", k=2)
    assert api.client.get("/v1/items/nope").status_code == 404
    for _ in range(5):
        board(api)  # not counted
    s = sampler.tick(now=t0 + 2.0)
    assert s is not None
    assert s["events:click"] == pytest.approx(6 / 2)
    assert s["events:impression"] == pytest.approx((2 + 3 * 2) / 2)  # the server's impressions too
    assert s["requests_per_s"] == pytest.approx((2 + 3 + 1) / 2)
    assert s["errors_4xx_per_s"] == pytest.approx(1 / 2) and s["errors_5xx_per_s"] == 0.0
    assert s["latency_p50_ms"] is not None and 0 < s["latency_p50_ms"] <= s["latency_p99_ms"]  # type: ignore[operator]
    assert s["visible_p50_ms"] is not None  # two POSTs were observed event -> visible
    assert s["lag_events"] is None  # no trained model is served
    assert s["items"] == len(api.engine.catalog)
    assert sampler.since(t0 + 1.0) == [s] and sampler.since(t0 + 2.0) == []


def test_quantile_interpolates_within_buckets_like_prometheus() -> None:
    counts = {0.01: 0.0, 0.02: 10.0, 0.05: 10.0, float("inf"): 0.0}
    assert quantile(counts, 0.5) == pytest.approx(0.02)
    assert quantile(counts, 0.25) == pytest.approx(0.015)
    assert quantile(counts, 0.99) == pytest.approx(0.02 + 0.03 * 0.98)
    assert quantile({0.1: 0.0, float("inf"): 4.0}, 0.5) == 0.1  # beyond the last bound
    assert quantile({0.1: 0.0}, 0.5) is None


def write_meta(api: Api, version: str, meta: dict[str, Any]) -> None:
    """A registry version as far as the dashboard reads it (its meta.json; weights are not read)."""
    folder = api.settings.registry_path / "versions" / version
    folder.mkdir(parents=True)
    (folder / "meta.json").write_text(__import__("json").dumps(meta))


def test_models_view_timeline_gate_decisions_and_rollback(api: Api) -> None:
    t = time.time()
    write_meta(api, "v000001", {"created_at": t - 60, "metrics": {"val": {"ndcg@10": 0.31}}})
    prequential = {"candidate": {"ndcg@10": 0.35}, "live": {"ndcg@10": 0.33}}
    write_meta(
        api,
        "v000002",
        {"created_at": t - 30, "parent": "v000001", "online": True, "trainer_offset": 7,
         "metrics": {"prequential": prequential}},
    )  # fmt: skip
    reg = api.engine.registry
    reg.promote("v000001")
    reg.promote("v000002")
    reason = "rejected: candidate 0.2900 < live 0.3500 - 0.0"
    write_status(
        reg.root,
        {"at": t - 5, "live": "v000002", "why": "caught up",
         "last_decision": {"published": None, "reason": reason, "offset": 9, "at": t - 5}},
    )  # fmt: skip
    sampler: Sampler = api.client.app.state.sampler  # type: ignore[attr-defined]
    sampler.tick()  # what the sampler thread does every second

    m = board(api)["models"]
    assert (m["live"], m["history"]) == ("v000002", ["v000001"])
    assert [(v["version"], v["live"], v["online"], v["score"]) for v in m["versions"]] == [
        ("v000001", False, False, 0.31),
        ("v000002", True, True, 0.35),
    ]
    timeline = [(d["outcome"], d["version"], d["candidate"], d["live"]) for d in m["decisions"]]
    assert timeline == [
        ("trained", "v000001", 0.31, None),
        ("published", "v000002", 0.35, 0.33),
        ("rejected", "v000002", 0.29, 0.35),
    ]
    assert m["decisions"][-1]["reason"] == reason and m["learner"]["why"] == "caught up"

    assert api.client.post("/v1/models/rollback").json() == {"live": "v000001", "previous": "v000002"}
    assert board(api)["models"]["live"] == "v000001"


def test_recent_feedback_of_a_user_newest_first_without_impressions(api: Api) -> None:
    api.ok(*shown("f", ["a", "b"], "r5"))
    api.ok(
        event("f", "a", "click", event_id="k1", timestamp=T + 1, context={"request_id": "r5", "position": 0}),
        event("f", "b", "dwell", event_id="k2", timestamp=T + 2, value=30.0),
        event("f", "b", "dislike", event_id="k3", timestamp=T + 3),
    )
    r = api.client.get("/v1/dashboard/users/f/events", params={"limit": 2})
    assert r.status_code == 200, r.text
    got = r.json()
    assert got["user_id"] == "f"
    assert [(e["event_id"], e["type"]) for e in got["events"]] == [("k3", "dislike"), ("k2", "dwell")]
    assert [e["reward"] for e in got["events"]] == [W.dislike, pytest.approx(W.dwell * 30 / W.dwell_norm_s)]
    every = api.client.get("/v1/dashboard/users/f/events").json()["events"]
    assert every[-1]["request_id"] == "r5" and every[-1]["position"] == 0
    assert api.client.get("/v1/dashboard/users/nobody/events").json()["events"] == []
    assert api.client.get("/v1/dashboard/users/" + "x" * 300 + "/events").status_code == 422


def test_since_returns_only_newer_samples(api: Api) -> None:
    sampler: Sampler = api.client.app.state.sampler  # type: ignore[attr-defined]
    sampler.tick()
    full = board(api)
    assert full["traffic"]["series"]["t"], "the sampler has taken samples"
    later = board(api, since=full["traffic"]["series"]["t"][-1])
    assert all(t > full["traffic"]["series"]["t"][-1] for t in later["traffic"]["series"]["t"])
    assert api.client.get("/v1/dashboard", params={"since": -1}).status_code == 422


# -- who may see it ---------------------------------------------------------------------------------------
ADMIN_KEY, READER_KEY = "admin-key-0123456789ab", "reader-key-0123456789"


@pytest.fixture
def keyed(tmp_path: Path) -> Iterator[TestClient]:
    keys = [
        {"name": "ops", "key": ADMIN_KEY, "scopes": ["admin"]},
        {"name": "reader", "key": READER_KEY, "scopes": ["read"]},
    ]
    settings = Settings(data_dir=tmp_path / "data", auth=AuthSettings(keys=keys))  # type: ignore[arg-type]
    with TestClient(create_app(settings)) as client:
        yield client


@pytest.mark.parametrize("path", ["/v1/dashboard", "/v1/dashboard/users/u/events"])
def test_data_needs_the_admin_scope(keyed: TestClient, path: str) -> None:
    assert keyed.get(path).status_code == 401
    assert keyed.get(path, headers={"Authorization": f"Bearer {READER_KEY}"}).status_code == 403
    assert keyed.get(path, headers={"Authorization": f"Bearer {ADMIN_KEY}"}).status_code == 200


def test_page_and_assets_are_public_local_and_hold_no_data(keyed: TestClient) -> None:
    page = keyed.get("/dashboard")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    html = page.text
    assert "http://" not in html and "https://" not in html and "cdn" not in html.lower()
    for name in ("app.js", "views.js", "dashboard.css"):
        asset = f"/dashboard-assets/{name}"
        assert asset in html
        r = keyed.get(asset)
        assert r.status_code == 200 and "https://" not in r.text, asset
    plotly = keyed.get("/dashboard-assets/plotly.min.js")
    assert plotly.status_code == 200 and len(plotly.content) > 1_000_000
    assert plotly.headers["content-type"].startswith("text/javascript")
    assert "Authorization" in keyed.get("/dashboard-assets/app.js").text  # the key goes in a header
    assert "sessionStorage" in keyed.get("/dashboard-assets/app.js").text


def test_open_mode_needs_no_key(api: Api) -> None:
    assert api.client.get("/v1/dashboard").status_code == 200


def stored(offset: int, user: str, item: str, kind: str, rid: str, **ctx: Any) -> StoredEvent:
    body = event(user, item, kind, timestamp=T + offset, context={"request_id": rid, **ctx})
    return StoredEvent(offset, Event.model_validate(body))


def test_the_replay_counts_totals_only_and_memory_stays_bounded() -> None:
    catalog = Catalog()
    quality = QualityBoard(catalog, Rewards(), window_s=300.0, max_requests=2)
    replay = [stored(1, "u", "a", "impression", "r1", policy="p"), stored(2, "u", "a", "click", "r1")]
    quality.fold(replay, live=False)  # the start-up replay of the log
    copy = quality.copy()
    assert copy.buckets == [] and copy.totals["policy"]["p"] == Tally(1, 0, 1, 1, W.click)
    quality.fold([stored(3 + n, "u", "b", "impression", f"q{n}", policy="p") for n in range(3)])
    assert len(quality.requests) == 2 and "r1" not in quality.requests and "q0" not in quality.requests
    quality.fold([stored(9, "u", "b", "click", "q0"), stored(10, "u", "b", "click", "q2")])
    copy = quality.copy()
    assert (copy.attributed, copy.unattributed) == (2, 1)  # q0 was evicted
    assert len(copy.buckets) == 1 and copy.buckets[0][1]["policy"]["p"].impressions == 3
