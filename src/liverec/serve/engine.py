"""`Engine`: the in-process core that the HTTP API wraps, usable as a library on its own.

Ingest order is the whole trick: append durably to the log first, then fold the accepted events
into the live user state and the models' online statistics, all under one lock so memory follows
log order. The next `recommend` call therefore already sees the event.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence

from liverec.core.catalog import Catalog
from liverec.core.rewards import Rewards
from liverec.core.schema import Event, EventType, Item, StoredEvent, trusted_context, trusted_event
from liverec.core.state import LiveState
from liverec.events.join import JoinConfig, RewardJoiner
from liverec.model.base import Model
from liverec.model.popularity import PopularityCooc
from liverec.model.rules import SequentialRules
from liverec.policy.base import Policy
from liverec.policy.registry import make_policy
from liverec.registry.registry import ModelRegistry
from liverec.serve.feedback import PolicyFeedback, learns
from liverec.serve.models import ModelManager
from liverec.serve.recommender import Recommendation, Recommender, ScoredItem
from liverec.settings import Settings
from liverec.store import AppendResult, EventStore, open_store

log = logging.getLogger(__name__)

Progress = Callable[[int, int], None]  # (events done, events total)
Observer = Callable[[str, float], None]  # (what, seconds): "visible" or "trained" latencies


class Freshness:
    """Remembers when recent log offsets were ingested, to time event -> trained into live weights."""

    def __init__(self, capacity: int = 100_000) -> None:
        self.batches: deque[tuple[int, float]] = deque(maxlen=capacity)  # (last offset, monotonic time)

    def ingested(self, last_offset: int) -> None:
        self.batches.append((last_offset, time.monotonic()))

    def trained(self, offset: int) -> list[float]:
        """Seconds since ingest of every batch the weights now include (each counted once)."""
        now, out = time.monotonic(), []
        while self.batches and self.batches[0][0] <= offset:
            out.append(now - self.batches.popleft()[1])
        return out


class Engine:
    def __init__(
        self, settings: Settings, store: EventStore | None = None, policy: Policy | None = None
    ) -> None:
        self.settings = settings
        # settings errors first: nothing is opened that a failed constructor would leave open
        policy = policy or policy_from_settings(settings)
        candidates = int(settings.policy.get("candidates", 100))
        new_item_slots = int(settings.policy.get("new_item_slots", 0))
        new_below = float(settings.policy.get("new_item_positives", 5))
        if new_item_slots < 0:
            raise ValueError(f"[policy] new_item_slots must be >= 0, got {new_item_slots}")
        window = float(settings.policy.get("feedback_window_s", 300.0))
        self.store = store if store is not None else open_store(settings.store_url)
        self.catalog = Catalog()
        self.state = LiveState(self.catalog, settings.rewards, max_sequence=settings.state.max_sequence)
        self.popularity = PopularityCooc(self.state.users, settings.popularity)
        self.models: list[Model] = [self.popularity]  # every model here observes every interaction
        rules = settings.rules
        self.rules = SequentialRules(**rules.params()) if rules.weight > 0 else None  # counted live
        self.recommender = Recommender(
            self.catalog,
            self.state,
            self.popularity,
            policy,
            candidates,
            new_item_slots,
            lambda n: self.popularity.counts(n) < new_below,  # new: less positive weight than that
        )
        self.feedback: PolicyFeedback | None = None
        if learns(policy):
            joiner = RewardJoiner(JoinConfig(window_s=window), Rewards(settings.rewards))
            self.feedback = PolicyFeedback(policy, self.catalog, joiner)
        self.registry = ModelRegistry(settings.registry_path)
        self.manager: ModelManager | None = None  # serves the registry's live model once started
        self.freshness = Freshness()
        self.observe: Observer | None = None  # the HTTP app plugs its metrics in here
        self._lock = threading.RLock()
        self.started = False

    # -- life cycle ---------------------------------------------------------------------------
    def start(self, progress: Progress | None = None, models: bool = True, background: bool = True) -> Engine:
        """Load the catalog, rebuild live state and online statistics from the whole log, then (with
        ``models``) serve the registry's live model and follow promotions. ``background=False``: no
        watcher threads; the caller drives ``manager.reload()``/``encode_pending()`` (simulations)."""
        t0 = time.perf_counter()
        limit_threads(self.settings.server.compute_threads)
        with self._lock:
            for item in self.store.list_items():
                self.catalog.upsert(item)
            total = self.store.last_offset()
            for batch in self.store.pages(0, 20_000):
                self._fold(batch)
                if progress:
                    progress(self.state.last_offset, total)
            self.started = True
        if models:
            self.manager = ModelManager(
                self.registry,
                self.catalog,
                self.store,
                fallback=self.popularity,
                on_swap=self._swap,
                poll_s=self.settings.server.reload_poll_s,
                rules=self.rules,
                rules_weight=self.settings.rules.weight,
            )
            self.manager.start(background)
        log.info(
            "rebuilt state from %d events (%d users, %d items) in %.1fs",
            self.state.events_applied,
            len(self.state),
            len(self.catalog),
            time.perf_counter() - t0,
        )
        return self

    def close(self) -> None:
        if self.manager is not None:
            self.manager.stop()
        self.store.close()

    def _swap(self, model: Model) -> None:
        with self._lock:
            changed = model.version != self.recommender.model.version
            self.recommender.model = model
            if changed and self.feedback is not None:
                self.feedback.rebase()
        offset = getattr(model, "trained_offset", 0)
        if offset and self.observe is not None:
            for seconds in self.freshness.trained(offset):
                self.observe("trained", seconds)

    # -- writes -------------------------------------------------------------------------------
    def _fold(self, accepted: Sequence[StoredEvent]) -> None:
        interactions = self.state.apply(accepted)
        if accepted:
            self.freshness.ingested(accepted[-1].offset)
        for model in self.models:
            model.observe(interactions)
        if self.rules is not None:
            self.rules.observe(interactions)
        if self.feedback is not None:
            self.feedback.fold(accepted)
        if self.manager is not None:
            self.manager.catalog_changed()  # new items: grow the served model

    def ingest(self, events: Sequence[Event]) -> AppendResult:
        """Append durably, then update live state. Raises StoreError with nothing acknowledged."""
        with self._lock:
            result = self.store.append(events)
            self._fold(result.accepted)
        return result

    def fold(self, accepted: Sequence[StoredEvent]) -> None:
        """Update live state with events already appended (in offset order) by a single writer."""
        with self._lock:
            self._fold(accepted)

    def upsert_items(self, items: Sequence[Item]) -> int:
        """Insert or replace catalog items; returns how many were new."""
        with self._lock:
            created = self.store.upsert_items(items)
            rows = [self.catalog.upsert(item) for item in items]
            if self.manager is not None:  # (re-)encode their text for the served model
                self.manager.catalog_changed(r for r, item in zip(rows, items, strict=True) if item.content())
        return created

    def delete_user(self, user_id: str) -> dict[str, int]:
        """Forget a user: their events in the log and their live state.

        Aggregate statistics (popularity, co-occurrence, trained weights) keep their anonymous
        contribution until the next rebuild or retrain.
        """
        with self._lock:
            removed = self.store.delete_user(user_id)
            had_state = self.state.remove(user_id)
        return {"events": removed, "user_state": int(had_state)}

    # -- reads --------------------------------------------------------------------------------
    def recommend(
        self,
        user_id: str,
        k: int = 10,
        exclude_seen: bool = True,
        log_impressions: bool = True,
        now: float | None = None,
    ) -> Recommendation:
        """Top-k for a user from their live sequence; the served list is logged as impressions,
        timestamped ``now`` (epoch seconds; None = the wall clock). A caller replaying event time
        (the simulator) must pass it: rewards join impressions in event time, so a wall-clock
        impression among simulated events would wait for the wall clock to close its window."""
        with self._lock:
            rec = self.recommender.recommend(user_id, k, exclude_seen)
            if self.feedback is not None:
                self.feedback.remember(rec)
            if log_impressions and rec.items:
                self.ingest(impressions(user_id, rec, now))
        return rec

    def similar(self, item_id: str, k: int = 10) -> list[ScoredItem] | None:
        with self._lock:
            return self.recommender.similar(item_id, k)

    def get_item(self, item_id: str) -> Item | None:
        return self.store.get_item(item_id)

    @property
    def model_version(self) -> str:
        return self.recommender.model.version

    @property
    def model_offset(self) -> int:
        """The log offset the served weights have learned up to (0 without a trained model)."""
        return int(getattr(self.recommender.model, "trained_offset", 0))


def limit_threads(n: int) -> None:
    """Scoring one user is a chain of tiny ops: extra intra-op threads only add tail latency."""
    import torch
    from threadpoolctl import threadpool_limits

    torch.set_num_threads(n)
    threadpool_limits(n)


ENGINE_POLICY_KEYS = ("name", "feedback_window_s", "candidates", "new_item_slots", "new_item_positives")


def policy_from_settings(settings: Settings) -> Policy:
    """The serving policy named in ``[policy]`` (`ENGINE_POLICY_KEYS` other than ``name`` are the
    engine's, not the policy's)."""
    params = {k: v for k, v in settings.policy.items() if k not in ENGINE_POLICY_KEYS}
    return make_policy(str(settings.policy.get("name", "greedy")), **params)


def impressions(user_id: str, rec: Recommendation, now: float | None = None) -> list[Event]:
    """The impression events for a served list: one per position, joined to it by request_id."""
    ts = time.time() if now is None else now
    return [
        trusted_event(
            f"imp:{rec.request_id}:{pos}",
            user_id,
            item.item_id,
            EventType.impression,
            None,
            ts,
            trusted_context(
                {
                    "request_id": rec.request_id,
                    "position": pos,
                    "propensity": item.propensity,
                    "policy": rec.policy,
                    "model": rec.model,
                    "score": item.score,
                }
            ),
        )
        for pos, item in enumerate(rec.items)
    ]
