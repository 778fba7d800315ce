"""RewardJoiner: rewards attributed to the impressions that earned them, batch and streaming."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from liverec.core.rewards import Rewards
from liverec.core.schema import Event, EventContext, EventType
from liverec.events.join import JoinConfig, JoinedImpression, RewardJoiner, join_events, join_store
from liverec.serve.recommender import Recommendation, ScoredItem, impressions
from liverec.settings import RewardWeights, Settings
from liverec.store import open_store

T0 = 1_700_000_000.0


def served(user: str, request_id: str, items: list[str], t: float, policy: str = "eps") -> list[Event]:
    """Impressions exactly as the server logs them."""
    rec = Recommendation(
        request_id=request_id,
        model="m1",
        policy=policy,
        items=[ScoredItem(i, score=1.0 - 0.1 * k, propensity=0.5) for k, i in enumerate(items)],
    )
    return impressions(user, rec, now=t)


def act(
    user: str,
    item: str,
    kind: EventType,
    t: float,
    request_id: str | None = None,
    position: int | None = None,
    value: float | None = None,
) -> Event:
    ctx = EventContext(request_id=request_id, position=position)
    return Event(user_id=user, item_id=item, type=kind, timestamp=t, value=value, context=ctx)


def by_key(records: list[JoinedImpression]) -> dict[tuple[str | None, int | None], float]:
    return {(r.request_id, r.position): r.reward for r in records}


def test_request_id_and_position_join() -> None:
    log = [
        *served("u", "r1", ["a", "b", "a"], T0),  # the same item twice in one list
        *served("u", "r2", ["a", "c"], T0 + 1),
        act("u", "a", EventType.click, T0 + 5, request_id="r1", position=2),
        act("u", "b", EventType.click, T0 + 6, request_id="r1"),  # no position: the only b of r1
        act("u", "c", EventType.click, T0 + 7, request_id="r1", position=1),  # c was not in r1
        act("v", "a", EventType.click, T0 + 8, request_id="r2", position=0),  # another user
    ]
    joiner = RewardJoiner()
    out = joiner.feed_many(log) + joiner.flush()
    assert by_key(out) == {("r1", 0): 0.0, ("r1", 1): 1.0, ("r1", 2): 1.0, ("r2", 0): 0.0, ("r2", 1): 0.0}
    assert (joiner.stats.attributed, joiner.stats.unattributed) == (2, 2)
    rec = next(r for r in out if (r.request_id, r.position) == ("r1", 1))
    assert (rec.propensity, rec.policy, rec.model, rec.user_id, rec.item_id) == (0.5, "eps", "m1", "u", "b")
    assert rec.score == pytest.approx(0.9)
    assert rec.n_rewards == 1


def test_same_item_twice_without_position_credits_the_top_slot() -> None:
    log = [*served("u", "r1", ["x", "a", "a"], T0), act("u", "a", EventType.click, T0 + 1, request_id="r1")]
    assert by_key(join_events(log)) == {("r1", 0): 0.0, ("r1", 1): 1.0, ("r1", 2): 0.0}


def test_without_request_id_joins_the_latest_earlier_impression() -> None:
    log = [
        *served("u", "r1", ["a"], T0),
        *served("u", "r2", ["a"], T0 + 100),
        *served("w", "r3", ["a"], T0 + 120),  # someone else's impression of the same item
        act("u", "a", EventType.click, T0 + 150),
        *served("u", "r4", ["a"], T0 + 200),  # shown after the click: not its cause
    ]
    out = by_key(join_events(log))
    assert out == {("r1", 0): 0.0, ("r2", 0): 1.0, ("r3", 0): 0.0, ("r4", 0): 0.0}


def test_without_request_id_ignores_an_impression_stamped_after_the_reward() -> None:
    log = [
        *served("u", "r1", ["a"], T0),
        *served("u", "r2", ["a"], T0 + 300),  # logged first, but stamped after the click
        act("u", "a", EventType.click, T0 + 250),
    ]
    assert by_key(join_events(log)) == {("r1", 0): 1.0, ("r2", 0): 0.0}


@pytest.mark.parametrize("with_request_id", [True, False])
def test_late_conversion_inside_and_outside_the_window(with_request_id: bool) -> None:
    cfg = JoinConfig(window_s=1800.0)
    rid = "r1" if with_request_id else None
    log = [
        *served("u", "r1", ["a", "b"], T0),
        act("u", "a", EventType.purchase, T0 + 20 * 60, request_id=rid),  # 20 min: inside
        act("u", "b", EventType.purchase, T0 + 31 * 60, request_id=rid),  # 31 min: too late
    ]
    joiner = RewardJoiner(cfg)
    out = joiner.feed_many(log) + joiner.flush()
    assert by_key(out) == {("r1", 0): 4.0, ("r1", 1): 0.0}
    assert joiner.stats.unattributed == 1


def test_negatives_and_multiple_rewards_sum_or_max() -> None:
    log = [
        *served("u", "r1", ["a", "b", "c", "d"], T0),
        act("u", "a", EventType.click, T0 + 1, "r1", 0),
        act("u", "a", EventType.add_to_cart, T0 + 2, "r1", 0),
        act("u", "a", EventType.purchase, T0 + 3, "r1", 0),
        act("u", "b", EventType.skip, T0 + 4, "r1", 1),
        act("u", "b", EventType.dislike, T0 + 5, "r1", 1),
        act("u", "c", EventType.click, T0 + 6, "r1", 2),
        act("u", "c", EventType.skip, T0 + 7, "r1", 2),
        act("u", "d", EventType.dwell, T0 + 8, "r1", 3, value=30.0),  # 30 s of 60: half its weight
        act("u", "d", EventType.rating, T0 + 9, "r1", 3, value=-2.0),  # below the positive minimum: 0
    ]
    summed = join_events(log, JoinConfig(aggregate="sum"))
    maxed = join_events(log, JoinConfig(aggregate="max"))
    assert by_key(summed) == {("r1", 0): 7.0, ("r1", 1): -1.25, ("r1", 2): 0.75, ("r1", 3): 0.5}
    assert by_key(maxed) == {("r1", 0): 4.0, ("r1", 1): -0.25, ("r1", 2): 1.0, ("r1", 3): 0.5}
    assert [r.n_rewards for r in summed] == [3, 2, 2, 2]


def test_weights_and_window_come_from_settings() -> None:
    settings = Settings(rewards=RewardWeights(purchase=10.0), join={"window_s": 60.0, "aggregate": "max"})
    joiner = RewardJoiner.from_settings(settings)
    log = [
        *served("u", "r1", ["a", "b"], T0),
        act("u", "a", EventType.purchase, T0 + 30, "r1", 0),
        act("u", "a", EventType.click, T0 + 31, "r1", 0),
        act("u", "b", EventType.purchase, T0 + 61, "r1", 1),  # past the 60 s window
    ]
    assert by_key(joiner.feed_many(log) + joiner.flush()) == {("r1", 0): 10.0, ("r1", 1): 0.0}
    with pytest.raises(ValueError, match=r"join\n.*unknown key 'window' \(did you mean 'window_s'\?\)"):
        Settings(join={"window": 60})
    with pytest.raises(ValueError, match="aggregate"):
        JoinConfig(aggregate="mean")


def random_log(n_requests: int, seed: int) -> list[Event]:
    """Served lists and the clicks, purchases and skips that follow, some late, in time order."""
    rng = random.Random(seed)
    users, items = [f"u{i}" for i in range(6)], [f"i{i}" for i in range(12)]
    events: list[Event] = []
    t = T0
    for r in range(n_requests):
        t += rng.uniform(0, 40)
        user = rng.choice(users)
        shown = rng.sample(items, 4)
        events += served(user, f"r{r}", shown, t, policy=rng.choice(["eps", "greedy"]))
        for pos, item in enumerate(shown):
            if rng.random() < 0.4:
                kind = rng.choice([EventType.click, EventType.purchase, EventType.skip])
                rid = f"r{r}" if rng.random() < 0.6 else None
                events.append(act(user, item, kind, t + rng.uniform(0, 400), rid, pos if rid else None))
    return sorted(events, key=lambda e: e.timestamp)


def test_streaming_equals_batch_over_a_store(tmp_path: Path) -> None:
    log = random_log(150, seed=3)
    cfg = JoinConfig(window_s=300.0)
    with open_store(f"sqlite:///{tmp_path / 'events.db'}") as store:
        store.append(log)
        batch = join_store(store, cfg, page=97)
        stored = list(store.iter_events())
    joiner = RewardJoiner(cfg)
    streamed: list[JoinedImpression] = []
    half = len(stored) // 2
    for ev in stored[:half]:  # one event at a time, as a live server would
        streamed += joiner.feed(ev)
    assert 0 < len(streamed) < joiner.stats.impressions  # closed windows came out, open ones wait
    for ev in stored[half:]:
        streamed += joiner.feed(ev)
    streamed += joiner.flush()
    assert streamed == batch
    assert len(batch) == 150 * 4 and all(r.score is not None for r in batch)  # survives the store
    assert [r.offset for r in batch] == sorted(r.offset for r in batch if r.offset is not None)
    assert any(r.reward > 0 for r in batch) and any(r.reward < 0 for r in batch)
    # the bare events (no offsets) join the same way
    plain = join_events(log, cfg)
    assert [(r.event_id, r.reward) for r in plain] == [(r.event_id, r.reward) for r in batch]


def test_memory_is_bounded_by_the_window() -> None:
    joiner = RewardJoiner(JoinConfig(window_s=60.0))
    peak, out = 0, []
    for k in range(3000):
        out += joiner.feed(served("u", f"r{k}", [f"i{k % 50}"], T0 + k)[0])
        peak = max(peak, joiner.open_impressions)
    assert peak <= 62
    assert len(joiner._by_user_item) <= 62 and len(joiner._by_request) <= 62
    out += joiner.flush()
    assert len(out) == 3000 and joiner.open_impressions == 0
    assert not joiner._by_user_item and not joiner._by_request
    quiet = RewardJoiner(JoinConfig(window_s=60.0))
    quiet.feed_many(served("u", "r", ["a", "b"], T0))
    assert len(quiet.advance(T0 + 61)) == 2  # no events needed to close windows


def test_max_open_caps_memory_by_closing_the_oldest() -> None:
    joiner = RewardJoiner(JoinConfig(window_s=1e9, max_open=10))
    out = []
    for k in range(100):
        out += joiner.feed(served("u", f"r{k}", ["a"], T0 + k)[0])
        assert joiner.open_impressions <= 10
    assert joiner.stats.evicted == 90
    assert [r.request_id for r in out] == [f"r{k}" for k in range(90)]


def test_feedback_record_for_policies() -> None:
    rec = join_events(
        [*served("u", "r1", ["a", "b"], T0), act("u", "b", EventType.click, T0 + 1, "r1", 1)],
        rewards=Rewards(RewardWeights(click=2.0)),
    )[1]
    fb = rec.feedback(row=7)
    assert (fb.row, fb.position, fb.reward, fb.propensity) == (7, 1, 2.0, 0.5)
    assert fb.context is not None and fb.context["request_id"] == "r1"


def test_a_deleted_users_open_impressions_are_dropped_and_never_joined() -> None:
    joiner = RewardJoiner()
    joiner.feed_many([*served("u", "r1", ["a", "b"], T0), *served("v", "r2", ["a"], T0 + 1)])
    assert joiner.forget_user("u") == 2 and joiner.open_impressions == 1
    assert joiner.forget_user("u") == 0
    joiner.feed(act("u", "a", EventType.click, T0 + 2, request_id="r1", position=0))
    joiner.feed(act("u", "b", EventType.click, T0 + 3))  # by (user, item) too: nothing of u is left
    out = joiner.flush()
    assert [(r.user_id, r.request_id) for r in out] == [("v", "r2")]
    assert joiner.stats.attributed == 0
