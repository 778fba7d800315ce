"""Liveness and Prometheus metrics. Anyone may ask /healthz whether the server is up; what it serves
(store, offsets, model version, counts) is for an admin key only (or open mode)."""

from __future__ import annotations

import asyncio
import functools
from typing import Any

from fastapi import APIRouter, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from liverec.serve.deps import READ, CallerDep, EngineDep, MetricsDep
from liverec.serve.engine import Engine
from liverec.serve.replica import replica_status
from liverec.serve.schemas import Health
from liverec.settings import redact_url

router = APIRouter(tags=["health"])


@functools.cache
def _version() -> str:
    import liverec

    return str(liverec.__version__)


def admin_detail(engine: Engine) -> dict[str, Any]:
    """What /healthz adds for an admin: a plain dict, so any part of the server can add a key."""
    return {
        "model": engine.model_version,
        "model_offset": engine.model_offset,
        "log_offset": engine.state.last_offset,
        "events": engine.state.events_applied,
        "users": len(engine.state),
        "items": len(engine.catalog),
        "store": redact_url(engine.store.url),  # never echo credentials
        "deletions_pending": engine.pending_deletions(),  # awaiting a retrain without the user
        "learner": engine.learner_status(),  # why no new version yet: waiting, gate due, last decision
        "search": engine.search_status(),  # the search ranker: weights, gate decisions, examination
        "retrieval": engine.recommender.model.retrieval_status(),  # every item scored, or an index
        "replica": replica_status(engine),  # following the shared log: lag in offsets and seconds
        "extra": {},
    }


@router.get(
    "/healthz",
    response_model=Health,
    response_model_exclude_unset=True,
    summary="Liveness; with an admin key (or no keys configured) also what is being served",
)
async def healthz(engine: EngineDep, who: CallerDep) -> Health:
    # the detail reads the store (pending deletions): off the event loop
    detail = (
        await asyncio.to_thread(admin_detail, engine) if who is not None and "admin" in who.scopes else {}
    )
    return Health(status="ok", version=_version(), **detail)


@router.get(
    "/metrics",
    dependencies=[READ],
    response_class=Response,
    responses={200: {"content": {CONTENT_TYPE_LATEST: {}}, "description": "Prometheus text format"}},
    summary="Prometheus metrics",
)
async def metrics(engine: EngineDep, m: MetricsDep) -> Response:
    m.store_events.set(engine.state.events_applied)
    m.store_items.set(len(engine.catalog))
    m.store_users.set(len(engine.state))
    m.store_bytes.set(engine.store.size_bytes())
    lag = await asyncio.to_thread(replica_status, engine)  # reads the store's last offset
    m.replica_lag_offsets.set(int(lag["lag_offsets"]))
    m.replica_lag_seconds.set(float(lag["lag_s"]))
    return Response(generate_latest(m.registry), media_type=CONTENT_TYPE_LATEST)
