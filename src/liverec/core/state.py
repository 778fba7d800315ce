"""Live per-user state: the last N engagements (`core.sequence`: repeated positives on one item are
one position) and the set of items seen.

Updated in the same request that appends the event (so the next recommendation reads it) and
rebuilt from the log on start. `apply` turns stored events into `Interaction`s that models learn
their cheap online statistics from.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import NamedTuple

from liverec.core.catalog import Catalog
from liverec.core.features import event_type_id, event_type_of
from liverec.core.rewards import Rewards
from liverec.core.schema import NEEDS_VALUE, Event, EventType, StoredEvent
from liverec.core.sequence import Engagements
from liverec.settings import RewardWeights


@dataclass(slots=True)
class UserState(Engagements):
    """A user's engagements as catalog rows (`Engagements`), and every row they touched."""

    seen: set[int] = field(default_factory=set)  # rows the user interacted with in any way but impression
    last_offset: int = 0


class Interaction(NamedTuple):
    """One event as the models see it: who, which row, what reward, when.

    A named tuple: one is built per event folded, at less than half a frozen dataclass's cost.
    """

    user_id: str
    row: int
    reward: float
    timestamp: float
    positive: bool


class LiveState:
    def __init__(self, catalog: Catalog, rewards: RewardWeights, max_sequence: int = 200) -> None:
        self.catalog = catalog
        self.reward = Rewards(rewards)
        # A reward depends on the event's value only for the types that need one (rating, dwell):
        # the others are looked up per event instead of calling `reward`.
        self._type_reward = {
            t: self.reward(Event(user_id="-", item_id="-", type=t)) for t in EventType if t not in NEEDS_VALUE
        }
        self.max_sequence = max_sequence
        self.users: dict[str, UserState] = {}
        self.events_applied = 0
        self.last_offset = 0

    def __len__(self) -> int:
        return len(self.users)

    def get(self, user_id: str) -> UserState | None:
        return self.users.get(user_id)

    def remove(self, user_id: str) -> bool:
        return self.users.pop(user_id, None) is not None

    def interactions_of(self, user_id: str) -> list[Interaction]:
        """The positives the user's live sequence holds, as `apply` once returned them (one per
        position: repeats on an item are merged; at most ``max_sequence``). What a replica can take
        back from the counts for a user deleted elsewhere, whose events it can no longer read."""
        st = self.users.get(user_id)
        if st is None:
            return []
        out = []
        for row, ts, type_id in zip(st.items, st.times, st.types, strict=False):
            kind, stars = event_type_of(type_id)
            r = self._type_reward.get(kind)
            if r is None:  # a rating's stars are kept; a dwell's seconds are not (its weight: 1)
                value = float(stars) if stars is not None else None
                r = self.reward(Event(user_id=user_id, item_id="-", type=kind, value=value)) if value else 1.0
            out.append(Interaction(user_id, row, r if r > 0 else 1.0, ts, True))
        return out

    def _user(self, user_id: str) -> UserState:
        st = self.users.get(user_id)
        if st is None:
            n = self.max_sequence
            st = self.users[user_id] = UserState(deque(maxlen=n), deque(maxlen=n), deque(maxlen=n))
        return st

    def apply(self, stored: Iterable[StoredEvent]) -> list[Interaction]:
        """Fold events into user state (in offset order); returns the non-impression interactions."""
        # runs for every event ingested: names are bound once, counters updated once per batch
        out: list[Interaction] = []
        impression = EventType.impression
        row_of, users, type_reward = self.catalog.row, self.users, self._type_reward
        new = tuple.__new__  # builds an Interaction without its Python-level __new__
        n, last = 0, self.last_offset
        for offset, ev in stored:
            n += 1
            if offset > last:
                last = offset
            row = row_of(ev.item_id)
            if row is None:
                # the store made a catalog stub for any new item, impressions included: so does memory,
                # or a restart (which loads the stubs) would recommend items the live server does not
                row = self.catalog.ensure(ev.item_id, ev.timestamp)
            kind = ev.type
            if kind is impression:
                continue
            user_id = ev.user_id
            st = users.get(user_id)
            if st is None:
                st = self._user(user_id)
            st.last_offset = offset
            r = type_reward.get(kind)
            if r is None:
                r = self.reward(ev)
            out.append(new(Interaction, (user_id, row, r, ev.timestamp, r > 0)))
            st.seen.add(row)
            if r > 0:
                st.add(row, ev.timestamp, event_type_id(kind, ev.value))
        self.events_applied += n
        self.last_offset = last
        return out
