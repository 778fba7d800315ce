"""Event quality before learning. Events stay in the log; these only decide what the model learns,
and (`[filters] serving`) what the server's live popularity, trending and co-occurrence count.

- duplicates: the same (user, item, type) again within `duplicate_window_s` (double clicks, retries
  with new ids) is dropped;
- repeats: a user clicking the same item more than `max_repeats` times within `repeat_window_s`
  is quarantined (the first clicks still count);
- user bursts: more than `user_max_per_minute` events from one user in a minute quarantines the
  user for `quarantine_s` (bots, scripts);
- item bursts: an item taking more than `item_max_per_minute` events in a minute from fewer than
  `item_min_users` distinct users is quarantined for `quarantine_s` (click farms on one item).
"""

from __future__ import annotations

from collections import Counter, deque

from liverec.core.schema import Event, EventType
from liverec.settings import FilterConfig


class EventFilter:
    def __init__(self, cfg: FilterConfig | None = None) -> None:
        self.cfg = cfg or FilterConfig()
        self._last_seen: dict[tuple[str, str, EventType], float] = {}
        self._repeats: dict[tuple[str, str], deque[float]] = {}
        self._user_times: dict[str, deque[float]] = {}
        self._item_times: dict[str, deque[tuple[float, str]]] = {}
        self._user_until: dict[str, float] = {}
        self._item_until: dict[str, float] = {}
        self.counts: Counter[str] = Counter()  # reason -> events held back
        self._checked = 0

    def check(self, ev: Event) -> str | None:
        """None if the event may be learned from, else the reason it is held back."""
        reason = self._check(ev)
        self.counts[reason or "ok"] += 1
        self._checked += 1
        if self._checked % 50_000 == 0:
            self.prune(ev.timestamp)
        return reason

    def prune(self, now: float) -> None:
        """Forget state older than every window, so memory follows active users, not all users."""
        c = self.cfg
        horizon = now - max(c.repeat_window_s, c.quarantine_s, 60.0, c.duplicate_window_s)
        self._last_seen = {k: t for k, t in self._last_seen.items() if t >= now - c.duplicate_window_s}
        self._repeats = {k: d for k, d in self._repeats.items() if d and d[-1] >= now - c.repeat_window_s}
        self._user_times = {k: d for k, d in self._user_times.items() if d and d[-1] >= now - 60.0}
        self._item_times = {k: d for k, d in self._item_times.items() if d and d[-1][0] >= now - 60.0}
        self._user_until = {k: t for k, t in self._user_until.items() if t >= horizon}
        self._item_until = {k: t for k, t in self._item_until.items() if t >= horizon}

    def forget_user(self, user_id: str) -> None:
        """Drop what the filter holds on a deleted user: one who comes back starts fresh."""
        self._user_times.pop(user_id, None)
        self._user_until.pop(user_id, None)
        self._last_seen = {k: t for k, t in self._last_seen.items() if k[0] != user_id}
        self._repeats = {k: d for k, d in self._repeats.items() if k[0] != user_id}
        for times in self._item_times.values():
            if any(u == user_id for _, u in times):
                kept = [(t, u) for t, u in times if u != user_id]
                times.clear()
                times.extend(kept)

    def quarantined(
        self, now: float, limit: int = 50
    ) -> tuple[list[tuple[str, float]], list[tuple[str, float]]]:
        """(users, items) held back at event time ``now``, each with when it ends (event time),
        the longest-held first, at most ``limit`` of each (for the server's dashboard)."""

        def held(until: dict[str, float]) -> list[tuple[str, float]]:
            return sorted(((k, t) for k, t in until.items() if t > now), key=lambda kt: -kt[1])[:limit]

        return held(self._user_until), held(self._item_until)

    def _check(self, ev: Event) -> str | None:
        c, t = self.cfg, ev.timestamp
        if ev.type is EventType.impression:
            return None
        if self._user_until.get(ev.user_id, -1.0) > t:
            return "user_quarantined"
        if self._item_until.get(ev.item_id, -1.0) > t:
            return "item_quarantined"

        users = self._user_times.setdefault(ev.user_id, deque())
        users.append(t)
        while users and users[0] < t - 60.0:
            users.popleft()
        if len(users) > c.user_max_per_minute:
            self._user_until[ev.user_id] = t + c.quarantine_s
            return "user_burst"

        items = self._item_times.setdefault(ev.item_id, deque())
        items.append((t, ev.user_id))
        while items and items[0][0] < t - 60.0:
            items.popleft()
        if len(items) > c.item_max_per_minute and len({u for _, u in items}) < c.item_min_users:
            self._item_until[ev.item_id] = t + c.quarantine_s
            return "item_burst"

        key = (ev.user_id, ev.item_id, ev.type)
        last = self._last_seen.get(key)
        self._last_seen[key] = t
        if last is not None and 0.0 <= t - last < c.duplicate_window_s:
            return "duplicate"

        if ev.type is EventType.click:
            reps = self._repeats.setdefault((ev.user_id, ev.item_id), deque())
            reps.append(t)
            while reps and reps[0] < t - c.repeat_window_s:
                reps.popleft()
            if len(reps) > c.max_repeats:
                return "repeated_click"
        return None
