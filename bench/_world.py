"""Synthetic traffic for the HTTP benchmarks: items in taste clusters and users who like a few
clusters, so item-to-item co-occurrence carries a real signal.

- ``World(...)``: ``.items()``, ``.events(n)``, ``.tastes()``, ``.cluster_items(c)``.
- ``batch_bodies(events, batch)``: ``{"events": [...]}`` request bodies, serialized before timing.
"""

from __future__ import annotations

import itertools
import random
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import orjson

# (type, share) of a realistic feedback stream: impressions are common, purchases are rare.
EVENT_MIX: tuple[tuple[str, float], ...] = (
    ("impression", 0.30),
    ("click", 0.42),
    ("add_to_cart", 0.07),
    ("purchase", 0.03),
    ("like", 0.04),
    ("dwell", 0.07),
    ("rating", 0.03),
    ("skip", 0.04),
)


@dataclass(frozen=True)
class World:
    """Items grouped in taste clusters; each user likes a few clusters and mostly picks from them.

    That gives item-to-item co-occurrence a real signal: items of one cluster are liked by the same
    users. Within a cluster a few items are much more popular (rank r has weight ~ 1/sqrt(r)).
    """

    n_items: int = 10_000
    n_users: int = 5_000
    n_clusters: int = 100
    clusters_per_user: tuple[int, int] = (2, 3)
    noise: float = 0.1  # share of picks outside the user's clusters
    seed: int = 0

    def item_id(self, row: int) -> str:
        return f"item-{row}"

    def user_id(self, u: int) -> str:
        return f"user-{u}"

    def cluster_of(self, row: int) -> int:
        return row % self.n_clusters

    def cluster_items(self, c: int) -> range:
        """Rows of cluster ``c``, most popular first."""
        return range(c, self.n_items, self.n_clusters)

    def tastes(self) -> list[tuple[int, ...]]:
        """The clusters each user likes (deterministic from ``seed``)."""
        rng = random.Random(self.seed)
        lo, hi = self.clusters_per_user
        return [tuple(rng.sample(range(self.n_clusters), rng.randint(lo, hi))) for _ in range(self.n_users)]

    def items(self) -> list[dict[str, Any]]:
        """Catalog entries for ``POST /v1/items``."""
        return [
            {"item_id": self.item_id(r), "title": f"item {r}", "tags": [f"cluster-{self.cluster_of(r)}"]}
            for r in range(self.n_items)
        ]

    def events(
        self,
        n: int,
        *,
        end_ts: float | None = None,
        span_s: float = 7 * 86400.0,
        mix: Sequence[tuple[str, float]] = EVENT_MIX,
        seed: int | None = None,
    ) -> list[dict[str, Any]]:
        """``n`` valid event dicts (JSON-ready), oldest first, spread over ``span_s`` up to ``end_ts``.

        Event ids are random uuid4 hex, like the server's default, so every run writes new events
        and the log's id index sees realistic (random) inserts. Active users follow a mild power law.
        """
        rng = random.Random(self.seed + 1 if seed is None else seed)
        tastes = self.tastes()
        end = time.time() - 60.0 if end_ts is None else end_ts
        per_cluster = self.n_items // self.n_clusters
        types = [t for t, _ in mix]
        weights = list(itertools.accumulate(w for _, w in mix))
        kinds = rng.choices(types, cum_weights=weights, k=n)
        out: list[dict[str, Any]] = []
        for i, kind in enumerate(kinds):
            u = min(self.n_users - 1, int(self.n_users * rng.random() ** 1.5))
            if rng.random() < self.noise:
                row = rng.randrange(self.n_items)
            else:
                c = rng.choice(tastes[u])
                rank = min(per_cluster - 1, int(per_cluster * rng.random() ** 2))
                row = c + rank * self.n_clusters
            ev: dict[str, Any] = {
                "event_id": uuid.UUID(int=rng.getrandbits(128), version=4).hex,
                "user_id": self.user_id(u),
                "item_id": self.item_id(row),
                "type": kind,
                "timestamp": round(end - span_s + span_s * (i + 1) / n, 3),
            }
            if kind == "dwell":
                ev["value"] = round(rng.uniform(2.0, 180.0), 1)
            elif kind == "rating":
                ev["value"] = float(rng.randint(1, 5))
            elif kind == "impression":
                ev["context"] = {"surface": "home", "position": rng.randrange(10)}
            out.append(ev)
        return out


def batch_bodies(events: Sequence[dict[str, Any]], batch: int) -> list[bytes]:
    """JSON bodies ``{"events": [...]}`` of ``batch`` events each, serialized before any timing."""
    return [orjson.dumps({"events": events[i : i + batch]}) for i in range(0, len(events), batch)]
