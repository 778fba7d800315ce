"""One bad request never fails the others in its group commit (issue 25, item 2).

Validation now refuses everything known to fail in the store (deep or huge context, NUL, ids), so
the bad request here fails through a real store condition instead: a SQLite trigger that aborts the
insert of one user's rows (`RAISE(ABORT)`, as a CHECK constraint or a full disk would), inside the
real SQLite store's group transaction. 20 rounds of 60 concurrent good POSTs plus the bad one, over
ASGI with httpx: every good request is committed and answered 200, only the bad one fails.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx

from liverec.core.schema import Event
from liverec.serve.app import create_app
from liverec.store import AppendResult, open_store
from support.api import NOW, event, make_settings

ROUNDS, GOOD = 20, 60
POISON = "poison"


def poison_the_store(store_url: str) -> None:
    with open_store(store_url):  # creates the schema
        pass
    db = sqlite3.connect(store_url.removeprefix("sqlite:///"))
    db.execute(
        f"CREATE TRIGGER refuse_poison BEFORE INSERT ON events WHEN NEW.user_id = '{POISON}' "
        "BEGIN SELECT RAISE(ABORT, 'row refused by the store'); END"
    )
    db.commit()
    db.close()


async def scenario(tmp_path: Path) -> tuple[list[int], list[int], list[int], int]:
    settings = make_settings(tmp_path / "data")
    poison_the_store(settings.store_url)
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        engine = app.state.engine
        append = engine.writer.append
        grouped_with_poison: list[int] = []

        def watched(events: Sequence[Event]) -> AppendResult:
            if any(ev.user_id == POISON for ev in events):
                grouped_with_poison.append(len(events))
            return append(events)

        engine.writer.append = watched
        transport = httpx.ASGITransport(app=app)
        good_status: list[int] = []
        bad_status: list[int] = []
        async with httpx.AsyncClient(transport=transport, base_url="http://liverec") as client:
            for r in range(ROUNDS):
                bodies: list[dict[str, Any]] = [
                    event(f"u{r}-{n}", f"i{n % 7}", event_id=f"e{r}-{n}", timestamp=NOW - 60)
                    for n in range(GOOD)
                ]
                bodies.insert(GOOD // 2, event(POISON, "i0", event_id=f"bad{r}", timestamp=NOW - 60))
                responses = await asyncio.gather(*(client.post("/v1/events", json=b) for b in bodies))
                for body, resp in zip(bodies, responses, strict=True):
                    (bad_status if body["user_id"] == POISON else good_status).append(resp.status_code)
        logged = engine.store.last_offset()
    return good_status, bad_status, grouped_with_poison, logged


def test_one_refused_request_fails_alone_in_its_group(tmp_path: Path) -> None:
    good, bad, groups, logged = asyncio.run(scenario(tmp_path))
    failed_good = sum(s != 200 for s in good)
    print(f"\ngood requests: {len(good)}, failed: {failed_good}; bad: {bad}; poison group sizes {groups}")
    assert len(good) == ROUNDS * GOOD
    assert failed_good == 0
    assert bad == [503] * ROUNDS  # the refused one, and only it, says nothing was written
    assert max(groups) > 1  # the bad request really did share a group with good ones
    assert logged == ROUNDS * GOOD  # every good event is durable, no bad one is
