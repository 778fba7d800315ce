"""`PolicyFeedback`: teaches the serving policy from the rewards its slates earned.

Impressions and rewards arrive as ordinary events; a `RewardJoiner` attributes each reward to the
impression that caused it (by request id and position, within an attribution window). When an
impression's window closes, its total reward goes to `Policy.update` together with the user and
item vectors the policy saw when it served the slate (kept here, bounded, by request id).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

from liverec.core.catalog import Catalog
from liverec.core.schema import StoredEvent
from liverec.events.join import JoinedImpression, RewardJoiner
from liverec.policy.base import Feedback, Policy
from liverec.serve.recommender import Recommendation


class Served(NamedTuple):
    """What a slate was chosen with, kept until its rewards arrive."""

    user_id: str
    user: np.ndarray  # (D,) user vector
    items: np.ndarray  # (k, D) the shown items' vectors, in slate order


def learns(policy: Policy) -> bool:
    """Whether the policy does anything with feedback (greedy, epsilon and Plackett-Luce do not)."""
    return type(policy).update is not Policy.update


class PolicyFeedback:
    def __init__(
        self, policy: Policy, catalog: Catalog, joiner: RewardJoiner, capacity: int = 100_000
    ) -> None:
        self.policy = policy
        self.catalog = catalog
        self.joiner = joiner
        self.capacity = capacity
        self.served: OrderedDict[str, Served] = OrderedDict()  # by request id
        self.updates = 0

    def remember(self, rec: Recommendation, user_id: str) -> None:
        """Keep the vectors a slate was chosen with: (D,) user vector, (k, D) shown items' vectors."""
        ctx, slate = rec.context or {}, rec.slate
        user, items = ctx.get("user_vector"), ctx.get("item_vectors")
        if slate is None or slate.index is None or user is None or items is None:
            return
        self.served[rec.request_id] = Served(user_id, np.asarray(user), np.asarray(items)[slate.index])
        while len(self.served) > self.capacity:
            self.served.popitem(last=False)

    def forget_user(self, user_id: str) -> int:
        """A deleted user: drop their open impressions (never joined, never taught), the vectors of
        their slates and the policy's per-user posterior. Returns how many impressions were open."""
        for request_id in [r for r, s in self.served.items() if s.user_id == user_id]:
            del self.served[request_id]
        self.policy.forget_user(user_id)
        return self.joiner.forget_user(user_id)

    def rebase(self) -> None:
        """A new model serves: slates chosen with the old one's vectors teach counts only, and the
        policy forgets what it learned on those vectors."""
        self.served.clear()
        self.policy.rebase()

    def fold(self, accepted: Sequence[StoredEvent]) -> int:
        """Feed new log events; teaches the policy from every impression whose window closed."""
        return self._teach(self.joiner.feed_many(accepted))

    def advance(self, now: float) -> int:
        """Close windows when no event arrives (event time ``now``)."""
        return self._teach(self.joiner.advance(now))

    def _teach(self, joined: list[JoinedImpression]) -> int:
        out: list[Feedback] = []
        for j in joined:
            row = self.catalog.row(j.item_id)
            if row is None:
                continue
            fb = j.feedback(row)
            vectors = self.served.get(j.request_id or "")
            if vectors is not None and j.position is not None and j.position < len(vectors.items):
                fb = Feedback(
                    fb.row,
                    fb.position,
                    fb.reward,
                    fb.propensity,
                    fb.context,
                    vectors.user,
                    vectors.items[j.position],
                )
            out.append(fb)
        if out:
            self.policy.update(out)
            self.updates += len(out)
        return len(out)
