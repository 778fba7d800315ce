"""`LogFollower`: keeps one server's live state in step with a log other servers also write.

Replicas of `liverec serve` share one store (Postgres or Redis). Each folds its own writes as they are
acknowledged (`Engine.ingest`, which first folds any events of others that came before them), and
this thread folds everyone else's: it sleeps in `EventStore.wait_for_events` (Postgres NOTIFY, Redis
XREAD BLOCK) and calls `catch_up`, which reads past the last folded offset. Both run under the
engine's writer lock, in offset order, so every replica folds every event exactly once and in the
same order, whoever accepted it.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import TYPE_CHECKING, Any

from liverec.core.schema import StoredEvent
from liverec.store import StoreError
from liverec.store.base import user_hash

if TYPE_CHECKING:
    from liverec.serve.engine import Engine

log = logging.getLogger(__name__)


class LogFollower:
    def __init__(self, engine: Engine, wait_s: float = 1.0) -> None:
        """``wait_s``: the longest sleep between checks (a missed wake-up costs at most this)."""
        self.engine = engine
        self.wait_s = wait_s
        self.folded = 0  # events of other writers folded by this thread
        self.forgotten = 0  # users another replica deleted, taken out of this one's state
        self.errors = 0
        self.caught_up_at = time.time()  # when the log last had nothing unfolded
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> LogFollower:
        self._thread = threading.Thread(target=self._run, name="liverec-log-follower", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.wait_s + 5)

    def _run(self) -> None:
        engine = self.engine
        while not self._stop.is_set():
            try:
                after = max(engine.state.last_offset, engine.log_read)
                if engine.store.wait_for_events(after, self.wait_s):
                    self.folded += catch_up(engine)
                self.forgotten += follow_deletions(engine)
                self.caught_up_at = time.time()
            except StoreError as exc:  # the store is down: keep serving what is folded, retry
                self.errors += 1
                log.warning("following the log failed (%s); retrying", exc)
                self._stop.wait(self.wait_s)
            except Exception:  # a bug must not silently end following: say so, keep going
                self.errors += 1
                log.exception("following the log failed")
                self._stop.wait(self.wait_s)

    def lag(self) -> dict[str, float | int | bool]:
        """How far behind the shared log this replica is: offsets written but not folded, and the
        seconds since it last had none (0 when caught up)."""
        engine = self.engine
        try:
            behind = max(0, engine.store.last_offset() - max(engine.state.last_offset, engine.log_read))
        except StoreError:
            behind = -1  # unknown: the store does not answer
        seconds = 0.0 if behind == 0 else max(0.0, time.time() - self.caught_up_at)
        return {
            "following": self._thread is not None and self._thread.is_alive(),
            "lag_offsets": behind,
            "lag_s": round(seconds, 3),
            "folded_from_others": self.folded,
            "deletions_followed": self.forgotten,
            "errors": self.errors,
        }


# -- the engine's side (the writer path; these hold its locks) ------------------------------------
def unfolded_before(engine: Engine, offset: int) -> list[list[StoredEvent]]:
    """The shared log's unfolded events below ``offset`` (none with one writer), read while the
    caller holds `_writing` but not `_lock`: readers do not wait on this read."""
    out: list[list[StoredEvent]] = []
    after = max(engine.state.last_offset, engine.log_read)
    while after < offset - 1:
        batch = [s for s in engine.store.read(after, min(offset - 1 - after, 10_000)) if s.offset < offset]
        if not batch:
            break
        out.append(batch)
        after = batch[-1].offset
    return out


def catch_up(engine: Engine, page: int = 10_000) -> int:
    """Fold every event other writers appended since the last one folded, in offset order; returns
    how many. Every offset up to the store's last one is then folded or was deleted (`log_read`)."""
    done = 0
    with engine._writing:
        end = engine.store.last_offset()  # offsets commit in order: all of these are visible
        while True:
            batch = engine.store.read(max(engine.state.last_offset, engine.log_read), page)
            if batch:
                with engine._lock:
                    engine._fold(batch)
                done += len(batch)
            if len(batch) < page:
                break
        engine.log_read = max(engine.log_read, end, engine.state.last_offset)
    return done


def follow_deletions(engine: Engine) -> int:
    """Forget users another replica deleted (by their recorded hash) from this live state; returns
    how many. Counts are taken back as this state holds them, up to ``[state] max_sequence``
    positives per user (the deleting replica, and any restart, are exact)."""
    with engine._writing:
        new = engine.store.deletions(after=engine.deletion_seq)
        if not new:
            return 0
        elsewhere = [d for d in new if d.user_hash not in engine.deleted_here]
        gone = {d.user_hash for d in elsewhere}
        with engine._lock:
            users = [u for u in engine.state.users if user_hash(u) in gone] if gone else []
            for user_id in users:
                engine._forget(user_id, engine.state.interactions_of(user_id))
            engine.state.events_applied -= sum(d.events for d in elsewhere)  # as a replay counts
        engine.deleted_here -= {d.user_hash for d in new}
        engine.deletion_seq = new[-1].seq
    return len(users)


def replica_status(engine: Engine) -> dict[str, Any]:
    """How far behind the shared log this server's live state is (for /healthz and /metrics)."""
    if engine.follower is not None:
        return engine.follower.lag()
    try:
        behind = max(0, engine.store.last_offset() - max(engine.state.last_offset, engine.log_read))
    except StoreError:
        behind = -1
    return {"following": False, "lag_offsets": behind, "lag_s": 0.0}
