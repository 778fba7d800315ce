"""Prometheus metrics, one registry per app (nothing global at import time)."""

from __future__ import annotations

import time
from collections import deque

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


class Metrics:
    def observe(self, what: str, seconds: float) -> None:
        """Freshness observations from the engine ("visible" or "trained")."""
        self.freshness.labels(what).observe(seconds)

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.events_accepted = Counter("liverec_events_accepted", "Events appended to the log", registry=r)
        self.events_duplicate = Counter(
            "liverec_events_duplicate", "Events dropped as duplicates", registry=r
        )
        self.events_rejected = Counter(
            "liverec_events_rejected", "Events in rejected requests (nothing written)", ["reason"], registry=r
        )
        self.requests_by_key = Counter(
            "liverec_requests_by_key",
            "Requests per API key name (never the key) that passed (ok) or failed (forbidden) the scope "
            "check; open mode counts as key=open",
            ["key", "outcome"],
            registry=r,
        )
        self.impressions = Counter(
            "liverec_impressions", "Impression events written for served lists", registry=r
        )
        self.request_latency = Histogram(
            "liverec_request_seconds",
            "HTTP request latency by route",
            ["method", "route", "status"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.freshness = Histogram(
            "liverec_freshness_seconds",
            "Event -> visible in live state (what=visible), -> trained into live weights (what=trained)",
            ["what"],
            buckets=(0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300),
            registry=r,
        )
        self.store_events = Gauge(
            "liverec_store_events", "Events applied from the log since start", registry=r
        )
        self.store_items = Gauge("liverec_store_items", "Items in the catalog", registry=r)
        self.store_users = Gauge("liverec_store_users", "Users with live state", registry=r)
        self.replica_lag_offsets = Gauge(
            "liverec_replica_lag_offsets",
            "Offsets of the shared log not yet folded into this server's live state (-1: store down)",
            registry=r,
        )
        self.replica_lag_seconds = Gauge(
            "liverec_replica_lag_seconds",
            "Seconds since this server last had the whole log folded",
            registry=r,
        )
        self.store_bytes = Gauge(
            "liverec_store_bytes", "Size of the store on disk (0 when not a file)", registry=r
        )


class Freshness:
    """Remembers when recent log offsets were ingested, to time event -> trained into live weights."""

    def __init__(self, capacity: int = 100_000) -> None:
        self.batches: deque[tuple[int, float]] = deque(maxlen=capacity)  # (last offset, monotonic time)

    def ingested(self, last_offset: int) -> None:
        self.batches.append((last_offset, time.monotonic()))

    def trained(self, offset: int) -> list[float]:
        """Seconds since ingest of every batch the weights now include (each counted once)."""
        now, out = time.monotonic(), []
        while self.batches and self.batches[0][0] <= offset:
            out.append(now - self.batches.popleft()[1])
        return out
