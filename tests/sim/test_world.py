"""The simulated world: seeded, follows its hidden tastes, position-biased, drifts, grows, has an oracle."""

from __future__ import annotations

import numpy as np
import pytest

from liverec.sim import GENRES, World


def test_same_seed_same_world_and_same_responses() -> None:
    a, b = World(n_items=200, n_users=50, seed=7), World(n_items=200, n_users=50, seed=7)
    assert [it.text for it in a.items] == [it.text for it in b.items]
    assert all(np.array_equal(u.taste, v.taste) for u, v in zip(a.users, b.users, strict=True))
    slate = [it.item_id for it in a.items[:10]]
    for user in a.users[:20]:
        assert a.respond(user.user_id, slate) == b.respond(user.user_id, slate)
    other = World(n_items=200, n_users=50, seed=8)
    assert [it.text for it in other.items] != [it.text for it in a.items]


def test_catalog_does_not_depend_on_the_number_of_users() -> None:
    a, b = World(n_items=100, n_users=10, seed=3), World(n_items=100, n_users=500, seed=3)
    assert [it.payload() for it in a.items] == [it.payload() for it in b.items]


def test_item_text_names_its_genre_and_attributes() -> None:
    world = World(n_items=300, n_users=1, seed=0)
    for it in world.items:
        genre = GENRES[it.genre]
        assert it.text.startswith(f"{it.title}: ")
        assert genre.kind in it.text
        assert any(topic in it.text for topic in genre.topics)
        assert it.tags[0] == genre.name
        assert it.payload()["attributes"]["genre"] == genre.name
        assert "quality" not in it.payload()["attributes"]  # the hidden truth stays hidden
    assert len({it.genre for it in world.items}) == len(GENRES)


def test_clicks_concentrate_on_the_users_interests() -> None:
    world = World(n_items=600, n_users=30, seed=1)
    rng = np.random.default_rng(0)
    ids = [it.item_id for it in world.items]
    for user in world.users[:10]:
        clicked_genres: list[int] = []
        shown_in_interest = 0
        for _ in range(300):
            slate = [ids[j] for j in rng.choice(len(ids), 10, replace=False)]
            shown_in_interest += sum(world.item(i).genre in user.interests for i in slate)
            resp = world.respond(user.user_id, slate)
            clicked_genres += [world.item(e.item_id).genre for e in resp.events if e.type == "click"]
        share_shown = shown_in_interest / 3000
        share_clicked = np.mean([g in user.interests for g in clicked_genres])
        assert len(clicked_genres) > 30
        assert share_clicked > 0.6
        assert share_clicked > 2 * share_shown


def test_click_through_falls_with_position() -> None:
    world = World(n_items=50, n_users=200, seed=2)
    items = [it.item_id for it in world.items[:10]]
    clicks = np.zeros(10)
    shows = 0
    for rep in range(60):
        for shift in range(10):  # every item at every position equally often
            slate = items[shift:] + items[:shift]
            for user in world.users[rep % 20 :: 20]:
                for ev in world.respond(user.user_id, slate).events:
                    if ev.type == "click":
                        clicks[ev.position] += 1
                shows += 1
    ctr = clicks / shows
    assert ctr[0] > ctr[3] > ctr[9]
    assert ctr[0] > 2 * ctr[9]
    exam = world.examination(np.arange(10))
    assert exam[0] == 1.0 and np.all(np.diff(exam) < 0)


def test_dwell_grows_with_affinity_and_skips_are_not_clicks() -> None:
    world = World(n_items=400, n_users=40, seed=4)
    rng = np.random.default_rng(1)
    ids = [it.item_id for it in world.items]
    pairs: list[tuple[float, float]] = []
    for user in world.users:
        for _ in range(50):
            slate = [ids[j] for j in rng.choice(len(ids), 10, replace=False)]
            resp = world.respond(user.user_id, slate)
            clicked = {e.item_id for e in resp.events if e.type == "click"}
            for ev in resp.events:
                assert ev.item_id == slate[ev.position]
                if ev.type == "dwell":
                    assert ev.value is not None and ev.value >= 0
                    pairs.append((float(world.affinity(user.user_id, [ev.item_id])[0]), ev.value))
                if ev.type == "skip":
                    assert ev.item_id not in clicked
                if ev.type in ("add_to_cart", "purchase"):
                    assert ev.item_id in clicked
    aff, dwell = np.array(pairs).T
    assert np.corrcoef(aff, np.log(dwell))[0, 1] > 0.3


def test_drift_rotates_tastes_gradually() -> None:
    still = World(n_items=100, n_users=5, seed=5)
    before = still.users[0].taste.copy()
    for _ in range(50):
        still.respond(still.users[0].user_id, [])
    assert np.array_equal(still.users[0].taste, before)

    world = World(n_items=100, n_users=5, seed=5, drift=0.05)
    user = world.users[0]
    start = user.taste.copy()
    cosines = []
    for _ in range(100):
        prev = user.taste.copy()
        world.respond(user.user_id, [world.items[0].item_id])
        step = prev @ user.taste / (np.linalg.norm(prev) * np.linalg.norm(user.taste))
        cosines.append(step)
        assert np.linalg.norm(user.taste) == pytest.approx(np.linalg.norm(start))
    assert min(cosines) > np.cos(0.05) - 1e-9  # never more than `drift` radians per visit
    assert max(cosines) < 1.0  # but always moving
    far = start @ user.taste / np.linalg.norm(start) ** 2
    assert far < 0.5  # far from where it started after 100 visits


def test_arrivals_add_items_with_fresh_text() -> None:
    static = World(n_items=100, n_users=5, seed=6)
    assert all(static.tick() == [] for _ in range(50))
    assert len(static.items) == 100

    world = World(n_items=100, n_users=5, seed=6, arrival_rate=2.0)
    arrived = [it for _ in range(100) for it in world.tick()]
    assert 140 < len(arrived) < 260
    assert len(world.items) == 100 + len(arrived)
    assert len({it.item_id for it in world.items}) == len(world.items)
    assert all(it.text and it.title and it.created_step > 0 for it in arrived)
    assert {it.text for it in arrived} - {it.text for it in world.items[:100]}  # new texts too
    user = world.users[0].user_id
    new_slate = [it.item_id for it in arrived[:10]]
    assert world.expected_clicks(user, new_slate) > 0  # the click model knows the newcomers


def test_oracle_slate_beats_every_random_slate() -> None:
    world = World(n_items=300, n_users=20, seed=9)
    rng = np.random.default_rng(3)
    ids = [it.item_id for it in world.items]
    for user in world.users:
        uid = user.user_id
        best = world.oracle_slate(uid, 10)
        value = world.expected_clicks(uid, best)
        assert value == pytest.approx(sum(world.expected_click_prob(uid, i, p) for p, i in enumerate(best)))
        for _ in range(100):
            slate = [ids[j] for j in rng.choice(len(ids), 10, replace=False)]
            assert world.expected_clicks(uid, slate) <= value + 1e-12
        assert world.expected_clicks(uid, best[::-1]) < value  # order matters too
        excluded = world.oracle_slate(uid, 10, exclude=best[:3])
        assert not set(excluded) & set(best[:3])
        assert excluded[:7] == best[3:]
