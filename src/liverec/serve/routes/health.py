"""Liveness and Prometheus metrics."""

from __future__ import annotations

from fastapi import APIRouter, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from liverec.serve.deps import EngineDep, MetricsDep
from liverec.serve.schemas import Health

router = APIRouter(tags=["health"])


@router.get("/healthz", response_model=Health, summary="Liveness, with what is being served")
async def healthz(engine: EngineDep) -> Health:
    return Health(
        status="ok",
        model=engine.model_version,
        model_offset=engine.model_offset,
        log_offset=engine.state.last_offset,
        events=engine.state.events_applied,
        users=len(engine.state),
        items=len(engine.catalog),
        store=engine.store.url.split("@")[-1],  # never echo credentials
    )


@router.get(
    "/metrics",
    response_class=Response,
    responses={200: {"content": {CONTENT_TYPE_LATEST: {}}, "description": "Prometheus text format"}},
    summary="Prometheus metrics",
)
async def metrics(engine: EngineDep, m: MetricsDep) -> Response:
    m.store_events.set(engine.state.events_applied)
    m.store_items.set(len(engine.catalog))
    m.store_users.set(len(engine.state))
    m.store_bytes.set(engine.store.size_bytes())
    return Response(generate_latest(m.registry), media_type=CONTENT_TYPE_LATEST)
