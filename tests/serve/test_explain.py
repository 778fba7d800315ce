"""``?explain=true``: explanations on recommendations and search, over the trained tiny Transformer.

The history items an explanation cites must be in the user's live sequence at the positions it
names (GET /v1/users/{id}/history), and leaving them out must lower the item's score; the serving
reasons (new-item slot, exploration, fallback, rules) appear when they apply; without the flag the
response is what it always was.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from liverec.model.base import leave_out
from liverec.model.text import TextEncoder
from liverec.registry.registry import ModelRegistry
from liverec.search.features import FEATURES
from liverec.serve.app import create_app
from liverec.settings import ServerSettings, Settings
from support.world import (
    ITEM_TEXT,
    POLL_S,
    T0,
    Served,
    Trained,
    crowd_events,
    fill_store,
    start_engine,
    world_items,
)

WALK = ["space-0", "space-1", "space-2", "space-3"]  # the world's cycle: space-4 comes next
Factory = Callable[..., Served]


@pytest.fixture
def make_served(tmp_path: Path, trained: Trained, encoder: TextEncoder) -> Iterator[Factory]:
    """`served`, with extra settings (policy, rules, [explain]); closed at teardown."""
    opened: list[Served] = []

    def make(**settings: Any) -> Served:
        s = Settings(
            data_dir=tmp_path / f"data{len(opened)}", server=ServerSettings(reload_poll_s=POLL_S), **settings
        )
        fill_store(s, world_items(), crowd_events(), encoder)
        registry = ModelRegistry(s.registry_path)
        registry.promote(registry.save(trained.fresh(), trained.vocab, {"val": trained.result.best_val}))
        engine = start_engine(s, encoder)
        client = TestClient(create_app(s, engine))
        client.__enter__()
        opened.append(Served(client, engine, registry, s, trained))
        return opened[-1]

    try:
        yield make
    finally:
        for served in opened:
            served.client.__exit__(None, None, None)
            served.engine.close()


def walk(served: Served, user: str, items: list[str] = WALK) -> None:
    for n, item in enumerate(items):
        served.click(user, item, T0 + 1000 + n)


def explained(served: Served, user: str, k: int = 5, **params: Any) -> list[dict[str, Any]]:
    r = served.client.get(f"/v1/users/{user}/recommendations", params={"k": k, "explain": "true", **params})
    assert r.status_code == 200, r.text
    items: list[dict[str, Any]] = r.json()["items"]
    assert all(item["explanation"]["sentence"] for item in items)
    return items


def test_cited_history_is_the_live_sequence_and_removing_it_lowers_the_score(served: Served) -> None:
    walk(served, "walker")
    items = explained(served, "walker")
    history = served.client.get("/v1/users/walker/history").json()["items"]
    assert [h["item_id"] for h in history] == WALK
    cited = [c for item in items for c in item["explanation"]["history"]]
    assert cited, items
    user = served.engine.state.get("walker")
    assert user is not None
    model, n = served.model, len(served.engine.catalog)
    for item in items:
        why = item["explanation"]
        influences = [c["influence"] for c in why["history"]]
        assert influences == sorted(influences, reverse=True) and len(influences) <= 3
        assert all(v > 0 for v in influences)
        row = served.engine.catalog.row(item["item_id"])
        assert row is not None
        score = model.score(user, n)[row]
        assert score == pytest.approx(item["score"], abs=1e-4)  # the served score
        for c in why["history"]:
            assert history[c["position"]]["item_id"] == c["item_id"]
            without = model.score(leave_out(user, c["position"]), n)[row]
            assert score - without == pytest.approx(c["influence"], abs=1e-4)
    top = next(item for item in items if item["explanation"]["history"])
    first = top["explanation"]["history"][0]["item_id"]
    assert top["explanation"]["sentence"].startswith(f"Because you clicked {ITEM_TEXT[first]}")


def test_the_nearest_history_item_in_text_is_cited_above_the_threshold(make_served: Factory) -> None:
    served = make_served(explain={"content_min_similarity": 0.2})
    walk(served, "walker")
    items = explained(served, "walker", k=8)
    links = [item["explanation"]["content"] for item in items if item["explanation"]["content"]]
    assert links, items
    assert all(link["item_id"] in WALK and link["similarity"] >= 0.2 for link in links)
    strict = make_served(explain={"content_min_similarity": 0.99})
    walk(strict, "walker")
    assert not [item for item in explained(strict, "walker", k=8) if item["explanation"]["content"]]


def test_an_unknown_user_gets_the_fallback_reason_and_no_history(served: Served) -> None:
    for item in explained(served, "nobody"):
        why = item["explanation"]
        assert why["history"] == [] and why["content"] is None
        assert "fallback" in {r["kind"] for r in why["reasons"]}


def test_new_item_slots_exploration_and_rules_are_reasons_when_they_apply(make_served: Factory) -> None:
    policy = {"name": "epsilon", "epsilon": 0.5, "seed": 0, "new_item_slots": 1, "new_item_positives": 1}
    served = make_served(policy=policy, rules={"weight": 1.0})
    r = served.client.put("/v1/items/new-space", json={"title": "A spacecraft travels to a faraway planet"})
    assert r.status_code == 200, r.text
    for n in range(3):  # others went on from the walker's newest items to space-4: rules counts
        walk(served, f"other{n}", ["space-2", "space-3", "space-4"])
    walk(served, "walker")
    r = served.client.get("/v1/users/walker/recommendations", params={"k": 5, "explain": True})
    body = r.json()
    assert body["policy"] == "epsilon+new1"
    kinds = [{reason["kind"] for reason in item["explanation"]["reasons"]} for item in body["items"]]
    assert "new_item_slot" in kinds[-1] and "exploration" not in kinds[-1]
    assert all("exploration" in k for k in kinds[:-1])  # epsilon > 0: every head propensity is < 1
    exploring = next(r for r in body["items"][0]["explanation"]["reasons"] if r["kind"] == "exploration")
    assert "epsilon" in exploring["detail"] and "propensity" in exploring["detail"]
    assert any("rules" in k for k in kinds)  # the world's walks teach the rules what follows
    assert all("business_rule" in k for k in kinds)  # the walked items are excluded


def test_without_explain_the_response_is_unchanged(served: Served) -> None:
    walk(served, "walker")
    for params in ({}, {"explain": "false"}):
        r = served.client.get("/v1/users/walker/recommendations", params={"k": 5, **params})
        assert r.status_code == 200
        for item in r.json()["items"]:
            assert set(item) == {"item_id", "score", "propensity", "filler"}
    r = served.client.get("/v1/search", params={"q": "space", "explain": "false"})
    assert r.status_code == 200 and all("explanation" not in i for i in r.json()["items"])


@pytest.mark.parametrize("value", ["maybe", "2", ""])
def test_a_bad_explain_value_is_a_422(served: Served, value: str) -> None:
    r = served.client.get("/v1/users/walker/recommendations", params={"explain": value})
    assert r.status_code == 422, r.text
    r = served.client.get("/v1/search", params={"q": "space", "explain": value})
    assert r.status_code == 422, r.text


@pytest.mark.parametrize("value", ["yes", 1, None])
def test_the_search_body_takes_a_json_boolean_only(served: Served, value: object) -> None:
    r = served.client.post("/v1/search", json={"q": "space", "explain": value})
    assert r.status_code == 422, r.text


def test_search_explanations_carry_the_matched_terms_and_the_ranker_features(served: Served) -> None:
    walk(served, "walker")
    r = served.client.get(
        "/v1/search", params={"q": "the space station", "explain": True, "user_id": "walker"}
    )
    assert r.status_code == 200, r.text
    items = r.json()["items"]
    assert items
    weights = served.engine.search.learner.live.w if served.engine.search else np.zeros(0)
    for item in items:
        why = item["explanation"]
        match = why["search"]
        title_tokens = set(ITEM_TEXT.get(item["item_id"], "").lower().split())
        assert set(match["matched_terms"]) == {"space", "station"} & title_tokens  # "the": a stopword
        assert set(match["features"]) == set(FEATURES)
        assert sum(match["features"].values()) == pytest.approx(item["score"], abs=1e-3)
        assert match["features"]["cosine"] == pytest.approx(weights[1] * match["semantic"], abs=1e-3)
        assert why["sentence"]
    assert any(item["explanation"]["search"]["matched_terms"] for item in items)
    r = served.client.post("/v1/search", json={"q": "space station", "explain": True})
    assert r.status_code == 200 and all(i["explanation"]["search"] for i in r.json()["items"])
