"""Rewards and live user state."""

from __future__ import annotations

import pytest

from liverec.core.catalog import Catalog
from liverec.core.features import EVENT_TYPE_IDS
from liverec.core.rewards import Rewards, is_positive, reward
from liverec.core.schema import Event, EventType, StoredEvent
from liverec.core.state import LiveState
from liverec.settings import RewardWeights

T0 = 1_700_000_000.0


def ev(user: str, item: str, type: str = "click", value: float | None = None, ts: float = T0) -> Event:
    return Event(user_id=user, item_id=item, type=EventType(type), value=value, timestamp=ts)


def stored(*events: Event) -> list[StoredEvent]:
    return [StoredEvent(offset=n + 1, event=e) for n, e in enumerate(events)]


# -- rewards ---------------------------------------------------------------------------------------
def test_reward_per_type_follows_the_weights() -> None:
    w = RewardWeights(click=1.5, purchase=7.0, dislike=-2.0, skip=-0.5)
    r = Rewards(w)
    for t in ("click", "purchase", "dislike", "skip", "impression", "like", "add_to_cart"):
        assert r(ev("u", "i", t)) == getattr(w, t)
    assert r(ev("u", "i", "impression")) == 0.0
    assert not is_positive(ev("u", "i", "dislike"), w)
    assert not is_positive(ev("u", "i", "skip"), w)
    assert not is_positive(ev("u", "i", "impression"), w)
    assert is_positive(ev("u", "i", "purchase"), w)


def test_rating_threshold() -> None:
    w = RewardWeights(rating=2.0, rating_positive_min=3.5)
    assert reward(ev("u", "i", "rating", 3.4), w) == 0.0
    assert reward(ev("u", "i", "rating", 3.5), w) == 2.0
    assert reward(ev("u", "i", "rating", 5.0), w) == 2.0
    assert not is_positive(ev("u", "i", "rating", 1.0), w)
    assert is_positive(ev("u", "i", "rating", 4.0), w)


def test_dwell_threshold_and_normalisation() -> None:
    w = RewardWeights(dwell=3.0, dwell_positive_s=10.0, dwell_norm_s=60.0)
    assert reward(ev("u", "i", "dwell", 9.99), w) == 0.0
    assert reward(ev("u", "i", "dwell", 10.0), w) == pytest.approx(3.0 * 10 / 60)
    assert reward(ev("u", "i", "dwell", 30.0), w) == pytest.approx(3.0 * 30 / 60)
    assert reward(ev("u", "i", "dwell", 600.0), w) == pytest.approx(3.0)  # capped at the weight
    assert reward(ev("u", "i", "dwell", 0.0), RewardWeights(dwell_positive_s=0.0)) == 0.0


# -- live state ------------------------------------------------------------------------------------
def test_live_state_bounds_sequences_and_remembers_everything_seen() -> None:
    catalog = Catalog()
    state = LiveState(catalog, RewardWeights(), max_sequence=3)
    items = [f"i{n}" for n in range(6)]
    out = state.apply(stored(*(ev("u", i, ts=T0 + n) for n, i in enumerate(items))))
    st = state.get("u")
    assert st is not None
    assert [catalog.ids[r] for r in st.items] == items[-3:]
    assert list(st.times) == [T0 + 3, T0 + 4, T0 + 5]
    assert {catalog.ids[r] for r in st.seen} == set(items)
    assert [catalog.ids[i.row] for i in out] == items
    assert all(i.positive and i.reward == 1.0 for i in out)
    assert st.last_offset == state.last_offset == 6


def test_one_engagement_is_one_position_with_its_deepest_type() -> None:
    """click, add_to_cart, purchase of one item in a row: one position; clicking it again after
    another item is a new position."""
    catalog = Catalog()
    state = LiveState(catalog, RewardWeights())
    evs = [ev("u", "a", "click", ts=T0), ev("u", "a", "add_to_cart", ts=T0 + 1)]
    evs += [ev("u", "a", "purchase", ts=T0 + 2), ev("u", "b", ts=T0 + 3), ev("u", "a", ts=T0 + 4)]
    state.apply(stored(*evs))
    st = state.get("u")
    assert st is not None
    assert [catalog.ids[r] for r in st.items] == ["a", "b", "a"]
    assert list(st.times) == [T0, T0 + 3, T0 + 4]
    assert list(st.types) == [EVENT_TYPE_IDS[EventType.purchase], *[EVENT_TYPE_IDS[EventType.click]] * 2]


def test_ratings_are_typed_by_their_stars_alike_live_and_offline() -> None:
    """A 1-star and a 5-star rating are different inputs to the model; the live state and the
    offline sequences must give them the same ids, or serving would read what training never saw."""
    from liverec.core.features import N_EVENT_TYPES, event_type_id
    from liverec.core.split import sequences_from_events

    evs = [
        ev("u", "a", "rating", 1.0, T0),
        ev("u", "b", "rating", 4.6, T0 + 1),
        ev("u", "c", "rating", 5.0, T0 + 2),
    ]
    evs += [ev("u", "d", "rating", 9.0, T0 + 3), ev("u", "e", "click", ts=T0 + 4)]
    state = LiveState(Catalog(), RewardWeights())
    state.apply(stored(*evs))
    st = state.get("u")
    assert st is not None
    one, five = event_type_id(EventType.rating, 1.0), event_type_id(EventType.rating, 5.0)
    click = EVENT_TYPE_IDS[EventType.click]
    assert list(st.types) == [one, five, five, five, click]  # 4.6 rounds to 5, 9 is capped at 5
    assert len({one, five, click, EVENT_TYPE_IDS[EventType.rating]}) == 4
    assert max(st.types) <= N_EVENT_TYPES  # fits the model's type embedding
    assert sequences_from_events(evs).types[0].tolist() == list(st.types)


def test_live_state_negatives_are_seen_but_not_in_the_sequence() -> None:
    catalog = Catalog()
    state = LiveState(catalog, RewardWeights())
    out = state.apply(
        stored(ev("u", "a"), ev("u", "b", "dislike"), ev("u", "c", "rating", 1.0), ev("u", "d", "skip"))
    )
    st = state.get("u")
    assert st is not None
    assert [catalog.ids[r] for r in st.items] == ["a", "c"]  # a rating >= 0 is positive by default
    assert {catalog.ids[r] for r in st.seen} == {"a", "b", "c", "d"}
    assert [(catalog.ids[i.row], i.positive) for i in out] == [
        ("a", True),
        ("b", False),
        ("c", True),
        ("d", False),
    ]


def test_live_state_ignores_impressions_but_knows_their_items() -> None:
    catalog = Catalog()
    state = LiveState(catalog, RewardWeights())
    out = state.apply(
        stored(ev("u", "shown", "impression"), ev("v", "a"), ev("v", "also-shown", "impression"))
    )
    assert state.get("u") is None  # an impression alone makes no user
    st = state.get("v")
    assert st is not None
    assert [catalog.ids[r] for r in st.items] == ["a"]
    assert {catalog.ids[r] for r in st.seen} == {"a"}
    assert [i.user_id for i in out] == ["v"]
    assert state.events_applied == 3
    assert {"shown", "also-shown"} <= set(catalog.ids)  # as in the store, which made stubs for them


def test_live_state_rewards_equal_rewards_for_every_type_and_value() -> None:
    """`LiveState` looks rewards up per type except where the value matters: same numbers as `Rewards`."""
    w = RewardWeights(click=1.5, purchase=7.0, dislike=-2.0, skip=-0.5, rating_positive_min=3.0)
    values: dict[EventType, list[float | None]] = {t: [None, 0.0, 2.0, 600.0] for t in EventType}
    values[EventType.rating] = [1.0, 3.0, 5.0]
    values[EventType.dwell] = [0.0, 9.0, 30.0, 600.0]
    events = [ev(f"u{i}", "i", t.value, v) for i, t in enumerate(EventType) for v in values[t]]
    state = LiveState(Catalog(), w)
    out = state.apply(stored(*events))
    expected = [Rewards(w)(e) for e in events if e.type is not EventType.impression]
    assert [i.reward for i in out] == expected
    assert state.events_applied == len(events) and state.last_offset == len(events)


def test_live_state_remove() -> None:
    state = LiveState(Catalog(), RewardWeights())
    state.apply(stored(ev("u", "a"), ev("v", "a")))
    assert state.remove("u") is True
    assert state.remove("u") is False
    assert state.get("u") is None
    assert len(state) == 1
