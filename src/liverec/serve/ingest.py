"""Group commit: concurrent requests share one durable transaction.

Each request still gets its own answer, and only after its events are durable and folded into
live state. The append (SQLite and fsync, which release the GIL) runs in a worker thread so the
event loop keeps accepting requests; the fold into live state (pure Python) runs back on the loop,
so the two never fight over the GIL. Requests that arrive meanwhile are written together: fsync
is paid once per group instead of once per request.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import chain

from liverec.core.schema import Event
from liverec.serve.engine import Engine
from liverec.store import AppendResult


@dataclass(frozen=True)
class Ingested:
    accepted: int
    duplicates: int


class GroupCommit:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._pending: list[tuple[Sequence[Event], asyncio.Future[Ingested]]] = []
        self._writer: asyncio.Task[None] | None = None

    async def submit(self, events: Sequence[Event]) -> Ingested:
        """Durably append ``events`` (all-or-nothing for this request); raises StoreError on failure."""
        t0 = time.perf_counter()
        future: asyncio.Future[Ingested] = asyncio.get_running_loop().create_future()
        self._pending.append((events, future))
        if self.engine.observe is not None:  # event -> visible: durable and in live state
            future.add_done_callback(lambda f: self._visible(f, t0))
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._drain())
        return await future

    def _visible(self, future: asyncio.Future[Ingested], t0: float) -> None:
        if not future.cancelled() and future.exception() is None and self.engine.observe is not None:
            self.engine.observe("visible", time.perf_counter() - t0)

    async def _drain(self) -> None:
        while self._pending:
            group, self._pending = self._pending, []
            batches = [events for events, _ in group]
            flat = batches[0] if len(batches) == 1 else list(chain.from_iterable(batches))
            try:
                appended = await asyncio.to_thread(self.engine.store.append, flat)
            except Exception as exc:  # the whole group failed: nothing of it was written
                for _, future in group:
                    if not future.done():
                        future.set_exception(exc)
                continue
            self.engine.fold(appended.accepted)
            for (_, future), result in zip(group, split(batches, appended), strict=True):
                if not future.done():
                    future.set_result(result)


def split(batches: list[Sequence[Event]], appended: AppendResult) -> list[Ingested]:
    """Per-request counts from one append of the concatenated batches."""
    if len(batches) == 1:
        return [Ingested(len(appended.accepted), appended.duplicates)]
    if not appended.duplicates:  # every event was new: no need to find whose they were
        return [Ingested(len(batch), 0) for batch in batches]
    # The first occurrence of an id (in request order) is the one the store accepted.
    unclaimed = {s.event.event_id for s in appended.accepted}
    out = []
    for batch in batches:
        mine = 0
        for ev in batch:
            if ev.event_id in unclaimed:
                unclaimed.discard(ev.event_id)
                mine += 1
        out.append(Ingested(mine, len(batch) - mine))
    return out
