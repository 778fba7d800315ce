"""`EventFilter` with its default `FilterConfig`: what bots, scripts, click farms and double clicks
look like to it, and what normal heavy users and genuinely popular items must not look like."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable

from liverec.core.schema import Event, EventType
from liverec.trainer.filters import EventFilter, FilterConfig

T = 1_700_000_000.0
CFG = FilterConfig()


def ev(user: str, item: str, ts: float, type: EventType = EventType.click) -> Event:
    return Event(user_id=user, item_id=item, type=type, timestamp=ts)


def verdicts(f: EventFilter, events: Iterable[Event]) -> list[str | None]:
    return [f.check(e) for e in events]


def test_duplicates_within_the_window_are_dropped_and_later_ones_are_not() -> None:
    """The same (user, item, type) again within `duplicate_window_s` is a duplicate (a double click
    or a retry with a new id); the same after the window is not, nor another type at once."""
    f = EventFilter()
    w = CFG.duplicate_window_s
    out = verdicts(
        f,
        [
            ev("u", "a", T),
            ev("u", "a", T + w / 4),  # double click
            ev("u", "a", T + w / 2, EventType.add_to_cart),  # another type: not a duplicate
            ev("v", "a", T + w / 2),  # another user: not a duplicate
            ev("u", "a", T + w / 4 + w * 1.5),  # beyond the window of the previous one
        ],
    )
    assert out == [None, "duplicate", None, None, None]
    assert f.counts["duplicate"] == 1 and f.counts["ok"] == 4


def test_repeated_identical_clicks_beyond_max_repeats_are_held_back_until_the_window_passes() -> None:
    """A user clicking the same item over and over: the first `max_repeats` clicks count, the rest
    are held back as repeats, until `repeat_window_s` has passed since the oldest remembered one."""
    f = EventFilter()
    gap = CFG.duplicate_window_s * 5  # not duplicates, just the same click again and again
    out = verdicts(f, [ev("u", "a", T + k * gap) for k in range(10)])
    assert out == [None] * CFG.max_repeats + ["repeated_click"] * (10 - CFG.max_repeats)
    assert verdicts(f, [ev("u", "b", T + 10 * gap)]) == [None]  # other items are unaffected
    later = T + 9 * gap + CFG.repeat_window_s + 1.0  # every earlier click on "a" is out of the window
    assert verdicts(f, [ev("u", "a", later)]) == [None]


def test_a_user_burst_quarantines_the_user_for_quarantine_s() -> None:
    """More than `user_max_per_minute` events in a minute (a script) quarantine the user: every
    later event of theirs is held back until `quarantine_s` has passed; others are unaffected."""
    f = EventFilter()
    n = CFG.user_max_per_minute
    burst = [ev("bot", f"i{k}", T + k * 50.0 / n) for k in range(n + 1)]  # n + 1 in 50 s
    out = verdicts(f, burst)
    assert out[:n] == [None] * n and out[n] == "user_burst"
    end = burst[-1].timestamp
    assert f.check(ev("bot", "fresh", end + 120.0)) == "user_quarantined"
    assert f.check(ev("bot", "fresh2", end + CFG.quarantine_s - 1.0)) == "user_quarantined"
    assert f.check(ev("human", "i1", end + 1.0)) is None
    assert f.check(ev("bot", "fresh3", end + CFG.quarantine_s + 1.0)) is None  # served its time


def test_an_item_burst_from_few_users_quarantines_the_item() -> None:
    """A click farm: four accounts (fewer than `item_min_users`), each below the per-user limit,
    pushing one item past `item_max_per_minute` in a minute. The item is quarantined for
    `quarantine_s`: even a real user's click on it is held back, other items are not."""
    f = EventFilter()
    per_account = CFG.user_max_per_minute - 10  # each account alone looks like a fast human
    accounts = CFG.item_min_users - 1
    farm = [
        ev(f"farm{a}", "target", T + (k * accounts + a) * 55.0 / (per_account * accounts))
        for k in range(per_account)
        for a in range(accounts)
    ]
    out = verdicts(f, farm)
    assert "user_burst" not in out  # no single account trips the per-user limit ...
    assert "item_burst" in out  # ... but together they trip the item's
    end = farm[-1].timestamp
    assert f.check(ev("human", "target", end + 60.0)) == "item_quarantined"
    assert f.check(ev("human", "other", end + 61.0)) is None
    assert f.check(ev("human", "target", end + CFG.quarantine_s + 60.0)) is None


def test_a_heavy_human_is_not_quarantined() -> None:
    """A person clicking 30 different items in a minute, for ten minutes, with a few double clicks
    and re-clicks: all but the double clicks are learned from."""
    f = EventFilter()
    events = []
    for minute in range(10):
        for k in range(30):
            ts = T + minute * 60.0 + k * 2.0
            events.append(ev("heavy", f"i{(minute * 30 + k) % 200}", ts))
            if k % 10 == 0:
                events.append(ev("heavy", f"i{(minute * 30 + k) % 200}", ts + 0.3))  # double click
    out = Counter(verdicts(f, events))
    assert out == Counter({None: 300, "duplicate": 30})


def test_a_genuinely_popular_item_clicked_by_many_users_at_once_is_not_quarantined() -> None:
    """Two thousand different users clicking the same item within one minute (a hit): far more
    than `item_max_per_minute`, but from many users, so every click counts."""
    f = EventFilter()
    out = verdicts(f, [ev(f"fan{k}", "hit", T + k * 0.025) for k in range(2_000)])
    assert out == [None] * 2_000
    assert f.counts == Counter({"ok": 2_000})


def test_impressions_are_never_held_back_nor_counted_against_anyone() -> None:
    """Impressions are written by the server for every list it serves: a flood of them is neither
    a burst nor a duplicate, and the user's clicks still count."""
    f = EventFilter()
    flood = [ev("u", "a", T + k * 0.01, EventType.impression) for k in range(1_000)]
    assert verdicts(f, flood) == [None] * 1_000
    assert f.check(ev("u", "a", T + 11.0)) is None


def test_prune_forgets_idle_state_but_keeps_active_quarantines() -> None:
    """Pruning bounds memory by active users without lifting a quarantine still in force."""
    f = EventFilter()
    n = CFG.user_max_per_minute
    verdicts(f, [ev("bot", f"i{k}", T + k * 0.1) for k in range(n + 1)])
    verdicts(f, [ev(f"idle{k}", "x", T + k * 0.1) for k in range(50)])
    now = T + 2 * 3_600.0
    f.prune(T + 600.0)
    assert f.check(ev("bot", "z", T + 600.0)) == "user_quarantined"
    f.prune(now)
    assert not f._user_times and not f._last_seen  # idle users are forgotten
    assert f.check(ev("bot", "z", now)) is None  # the quarantine (1 h) is over
