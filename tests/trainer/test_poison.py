"""A poisoned stream through the learner path: one bot sends 20,000 clicks on one item while 300
real users keep browsing. With the default `FilterConfig` the bot is quarantined (its events stay in
the log) and what the published, served model recommends to everyone else barely moves: at most one
item of anyone's top-10 differs from the same stream without the bot. Clicks on one item in a row
are one engagement (no training example), so the control uses a bot that switches between two
items: filtered it is as harmless, unfiltered it moves other users' lists (so the comparison can
tell)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import pytest

from liverec.core.schema import Event
from liverec.model.text import TextEncoder
from liverec.serve.engine import Engine
from liverec.trainer.filters import FilterConfig
from liverec.trainer.follow import GateConfig

from .conftest import N_USERS, STREAM_T0, Trained, click, interleave, make_rig, stream

BOT_CLICKS = 20_000
BOT_ITEM = "space-3"
BOT_ITEM_2 = "space-4"
# the defaults, but decisions only by event count (deterministic) and small enough slices to decide on
GATE = GateConfig(publish_s=1e9, min_eval=60)
STEPS = 6  # clicks per real user in the stream (1,800 events over 6 minutes)


@dataclass
class Outcome:
    top10: dict[str, list[str]]  # user -> served top-10
    counts: Counter[str]  # filter verdicts (reason -> events)
    live: str
    last_reason: str
    logged: int  # events in the log
    bot_logged: int


def bot(items: tuple[str, ...] = (BOT_ITEM,)) -> list[Event]:
    """The bot's clicks, cycling through ``items``."""
    span = STEPS * N_USERS * 0.2
    return [
        click("bot", items[k % len(items)], STREAM_T0 + span * k / BOT_CLICKS, event_id=f"bot-{k}")
        for k in range(BOT_CLICKS)
    ]


def tail() -> list[Event]:
    """The same last page for every run (the bot has stopped): the final candidate is scored on it
    and published, so every run ends serving the weights that learned the whole stream."""
    after = stream(STEPS + 1)[STEPS * N_USERS :]
    return after[:150]


def run(
    root: Path, trained: Trained, encoder: TextEncoder, events: list[Event], filters: FilterConfig | None
) -> Outcome:
    rig = make_rig(root, trained, encoder)
    try:
        f = rig.follower(gate=GATE, filters=filters)
        rig.append(events)
        f.run(follow=False)  # the CLI's page size
        rig.append(tail())
        f.run(follow=False)
        assert f.learner is not None
        counts = f.learner.filter.counts if f.learner.filter else Counter()
        last = f.decisions[-1]
        assert last.published == rig.registry.live(), last.reason
        engine = Engine(rig.settings).start()
        try:
            assert engine.model_version == f"transformer@{last.published}"
            top10 = {
                f"u{u}": [i.item_id for i in engine.recommend(f"u{u}", 10, log_impressions=False).items]
                for u in range(N_USERS)
            }
        finally:
            engine.close()
        return Outcome(
            top10,
            counts,
            last.published,
            last.reason,
            rig.store.count_events(),
            len(rig.store.user_history("bot")),
        )
    finally:
        rig.store.close()


@pytest.fixture(scope="module")
def outcomes(
    tmp_path_factory: pytest.TempPathFactory, trained: Trained, encoder: TextEncoder
) -> dict[str, Outcome]:
    root = tmp_path_factory.mktemp("poison")
    legit = stream(STEPS)
    poisoned = interleave(legit, bot())
    # Clicks on one item in a row are one engagement and teach the learner nothing, so the control
    # needs a bot that switches between two items to be learned from at all.
    switching = interleave(legit, bot((BOT_ITEM, BOT_ITEM_2)))
    return {
        "clean": run(root / "clean", trained, encoder, legit, FilterConfig()),
        "bot": run(root / "bot", trained, encoder, poisoned, FilterConfig()),
        "bot2": run(root / "bot2", trained, encoder, switching, FilterConfig()),
        "bot2-unfiltered": run(root / "unfiltered", trained, encoder, switching, None),
    }


def changed(a: dict[str, list[str]], b: dict[str, list[str]]) -> Counter[int]:
    """How many users have n items of their top-10 replaced, by n."""
    assert a.keys() == b.keys() and all(len(v) == 10 for v in a.values())
    return Counter(len(set(a[u]) - set(b[u])) for u in a)


def test_the_bot_is_quarantined_but_its_events_stay_in_the_log(outcomes: dict[str, Outcome]) -> None:
    """All but a handful of the bot's clicks are held back (a duplicate burst, then the user is
    quarantined for the rest), real users' events all pass, and the log keeps every bot event."""
    clean, poisoned = outcomes["clean"], outcomes["bot"]
    assert set(clean.counts) == {"ok"}  # nothing real is held back
    let_through = poisoned.counts["ok"] - clean.counts["ok"]
    assert 0 < let_through <= FilterConfig().max_repeats
    assert poisoned.counts["user_burst"] == 1
    assert poisoned.counts.total() - clean.counts.total() == BOT_CLICKS
    assert poisoned.counts["user_quarantined"] + poisoned.counts["duplicate"] >= BOT_CLICKS - 125
    assert poisoned.bot_logged == BOT_CLICKS
    assert poisoned.logged == clean.logged + BOT_CLICKS


def test_other_users_top10_moves_by_at_most_one_item(outcomes: dict[str, Outcome]) -> None:
    """Every real user's served top-10 after the poisoned stream differs from the one after the
    same stream without the bot by at most one item."""
    for name in ("bot", "bot2"):
        diff = changed(outcomes["clean"].top10, outcomes[name].top10)
        assert max(diff) <= 1, (name, sorted(diff.items()))


def test_without_the_filter_the_same_bot_moves_other_users_lists(outcomes: dict[str, Outcome]) -> None:
    """The control: learning the (switching) bot's clicks changes several items of many users'
    top-10, so the comparison above would catch a filter that let the bot through."""
    diff = changed(outcomes["clean"].top10, outcomes["bot2-unfiltered"].top10)
    assert sum(n for k, n in diff.items() if k >= 2) >= 30, sorted(diff.items())
