"""Forward-decayed popularity counts and query-time co-occurrence."""

from __future__ import annotations

import math
from collections import deque

import numpy as np
import pytest

from liverec.core.state import Interaction, UserState
from liverec.model.popularity import DecayedCounts, PopularityCooc
from liverec.settings import PopularitySettings

T0 = 1_700_000_000.0


# -- decayed counts --------------------------------------------------------------------------------
def add(dc: DecayedCounts, rows: list[int], weights: list[float], times: list[float]) -> None:
    dc.add(
        np.array(rows, dtype=np.int64), np.array(weights, dtype=np.float64), np.array(times, dtype=np.float64)
    )


def test_value_halves_after_one_half_life() -> None:
    dc = DecayedCounts(half_life_s=100.0)
    add(dc, [0, 1], [4.0, 1.0], [T0, T0])
    assert dc.at(T0, 2) == pytest.approx([4.0, 1.0])
    assert dc.at(T0 + 100, 2) == pytest.approx([2.0, 0.5])
    assert dc.at(T0 + 300, 3) == pytest.approx([0.5, 0.125, 0.0])


def test_late_events_count_at_their_own_time() -> None:
    dc = DecayedCounts(half_life_s=50.0)
    add(dc, [0], [1.0], [T0 + 100])
    add(dc, [0, 1], [1.0, 2.0], [T0, T0 + 50])  # arrive after a newer event
    now = T0 + 100
    assert dc.at(now, 2)[0] == pytest.approx(1.0 + 2.0**-2)
    assert dc.at(now, 2)[1] == pytest.approx(2.0 * 2.0**-1)


def test_rows_beyond_the_initial_size_grow_the_table() -> None:
    dc = DecayedCounts(half_life_s=10.0)
    add(dc, [5000], [3.0], [T0])
    assert dc.at(T0, 5001)[5000] == pytest.approx(3.0)
    assert dc.at(T0, 10).sum() == 0.0


def test_rescaling_for_a_large_exponent_keeps_values_right() -> None:
    dc = DecayedCounts(half_life_s=1.0)  # e^(rate * 1000) would overflow without rescaling
    add(dc, [0], [1.0], [T0])
    add(dc, [3], [1.0], [T0 + 700])  # exponent 485: no rescale yet
    add(dc, [1], [1.0], [T0 + 730])  # exponent 506: t0 moves forward
    values = dc.at(T0 + 730, 4)
    assert values[0] == pytest.approx(math.pow(2.0, -730), rel=1e-9)
    assert values[3] == pytest.approx(math.pow(2.0, -30), rel=1e-9)
    assert values[1] == pytest.approx(1.0, rel=1e-12)
    add(dc, [1], [2.0], [T0 + 2000])  # and again, much further
    add(dc, [2], [1.0], [T0 + 1999])  # slightly late, after the rescale
    values = dc.at(T0 + 2000, 4)
    assert np.isfinite(dc.sums).all()
    assert values[1] == pytest.approx(2.0, rel=1e-12)
    assert values[2] == pytest.approx(0.5, rel=1e-9)
    assert values[3] == pytest.approx(0.0, abs=1e-300)  # 2^-1300: below float64, as it should be


# -- co-occurrence ---------------------------------------------------------------------------------
def model_with(sequences: dict[str, list[int]], **settings: float) -> PopularityCooc:
    users: dict[str, UserState] = {}
    model = PopularityCooc(users, PopularitySettings(**settings))
    ts = T0
    for user, rows in sequences.items():
        st = users[user] = UserState(deque(maxlen=200), deque(maxlen=200))
        for r in rows:
            st.items.append(r)
            st.times.append(ts)
            model.observe([Interaction(user, r, 1.0, ts, True)])
            ts += 1
    return model


def test_cooc_counts_the_recent_items_of_neighbours() -> None:
    x, y, z, w = 0, 1, 2, 3
    model = model_with({"a": [x, y], "b": [x, y, z], "c": [z, w]})
    co = model.cooc([x], [1.0], 4)
    # neighbours of x: a and b; their items: x twice, y twice, z once; w never
    count = {x: 2, y: 2, z: 2, w: 1}  # positives per item (the cosine-style norm)
    expected = [2 / math.sqrt(count[x]), 2 / math.sqrt(count[y]), 1 / math.sqrt(count[z]), 0.0]
    assert co == pytest.approx(expected)
    # weights multiply, and a user's own history is left out with skip_user
    assert model.cooc([x], [0.5], 4) == pytest.approx([v * 0.5 for v in expected])
    assert model.cooc([x], [1.0], 4, skip_user="a") == pytest.approx(
        [1 / math.sqrt(2), 1 / math.sqrt(2), 1 / math.sqrt(2), 0.0]
    )
    # two query rows: neighbours are weighted by how many of the rows they share
    both = model.cooc([x, z], [1.0, 1.0], 4)
    # neighbours: a (1), b (2: x and z), c (1: z)
    raw = {x: 1 + 2, y: 1 + 2, z: 2 + 1, w: 1}
    assert both == pytest.approx([raw[i] / math.sqrt(count[i]) for i in (x, y, z, w)])


def test_cooc_uses_only_the_window_of_recent_positives() -> None:
    model = model_with({"a": [0, 1, 2, 3, 4]}, cooc_window=2)
    co = model.cooc([4], [1.0], 5)
    assert co[:3] == pytest.approx([0.0, 0.0, 0.0])
    assert co[3] > 0 and co[4] > 0


def test_cooc_neighbours_are_bounded_per_item() -> None:
    model = model_with({f"u{n}": [0, n + 1] for n in range(5)}, cooc_neighbors=2)
    co = model.cooc([0], [1.0], 6)
    assert [i for i in range(1, 6) if co[i] > 0] == [4, 5]  # only the two latest users of item 0


def test_score_blends_cooc_and_popularity_and_new_users_get_trending() -> None:
    model = model_with({"a": [0, 1], "b": [0, 1], "c": [2], "d": [2], "e": [2]}, cooc_weight=0.8)
    fresh = model.score(None, 3)
    assert np.argmax(fresh) == 2  # most clicked
    user = UserState(deque([0]), deque([T0]))
    s = model.score(user, 3, "me")
    assert np.argmax(s) == 1  # co-occurs with 0, beats the popular item 2
    assert s.dtype == np.float32
    sim = model.similar(0, 3)
    assert sim[1] > sim[2] > 0.0  # co-occurrence first, then popularity as a tie-breaker


def test_forget_leaves_what_a_model_that_never_saw_the_user_has() -> None:
    rng = np.random.default_rng(2)
    users: dict[str, UserState] = {}
    stream = [
        Interaction(
            str(rng.choice(["a", "b", "c", "gone"])),
            int(rng.integers(0, 9)),
            float(rng.choice([1, 4])),
            1e9 + 600.0 * t,
            True,
        )
        for t in range(300)
    ]
    stream.append(Interaction("gone", 20, 1.0, 1e9 + 1e5, True))  # a row only they touched
    live, fresh = PopularityCooc(users), PopularityCooc(users)
    for k in range(0, len(stream), 17):
        live.observe(stream[k : k + 17])
        fresh.observe([it for it in stream[k : k + 17] if it.user_id != "gone"])
    live.forget([it for it in stream if it.user_id == "gone"])
    now = 1e9 + 2e5
    np.testing.assert_allclose(live.popular.at(now, 21), fresh.popular.at(now, 21), rtol=1e-9, atol=1e-15)
    np.testing.assert_allclose(live.trending.at(now, 21), fresh.trending.at(now, 21), rtol=1e-9, atol=1e-15)
    np.testing.assert_array_equal(live.counts(21), fresh.counts(21))
    assert live.counts(21)[20] == 0.0 and live.popular.at(now, 21)[20] == 0.0  # not a rounding residue
    assert all("gone" not in d for d in live.recent_users.values())
    assert {r: list(d) for r, d in live.recent_users.items() if d} == {
        r: list(d) for r, d in fresh.recent_users.items() if d
    }
