"""`Sampler`: once a second, the dashboard's time series: one flat sample of rates and gauges into a
ring buffer (`HISTORY_S`), so the charts have a history the moment the page opens.

Its sources are counted elsewhere and only read here: request counts, statuses and latency from the
Prometheus `Metrics` (the `RequestMetrics` middleware observes every request), rejected and
duplicate events from the same, events by type from the engine's `QualityBoard`, the serving
filter's verdicts from `EventFilter.counts`, event -> visible / trained from `Metrics.freshness`.
Latency percentiles come from the histogram's buckets over the last `LATENCY_WINDOW` seconds (as
Prometheus' ``histogram_quantile`` would), so they are bucket-resolution estimates.

Gate decisions: the online learner (another process) only reports its *last* decision in its status
file, so the sampler keeps every new one it reads (`decisions`, bounded); the search ranker's gates
likewise from its published/rejected counts.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections import deque
from typing import Any

from prometheus_client import Histogram

from liverec.serve.engine import Engine
from liverec.serve.metrics import Metrics

log = logging.getLogger(__name__)

HISTORY_S = 900  # seconds of samples kept
LATENCY_WINDOW = 10  # samples (seconds) a latency percentile is taken over
TRAINED_WINDOW = 300  # event -> trained is observed once per model swap: a longer window
OWN_PATHS = ("/dashboard", "/v1/dashboard")  # the dashboard's own polling is not traffic
Sample = dict[str, float | None]
Buckets = dict[float, float]  # histogram bucket upper bound -> count


class Sampler:
    def __init__(self, metrics: Metrics, interval_s: float = 1.0, max_decisions: int = 500) -> None:
        self.metrics = metrics
        self.interval_s = interval_s
        self.samples: deque[Sample] = deque(maxlen=int(HISTORY_S / interval_s))
        self.decisions: deque[dict[str, Any]] = deque(maxlen=max_decisions)
        self.engine: Engine | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._prev: dict[str, Any] | None = None
        self._latency: deque[Buckets] = deque(maxlen=LATENCY_WINDOW + 1)  # cumulative snapshots
        self._visible: deque[Buckets] = deque(maxlen=LATENCY_WINDOW + 1)
        self._trained: deque[Buckets] = deque(maxlen=TRAINED_WINDOW + 1)
        self._seen_decision: float | None = None
        self._search_gates: tuple[int, int] | None = None

    # -- life cycle -------------------------------------------------------------------------------
    def start(self, engine: Engine) -> None:
        """Sample ``engine`` once a second on a daemon thread (the app's lifespan calls this)."""
        self.engine = engine
        self._stop.clear()
        self.tick()  # the baseline: rates start at the next sample
        self._thread = threading.Thread(target=self._run, name="liverec-dashboard", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                self.tick()
            except Exception:  # a broken sample must not end the dashboard's history
                log.exception("dashboard sample failed")

    # -- one sample ---------------------------------------------------------------------------------
    def tick(self, now: float | None = None) -> Sample | None:
        """Take one sample (the thread calls this; tests call it directly). The first call only
        records the baseline for the rates and returns None."""
        engine = self.engine
        if engine is None:
            return None
        now = time.time() if now is None else now
        m = self.metrics
        counts = request_counts(m.request_latency)
        cur: dict[str, Any] = {
            "t": now,
            "events": engine.dashboard.type_counts(),
            "requests": counts["all"],
            "4xx": counts["4xx"],
            "5xx": counts["5xx"],
            "rejected": labelled(m.events_rejected, "reason"),
            "duplicates": total(m.events_duplicate),
            "held": engine.screening()["counts"],
        }
        self._latency.append(counts["buckets"])
        self._visible.append(_buckets(m.freshness, what="visible"))
        self._trained.append(_buckets(m.freshness, what="trained"))
        status = engine.learner_status()
        self._record_decision(status, now)
        self._record_search(engine)
        prev, self._prev = self._prev, cur
        if prev is None:
            return None
        dt = max(now - prev["t"], 1e-6)
        sample: Sample = {"t": now}
        for kind, n in cur["events"].items():
            sample[f"events:{kind}"] = (n - prev["events"].get(kind, 0)) / dt
        sample["requests_per_s"] = (cur["requests"] - prev["requests"]) / dt
        sample["errors_4xx_per_s"] = (cur["4xx"] - prev["4xx"]) / dt
        sample["errors_5xx_per_s"] = (cur["5xx"] - prev["5xx"]) / dt
        latency = _window(self._latency)
        sample["latency_p50_ms"] = _ms(quantile(latency, 0.5))
        sample["latency_p99_ms"] = _ms(quantile(latency, 0.99))
        for reason, n in cur["rejected"].items():
            sample[f"rejected:{reason}"] = (n - prev["rejected"].get(reason, 0)) / dt
        sample["duplicates_per_s"] = (cur["duplicates"] - prev["duplicates"]) / dt
        for reason, n in cur["held"].items():
            if reason != "ok":
                sample[f"held:{reason}"] = (n - prev["held"].get(reason, 0)) / dt
        visible = _window(self._visible)
        sample["visible_p50_ms"] = _ms(quantile(visible, 0.5))
        sample["visible_p99_ms"] = _ms(quantile(visible, 0.99))
        sample["trained_p50_s"] = quantile(_window(self._trained), 0.5)
        offset = engine.model_offset
        sample["lag_events"] = float(engine.state.last_offset - offset) if offset else None
        age = status.get("age_s")
        sample["learner_age_s"] = float(age) if isinstance(age, int | float) else None
        sample["items"] = float(len(engine.catalog))
        sample["users"] = float(len(engine.state))
        with self._lock:
            self.samples.append(sample)
        return sample

    def _record_decision(self, status: dict[str, Any], now: float) -> None:
        last = status.get("last_decision")
        if not isinstance(last, dict) or last.get("at") == self._seen_decision:
            return
        self._seen_decision = last.get("at")
        reason = str(last.get("reason") or "")
        published = last.get("published")
        outcome = "published" if published else "rolled back" if "rolled back" in reason else "rejected"
        scores = _scores(reason)
        with self._lock:
            self.decisions.append(
                {
                    "at": float(last.get("at") or now),
                    "source": "learner",
                    "outcome": outcome,
                    "version": published or status.get("live"),
                    "candidate": scores[0],
                    "live": scores[1],
                    "reason": reason,
                    "offset": last.get("offset"),
                }
            )

    def _record_search(self, engine: Engine) -> None:
        if engine.search is None:
            return
        status = engine.search_status()
        counts = (int(status.get("published", 0)), int(status.get("rejected", 0)))
        before, self._search_gates = self._search_gates, counts
        if before is None or counts == before:
            return  # the first read: gates replayed from the log at start have no time of their own
        gate = status.get("last_gate") or {}
        with self._lock:
            self.decisions.append(
                {
                    "at": time.time(),
                    "source": "search",
                    "outcome": "published" if counts[0] > before[0] else "rejected",
                    "version": None,
                    "candidate": gate.get("candidate"),
                    "live": gate.get("live"),
                    "reason": f"search ranker gate, mean reciprocal rank on {gate.get('examples', 0)} clicks",
                    "offset": None,
                }
            )

    # -- reading ------------------------------------------------------------------------------------
    def since(self, t: float | None) -> list[Sample]:
        """Samples newer than ``t`` (all of them for None), oldest first."""
        with self._lock:
            return [s for s in self.samples if t is None or (s["t"] or 0.0) > t]

    def decision_log(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(self.decisions)


# -- reading Prometheus metrics -------------------------------------------------------------------------
def _own(route: str) -> bool:
    return route.startswith(OWN_PATHS)


def request_counts(hist: Histogram) -> dict[str, Any]:
    """Request counts (all, 4xx, 5xx) and cumulative latency buckets, the dashboard's own left out."""
    out: dict[str, Any] = {"all": 0.0, "4xx": 0.0, "5xx": 0.0}
    buckets: Buckets = {}
    for family in hist.collect():
        for s in family.samples:
            if _own(s.labels.get("route", "")):
                continue
            if s.name.endswith("_count"):
                out["all"] += s.value
                status = s.labels.get("status", "")
                if status.startswith("4"):
                    out["4xx"] += s.value
                elif status.startswith("5"):
                    out["5xx"] += s.value
            elif s.name.endswith("_bucket"):
                le = float(s.labels["le"])
                buckets[le] = buckets.get(le, 0.0) + s.value
    out["buckets"] = buckets
    return out


def _buckets(hist: Histogram, **labels: str) -> Buckets:
    """Cumulative counts per bucket upper bound of the series with ``labels``, summed."""
    buckets: Buckets = {}
    for family in hist.collect():
        for s in family.samples:
            if s.name.endswith("_bucket") and all(s.labels.get(k) == v for k, v in labels.items()):
                le = float(s.labels["le"])
                buckets[le] = buckets.get(le, 0.0) + s.value
    return buckets


def _window(history: deque[Buckets]) -> Buckets:
    """Per-bucket counts (not cumulative) observed between the oldest and the newest snapshot."""
    if len(history) < 2:
        return {}
    first, last = history[0], history[-1]
    cumulative = sorted((le, n - first.get(le, 0.0)) for le, n in last.items())
    out, below = {}, 0.0
    for le, n in cumulative:
        out[le], below = n - below, n
    return out


def quantile(counts: Buckets, q: float) -> float | None:
    """The ``q`` quantile of observations counted per bucket (upper bound -> count, not cumulative),
    interpolated linearly inside its bucket as Prometheus' ``histogram_quantile`` does; the highest
    finite bound when it falls in +Inf; None without observations."""
    total = sum(counts.values())
    if total <= 0:
        return None
    rank, seen, lower = q * total, 0.0, 0.0
    for upper, n in sorted(counts.items()):
        if n > 0 and seen + n >= rank:
            if upper == float("inf"):
                return lower
            return lower + (upper - lower) * max(rank - seen, 0.0) / n
        seen += n
        if upper != float("inf"):
            lower = upper
    return lower


def total(counter: Any) -> float:
    return sum(s.value for f in counter.collect() for s in f.samples if s.name.endswith("_total"))


def labelled(counter: Any, label: str) -> dict[str, float]:
    out: dict[str, float] = {}
    for family in counter.collect():
        for s in family.samples:
            if s.name.endswith("_total"):
                out[s.labels[label]] = out.get(s.labels[label], 0.0) + s.value
    return out


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else seconds * 1000.0


def _scores(reason: str) -> tuple[float | None, float | None]:
    """(candidate, live) NDCG@10 from a learner decision's reason text ("candidate 0.21 >= live ...")."""
    cand = re.search(r"candidate (\d+(?:\.\d+)?)", reason)
    live = re.search(r"live (?:v\d+ regressed \()?(\d+(?:\.\d+)?)", reason)
    return (float(cand.group(1)) if cand else None, float(live.group(1)) if live else None)
