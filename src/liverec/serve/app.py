"""`create_app(settings)`: the FastAPI application. Nothing is built at import time."""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel

from liverec.core.schema import Event, Item, ItemIn
from liverec.serve.engine import Engine
from liverec.serve.metrics import Metrics
from liverec.serve.middleware import BodyLimit, RequestMetrics
from liverec.serve.routes import events, health, items, users
from liverec.serve.schemas import EventBatch
from liverec.settings import Settings

# Request bodies parsed by hand (for strict JSON and per-event errors) reference these schemas.
OPENAPI_MODELS: tuple[type[BaseModel], ...] = (Event, EventBatch, Item, ItemIn)


@contextmanager
def server_gc(threshold: int) -> Iterator[None]:
    """Collect garbage less often while serving. Every batch allocates thousands of short-lived
    objects, so with Python's default threshold the collector runs constantly and keeps walking
    the (large, long-lived) live state; freezing that state and raising the gen-0 threshold
    halves the CPU of ingesting an event."""
    if not threshold:
        yield
        return
    before = gc.get_threshold()
    gc.collect()
    gc.freeze()
    gc.set_threshold(threshold, 50, 100)
    try:
        yield
    finally:
        gc.set_threshold(*before)
        gc.unfreeze()


def create_app(
    settings: Settings | None = None,
    engine: Engine | None = None,
    on_shutdown: Sequence[Callable[[], None]] = (),
) -> FastAPI:
    """The API for ``settings``; pass an ``engine`` to serve one you built (its lifecycle stays yours).
    ``on_shutdown`` callables run when the server stops (e.g. stopping companion processes)."""
    settings = settings or Settings()
    metrics = Metrics()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        live = engine or Engine(settings)
        if not live.started:
            live.start()
        app.state.engine = live
        live.observe = metrics.observe
        try:
            with server_gc(settings.server.gc_threshold):
                yield
        finally:
            for stop in on_shutdown:
                stop()
            if engine is None:  # we built it, we close it
                live.close()

    app = FastAPI(
        title="liverec",
        version="0.1.0",
        summary="Real-time recommendations that learn from every event",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.metrics = metrics
    for module in (events, users, items, health):
        app.include_router(module.router)
    # the last added runs first: metrics wrap the body limit, so its 413s are observed as 413s
    app.add_middleware(BodyLimit, limit=settings.server.max_body_bytes)
    app.add_middleware(RequestMetrics, metrics=metrics)

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(title=app.title, version=app.version, summary=app.summary, routes=app.routes)
            comps = schema.setdefault("components", {}).setdefault("schemas", {})
            for model in OPENAPI_MODELS:
                js = model.model_json_schema(ref_template="#/components/schemas/{model}")
                comps.update(js.pop("$defs", {}))
                comps[model.__name__] = js
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    return app
