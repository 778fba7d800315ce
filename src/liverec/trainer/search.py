"""`SearchLearner`: the search ranker learns from every click, debiased, behind a guarded publish.

Two rankers: ``live`` serves, ``candidate`` learns. A click on a logged search result (joined by
request id and position) becomes one example: the shown list's features, the clicked position, and
its weight (the reward times the inverse examination propensity of the position; 1 per position
when ``debias`` is off). Examples wait in ``pending``; every ``gate_every`` of them the gate runs:
both rankers re-rank those lists (the newest search events, which the candidate has not trained on)
and the candidate goes live only if its weighted mean reciprocal rank of the clicked items is not
worse than live's by more than ``tolerance``. Then the candidate trains on them. The same rule as the
recommender's learner (a version goes live only if it is not worse on events it has not seen), with
a linear model cheap enough to run inside the server.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from liverec.search.examination import Examination
from liverec.search.ranker import LinearRanker, reciprocal_rank

Memory = Callable[[str, int, float, float], None]  # (query key, row, weight, now): the click memory


@dataclass(frozen=True)
class Shown:
    """One logged search result list (its logged positions)."""

    user_id: str
    query_key: str
    rows: np.ndarray  # (L,) int64 catalog rows in display order
    features: np.ndarray  # (L, F) float32 the features they were ranked with
    randomized: bool  # shown by a shuffled slate (feeds the examination estimate)


@dataclass(frozen=True)
class Example:
    features: np.ndarray  # (L, F)
    clicked: int  # position in the list
    weight: float


@dataclass
class GateStats:
    published: int = 0
    rejected: int = 0
    clicks: int = 0  # joined clicks learned from
    unjoined: int = 0  # search clicks naming an unknown request or position
    last: dict[str, float] = field(default_factory=dict)  # the last gate's scores


class SearchLearner:
    def __init__(
        self,
        ranker: LinearRanker | None = None,
        debias: bool = True,
        gate_every: int = 20,
        tolerance: float = 0.0,
        examination: Examination | None = None,
        memory: Memory | None = None,
        capacity: int = 100_000,
    ) -> None:
        self.live = ranker or LinearRanker()
        self.candidate = self.live.copy()
        self.debias = debias
        self.gate_every = gate_every
        self.tolerance = tolerance
        self.examination = examination or Examination()
        self.memory = memory
        self.capacity = capacity
        self.served: OrderedDict[str, Shown] = OrderedDict()  # by request id, bounded
        self.clicked: dict[str, set[int]] = {}  # request id -> positions already learned from
        self.pending: list[Example] = []
        self.stats = GateStats()

    def shown(self, request_id: str, shown: Shown) -> None:
        """A search result list was served and logged."""
        self.served[request_id] = shown
        if shown.randomized:
            for p in range(len(shown.rows)):
                self.examination.observe_shown(p)
        while len(self.served) > self.capacity:
            old, _ = self.served.popitem(last=False)
            self.clicked.pop(old, None)

    def weight(self, position: int) -> float:
        return self.examination.weight(position) if self.debias else 1.0

    def click(self, request_id: str, position: int, now: float, reward: float = 1.0) -> bool:
        """A positive event on a search result; False when it joins no logged list. Each (request,
        position) teaches once: a click then a purchase of the same result is one choice."""
        shown = self.served.get(request_id)
        if shown is None or not 0 <= position < len(shown.rows) or reward <= 0:
            self.stats.unjoined += shown is None or not 0 <= position < len(shown.rows)
            return False
        done = self.clicked.setdefault(request_id, set())
        if position in done:
            return True
        done.add(position)
        if shown.randomized:
            self.examination.observe_click(position)
        w = self.weight(position) * reward
        if self.memory is not None:
            self.memory(shown.query_key, int(shown.rows[position]), w, now)
        self.pending.append(Example(shown.features, position, w))
        self.stats.clicks += 1
        if len(self.pending) >= self.gate_every:
            self.gate()
        return True

    def gate(self) -> bool:
        """Score candidate and live on the pending examples, publish the candidate if not worse, then
        train the candidate on them. True when it was published."""
        if not self.pending:
            return False
        cand, live = self.evaluate(self.candidate), self.evaluate(self.live)
        publish = cand >= live - self.tolerance
        if publish:
            self.live = self.candidate.copy()
            self.stats.published += 1
        else:
            self.stats.rejected += 1
        self.stats.last = {"candidate": round(cand, 6), "live": round(live, 6), "examples": len(self.pending)}
        for ex in self.pending:
            self.candidate.learn(ex.features, ex.clicked, ex.weight)
        self.pending.clear()
        return publish

    def evaluate(self, ranker: LinearRanker) -> float:
        """Weighted mean reciprocal rank of the clicked items when ``ranker`` re-ranks each list."""
        num = den = 0.0
        for ex in self.pending:
            num += ex.weight * reciprocal_rank(ranker.score(ex.features), ex.clicked)
            den += ex.weight
        return num / den if den else 0.0

    def forget_user(self, user_id: str) -> None:
        """A deleted user: their open result lists go (what the weights learned stays: a handful of
        shared coefficients, not a record of the person)."""
        for rid in [r for r, s in self.served.items() if s.user_id == user_id]:
            del self.served[rid]
            self.clicked.pop(rid, None)

    def status(self) -> dict[str, Any]:
        return {
            "weights": self.live.weights(),
            "published": self.stats.published,
            "rejected": self.stats.rejected,
            "clicks": self.stats.clicks,
            "pending": len(self.pending),
            "examination": [round(float(p), 4) for p in self.examination.curve()],
            "debias": self.debias,
            "last_gate": self.stats.last,
        }
