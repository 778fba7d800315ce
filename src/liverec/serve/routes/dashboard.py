"""The live dashboard: the page at ``/dashboard`` and the admin data it polls.

The page and its assets (our HTML, JS and CSS from ``serve/static/dashboard``, Plotly's
``plotly.min.js`` from the installed ``plotly`` package) hold no data, so they are public and load
with no internet access. Every number comes from ``GET /v1/dashboard`` (admin), which the page calls
with the API key the user typed (kept in sessionStorage, sent as ``Authorization: Bearer``, never in
a URL). The user inspector also calls the user routes and ``GET /v1/dashboard/users/{id}/events``.
"""

from __future__ import annotations

import asyncio
import functools
import math
import time
from importlib import resources
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, HTTPException, Query, Request
from fastapi import Path as PathParam
from fastapi.responses import FileResponse, HTMLResponse
from fastapi.staticfiles import StaticFiles

from liverec.core.rewards import Rewards
from liverec.core.schema import EventType, Id
from liverec.registry.registry import ModelRegistry, RegistryError
from liverec.serve.dashboard import DIMENSIONS, QualityCopy, Tally
from liverec.serve.dashboard_schemas import (
    CatalogView,
    Dashboard,
    DataQualityView,
    FreshnessView,
    GateDecision,
    GroupQuality,
    ModelsView,
    NewItem,
    QualityView,
    Quarantined,
    RecentEvent,
    RecentEvents,
    TimeSeries,
    TrafficView,
    VersionView,
)
from liverec.serve.deps import ADMIN, EngineDep, MetricsDep
from liverec.serve.engine import Engine
from liverec.serve.metrics import Metrics
from liverec.serve.schemas import responses
from liverec.serve.traffic import Sample, Sampler, labelled, request_counts, total
from liverec.store.base import StoreError

router = APIRouter(tags=["dashboard"])
PAGE = "/dashboard"
ASSETS = "/dashboard-assets"
PLOTLY = f"{ASSETS}/plotly.min.js"
CTR_WINDOW_S = 30.0  # the quality series' trailing window
MAX_VERSIONS = 100
NEWEST_ITEMS = 20


def static_dir() -> Path:
    return Path(str(resources.files("liverec.serve") / "static" / "dashboard"))


@functools.cache
def plotly_js() -> Path:
    """``plotly.min.js`` as the ``plotly`` package ships it (a well-kept charting library, not ours)."""
    return Path(str(resources.files("plotly") / "package_data" / "plotly.min.js"))


def mount_dashboard(app: FastAPI) -> None:
    """The page and its assets, all from installed packages (no CDN): public, they hold no data."""
    page = (static_dir() / "index.html").read_text()

    async def dashboard_page() -> HTMLResponse:
        return HTMLResponse(page, headers={"Cache-Control": "no-cache"})

    async def plotly() -> FileResponse:
        headers = {"Cache-Control": "max-age=3600"}
        return FileResponse(plotly_js(), media_type="text/javascript", headers=headers)

    app.add_api_route(PAGE, dashboard_page, include_in_schema=False)
    app.add_api_route(PLOTLY, plotly, include_in_schema=False)  # before the mount: matched first
    app.mount(ASSETS, StaticFiles(directory=static_dir()), name="dashboard-assets")


async def get_sampler(request: Request) -> Sampler:
    sampler: Sampler = request.app.state.sampler
    return sampler


SamplerDep = Annotated[Sampler, Depends(get_sampler)]


@router.get(
    "/v1/dashboard",
    dependencies=[ADMIN],
    response_model=Dashboard,
    responses=responses(422),
    summary="Every view of the live dashboard (/dashboard): traffic, quality, models, freshness, data "
    "quality, catalog",
)
async def dashboard(
    engine: EngineDep,
    metrics: MetricsDep,
    sampler: SamplerDep,
    since: Annotated[
        float | None,
        Query(
            ge=0,
            le=1e11,
            description="only per-second points after this time (Unix seconds; the last `at` you have); "
            "the quality buckets always come whole",
        ),
    ] = None,
) -> Dashboard:
    return await asyncio.to_thread(snapshot, engine, metrics, sampler, since)


def snapshot(engine: Engine, metrics: Metrics, sampler: Sampler, since: float | None = None) -> Dashboard:
    """Every view now. Reads registry files: call it off the event loop."""
    import liverec

    now = time.time()
    samples = sampler.since(since)
    counts = request_counts(metrics.request_latency)
    quality = engine.dashboard.copy()
    screening = engine.screening()
    return Dashboard(
        at=now,
        version=str(liverec.__version__),
        traffic=TrafficView(
            series=columns(samples, ("events:", "requests_per_s", "latency_", "errors_")),
            events=quality.types,
            requests=int(counts["all"]),
            errors_4xx=int(counts["4xx"]),
            errors_5xx=int(counts["5xx"]),
        ),
        quality=quality_view(quality, engine.dashboard.window_s),
        models=models_view(engine, sampler.decision_log()),
        freshness=freshness_view(engine, samples),
        data_quality=DataQualityView(
            series=columns(samples, ("rejected:", "duplicates_per_s", "held:")),
            rejected={k: int(v) for k, v in labelled(metrics.events_rejected, "reason").items()},
            duplicates=int(total(metrics.events_duplicate)),
            filter_enabled=bool(screening["enabled"]),
            held={k: int(v) for k, v in screening["counts"].items()},
            quarantined_users=[Quarantined(id=u, until=t) for u, t in screening["users"]],
            quarantined_items=[Quarantined(id=i, until=t) for i, t in screening["items"]],
        ),
        catalog=catalog_view(engine, samples, now),
    )


def columns(samples: list[Sample], prefixes: tuple[str, ...]) -> TimeSeries:
    """The samples' series whose names start with one of ``prefixes``, as columns."""
    names = sorted({k for s in samples for k in s if k.startswith(prefixes)})
    return TimeSeries(
        t=[float(s["t"] or 0.0) for s in samples],
        values={n: [_finite(s.get(n)) for s in samples] for n in names},
    )


def _finite(x: float | None) -> float | None:
    return None if x is None or not math.isfinite(x) else round(float(x), 6)


def _ratio(num: float, den: float) -> float | None:
    return num / den if den else None


def _group(key: str, t: Tally) -> GroupQuality:
    return GroupQuality(
        key=key,
        impressions=t.impressions,
        clicks=t.clicks,
        ctr=_ratio(t.clicks, t.impressions),
        feedback=t.feedback,
        reward=round(t.reward, 6),
        reward_per_impression=_ratio(t.reward, t.impressions),
        exploration_share=_ratio(t.explored, t.impressions),
    )


def quality_view(q: QualityCopy, window_s: float) -> QualityView:
    by = {d: [_group(k, t) for k, t in q.totals[d].items()] for d in DIMENSIONS}
    for d in ("policy", "cohort"):
        by[d].sort(key=lambda g: -g.impressions)
    t = [start for start, _ in q.buckets]
    values: dict[str, list[float | None]] = {}

    def put(name: str, i: int, value: float | None) -> None:
        values.setdefault(name, [None] * len(t))[i] = _finite(value)

    for i, (start, groups) in enumerate(q.buckets):
        trailing = [g for s, g in q.buckets[: i + 1] if s > start - CTR_WINDOW_S]
        for dim in ("cohort", "policy"):
            sums: dict[str, Tally] = {}
            for past in trailing:
                for key, tally in past[dim].items():
                    sums.setdefault(key, Tally()).add(tally)
            for key, tally in sums.items():
                put(f"ctr:{dim}:{key}", i, _ratio(tally.clicks, tally.impressions))
        every = Tally()
        for tally in groups["cohort"].values():  # each impression is in exactly one cohort
            every.add(tally)
        put("exploration_share", i, _ratio(every.explored, every.impressions))
        put("reward_per_impression", i, _ratio(every.reward, every.impressions))
    return QualityView(
        by_policy=by["policy"],
        by_model=by["model"],
        by_cohort=by["cohort"],
        series=TimeSeries(t=t, values=values),
        window_s=window_s,
        attributed=q.attributed,
        unattributed=q.unattributed,
        open_requests=q.open_requests,
    )


def _score(meta: dict[str, Any]) -> tuple[float | None, float | None]:
    """(its score, the live score it was compared with) from a version's saved metrics."""
    metrics = meta.get("metrics") or {}
    pre = metrics.get("prequential")
    if isinstance(pre, dict):
        return _num((pre.get("candidate") or {}).get("ndcg@10")), _num((pre.get("live") or {}).get("ndcg@10"))
    val = metrics.get("val")
    return (_num(val.get("ndcg@10")) if isinstance(val, dict) else _num(val)), None


def _num(x: Any) -> float | None:
    return float(x) if isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(x) else None


def models_view(engine: Engine, logged: list[dict[str, Any]]) -> ModelsView:
    reg: ModelRegistry = engine.registry
    live = reg.live()
    versions: list[VersionView] = []
    timeline: list[GateDecision] = []
    reasons = {d["version"]: d["reason"] for d in logged if d["outcome"] == "published" and d["version"]}
    for v in reg.list_versions()[-MAX_VERSIONS:]:
        try:
            meta = reg.meta(v)
        except RegistryError:
            continue
        online = bool(meta.get("online"))
        score, against = _score(meta)
        created = _num(meta.get("created_at"))
        versions.append(
            VersionView(
                version=v,
                live=v == live,
                created_at=created,
                parent=meta.get("parent"),
                online=online,
                trained_offset=offset if isinstance(offset := meta.get("trainer_offset"), int) else None,
                score=score,
            )
        )
        if created is not None:
            timeline.append(
                GateDecision(
                    at=created,
                    source="learner" if online else "train",
                    outcome="published" if online else "trained",
                    version=v,
                    candidate=score,
                    live=against,
                    reason=reasons.get(v)
                    or ("passed the online gate" if online else "trained offline (`liverec train`)"),
                )
            )
    for d in logged:
        if d["outcome"] != "published" or d["source"] != "learner":
            timeline.append(GateDecision(**{k: d[k] for k in GateDecision.model_fields}))
    timeline.sort(key=lambda d: d.at)
    search = engine.search_status()
    return ModelsView(
        live=live,
        served=engine.model_version,
        history=reg.history(),
        versions=versions,
        decisions=timeline[-200:],
        learner=engine.learner_status(),
        search={k: v for k, v in search.items() if k != "examination"},
    )


def freshness_view(engine: Engine, samples: list[Sample]) -> FreshnessView:
    offset, model = engine.state.last_offset, engine.model_offset
    age = engine.learner_status().get("age_s")
    return FreshnessView(
        series=columns(samples, ("visible_", "trained_", "lag_events", "learner_age_s")),
        log_offset=offset,
        model_offset=model,
        lag_events=offset - model if model else None,
        learner_age_s=_num(age),
    )


def catalog_view(engine: Engine, samples: list[Sample], now: float) -> CatalogView:
    newest, hour, day = engine.dashboard.newest(NEWEST_ITEMS, now)
    return CatalogView(
        items=len(engine.catalog),
        users=len(engine.state),
        created_last_hour=hour,
        created_last_day=day,
        newest=[NewItem(item_id=i, created_at=c, impressions=n, clicks=k) for i, c, n, k in newest],
        series=columns(samples, ("items", "users")),
    )


# -- the user inspector's recent feedback --------------------------------------------------------------
@router.get(
    "/v1/dashboard/users/{user_id}/events",
    dependencies=[ADMIN],
    response_model=RecentEvents,
    responses=responses(422, 503),
    summary="A user's latest feedback events from the log, newest first (the dashboard's user inspector)",
)
async def recent_events(
    user_id: Annotated[Id, PathParam()],
    engine: EngineDep,
    limit: Annotated[int, Query(ge=1, le=200, description="how many events at most")] = 20,
) -> RecentEvents:
    try:
        events = await asyncio.to_thread(_recent, engine, user_id, limit)
    except StoreError as exc:
        raise HTTPException(503, f"store unavailable: {exc}") from None
    return RecentEvents(user_id=user_id, events=events)


def _recent(engine: Engine, user_id: str, limit: int) -> list[RecentEvent]:
    """The newest ``limit`` non-impression events among the user's last ``50 * limit`` in the log
    (each list they were shown logs up to k impressions)."""
    rewards = Rewards(engine.settings.rewards)
    out = []
    for stored in reversed(engine.store.user_history(user_id, limit=50 * limit)):
        ev = stored.event
        if ev.type is EventType.impression:
            continue
        out.append(
            RecentEvent(
                offset=stored.offset,
                event_id=ev.event_id,
                type=ev.type.value,
                item_id=ev.item_id,
                value=_num(ev.value),
                timestamp=ev.timestamp,
                request_id=ev.context.request_id,
                position=ev.context.position,
                reward=rewards(ev),
            )
        )
        if len(out) >= limit:
            break
    return out
