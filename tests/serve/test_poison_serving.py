"""A poisoned stream through the serving path: one bot sends 20,000 clicks on one item while 300
real users browse. The live popularity, trending and co-occurrence counts are screened by the same
`EventFilter` as the learner (`[filters] serving`), so new users' top-10 (trending) and existing
users' top-10 (co-occurrence + popularity) barely move, and the bot's item is not first. Its events
stay in the log. The control (`serving = false`) shows the same bot taking first place."""

from __future__ import annotations

import random
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import pytest

from liverec.core.schema import Event, EventType
from liverec.serve.engine import Engine
from liverec.settings import FilterConfig, Settings

N_USERS, STEPS, N_ITEMS = 300, 6, 40
BOT_CLICKS = 20_000
BOT_ITEM = "i-30"  # a rarely clicked item: only the bot can lift it
T0 = time.time() - 3600.0
SPAN = 360.0  # the stream's six minutes
EXISTING = [f"u{u}" for u in range(0, N_USERS, N_USERS // 50)][:50]
NEW = [f"new-{n}" for n in range(10)]


def click(user: str, item: str, ts: float, event_id: str) -> Event:
    return Event(event_id=event_id, user_id=user, item_id=item, type=EventType.click, timestamp=ts)


def legit() -> list[Event]:
    """300 users, six clicks each on a Zipf-shaped catalog, spread over six minutes."""
    rng = random.Random(0)
    weights = [1.0 / (k + 1) for k in range(N_ITEMS)]
    out = []
    for u in range(N_USERS):
        items = rng.choices([f"i-{k}" for k in range(N_ITEMS)], weights, k=STEPS)
        for s, item in enumerate(items):
            ts = T0 + SPAN * (s * N_USERS + u) / (STEPS * N_USERS)
            out.append(click(f"u{u}", item, ts, f"u{u}-{s}"))
    return out


def bot() -> list[Event]:
    return [click("bot", BOT_ITEM, T0 + SPAN * k / BOT_CLICKS, f"bot-{k}") for k in range(BOT_CLICKS)]


@dataclass
class Outcome:
    new: dict[str, list[str]]
    existing: dict[str, list[str]]
    logged: int


def run(root: Path, events: list[Event], serving: bool) -> Outcome:
    settings = Settings(
        data_dir=root, store_url=f"sqlite:///{root / 'events.db'}", filters=FilterConfig(serving=serving)
    )
    engine = Engine(settings).start(models=False)
    try:
        events = sorted(events, key=lambda e: e.timestamp)
        for start in range(0, len(events), 2_000):
            engine.ingest(events[start : start + 2_000])

        def top10(user: str) -> list[str]:
            return [i.item_id for i in engine.recommend(user, 10, log_impressions=False).items]

        return Outcome(
            {u: top10(u) for u in NEW}, {u: top10(u) for u in EXISTING}, engine.store.count_events()
        )
    finally:
        engine.close()


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Outcome]:
    root = tmp_path_factory.mktemp("poison-serving")
    clean, poisoned = legit(), legit() + bot()
    return {
        "clean": run(root / "clean", clean, serving=True),
        "bot": run(root / "bot", poisoned, serving=True),
        "bot-unscreened": run(root / "unscreened", poisoned, serving=False),
    }


def changed(a: dict[str, list[str]], b: dict[str, list[str]]) -> Counter[int]:
    """How many users have n items of their top-10 replaced, by n."""
    assert a.keys() == b.keys() and all(len(v) == 10 for v in a.values())
    return Counter(len(set(a[u]) - set(b[u])) for u in a)


def test_a_bot_burst_moves_new_users_top10_by_at_most_one_item(outcomes: dict[str, Outcome]) -> None:
    clean, poisoned = outcomes["clean"], outcomes["bot"]
    new = changed(clean.new, poisoned.new)
    existing = changed(clean.existing, poisoned.existing)
    print(f"\nscreened: new users {sorted(new.items())}, existing users {sorted(existing.items())}")
    assert max(new) <= 1, sorted(new.items())
    assert all(top[0] != BOT_ITEM for top in poisoned.new.values())
    assert max(existing) <= 1, sorted(existing.items())
    assert sum(top[0] == BOT_ITEM for top in poisoned.existing.values()) == 0
    assert poisoned.logged == clean.logged + BOT_CLICKS  # every bot event is in the log


def test_unscreened_the_same_bot_tops_every_new_users_list(outcomes: dict[str, Outcome]) -> None:
    """The control: the counts without the filter put the bot's item first for every new user."""
    clean, poisoned = outcomes["clean"], outcomes["bot-unscreened"]
    new = changed(clean.new, poisoned.new)
    existing = changed(clean.existing, poisoned.existing)
    print(f"\nunscreened: new users {sorted(new.items())}, existing users {sorted(existing.items())}")
    assert all(top[0] == BOT_ITEM for top in poisoned.new.values())
    assert sum(n for k, n in existing.items() if k >= 1) >= 25, sorted(existing.items())
