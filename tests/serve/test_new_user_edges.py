"""Edges a new user meets: an imported historical log serves its popular items (also after live
traffic starts), filler is marked, a new item's text is served the moment its PUT returns, the
impressions of a long list are logged up to a cap, and /healthz says why no version was published."""

from __future__ import annotations

import random
import time
from pathlib import Path

from liverec.core.schema import Event, EventType, Item
from liverec.serve.engine import Engine
from liverec.settings import ServerSettings, Settings
from support.api import Api
from support.world import NEW_TEXT, Served, genre

ML_T0 = 874_724_710.0  # 1997-09-20, where ml-100k starts; it spans seven months


def historical_log(n_users: int = 200, n_items: int = 60) -> list[Event]:
    """An ml-100k-like log: ratings from 1997-98, Zipf-shaped popularity, newest last."""
    rng = random.Random(1)
    weights = [1.0 / (k + 1) for k in range(n_items)]
    span = 210 * 86_400.0
    out = []
    for u in range(n_users):
        for k, item in enumerate(rng.choices([f"m{j}" for j in range(n_items)], weights, k=10)):
            ts = ML_T0 + span * rng.random()
            out.append(
                Event(
                    event_id=f"r{u}-{k}",
                    user_id=f"u{u}",
                    item_id=item,
                    type=EventType.rating,
                    value=4.0,
                    timestamp=ts,
                )
            )
    return sorted(out, key=lambda e: e.timestamp)


def test_a_historical_log_serves_its_popular_items_before_and_after_live_traffic(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, store_url=f"sqlite:///{tmp_path / 'events.db'}")
    engine = Engine(settings).start(models=False)
    try:
        engine.ingest(historical_log())
        before = engine.recommend("newcomer", 10, log_impressions=False).items
        assert all(i.score > 0 and not i.filler for i in before)
        # a live click today: 27 years of silence decay as max_gap_half_lives, not as 27 years
        engine.ingest(
            [
                Event(
                    event_id="live",
                    user_id="alice",
                    item_id="m50",
                    type=EventType.click,
                    timestamp=time.time(),
                )
            ]
        )
        after = engine.recommend("newcomer", 10, log_impressions=False).items
        assert all(i.score > 0 and not i.filler for i in after), after
        assert after[0].item_id == "m50"  # the live click leads trending ...
        assert [i.item_id for i in after[1:]] == [i.item_id for i in before[:9]]  # ... history follows
    finally:
        engine.close()


def test_a_list_padded_with_zero_score_items_says_so(api: Api) -> None:
    """A catalog nobody has touched: every item is filler (score 0), and the response says so."""
    api.engine.upsert_items([Item(item_id=f"x{k}") for k in range(5)])
    api.ok({"user_id": "a", "item_id": "x3", "type": "click", "timestamp": time.time() - 60})
    items = api.recs("newcomer", k=5)["items"]
    assert items[0] == {"item_id": "x3", "score": 1.0, "propensity": 1.0, "filler": False}
    assert [i["filler"] for i in items[1:]] == [True] * 4 and {i["score"] for i in items[1:]} == {0.0}
    similar = api.client.get("/v1/items/x0/similar", params={"k": 4}).json()["items"]
    assert all(i["filler"] == (i["score"] == 0.0) for i in similar)


def test_impressions_are_logged_up_to_the_cap_with_their_propensities(api: Api) -> None:
    api.engine.upsert_items([Item(item_id=f"c{k}") for k in range(1_200)])
    before = len(api.log())
    assert len(api.recs("reader", k=1_000)["items"]) == 1_000
    logged = [s.event for s in api.log()[before:]]
    assert len(logged) == ServerSettings().max_logged_impressions == 50
    contexts = [e.context for e in logged if e.context is not None and e.type is EventType.impression]
    assert [c.position for c in contexts] == list(range(50))
    assert all(c.propensity == 1.0 for c in contexts)


def test_the_cap_is_configurable_and_applies_to_the_engine_too(tmp_path: Path) -> None:
    settings = Settings(
        data_dir=tmp_path, store_url="memory://", server=ServerSettings(max_logged_impressions=3)
    )
    engine = Engine(settings).start(models=False)
    try:
        engine.upsert_items([Item(item_id=f"c{k}") for k in range(20)])
        engine.recommend("reader", 10)
        assert engine.store.count_events() == 3
    finally:
        engine.close()


def test_a_new_items_text_is_served_the_moment_its_put_returns(served: Served) -> None:
    """No wait for a background encoder: /similar right after the PUT ranks by the new item's text."""
    for item_id, text in NEW_TEXT.items():
        r = served.client.put(f"/v1/items/{item_id}", json={"title": text})
        assert r.status_code == 200, r.text
        body = served.client.get(f"/v1/items/{item_id}/similar", params={"k": 3}).json()
        assert body["model"] == "transformer@v000001"
        assert [genre(i["item_id"]) for i in body["items"]] == [item_id.removeprefix("new-")] * 3
        assert not any(i["filler"] for i in body["items"])


def test_healthz_says_why_no_version_was_published(served: Served) -> None:
    learner = served.client.get("/healthz").json()["learner"]
    assert learner["running"] is False and "liverec learn --follow" in learner["why"]
