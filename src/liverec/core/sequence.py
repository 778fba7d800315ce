"""The engagement rule, in one place: how a user's positive events become a sequence.

Consecutive positives on one item (a click, then add-to-cart, then purchase) are ONE engagement:
one position in the sequence, carrying the deepest (newest) event's type and the time it began. So
a model never learns to predict the item the user is engaged with right now, which serving excludes
anyway. Live state (`core.state.UserState`), the online learner (`trainer.online.Track`), the
offline splits (`core.split.sequences_from_events`) and the sequential rules (`model.rules`) all
build their sequences with `Engagements.add`.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field


@dataclass(slots=True)
class Engagements:
    """One user's engagements, oldest first; ``items`` are whatever ids the owner uses (catalog rows
    or model indices). Bounded owners pass deques with a ``maxlen``: the oldest fall off."""

    items: deque[int]
    times: deque[float]  # epoch seconds each engagement began
    types: deque[int] = field(default_factory=deque)  # event-type ids (`core.features.event_type_id`)

    @classmethod
    def bounded(cls, max_len: int | None) -> Engagements:
        """Empty, keeping at most ``max_len`` engagements (None: all)."""
        return cls(deque(maxlen=max_len), deque(maxlen=max_len), deque(maxlen=max_len))

    def repeats(self, item: int) -> bool:
        """True when a positive on ``item`` would deepen the newest engagement, not start one."""
        return bool(self.items) and self.items[-1] == item

    def add(self, item: int, time: float, type_id: int) -> bool:
        """Fold one positive in; False when it deepened the newest engagement (only its type changes)."""
        if self.items and self.items[-1] == item:
            self.types[-1] = type_id
            return False
        self.items.append(item)
        self.times.append(time)
        self.types.append(type_id)
        return True
