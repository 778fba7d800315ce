"""POST /v1/events: one event or a batch, validated whole (on the event loop: it is cheap), then
appended durably and folded by `Engine.ingest` on the engine's writer thread, then visible."""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import JSONResponse
from pydantic import TypeAdapter, ValidationError

from liverec.core.schema import DEFAULT_LIMITS, Event, JsonLimits, error_message
from liverec.serve.deps import WRITE, EngineDep, MetricsDep, SettingsDep, read_json
from liverec.serve.schemas import EventsAccepted, json_body, json_limits, responses
from liverec.store.base import StoreError

router = APIRouter(prefix="/v1", tags=["events"])
EVENT_LIST = TypeAdapter(list[Event])
BODY_SCHEMA = {"oneOf": [{"$ref": "#/components/schemas/Event"}, {"$ref": "#/components/schemas/EventBatch"}]}


def rejected(detail: str, errors: list[dict[str, Any]]) -> JSONResponse:
    return JSONResponse({"detail": detail, "errors": errors}, status_code=422)


def _field(loc: tuple[int | str, ...]) -> str:
    return ".".join(str(p) for p in loc) or "(event)"


def validate_events(
    raw: list[Any], now: float, max_skew_s: float, limits: JsonLimits = DEFAULT_LIMITS
) -> tuple[list[Event], list[dict[str, Any]]]:
    """Events, or per-event errors ``[{"index", "errors": [{"field", "msg"}]}]`` if any is invalid."""
    by_index: dict[int, list[dict[str, str]]] = {}
    context = {"limits": limits}
    try:
        events = EVENT_LIST.validate_python(raw, context=context)  # fast path: the whole batch at once
        indexed: Iterable[tuple[int, Event]] = enumerate(events)
    except ValidationError as exc:
        for err in exc.errors(include_url=False, include_input=False):
            index, *rest = err["loc"]
            by_index.setdefault(int(index), []).append(
                {"field": _field(tuple(rest)), "msg": error_message(err)}
            )
        # the events that did validate still get the checks below, so one response lists every problem
        indexed = [
            (i, Event.model_validate(r, context=context)) for i, r in enumerate(raw) if i not in by_index
        ]
        events = []
    limit = now + max_skew_s  # `check_not_future`'s bound: only events beyond it need the call
    for i, ev in indexed:
        if ev.timestamp > limit:
            try:
                ev.check_not_future(now, max_skew_s)
            except ValueError as exc:
                by_index.setdefault(i, []).append({"field": "timestamp", "msg": str(exc)})
    return events, [{"index": i, "errors": errs} for i, errs in sorted(by_index.items())]


@router.post(
    "/events",
    dependencies=[WRITE],
    response_model=EventsAccepted,
    responses=responses(400, 413, 415, 422, 503),
    openapi_extra=json_body(BODY_SCHEMA),
    summary="Send one event or a batch {'events': [...]}; all-or-nothing, idempotent by event_id",
)
async def post_events(
    request: Request, engine: EngineDep, settings: SettingsDep, metrics: MetricsDep
) -> EventsAccepted | JSONResponse:
    body = await read_json(request)
    if isinstance(body, dict) and "events" in body:
        raw = body["events"]
        if not isinstance(raw, list) or len(body) != 1:
            metrics.events_rejected.labels("invalid").inc()
            return rejected("a batch is {'events': [...]} and nothing else", [])
    elif isinstance(body, list):
        raw = body
    elif isinstance(body, dict):
        raw = [body]
    else:
        metrics.events_rejected.labels("invalid").inc()
        return rejected("expected an event object or {'events': [...]}", [])
    if not raw:
        return rejected("the batch is empty", [])
    if len(raw) > settings.server.max_batch_events:
        metrics.events_rejected.labels("too_large").inc(len(raw))
        raise HTTPException(
            413, f"{len(raw)} events in one batch; the limit is {settings.server.max_batch_events}"
        )

    limits = json_limits(settings)["limits"]
    events, errors = validate_events(raw, time.time(), settings.server.max_future_skew_s, limits)
    if errors:
        metrics.events_rejected.labels("invalid").inc(len(raw))
        return rejected(f"{len(errors)} of {len(raw)} events are invalid; nothing was written", errors)
    try:
        result = await engine.ingest_async(events)
    except StoreError as exc:
        metrics.events_rejected.labels("store").inc(len(raw))
        raise HTTPException(503, f"store unavailable, nothing was written: {exc}") from None
    accepted = len(result.accepted)
    metrics.events_accepted.inc(accepted)
    metrics.events_duplicate.inc(result.duplicates)
    return EventsAccepted(accepted=accepted, duplicates=result.duplicates)
