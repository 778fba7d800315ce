"""`QualityBoard`: what the dashboard's Quality and Catalog views show, counted as the engine folds
the log (`Engine._fold`), so nothing is read back from the store.

- Every impression opens (or joins) its request by ``request_id``, with the request's policy, model
  and cohort (the context's ``cohort`` extra field, else its ``surface``, else the cohort the user's
  own events last named, else ``default``; a user who names a cohort later within the window takes
  their ``default`` lists along: cohorts are assigned per user, and the server's own impressions
  carry none). A feedback event naming that ``request_id`` within the
  attribution window (``[join] window_s``, event time) is credited to it: its reward by the one
  reward rule (`core.rewards.Rewards`), and a click counts for CTR. Attribution is by request id
  only, at once (not when the window closes, as the policy's `RewardJoiner` does), so the numbers
  move while the window is open.
- Exploration share: impressions whose logged propensity is below `EXPLORED_BELOW`, i.e. the policy
  was more likely not to show that item there than to show it (a random control list is all
  exploration, a greedy one none).
- Exposure: impressions and clicks per catalog row, for the newest items' exposure since creation.

Bounded: open requests are capped (`max_requests`, oldest out) and expire with the window; keys per
dimension are capped (`max_keys`, oldest out); the time buckets cover `HISTORY_S`. Users are
remembered by a salted hash only (their cohort), so a deleted user's id is not kept here.
"""

from __future__ import annotations

import threading
import time
from collections import Counter, OrderedDict, deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from liverec.core.catalog import Catalog
from liverec.core.rewards import Rewards
from liverec.core.schema import EventType, StoredEvent

DIMENSIONS = ("policy", "model", "cohort")
DEFAULT = "default"  # the cohort of a list whose user has not named one (yet)
BUCKET_S = 5.0  # quality time series resolution
HISTORY_S = 900.0  # what the charts can show when the page opens
EXPLORED_BELOW = 0.5  # propensity under which an impression counts as exploration
NONE = "(none)"  # a context without a policy or model (e.g. a client-side control list)
_IMPRESSION = EventType.impression
_CLICK = EventType.click


@dataclass(slots=True)
class Tally:
    """Counts of one group (a policy, a model version or a cohort) over some time."""

    impressions: int = 0
    explored: int = 0
    clicks: int = 0
    feedback: int = 0  # feedback events attributed (clicks, purchases, skips, ...)
    reward: float = 0.0

    def add(self, other: Tally) -> None:
        self.impressions += other.impressions
        self.explored += other.explored
        self.clicks += other.clicks
        self.feedback += other.feedback
        self.reward += other.reward

    def copy(self) -> Tally:
        return Tally(self.impressions, self.explored, self.clicks, self.feedback, self.reward)


Groups = dict[str, dict[str, Tally]]  # dimension -> key -> tally


class _Request:
    """An open request: its groups and, while its cohort is not known yet, what it counted under
    ``default`` (moved to the cohort its user names later, within the window)."""

    __slots__ = ("bucket", "held", "keys", "ts")

    def __init__(self, ts: float, keys: tuple[str, str, str], bucket: float | None, pending: bool) -> None:
        self.ts = ts  # event time of its first impression
        self.keys = keys  # policy, model, cohort
        self.bucket = bucket  # the start of the time bucket it was counted in (None: replay)
        # while pending: what it counted under default, as Tally fields, then the same for its own
        # bucket only (plain numbers: this is updated for every event of a list of unknown cohort)
        self.held: list[Any] | None = [0, 0, 0, 0, 0.0, 0, 0, 0, 0, 0.0] if pending else None


@dataclass(frozen=True)
class QualityCopy:
    """A consistent copy of the board's counts (taken under its lock, read without it)."""

    types: dict[str, int]
    totals: Groups
    buckets: list[tuple[float, Groups]]
    attributed: int
    unattributed: int
    open_requests: int


class QualityBoard:
    def __init__(
        self,
        catalog: Catalog,
        rewards: Rewards,
        window_s: float,
        max_requests: int = 100_000,
        max_keys: int = 50,
        max_users: int = 100_000,
    ) -> None:
        self.catalog = catalog
        self.rewards = rewards
        self.window_s = window_s
        self.max_requests, self.max_keys, self.max_users = max_requests, max_keys, max_users
        self._lock = threading.Lock()
        self.types: dict[EventType, int] = dict.fromkeys(EventType, 0)  # every event folded, by type
        self.totals: Groups = {d: {} for d in DIMENSIONS}
        self.buckets: deque[tuple[float, Groups]] = deque(maxlen=int(HISTORY_S / BUCKET_S) + 1)
        self.requests: OrderedDict[str, _Request] = OrderedDict()
        self.cohorts: OrderedDict[int, str] = OrderedDict()  # hash(user id) -> the cohort they named
        self.unnamed: OrderedDict[int, list[str]] = OrderedDict()  # hash(user id) -> their default requests
        self.exposure = np.zeros((1024, 2), dtype=np.int64)  # per catalog row: impressions, clicks
        self._batch: dict[tuple[str, str, str], list[Any]] = {}  # a batch's sums per group
        self._kinds: list[EventType] = []  # a batch's event types
        self._shown: list[str] = []  # a batch's impressed items
        self._clicked: list[str] = []  # ... and clicked ones (credited to a request)
        self.attributed = 0
        self.unattributed = 0  # feedback naming a request that is unknown, evicted or past the window
        self.watermark = 0.0  # the latest event time folded

    def __getstate__(self) -> dict[str, Any]:
        """For a snapshot (`serve.snapshot`): no lock, and no per-user maps keyed by `hash`, which
        is salted per process (they only steer attribution of lists still open)."""
        state = self.__dict__.copy()
        del state["_lock"]
        state["cohorts"], state["unnamed"] = OrderedDict(), OrderedDict()
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()

    # -- folding (the engine's writer, under its lock) -----------------------------------------
    def fold(self, accepted: Sequence[StoredEvent], live: bool = True) -> None:
        """Count a batch of log events. ``live`` False (the start-up replay): totals only, no time
        buckets, so a restart does not pile the whole log into the first bucket. This runs for
        every event ingested, so a batch is summed per group first and applied once (`_flush`)."""
        if not accepted:
            return
        with self._lock:
            start = self._bucket(time.time()) if live else None
            requests, batch, kinds, shown = self.requests, self._batch, self._kinds, self._shown
            watermark = self.watermark
            last: str | None = None  # the request of the previous impression (a list is contiguous)
            req: _Request | None = None
            sums: list[Any] = []
            for stored in accepted:
                ev = stored.event
                kind = ev.type
                kinds.append(kind)
                ts = ev.timestamp
                if ts > watermark:
                    watermark = ts
                ctx = ev.context
                extra = ctx.__pydantic_extra__
                named = extra.get("cohort") if extra else None
                if named:
                    self._remember_cohort(hash(ev.user_id), str(named), start)
                    last = None  # the batch may have been applied: look the sums up again
                rid = ctx.request_id
                if kind is _IMPRESSION:
                    if rid is None or rid != last or req is None:
                        req = requests.get(rid) if rid else None
                        if req is None:
                            cohort = named or ctx.surface
                            req = self._open(ev.user_id, rid, ctx.policy, ctx.model, cohort, ts, start)
                        got = batch.get(req.keys)
                        if got is None:
                            batch[req.keys] = got = [0, 0, 0, 0, 0.0]
                        sums, last = got, rid
                    p = ctx.propensity
                    explored = 1 if p is not None and p < EXPLORED_BELOW else 0
                    sums[0] += 1
                    sums[1] += explored
                    held = req.held
                    if held is not None:
                        held[0] += 1
                        held[1] += explored
                        if start == req.bucket:
                            held[5] += 1
                            held[6] += explored
                    shown.append(ev.item_id)
                    continue
                if not rid:
                    continue  # not named: nothing to attribute it to (the policy's join matches by item)
                found = requests.get(rid)
                if found is None or not 0.0 <= ts - found.ts <= self.window_s:
                    self.unattributed += 1
                    continue
                self.attributed += 1
                click = 1 if kind is _CLICK else 0
                value = self.rewards(ev)
                got = batch.get(found.keys)
                if got is None:
                    batch[found.keys] = got = [0, 0, 0, 0, 0.0]
                got[2] += click
                got[3] += 1
                got[4] += value
                held = found.held
                if held is not None:
                    for at in (0, 5) if start == found.bucket else (0,):
                        held[at + 2] += click
                        held[at + 3] += 1
                        held[at + 4] += value
                if click:
                    self._clicked.append(ev.item_id)
            self.watermark = watermark
            self._flush(start)

    def _flush(self, start: float | None) -> None:
        """Apply the batch's sums to the totals, the time bucket and the exposure counts."""
        bucket = self.buckets[-1][1] if start is not None else None
        for keys, (imps, explored, clicks, feedback, reward) in self._batch.items():
            tally = Tally(imps, explored, clicks, feedback, reward)
            for dim, key in zip(DIMENSIONS, keys, strict=True):
                _add(self.totals[dim], key, tally, self.max_keys)
                if bucket is not None:
                    _add(bucket[dim], key, tally, self.max_keys)
        self._batch.clear()
        for kind, n in Counter(self._kinds).items():
            self.types[kind] += n
        self._kinds.clear()
        if not self._shown and not self._clicked:
            return
        per_item: dict[str, list[int]] = {}
        for column, items in ((0, self._shown), (1, self._clicked)):
            for item_id, n in Counter(items).items():
                per_item.setdefault(item_id, [0, 0])[column] = n
            items.clear()
        rows, counts = [], []
        for item_id, both in per_item.items():
            row = self.catalog.row(item_id)
            if row is not None:
                rows.append(row)
                counts.append(both)
        if not rows:
            return
        top = max(rows)
        if top >= len(self.exposure):
            grown = np.zeros((max(2 * len(self.exposure), top + 1), 2), dtype=np.int64)
            grown[: len(self.exposure)] = self.exposure
            self.exposure = grown
        self.exposure[rows] += np.asarray(counts, dtype=np.int64)  # rows are distinct: no np.add.at

    def _open(
        self,
        user_id: str,
        rid: str | None,
        policy: str | None,
        model: str | None,
        cohort: str | None,
        ts: float,
        start: float | None,
    ) -> _Request:
        """A new request: its groups, remembered by id (bounded by count and by the window)."""
        user = hash(user_id)  # salted per process: no user id is kept
        cohort = cohort or self.cohorts.get(user) or DEFAULT
        req = _Request(ts, (policy or NONE, model or NONE, cohort), start, cohort == DEFAULT)
        if not rid:
            return req
        requests = self.requests
        requests[rid] = req
        horizon = ts - self.window_s
        while requests and (len(requests) > self.max_requests or next(iter(requests.values())).ts < horizon):
            requests.popitem(last=False)
        if req.held is not None:
            self._unnamed(user, rid)
        return req

    def _unnamed(self, user: int, rid: str) -> None:
        rids = self.unnamed.get(user)
        if rids is None:
            self.unnamed[user] = rids = []
            if len(self.unnamed) > self.max_users:
                self.unnamed.popitem(last=False)
        rids.append(rid)
        if len(rids) > 100:  # a user who never names a cohort: only their latest lists can move
            del rids[:50]

    def _remember_cohort(self, user: int, cohort: str, start: float | None) -> None:
        """The user names their cohort: their lists counted under ``default`` within the window move
        to it (users are assigned to cohorts, not lists)."""
        cohorts = self.cohorts
        if cohorts.get(user) != cohort:
            cohorts[user] = cohort
            cohorts.move_to_end(user)
            if len(cohorts) > self.max_users:
                cohorts.popitem(last=False)
        rids = self.unnamed.pop(user, None)
        if rids:
            self._flush(start)  # what the batch counted so far, before any of it moves
            for rid in rids:
                req = self.requests.get(rid)
                if req is not None and req.held is not None:
                    self._move(req, cohort)

    def _move(self, req: _Request, cohort: str) -> None:
        held, req.held = req.held, None
        assert held is not None
        req.keys = (req.keys[0], req.keys[1], cohort)
        moves = [(self.totals["cohort"], Tally(*held[:5]))]
        own = Tally(*held[5:])
        moves += [(g["cohort"], own) for t, g in reversed(self.buckets) if t == req.bucket][:1]
        for keys, part in moves:  # feedback counted in a later bucket stays there under default
            _sub(keys, DEFAULT, part)
            _add(keys, cohort, part, self.max_keys)

    def _bucket(self, now: float) -> float:
        """The current time bucket (made if new); returns its start."""
        start = now - now % BUCKET_S
        if not self.buckets or self.buckets[-1][0] < start:
            self.buckets.append((start, {d: {} for d in DIMENSIONS}))
        return self.buckets[-1][0]

    # -- reading (any thread) --------------------------------------------------------------------
    def copy(self) -> QualityCopy:
        with self._lock:
            return QualityCopy(
                types={k.value: n for k, n in self.types.items()},
                totals=_copy_groups(self.totals),
                buckets=[(t, _copy_groups(g)) for t, g in self.buckets],
                attributed=self.attributed,
                unattributed=self.unattributed,
                open_requests=len(self.requests),
            )

    def type_counts(self) -> dict[str, int]:
        """Events folded so far by type (the start-up replay included)."""
        with self._lock:
            return {k.value: n for k, n in self.types.items()}

    def newest(self, n: int, now: float) -> tuple[list[tuple[str, float, int, int]], int, int]:
        """The ``n`` most recently created items as (id, created_at, impressions, clicks), newest
        first; and how many items were created in the last hour and the last day."""
        ids = self.catalog.ids
        created = self.catalog.created_at
        rows = min(len(ids), len(created))
        created = created[:rows]
        top = np.argsort(-created, kind="stable")[:n]
        with self._lock:
            exposure = self.exposure[: max(rows, 1)].copy()
        out = []
        for r in top.tolist():
            imps, clicks = exposure[r].tolist() if r < len(exposure) else (0, 0)
            out.append((ids[r], float(created[r]), int(imps), int(clicks)))
        hour = int(np.count_nonzero(created >= now - 3600.0))
        day = int(np.count_nonzero(created >= now - 86_400.0))
        return out, hour, day


def _add(groups: dict[str, Tally], key: str, tally: Tally, cap: int) -> None:
    mine = groups.get(key)
    if mine is None:
        if len(groups) >= cap:  # the oldest key goes (model versions come and go)
            del groups[next(iter(groups))]
        groups[key] = mine = Tally()
    mine.add(tally)


def _sub(groups: dict[str, Tally], key: str, tally: Tally) -> None:
    mine = groups.get(key)
    if mine is None:
        return
    mine.impressions -= tally.impressions
    mine.explored -= tally.explored
    mine.clicks -= tally.clicks
    mine.feedback -= tally.feedback
    mine.reward -= tally.reward
    if mine.impressions <= 0 and mine.feedback <= 0:
        del groups[key]


def _copy_groups(groups: Groups) -> Groups:
    return {dim: {k: t.copy() for k, t in keys.items()} for dim, keys in groups.items()}
