"""Response bodies of the dashboard's data routes (`routes.dashboard`): one snapshot of every view,
time series as columns (one time axis, one list of values per series; null where there is no data)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class TimeSeries(BaseModel):
    t: list[float] = Field(description="sample times, Unix seconds, oldest first")
    values: dict[str, list[float | None]] = Field(
        description="series name -> one value per time in `t` (null: nothing to measure then)"
    )


class TrafficView(BaseModel):
    """Rates per second from the request metrics and the folded log; the dashboard's own calls left out."""

    series: TimeSeries = Field(
        description="`events:<type>` (events/s by type, server-logged impressions included), "
        "`requests_per_s`, `latency_p50_ms`, `latency_p99_ms` (over the last 10 s), "
        "`errors_4xx_per_s`, `errors_5xx_per_s`"
    )
    events: dict[str, int] = Field(description="events folded since start by type (the log replay included)")
    requests: int = Field(description="requests answered since start")
    errors_4xx: int = Field(description="requests answered 4xx since start")
    errors_5xx: int = Field(description="requests answered 5xx since start")


class GroupQuality(BaseModel):
    key: str = Field(description="the policy name, model version or cohort")
    impressions: int = Field(description="impressions logged for it")
    clicks: int = Field(description="click events attributed to its impressions' requests")
    ctr: float | None = Field(description="clicks per impression (null: no impressions)")
    feedback: int = Field(description="feedback events attributed (clicks, carts, purchases, skips, ...)")
    reward: float = Field(description="their total reward under the [rewards] weights")
    reward_per_impression: float | None = Field(description="reward / impressions (null: no impressions)")
    exploration_share: float | None = Field(
        description="share of its impressions logged with propensity < 0.5 (null: no impressions)"
    )


class QualityView(BaseModel):
    """Impressions grouped by the request that logged them; feedback naming that request credited to it."""

    by_policy: list[GroupQuality] = Field(description="per serving policy, most impressions first")
    by_model: list[GroupQuality] = Field(description="per model version, in the order first served")
    by_cohort: list[GroupQuality] = Field(
        description="per cohort: the context's `cohort`, else its `surface`, else the user's cohort"
    )
    series: TimeSeries = Field(
        description="`ctr:cohort:<c>` and `ctr:policy:<p>` over the trailing 30 s, "
        "`exploration_share` and `reward_per_impression` (all cohorts), in 5 s buckets"
    )
    window_s: float = Field(description="feedback this long after its request's impressions is credited")
    attributed: int = Field(description="feedback events credited to a request")
    unattributed: int = Field(description="feedback naming a request that is unknown, evicted or too old")
    open_requests: int = Field(description="requests still inside the window (bounded)")


class GateDecision(BaseModel):
    at: float = Field(description="when, Unix seconds")
    source: str = Field(description="`learner` (online model gate), `train` (an offline version) or `search`")
    outcome: str = Field(description="`published`, `rejected`, `rolled back` or `trained`")
    version: str | None = Field(description="the version published (or live when rejected)")
    candidate: float | None = Field(description="the candidate's score on the gate's slice (NDCG@10; MRR)")
    live: float | None = Field(description="the live version's score on the same slice")
    reason: str = Field(description="the gate's own words")


class VersionView(BaseModel):
    version: str = Field(description="registry version name")
    live: bool = Field(description="whether it is the registry's live version")
    created_at: float | None = Field(description="when it was saved, Unix seconds")
    parent: str | None = Field(description="the version it was trained from")
    online: bool = Field(description="published by the online learner (else `liverec train`)")
    trained_offset: int | None = Field(description="log offset its weights learned up to")
    score: float | None = Field(description="its gate score (online) or validation NDCG@10 (offline)")


class ModelsView(BaseModel):
    live: str | None = Field(description="the registry's live version (null: popularity is served)")
    served: str = Field(description="the model this server serves now (follows live within a poll)")
    history: list[str] = Field(description="earlier live versions; rollback makes the last one live")
    versions: list[VersionView] = Field(description="registered versions, oldest first (the last 100)")
    decisions: list[GateDecision] = Field(description="gate decisions and versions, oldest first")
    learner: dict[str, Any] = Field(description="the online learner's status file, aged (`age_s`)")
    search: dict[str, Any] = Field(description="the search ranker's status ({'enabled': false} without)")


class FreshnessView(BaseModel):
    series: TimeSeries = Field(
        description="`visible_p50_ms`, `visible_p99_ms` (event -> in live state, last 10 s), "
        "`trained_p50_s` (event -> in served weights, last 5 min), `lag_events`, `learner_age_s`"
    )
    log_offset: int = Field(description="the last log offset folded into live state")
    model_offset: int = Field(description="the log offset the served weights learned up to (0: none)")
    lag_events: int | None = Field(description="log offset minus model offset (null: no trained model)")
    learner_age_s: float | None = Field(description="age of the online learner's last status (null: none)")


class Quarantined(BaseModel):
    id: str = Field(description="the user or item id")
    until: float = Field(description="when its quarantine ends, event time (Unix seconds)")


class DataQualityView(BaseModel):
    series: TimeSeries = Field(
        description="`rejected:<reason>` (events in rejected requests/s), `duplicates_per_s` (event ids "
        "already logged), `held:<reason>` (events the serving filter held back/s)"
    )
    rejected: dict[str, int] = Field(description="events in rejected requests since start, by reason")
    duplicates: int = Field(description="events dropped since start because their event_id was logged")
    filter_enabled: bool = Field(description="whether [filters] serving screens the live counts")
    held: dict[str, int] = Field(description="the serving filter's verdicts by reason (`ok`: admitted)")
    quarantined_users: list[Quarantined] = Field(description="users held back now (at most 50)")
    quarantined_items: list[Quarantined] = Field(description="items held back now (at most 50)")


class NewItem(BaseModel):
    item_id: str = Field(description="catalog id")
    created_at: float = Field(description="creation time, Unix seconds")
    impressions: int = Field(description="impressions since creation (since this server started)")
    clicks: int = Field(description="clicks credited to those impressions")


class CatalogView(BaseModel):
    items: int = Field(description="items in the catalog")
    users: int = Field(description="users with live state")
    created_last_hour: int = Field(description="items created in the last hour")
    created_last_day: int = Field(description="items created in the last 24 hours")
    newest: list[NewItem] = Field(description="the most recently created items, newest first")
    series: TimeSeries = Field(description="`items` and `users` over time")


EXAMPLE_SERIES: dict[str, Any] = {
    "t": [1_700_000_000.0, 1_700_000_001.0],
    "values": {"requests_per_s": [12.0, 14.0]},
}


class Dashboard(BaseModel):
    """Every view of `/dashboard` at once. Poll with ``since`` = the last `at` to get only new points."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "at": 1_700_000_001.0,
                    "version": "0.1.0",
                    "traffic": {
                        "series": EXAMPLE_SERIES,
                        "events": {"click": 120, "impression": 900},
                        "requests": 400,
                        "errors_4xx": 2,
                        "errors_5xx": 0,
                    },
                    "quality": {"by_policy": [], "by_model": [], "by_cohort": [], "series": EXAMPLE_SERIES},
                }
            ]
        }
    )

    at: float = Field(description="when this snapshot was taken, Unix seconds")
    version: str = Field(description="liverec's version")
    traffic: TrafficView = Field(description="events, requests, latency and errors")
    quality: QualityView = Field(description="CTR and reward by policy, model and cohort; exploration")
    models: ModelsView = Field(description="versions, gate decisions, what is live")
    freshness: FreshnessView = Field(description="event -> visible, event -> trained, learner lag")
    data_quality: DataQualityView = Field(description="rejected, duplicate and held-back events")
    catalog: CatalogView = Field(description="catalog size, new items and their exposure")


class RecentEvent(BaseModel):
    offset: int = Field(description="its log offset")
    event_id: str = Field(description="the client's idempotency key")
    type: str = Field(description="the event type")
    item_id: str = Field(description="catalog item id")
    value: float | None = Field(description="rating stars or dwell seconds")
    timestamp: float = Field(description="event time, Unix seconds")
    request_id: str | None = Field(description="the list it answers, if it names one")
    position: int | None = Field(description="its position in that list")
    reward: float = Field(description="its reward under the [rewards] weights")


class RecentEvents(BaseModel):
    """A user's latest feedback from the log, newest first (impressions left out)."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "user_id": "196",
                    "events": [
                        {
                            "offset": 812,
                            "event_id": "e-812",
                            "type": "click",
                            "item_id": "50",
                            "value": None,
                            "timestamp": 1_700_000_000.0,
                            "request_id": "5f0c2b1e9a7d4c3e8b6a1f2d3c4b5a69",
                            "position": 0,
                            "reward": 1.0,
                        }
                    ],
                }
            ]
        }
    )

    user_id: str = Field(description="the user asked about")
    events: list[RecentEvent] = Field(description="their latest feedback events, newest first")
