"""Typed dependencies for the routes: the engine, the settings, the metrics, and a bounded JSON body.

They are `async` only so that FastAPI calls them on the event loop: a plain `def` dependency costs a
thread-pool hop per request, a fifth of the CPU of a single-event POST."""

from __future__ import annotations

from typing import Annotated, Any

import orjson
from fastapi import Depends, HTTPException, Request

from liverec.serve.auth import Principal, caller, require
from liverec.serve.engine import Engine
from liverec.serve.metrics import Metrics
from liverec.settings import Settings


async def get_engine(request: Request) -> Engine:
    engine: Engine = request.app.state.engine
    return engine


async def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


async def get_metrics(request: Request) -> Metrics:
    metrics: Metrics = request.app.state.metrics
    return metrics


EngineDep = Annotated[Engine, Depends(get_engine)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
MetricsDep = Annotated[Metrics, Depends(get_metrics)]
# Access, one per route decorator: ``@router.get(..., dependencies=[READ])`` (see `serve.auth`).
READ = Depends(require("read"))
WRITE = Depends(require("write"))
ADMIN = Depends(require("admin"))
CallerDep = Annotated[Principal | None, Depends(caller)]  # public routes: who called, if anyone


async def read_json(request: Request) -> Any:
    """The request body parsed as strict JSON (no NaN/Infinity). Size is capped by `BodyLimit`."""
    body = await request.body()
    if not body.strip():
        raise HTTPException(400, "request body is empty; expected JSON")
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise HTTPException(400, f"malformed JSON: {exc}") from None
