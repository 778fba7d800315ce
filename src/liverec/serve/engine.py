"""`Engine`: the in-process core that the HTTP API wraps, usable as a library on its own.

Ingest order is the whole trick: append durably to the log first, then fold the accepted events
into the live user state and the models' online statistics, one writer at a time so memory follows
log order. The next `recommend` call therefore already sees the event.

One write path: `ingest`, `upsert_items` and `delete_user` are the only places that write. The
HTTP routes reach them through the `*_async` twins, which run them on the engine's writer thread
(`GroupCommit`: concurrent event batches share one transaction), so the event loop never blocks on
the store, fsync or the models.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from array import array
from collections.abc import Callable, Sequence
from dataclasses import replace
from functools import cached_property, partial
from typing import Any

import numpy as np

from liverec.core.catalog import Catalog
from liverec.core.rewards import Rewards
from liverec.core.schema import Event, EventType, Item, StoredEvent
from liverec.core.state import Interaction, LiveState
from liverec.events.join import RewardJoiner
from liverec.model.base import Model
from liverec.model.popularity import PopularityCooc
from liverec.model.rules import SequentialRules
from liverec.model.text import TextEncoder
from liverec.policy.base import Policy
from liverec.policy.registry import policy_from_settings
from liverec.registry.registry import ModelRegistry
from liverec.serve import snapshot as snapshots
from liverec.serve.dashboard import QualityBoard
from liverec.serve.explain import Explainer
from liverec.serve.feedback import PolicyFeedback, learns
from liverec.serve.ingest import GroupCommit
from liverec.serve.metrics import Freshness
from liverec.serve.models import ModelManager
from liverec.serve.recommender import Recommendation, Recommender, ScoredItem, impressions
from liverec.serve.replica import LogFollower, unfolded_before
from liverec.serve.search import SURFACE, SearchFilters, SearchResult, SearchService, search_impressions
from liverec.settings import Settings
from liverec.store import AppendResult, EventStore, StoreError, open_store
from liverec.store.base import user_hash
from liverec.trainer.filters import EventFilter
from liverec.trainer.status import read_status

log = logging.getLogger(__name__)

Progress = Callable[[int, int], None]  # (events done, events total)
Observer = Callable[[str, float], None]  # (what, seconds): "visible" or "trained" latencies


class Engine:
    def __init__(
        self,
        settings: Settings,
        store: EventStore | None = None,
        policy: Policy | None = None,
        encoder: TextEncoder | None = None,
    ) -> None:
        self.settings = settings
        # settings errors first: nothing is opened that a failed constructor would leave open
        policy = policy or policy_from_settings(settings.policy)
        new_below = settings.policy.new_item_positives
        self.store = store if store is not None else open_store(settings.store_url)
        self.catalog = Catalog()
        self.state = LiveState(self.catalog, settings.rewards, max_sequence=settings.state.max_sequence)
        self.popularity = PopularityCooc(self.state.users, settings.popularity)
        self.models: list[Model] = [self.popularity]  # every model here observes every interaction
        # the learner's bot/burst filter screens the live counts too (a 20,000-click bot must not top
        # everyone's list); verdicts are deterministic in log order, so a rebuild counts the same
        self.filter = EventFilter(settings.filters) if settings.filters.serving else None
        self.held: dict[str, array[int]] = {}  # user -> offsets of their events the counts left out
        rules = settings.rules
        self.rules = SequentialRules(**rules.params()) if rules.weight > 0 else None  # counted live
        self.recommender = Recommender(
            self.catalog,
            self.state,
            self.popularity,
            policy,
            settings.policy.candidates,
            settings.policy.new_item_slots,
            lambda n: self.popularity.counts(n) < new_below,  # new: less positive weight than that
        )
        self.feedback: PolicyFeedback | None = None
        if learns(policy):
            joiner = RewardJoiner.from_settings(settings)  # the join `liverec evaluate ope` makes
            self.feedback = PolicyFeedback(policy, self.catalog, joiner)
        self.encoder = encoder or TextEncoder()  # item text for the model and the search index
        self.search: SearchService | None = None
        if settings.search.enabled:
            self.search = SearchService(
                settings.search, self.catalog, Rewards(settings.rewards), self.encoder
            )
        self.registry = ModelRegistry(settings.registry_path)
        self.manager: ModelManager | None = None  # serves the registry's live model once started
        self.freshness = Freshness()
        # the dashboard's quality, exposure and event-type counts, folded with the log (bounded)
        self.dashboard = QualityBoard(self.catalog, Rewards(settings.rewards), settings.join.window_s)
        self.observe: Observer | None = None  # the HTTP app plugs its metrics in here
        self._lock = threading.RLock()  # live state, catalog and models: held to read or fold them
        # One writer at a time, from the store write to the end of the fold: offsets, catalog rows
        # and folds keep one order. Taken before `_lock`, never inside it; readers do not wait on
        # store I/O, only on the fold.
        self._writing = threading.Lock()
        self.writer = GroupCommit(self.ingest)  # the async twins' thread; group commit for events
        self.started = False
        # the shared log (replicas): every offset up to `log_read` is folded or was deleted; the
        # newest deletion record this state reflects; the offset of the newest snapshot on disk
        self.log_read = 0
        self.deletion_seq = 0
        self.deleted_here: set[str] = set()  # hashes of users deleted through this server
        self.snapshot_offset = 0
        self.follower: LogFollower | None = None
        self.snapshotter: snapshots.Periodic | None = None

    # -- life cycle ---------------------------------------------------------------------------
    def start(self, progress: Progress | None = None, models: bool = True, background: bool = True) -> Engine:
        """Load the catalog, rebuild live state and online statistics from the whole log, then (with
        ``models``) serve the registry's live model and follow promotions. ``background=False``: no
        watcher threads; the caller drives ``manager.reload()``/``encode_pending()`` (simulations)."""
        t0 = time.perf_counter()
        limit_threads(self.settings.server.compute_threads)
        server = self.settings.server
        with self._writing, self._lock:  # no write can land between the pages being folded
            total = self.store.last_offset()
            deletions = self.store.deletions()
            if server.snapshots:  # the newest valid snapshot, then only the tail is replayed
                snapshots.restore(self, total, deletions)
            items = list(self.store.list_items())
            rows = [self.catalog.upsert(item) for item in items]
            if self.search is not None and items:  # searchable before the log replays its clicks
                self.search.index_items(rows, items, self.search.encode_items(items, self.store))
            if self.search is not None:  # before serving: the first PUT of new text must not wait for it
                self.encoder.load()
            restored = self.state.last_offset
            for batch in self.store.pages(restored, 20_000):
                self._fold(batch)
                if progress:
                    progress(self.state.last_offset, total)
            self.log_read = max(total, self.state.last_offset)
            self.deletion_seq = max((d.seq for d in deletions), default=0)  # their events are gone
            self.started = True
        if models:
            self.manager = ModelManager(
                self.registry,
                self.catalog,
                self.store,
                fallback=self.popularity,
                on_swap=self._swap,
                encoder=self.encoder,
                poll_s=self.settings.server.reload_poll_s,
                rules=self.rules,
                rules_weight=self.settings.rules.weight,
                retrieval=self.settings.retrieval,
            )
            self.manager.start(background)
        if background and server.follow_log and not self.store.url.startswith("memory:"):
            self.follower = LogFollower(self, server.follow_wait_s).start()  # other replicas' events
        if background and server.snapshots and server.snapshot_every_s > 0:
            self.snapshotter = snapshots.Periodic(self, server.snapshot_every_s, server.snapshot_min_events)
            self.snapshotter.start()
        log.info(
            "rebuilt state from %d events (%s) (%d users, %d items) in %.1fs",
            self.state.events_applied,
            f"snapshot at offset {restored:,} + the log's tail" if restored else "the whole log",
            len(self.state),
            len(self.catalog),
            time.perf_counter() - t0,
        )
        return self

    def close(self) -> None:
        """Finish queued writes, stop following, snapshot what is folded (a clean shutdown restarts
        from it), close the store."""
        self.writer.close()  # every write already queued is finished first
        for part in (self.follower, self.snapshotter, self.manager):
            if part is not None:
                part.stop()
        if self.started and self.settings.server.snapshots and self.state.last_offset > self.snapshot_offset:
            try:
                self.save_snapshot()
            except Exception:  # the log is the truth: the next start replays it
                log.exception("no snapshot at shutdown; the next start replays the whole log")
        self.store.close()

    def save_snapshot(self) -> None:
        """Snapshot the folded state with the offset it covers (`serve.snapshot`), atomically."""
        with self._writing, self._lock:
            snapshots.take(self)

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
        interactions = self.state.apply(accepted)  # the user's own state keeps every event
        self.dashboard.fold(accepted, live=self.started)  # after apply: items have catalog rows
        if accepted:
            self.freshness.ingested(accepted[-1].offset)
        interactions, accepted = self._screen(accepted, interactions)
        for model in self.models:
            model.observe(interactions)
        if self.rules is not None:
            self.rules.observe(interactions)
        if self.feedback is not None:  # the serving policy learns from its own lists, not search's
            self.feedback.fold([s for s in accepted if s.event.context.surface != SURFACE])
        if self.search is not None:
            self.search.fold(accepted)
        if self.manager is not None:
            self.manager.catalog_changed()  # items first named by these events: grow the served model

    def _screen(
        self, accepted: Sequence[StoredEvent], interactions: list[Interaction]
    ) -> tuple[list[Interaction], Sequence[StoredEvent]]:
        """What the shared counts may learn from: the filter's admitted events (``interactions`` is
        `LiveState.apply`'s output, one per non-impression event in ``accepted``, in order). Held
        offsets are remembered per user, so a deletion removes only what was counted."""
        f = self.filter
        if f is None:
            return interactions, accepted
        impression = EventType.impression
        kept: list[Interaction] = []
        events: list[StoredEvent] = []
        k = 0
        for stored in accepted:
            ev = stored.event
            if ev.type is impression:
                events.append(stored)
                continue
            if f.check(ev) is None:
                events.append(stored)
                kept.append(interactions[k])
            else:
                self.held.setdefault(ev.user_id, array("q")).append(stored.offset)
            k += 1
        return kept, events

    def counted(self, user_id: str, history: Sequence[StoredEvent]) -> list[StoredEvent]:
        """The events of ``user_id``'s ``history`` that the shared counts took in (not held back)."""
        held = set(self.held.get(user_id, ()))
        return [s for s in history if s.offset not in held]

    def ingest(self, events: Sequence[Event]) -> AppendResult:
        """Append durably, then update live state. Raises StoreError with nothing acknowledged.

        Blocks on the store: from an event loop, use `ingest_async`."""
        with self._writing:
            result = self.store.append(events)
            # events other replicas appended before ours: folded first, in offset order
            earlier = unfolded_before(self, result.accepted[0].offset) if result.accepted else []
            with self._lock:
                for batch in earlier:
                    self._fold(batch)
                self._fold(result.accepted)
        return result

    def upsert_items(self, items: Sequence[Item]) -> int:
        """Insert or replace catalog items; returns how many were new."""
        with self._writing:
            created = self.store.upsert_items(items)
            # their text vectors before the answer (a new item's /similar and search use its text at
            # once); encoded outside `_lock`, so reads do not wait on the encoder
            serving = self.manager is not None and self.manager.current is not None
            vectors = None
            if self.search is not None or serving:
                vectors = self.encoder.encode_cached([it.content() for it in items], self.store)
            with self._lock:
                rows = [self.catalog.upsert(item) for item in items]
                if self.manager is not None and vectors is not None:
                    texts = {it.item_id: vectors[i] for i, it in enumerate(items) if it.content()}
                    self.manager.items_changed(rows, items, texts)
                if self.search is not None:
                    self.search.index_items(rows, items, vectors)
        return created

    def delete_user(self, user_id: str) -> dict[str, int]:
        """Forget a user: their events in the log (recorded as a `Deletion`, the WAL checkpointed),
        their live state, and exactly what their events added to popularity, co-occurrence and the
        sequential rules. Trained weights: the learner retrains without them within
        ``[privacy] retrain_deadline_s`` (see `pending_deletions`). A user who comes back starts fresh.
        """
        with self._writing:
            # their interactions, rebuilt on a scratch state: a user's positives (the engagement
            # rule) depend on their own events only, so this is what the fold once added for them
            history = self.counted(user_id, self.store.user_history(user_id))  # not the filtered
            removed = self.store.delete_user(user_id)
            with self._lock:
                scratch = LiveState(self.catalog, self.settings.rewards, self.state.max_sequence)
                mine = [it for it in scratch.apply(history) if it.user_id == user_id]
                had_state = self._forget(user_id, mine)
                self.state.events_applied -= removed  # as a replay of the log without them counts
                self.deleted_here.add(user_hash(user_id))  # its record: nothing for the follower
        return {"events": removed, "user_state": int(had_state)}

    def _forget(self, user_id: str, mine: Sequence[Interaction]) -> bool:
        """Take a user out of everything folded: ``mine`` is what their events added to the counts.
        Returns whether live state was held for them. Holds `_lock`."""
        self.held.pop(user_id, None)
        if self.filter is not None:
            self.filter.forget_user(user_id)
        self.popularity.forget(mine)
        if self.rules is not None:
            self.rules.forget(mine)
        if self.feedback is not None:  # their open impressions, slate vectors, posterior
            self.feedback.forget_user(user_id)
        if self.search is not None:  # their open result lists
            self.search.forget_user(user_id)
        return self.state.remove(user_id)

    def learner_status(self) -> dict[str, Any]:
        """Why the online learner has (not) published: its status file (`trainer.status`), aged, or
        why there is none. For `/healthz` admin detail."""
        return read_status(self.registry.root, live=self.registry.live())

    def search_status(self) -> dict[str, Any]:
        """The search index and ranker (for `/healthz` admin detail)."""
        if self.search is None:
            return {"enabled": False}
        with self._lock:
            return {"enabled": True} | self.search.status()

    def pending_deletions(self) -> dict[str, float | int | str]:
        """Deletions whose users a live model may still hold (for `/healthz` admin detail): how many
        and the oldest's age in seconds; never an id. A store that cannot answer says so."""
        try:
            pending = self.store.pending_deletions()
        except StoreError:
            return {"error": "store unavailable"}
        oldest = min((d.deleted_at for d in pending), default=None)
        return {
            "count": len(pending),
            "oldest_age_s": round(time.time() - oldest, 1) if oldest is not None else 0.0,
            "deadline_s": self.settings.privacy.retrain_deadline_s,
        }

    # -- the same writes from an event loop: on the writer thread, the loop never blocks -------
    async def ingest_async(self, events: Sequence[Event]) -> AppendResult:
        """`ingest`, grouped with concurrent callers into one transaction (group commit). Returns
        this batch's share once it is durable and folded; raises StoreError with nothing written."""
        t0 = time.perf_counter()
        result = await asyncio.wrap_future(self.writer.submit(events))
        if self.observe is not None:  # event -> visible: durable and in live state
            self.observe("visible", time.perf_counter() - t0)
        return result

    async def upsert_items_async(self, items: Sequence[Item]) -> int:
        """`upsert_items`, on the writer thread."""
        return await asyncio.wrap_future(self.writer.call(partial(self.upsert_items, items)))

    async def delete_user_async(self, user_id: str) -> dict[str, int]:
        """`delete_user`, on the writer thread."""
        return await asyncio.wrap_future(self.writer.call(partial(self.delete_user, user_id)))

    # -- reads --------------------------------------------------------------------------------
    def recommend(
        self,
        user_id: str,
        k: int = 10,
        exclude_seen: bool = True,
        log_impressions: bool = True,
        now: float | None = None,
        explain: bool = False,
    ) -> Recommendation:
        """Top-k for a user from their live sequence; the served list is logged as impressions,
        timestamped ``now`` (epoch seconds; None = the wall clock). A caller replaying event time
        (the simulator) must pass it: rewards join impressions in event time, so a wall-clock
        impression among simulated events would wait for the wall clock to close its window.
        ``explain``: each item gets an `Explanation`, from the model and state that served it."""
        with self._lock:
            rec = self.recommender.recommend(user_id, k, exclude_seen)
            if explain:
                user, model = self.state.get(user_id), self.recommender.model
                why = self.explainer.recommendation(rec, user, model, user_id, exclude_seen)
                rec = replace(rec, explanations=why)
            if self.feedback is not None:
                self.feedback.remember(rec, user_id)
        if log_impressions and rec.items:  # outside `_lock`: a write takes `_writing` first
            logged = impressions(user_id, rec, now, self.settings.server.max_logged_impressions)
            if logged:
                self.ingest(logged)
        return rec

    def search_items(
        self,
        query: str,
        user_id: str | None = None,
        k: int = 10,
        filters: SearchFilters | None = None,
        log_impressions: bool = True,
        now: float | None = None,
        query_vector: np.ndarray | None = None,
        explain: bool = False,
    ) -> SearchResult:
        """Search the live catalog for ``query``, ranked for ``user_id`` (None: anonymous). Seen items
        stay in (people search for what they know). The list is logged as impressions with
        ``surface = "search"`` (``log_impressions``), timestamped ``now`` as in `recommend`;
        ``explain`` as there. Raises `SearchDisabled` when ``[search] enabled`` is false."""
        if self.search is None:
            raise SearchDisabled("search is disabled ([search] enabled = false)")
        search = self.search
        # outside `_lock`: the encoder (~10 ms for a new query) and the query's scan of the indexes
        qvec = query_vector if query_vector is not None else search.query_vector(query)
        match = search.searcher.match(query, qvec, len(self.catalog))
        ts = time.time() if now is None else now
        with self._lock:
            n = len(self.catalog)
            user = self.state.get(user_id) if user_id else None
            model = self.recommender.model
            personal = seen = None
            if user is not None and user_id:
                personal, _ = model.score_and_embed(user, n, user_id)  # (N,)
                seen = np.fromiter(user.seen, dtype=np.int64, count=len(user.seen))
            result = search.search(
                query,
                qvec,
                k,
                allowed=search.allowed(filters or SearchFilters()),
                popularity=self.popularity.counts(n),
                now=ts,
                personal=personal,
                seen=seen,
                model=model.version_for(user),
                match=match,
            )
            if explain:  # the ranker that ranked it: learning swaps it under this lock only
                why = self.explainer.search_results(result, search.learner.live)
                result = replace(result, explanations=why)
        if log_impressions and result.items:
            self.ingest(search_impressions(user_id, result, ts, self.settings.server.max_logged_impressions))
        return result

    def history(self, user_id: str) -> tuple[list[tuple[str, float, int]], int]:
        """The user's live sequence as the model reads it, oldest first: (item id, time, event-type
        id) per engagement; and how many items they touched in any way. Empty for an unknown user."""
        with self._lock:
            user = self.state.get(user_id)
            if user is None:
                return [], 0
            ids = self.catalog.ids
            seq = [(ids[r], t, k) for r, t, k in zip(user.items, user.times, user.types, strict=False)]
            return seq, len(user.seen)

    @cached_property
    def explainer(self) -> Explainer:
        """Builds `recommend`'s and `search_items`' explanations (stateless: built on first use)."""
        return Explainer(self.settings.explain, self.catalog, self.popularity, self.search)

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

    def screening(self) -> dict[str, Any]:
        """The serving filter's verdicts so far (reason -> events) and who it holds back now (for the
        dashboard); ``enabled`` False when ``[filters] serving`` is off."""
        f = self.filter
        if f is None:
            return {"enabled": False, "counts": {}, "users": [], "items": []}
        with self._lock:
            users, items = f.quarantined(self.dashboard.watermark)
            return {"enabled": True, "counts": dict(f.counts), "users": users, "items": items}


class SearchDisabled(RuntimeError):
    """``[search] enabled = false``."""


def limit_threads(n: int) -> None:
    """Scoring one user is a chain of tiny ops: extra intra-op threads only add tail latency."""
    import torch
    from threadpoolctl import threadpool_limits

    torch.set_num_threads(n)
    threadpool_limits(n)
