"""Rewards joined to the impressions that earned them: logged bandit feedback, batch or streaming.

The server logs one impression per shown item (`liverec.serve.recommender.impressions`), carrying the
request_id, position, propensity, policy, model and score. Clicks, carts, purchases, dwell, ratings
and likes (positive) and dislikes and skips (negative) that follow are attributed back to it:

- a reward event whose context has a ``request_id`` joins the open impression of that request, user
  and item (and position, when the reward names one; otherwise the top-most such position);
- a reward event without a ``request_id`` joins the most recent open impression of that item to that
  user shown at or before the reward's time;
- either way only within ``window_s`` of the impression (late conversions inside it count; see
  `liverec.settings.JoinConfig` for the one window and why it is 300 s).

Time is event time: an impression closes, and its record comes out, once some event with a
timestamp past ``timestamp + window_s + grace_s`` has been seen (`advance` moves the clock without
an event, `flush` closes everything). Rewards arriving after their impression closed, or naming an
unknown request, are counted as unattributed. Open impressions are the only state, so memory is
bounded by the impressions inside one window, and hard-capped by ``max_open`` (oldest closed early).
The same object serves batch (`join_events`, `join_store`) and streaming (`feed`), so the server and
off-policy evaluation see identical joins.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable
from dataclasses import dataclass

from liverec.core.rewards import Rewards
from liverec.core.schema import Event, EventType, StoredEvent
from liverec.policy.base import Feedback
from liverec.settings import JoinConfig, Settings
from liverec.store.base import EventStore


@dataclass(frozen=True, slots=True)
class JoinedImpression:
    """One shown item with the reward it earned (0 when nothing happened): one round of logged
    bandit feedback. ``offset`` is the impression's log offset (None when fed a bare `Event`)."""

    event_id: str
    offset: int | None
    timestamp: float
    user_id: str
    item_id: str
    request_id: str | None
    position: int | None
    propensity: float | None
    policy: str | None
    model: str | None
    score: float | None
    reward: float
    n_rewards: int  # how many reward events were attributed

    def feedback(self, row: int) -> Feedback:
        """As a policy `Feedback` for catalog ``row``; an unlogged propensity counts as 1
        (a deterministic choice), an unlogged position as 0."""
        context = {
            "user_id": self.user_id,
            "item_id": self.item_id,
            "request_id": self.request_id,
            "policy": self.policy,
            "model": self.model,
            "score": self.score,
        }
        propensity = 1.0 if self.propensity is None else self.propensity
        return Feedback(row, self.position or 0, self.reward, propensity, context)


@dataclass
class JoinStats:
    impressions: int = 0
    rewards: int = 0  # reward events seen
    attributed: int = 0  # reward events joined to an impression
    unattributed: int = 0  # no open impression matched (unknown request, too late, never shown)
    closed: int = 0  # records emitted
    evicted: int = 0  # closed before their window ended because max_open was reached


class _Open:
    """An impression whose window is still open, with its running reward."""

    __slots__ = ("best", "event", "n", "offset", "position", "request_id", "seq", "total", "ts")

    def __init__(self, event: Event, offset: int | None, seq: int) -> None:
        self.event = event
        self.offset = offset
        self.seq = seq
        self.ts = event.timestamp
        self.request_id = event.context.request_id
        self.position = event.context.position
        self.total = 0.0
        self.best = float("-inf")
        self.n = 0


def _score(event: Event) -> float | None:
    value = (event.context.model_extra or {}).get("score")
    if value is None:
        value = getattr(event.context, "score", None)  # set by model_construct, outside model_extra
    return None if value is None else float(value)


class RewardJoiner:
    """Streaming join of rewards to impressions; see the module docstring for the rules."""

    def __init__(self, config: JoinConfig | None = None, rewards: Rewards | None = None) -> None:
        self.config = config or JoinConfig()
        self.rewards = rewards or Rewards()
        self.stats = JoinStats()
        self.watermark = float("-inf")  # the latest event time seen
        self._heap: list[tuple[float, int, _Open]] = []  # by (impression time, arrival)
        self._by_request: dict[tuple[str, str], list[_Open]] = {}  # (request_id, item_id)
        self._by_user_item: dict[tuple[str, str], list[_Open]] = {}  # (user_id, item_id)
        self._seq = 0

    @classmethod
    def from_settings(cls, settings: Settings) -> RewardJoiner:
        """The join every part of liverec uses: the ``[join]`` table and the ``[rewards]`` weights."""
        return cls(settings.join, Rewards(settings.rewards))

    @property
    def open_impressions(self) -> int:
        return len(self._heap)

    # -- input --------------------------------------------------------------------------------
    def feed(self, item: Event | StoredEvent) -> list[JoinedImpression]:
        """Take one event (log order); returns the records whose window this event closed."""
        event, offset = (item.event, item.offset) if isinstance(item, StoredEvent) else (item, None)
        self.watermark = max(self.watermark, event.timestamp)
        out = self._expire()
        if event.type is EventType.impression:
            out.extend(self._open(event, offset))
        else:
            self._attribute(event)
        return out

    def feed_many(self, items: Iterable[Event | StoredEvent]) -> list[JoinedImpression]:
        out: list[JoinedImpression] = []
        for item in items:
            out.extend(self.feed(item))
        return out

    def advance(self, now: float) -> list[JoinedImpression]:
        """Move event time to ``now`` without an event (a quiet server still closes windows)."""
        self.watermark = max(self.watermark, now)
        return self._expire()

    def flush(self) -> list[JoinedImpression]:
        """Close every open impression (end of a batch, or shutdown)."""
        out: list[JoinedImpression] = []
        while self._heap:
            out.append(self._close(heapq.heappop(self._heap)[2]))
        return out

    def forget_user(self, user_id: str) -> int:
        """Drop a deleted user's open impressions: they are never joined or emitted. Returns how
        many there were."""
        mine = [entry for entry in self._heap if entry[2].event.user_id == user_id]
        if not mine:
            return 0
        self._heap = [entry for entry in self._heap if entry[2].event.user_id != user_id]
        heapq.heapify(self._heap)
        for index in (self._by_request, self._by_user_item):
            for key in list(index):
                kept = [imp for imp in index[key] if imp.event.user_id != user_id]
                if kept:
                    index[key] = kept
                else:
                    del index[key]
        return len(mine)

    # -- internals ----------------------------------------------------------------------------
    def _open(self, event: Event, offset: int | None) -> list[JoinedImpression]:
        self.stats.impressions += 1
        self._seq += 1
        imp = _Open(event, offset, self._seq)
        heapq.heappush(self._heap, (imp.ts, imp.seq, imp))
        if imp.request_id is not None:
            self._by_request.setdefault((imp.request_id, event.item_id), []).append(imp)
        self._by_user_item.setdefault((event.user_id, event.item_id), []).append(imp)
        out: list[JoinedImpression] = []
        while len(self._heap) > self.config.max_open:
            self.stats.evicted += 1
            out.append(self._close(heapq.heappop(self._heap)[2]))
        return out

    def _expire(self) -> list[JoinedImpression]:
        horizon = self.watermark - self.config.window_s - self.config.grace_s
        out: list[JoinedImpression] = []
        while self._heap and self._heap[0][0] < horizon:
            out.append(self._close(heapq.heappop(self._heap)[2]))
        return out

    def _match(self, event: Event) -> _Open | None:
        ctx, window = event.context, self.config.window_s
        if ctx.request_id is not None:
            candidates = [
                imp
                for imp in self._by_request.get((ctx.request_id, event.item_id), ())
                if imp.event.user_id == event.user_id
                and (ctx.position is None or imp.position == ctx.position)
                and event.timestamp - imp.ts <= window
            ]
            # the same item twice in one list and no position named: credit the top-most one
            return min(candidates, key=lambda i: (i.position or 0, i.seq), default=None)
        candidates = [
            imp
            for imp in self._by_user_item.get((event.user_id, event.item_id), ())
            if 0.0 <= event.timestamp - imp.ts <= window
        ]
        return max(candidates, key=lambda i: (i.ts, i.seq), default=None)

    def _attribute(self, event: Event) -> None:
        self.stats.rewards += 1
        imp = self._match(event)
        if imp is None:
            self.stats.unattributed += 1
            return
        self.stats.attributed += 1
        value = self.rewards(event)
        imp.total += value
        imp.best = max(imp.best, value)
        imp.n += 1

    def _close(self, imp: _Open) -> JoinedImpression:
        ev = imp.event
        if imp.request_id is not None:
            _discard(self._by_request, (imp.request_id, ev.item_id), imp)
        _discard(self._by_user_item, (ev.user_id, ev.item_id), imp)
        self.stats.closed += 1
        reward = imp.total if self.config.aggregate == "sum" else imp.best
        reward = reward if imp.n else 0.0  # nothing happened
        ctx = ev.context
        return JoinedImpression(
            event_id=ev.event_id,
            offset=imp.offset,
            timestamp=ev.timestamp,
            user_id=ev.user_id,
            item_id=ev.item_id,
            request_id=ctx.request_id,
            position=ctx.position,
            propensity=ctx.propensity,
            policy=ctx.policy,
            model=ctx.model,
            score=_score(ev),
            reward=reward,
            n_rewards=imp.n,
        )


def _discard(index: dict[tuple[str, str], list[_Open]], key: tuple[str, str], imp: _Open) -> None:
    bucket = index[key]
    bucket.remove(imp)
    if not bucket:
        del index[key]


def join_events(
    events: Iterable[Event | StoredEvent], config: JoinConfig | None = None, rewards: Rewards | None = None
) -> list[JoinedImpression]:
    """Batch join over events in log order: every impression, closed windows first, then the rest."""
    joiner = RewardJoiner(config, rewards)
    out = joiner.feed_many(events)
    out.extend(joiner.flush())
    return out


def join_store(
    store: EventStore,
    config: JoinConfig | None = None,
    rewards: Rewards | None = None,
    after: int = 0,
    page: int = 10_000,
) -> list[JoinedImpression]:
    """Batch join over a store's log, read page by page in offset order."""
    return join_events(store.iter_events(after, page), config, rewards)
