"""`SearchService`: the engine's search. One live state, model and log serve recommendations and search.

- Indexing: `Engine.upsert_items` hands every written item here with its MiniLM vector, on the
  writer thread, before the PUT returns; the lexical index takes it at once (`search.index`).
- Serving: `search` ranks the catalog for a query and a user (`Searcher` + the live `LinearRanker`),
  and a `ShuffleTopK` policy randomizes the top positions of a few lists (the logged randomization
  the examination curve is estimated from). The caller logs the list as impression events with
  ``surface = "search"``, the query and each position's features (`impressions`).
- Learning: `fold` reads those impressions and the rewards that name their request id back from the
  log, in log order, and teaches the `SearchLearner` (debiased, behind its gate). Learning is a
  function of the log, so a restart that replays the log ends with the same ranker.
"""

from __future__ import annotations

import copy
import threading
import time
import uuid
from collections import OrderedDict, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from liverec.core.catalog import Catalog
from liverec.core.rewards import Rewards
from liverec.core.schema import Event, EventType, Item, StoredEvent, trusted_context, trusted_event
from liverec.model.text import EncoderProcess, TextEncoder
from liverec.policy.shuffle import RANDOMIZED, ShuffleTopK
from liverec.search.examination import Examination
from liverec.search.searcher import Match, Searcher
from liverec.serve.recommender import ScoredItem
from liverec.settings import SearchSettings
from liverec.trainer.search import SearchLearner, Shown

if TYPE_CHECKING:
    from liverec.serve.explain import Explanation

SURFACE = "search"
ANONYMOUS = "/anonymous"  # the user id of anonymous searches' impressions: no client id has a '/'


@dataclass(frozen=True)
class SearchFilters:
    """``tags``: items must carry every one (case-insensitive); ``available``: True only available
    items, False only unavailable ones, None both."""

    tags: tuple[str, ...] = ()
    available: bool | None = True


@dataclass(frozen=True)
class SearchResult:
    request_id: str
    query: str
    model: str
    policy: str
    items: list[ScoredItem]
    features: np.ndarray  # (k, F) float32 of the shown items, in display order
    query_key: str  # the query as the click memory knows it
    explanations: list[Explanation] | None = None  # one per item, with ``explain`` (`serve.explain`)


class SearchService:
    def __init__(
        self, settings: SearchSettings, catalog: Catalog, rewards: Rewards, encoder: TextEncoder | None = None
    ) -> None:
        self.settings = settings
        self.catalog = catalog
        self.rewards = rewards
        self.encoder = encoder or TextEncoder()  # item text, on the writer thread
        self.query_encoder: TextEncoder | EncoderProcess = (
            EncoderProcess.shared(self.encoder.device) if settings.encoder_process else self.encoder
        )
        self.searcher = Searcher(settings.depth, settings.freshness_half_life_days)
        self.learner = SearchLearner(
            debias=settings.debias,
            gate_every=settings.gate_every,
            tolerance=settings.tolerance,
            examination=Examination(depth=max(settings.shuffle_depth, 10)),
            memory=self.searcher.remember_click,
        )
        self.policy = ShuffleTopK(settings.epsilon, settings.shuffle_depth)
        self.tags: defaultdict[str, set[int]] = defaultdict(set)  # lowercased tag -> rows
        self._row_tags: dict[int, set[str]] = {}
        self._queries: OrderedDict[str, np.ndarray] = OrderedDict()  # query -> (384,) vector
        self._query_lock = threading.Lock()

    def warm(self) -> None:
        """Start the query encoder's child (a few seconds, in its own process at low priority), so
        the first search does not wait for it; the server runs this in a thread."""
        self.query_encoder.encode(["warm-up"])

    # -- the index ------------------------------------------------------------------------------
    def encode_items(self, items: Sequence[Item], store: Any = None) -> np.ndarray:
        """(len(items), 384) float32 text vectors (the store's embedding cache first)."""
        return self.encoder.encode_cached([it.content() for it in items], store)

    def index_items(self, rows: Sequence[int], items: Sequence[Item], vectors: np.ndarray | None) -> None:
        """Make written items searchable (or unsearchable: an item without text drops out)."""
        self.searcher.index(rows, [it.content() for it in items], vectors)
        for row, it in zip(rows, items, strict=True):
            for tag in self._row_tags.pop(row, set()):
                self.tags[tag].discard(row)
            mine = {t.lower() for t in it.tags}
            self._row_tags[row] = mine
            for tag in mine:
                self.tags[tag].add(row)

    def cached_vector(self, query: str) -> np.ndarray | None:
        """(384,) float32 if ``query`` was encoded recently, else None (no encoder call)."""
        with self._query_lock:
            vec = self._queries.get(query)
            if vec is not None:
                self._queries.move_to_end(query)
            return vec

    def query_vector(self, query: str) -> np.ndarray:
        """(384,) float32, from a bounded cache of recent queries (the encoder takes ~10 ms)."""
        vec = self.cached_vector(query)
        if vec is not None:
            return vec
        vec = self.query_encoder.encode([query])[0]
        with self._query_lock:
            self._queries[query] = vec
            while len(self._queries) > self.settings.query_cache:
                self._queries.popitem(last=False)
        return vec

    def allowed(self, filters: SearchFilters) -> np.ndarray:
        """(N,) bool rows the filters let through."""
        avail = self.catalog.available
        mask = np.ones_like(avail) if filters.available is None else avail == filters.available
        for tag in filters.tags:
            rows = self.tags.get(tag.lower(), set())
            keep = np.zeros_like(mask)
            if rows:
                keep[np.fromiter(rows, np.int64, len(rows))] = True
            mask &= keep
        return mask

    # -- serving --------------------------------------------------------------------------------
    def search(
        self,
        query: str,
        query_vector: np.ndarray,
        k: int,
        *,
        allowed: np.ndarray,
        popularity: np.ndarray,
        now: float,
        personal: np.ndarray | None,
        seen: np.ndarray | None,
        model: str,
        match: Match | None = None,
    ) -> SearchResult:
        """The ranked, possibly randomized result list. The caller holds the engine's read lock;
        ``match`` (`Searcher.match`) may be computed before taking it."""
        n = allowed.size
        sig = self.searcher.signals(
            query, query_vector, n, popularity, self.catalog.created_at, now, personal, seen, match
        )
        ranked = self.searcher.rank(query, sig, allowed, self.learner.live)
        slate = self.policy.select(ranked.rows, ranked.scores.astype(np.float32), k)
        index = slate.index if slate.index is not None else np.arange(slate.rows.size)
        ids = self.catalog.ids
        items = [
            ScoredItem(ids[int(ranked.rows[j])], float(ranked.scores[j]), float(p))
            for j, p in zip(index.tolist(), slate.propensities.tolist(), strict=True)
        ]
        return SearchResult(
            uuid.uuid4().hex, query, model, slate.policy, items, ranked.features[index], ranked.query_key
        )

    # -- learning from the log ------------------------------------------------------------------
    def fold(self, accepted: Sequence[StoredEvent]) -> None:
        """Search impressions open result lists; positive events naming their request teach the
        ranker. In log order (the caller holds the engine's write lock)."""
        lists: dict[
            str, list[tuple[int, str, Any, str]]
        ] = {}  # request id -> (position, item, context, user)
        for stored in accepted:
            ev = stored.event
            ctx = ev.context
            if ev.type is EventType.impression:
                if ctx.surface == SURFACE and ctx.request_id and ctx.position is not None:
                    lists.setdefault(ctx.request_id, []).append((ctx.position, ev.item_id, ctx, ev.user_id))
                continue
            if lists:
                self._open(lists)
                lists = {}
            if ctx.request_id and ctx.request_id in self.learner.served:
                self._click(ev)
        if lists:
            self._open(lists)

    def _open(self, lists: dict[str, list[tuple[int, str, Any, str]]]) -> None:
        for request_id, shown in lists.items():
            shown.sort(key=lambda s: s[0])
            rows = [self.catalog.row(item_id) for _, item_id, _, _ in shown]
            feats = [(c.model_extra or {}).get("features") for _, _, c, _ in shown]
            if any(r is None for r in rows) or any(f is None for f in feats):
                continue  # logged by something else, or before features were logged: nothing to learn
            first = shown[0][2]
            self.learner.shown(
                request_id,
                Shown(
                    user_id=shown[0][3],
                    query_key=str((first.model_extra or {}).get("query_key", "")),
                    rows=np.asarray(rows, dtype=np.int64),
                    features=np.asarray(feats, dtype=np.float32),
                    randomized=first.policy == RANDOMIZED,
                ),
            )

    def _click(self, ev: Event) -> None:
        reward = self.rewards(ev)
        if reward <= 0:
            return
        shown = self.learner.served[ev.context.request_id or ""]
        position = ev.context.position
        if position is None:  # the client named the request only: find the item in the list
            row = self.catalog.row(ev.item_id)
            hits = np.flatnonzero(shown.rows == row) if row is not None else np.zeros(0)
            if hits.size == 0:
                return
            position = int(hits[0])
        elif not (
            0 <= position < shown.rows.size and self.catalog.ids[int(shown.rows[position])] == ev.item_id
        ):
            return  # the position does not show this item: not a click on this list
        self.learner.click(ev.context.request_id or "", position, ev.timestamp, reward)

    def forget_user(self, user_id: str) -> None:
        self.learner.forget_user(user_id)

    def fold_state(self) -> dict[str, Any]:
        """What folding the log built (the ranker's learning, open lists, click memory), for a
        snapshot; the indexes are rebuilt from the catalog instead."""
        learner = copy.copy(self.learner)
        learner.memory = None  # a bound method of the searcher: re-attached by `restore_fold_state`
        return {"learner": learner, "clicks": self.searcher.memory}

    def restore_fold_state(self, state: dict[str, Any]) -> None:
        learner = state["learner"]
        learner.memory = self.searcher.remember_click
        self.learner, self.searcher.memory = learner, state["clicks"]

    def status(self) -> dict[str, Any]:
        return {"indexed": len(self.searcher.lexical), "vectors": len(self.searcher.semantic)} | (
            self.learner.status()
        )


def search_impressions(
    user_id: str | None, result: SearchResult, now: float | None = None, cap: int | None = None
) -> list[Event]:
    """The impression events of a served result list: as `recommender.impressions`, plus ``surface``,
    ``query``, the normalised ``query_key`` and each position's ranker ``features`` (what the
    learner re-ranks with when a click arrives)."""
    ts = time.time() if now is None else now
    shown = result.items if cap is None else result.items[:cap]
    uid = user_id or ANONYMOUS
    return [
        trusted_event(
            f"imp:{result.request_id}:{pos}",
            uid,
            item.item_id,
            EventType.impression,
            None,
            ts,
            trusted_context(
                {
                    "request_id": result.request_id,
                    "position": pos,
                    "propensity": item.propensity,
                    "policy": result.policy,
                    "model": result.model,
                    "score": item.score,
                    "surface": SURFACE,
                    "query": result.query,
                    "query_key": result.query_key,
                    "features": [round(float(v), 5) for v in result.features[pos]],
                }
            ),
        )
        for pos, item in enumerate(shown)
    ]
