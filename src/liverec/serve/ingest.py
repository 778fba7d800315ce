"""Group commit: concurrent writers share one durable transaction, on one writer thread.

The `Engine` owns a `GroupCommit`. Callers (the HTTP routes, from the event loop) queue their
events and get a future back; the writer thread takes everything queued since its last
transaction, hands it to `Engine.ingest` as one batch (one append, one fsync, one fold), and
resolves each caller's future with that caller's share of the result. So the event loop never
waits on the store or the models, and requests that arrive while a group is being written form
the next group: fsync is paid once per group instead of once per request.

Item upserts and user deletes queue on the same thread (each on its own, in queue order), so
`close` finishes every write that was accepted before it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from itertools import chain
from typing import Any, TypeVar

from liverec.core.schema import Event
from liverec.store import AppendResult
from liverec.store.base import StoreError

T = TypeVar("T")
Append = Callable[[Sequence[Event]], AppendResult]


@dataclass(eq=False)
class _Job:
    future: Future[Any]
    events: Sequence[Event] = ()  # an append, grouped with its queued neighbours...
    call: Callable[[], Any] | None = None  # ...or any other write, run on its own


class GroupCommit:
    """The one writer thread: started by the first write, stopped by `close`."""

    def __init__(self, append: Append, name: str = "liverec-writer") -> None:
        self.append = append  # durable append + fold of one batch: `Engine.ingest`
        self.name = name
        self._wake = threading.Condition()
        self._queue: list[_Job] = []
        self._thread: threading.Thread | None = None
        self._closed = False

    def submit(self, events: Sequence[Event]) -> Future[AppendResult]:
        """Queue ``events`` for the next group. The future resolves once they are durable and folded,
        with this batch's share of the group's result, or fails with this batch's own error: a group
        that fails is retried batch by batch, so one bad batch fails nobody else."""
        return self._put(_Job(Future(), events=events))

    def call(self, write: Callable[[], T]) -> Future[T]:
        """Queue another kind of write (items, deletes): run alone, in order with the groups."""
        return self._put(_Job(Future(), call=write))

    def _put(self, job: _Job) -> Future[Any]:
        # Running from the start: a queued write happens even if its waiter goes away (a client
        # disconnects), so cancelling it is refused rather than disturbing the group it is in.
        job.future.set_running_or_notify_cancel()
        with self._wake:
            if self._closed:
                job.future.set_exception(StoreError("the engine is closed; nothing was written"))
                return job.future
            self._queue.append(job)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
                self._thread.start()
            self._wake.notify()
        return job.future

    @property
    def queued(self) -> int:
        """Writes waiting for the thread (not counting the one being written)."""
        return len(self._queue)

    def close(self) -> None:
        """Finish every queued write, then stop the thread; later writes fail with nothing written."""
        with self._wake:
            self._closed = True
            self._wake.notify()
            thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join()

    def _run(self) -> None:
        while True:
            with self._wake:
                while not self._queue and not self._closed:
                    self._wake.wait()
                if not self._queue:  # closed, and nothing left to write
                    return
                jobs, self._queue = self._queue, []
            group: list[_Job] = []
            for job in jobs:
                if job.call is None:
                    group.append(job)
                    continue
                self._commit(group)  # writes keep their queue order
                group = []
                try:
                    job.future.set_result(job.call())
                except Exception as exc:
                    job.future.set_exception(exc)
            self._commit(group)

    def _commit(self, group: list[_Job]) -> None:
        if not group:
            return
        batches = [job.events for job in group]
        flat = batches[0] if len(batches) == 1 else list(chain.from_iterable(batches))
        try:
            appended = self.append(flat)
        except Exception as exc:
            if len(group) == 1:  # every exception reaches its waiter, never leaves it hanging
                group[0].future.set_exception(exc)
                return
            # One request's rows can fail the whole group (a row the store refuses). Nothing of the
            # group was written (a failed append is all-or-nothing), so each request is retried on
            # its own: only the one that fails again gets the error, every other one is committed.
            # Events are idempotent by event_id, so a retry never writes an event twice.
            for job in group:
                self._commit([job])
            return
        for job, result in zip(group, split(batches, appended), strict=True):
            job.future.set_result(result)


def split(batches: Sequence[Sequence[Event]], appended: AppendResult) -> list[AppendResult]:
    """Per-request results from one append of the concatenated batches."""
    if len(batches) == 1:
        return [appended]
    out = []
    if not appended.duplicates:  # every event was new: each batch's share is its slice
        start = 0
        for batch in batches:
            out.append(AppendResult(appended.accepted[start : start + len(batch)], 0))
            start += len(batch)
        return out
    # The first occurrence of an id (in request order) is the one the store accepted.
    unclaimed = {s.event.event_id: s for s in appended.accepted}
    for batch in batches:
        mine = [s for s in (unclaimed.pop(ev.event_id, None) for ev in batch) if s is not None]
        out.append(AppendResult(mine, len(batch) - len(mine)))
    return out
