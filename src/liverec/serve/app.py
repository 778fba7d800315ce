"""`create_app(settings)`: the FastAPI application. Nothing is built at import time."""

from __future__ import annotations

import gc
import logging
import threading
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from importlib import resources
from typing import Any

from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request

from liverec.core.schema import Event, Item, ItemIn, error_message
from liverec.serve.auth import Authenticator, check_bind, declare_responses
from liverec.serve.engine import Engine
from liverec.serve.metrics import Metrics
from liverec.serve.middleware import BodyLimit, JsonOnly, RequestMetrics
from liverec.serve.routes import dashboard, events, health, items, models, search, users
from liverec.serve.routes.search import SearchIn
from liverec.serve.schemas import EventBatch, document
from liverec.serve.traffic import Sampler
from liverec.settings import Settings

# Request bodies parsed by hand (for strict JSON and per-event errors) reference these schemas.
log = logging.getLogger(__name__)
OPENAPI_MODELS: tuple[type[BaseModel], ...] = (Event, EventBatch, Item, ItemIn, SearchIn)


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


async def parameters_rejected(request: Request, exc: Exception) -> JSONResponse:
    """FastAPI's own validation errors (path and query parameters) in the one 422 shape,
    `BatchRejected`, instead of its list-shaped ``detail``."""
    errors = [
        {"field": ".".join(str(p) for p in err["loc"][1:]) or str(err["loc"][0]), "msg": error_message(err)}
        for err in getattr(exc, "errors", list)()
    ]
    detail = "; ".join(f"{e['field']}: {e['msg']}" for e in errors) or "invalid request"
    return JSONResponse({"detail": detail, "errors": [{"index": 0, "errors": errors}]}, status_code=422)


def _declare_limits(schema: dict[str, Any], settings: Settings) -> None:
    """Limits that are settings, not constants, in the OpenAPI document: ``k`` <= ``[server] max_k``."""
    for ops in schema.get("paths", {}).values():
        for op in ops.values():
            for param in op.get("parameters", ()) if isinstance(op, dict) else ():
                if param.get("name") == "k" and param.get("in") == "query":
                    param.setdefault("schema", {})["maximum"] = settings.server.max_k


DOCS_ASSETS = "/docs-assets"


def mount_docs(app: FastAPI) -> None:
    """/docs (Swagger UI) and /redoc from the assets fastapi-offline ships, so the docs render on a
    machine without internet access; FastAPI's defaults load them from a CDN (a blank page offline)."""
    from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
    from fastapi.responses import HTMLResponse
    from fastapi.staticfiles import StaticFiles

    assets = resources.files("fastapi_offline") / "static"
    app.mount(DOCS_ASSETS, StaticFiles(directory=str(assets)), name="docs-assets")
    openapi_url = app.openapi_url or "/openapi.json"

    async def swagger() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=openapi_url,
            title=f"{app.title} API",
            swagger_js_url=f"{DOCS_ASSETS}/swagger-ui-bundle.js",
            swagger_css_url=f"{DOCS_ASSETS}/swagger-ui.css",
            swagger_favicon_url=f"{DOCS_ASSETS}/favicon.png",
        )

    async def redoc() -> HTMLResponse:
        return get_redoc_html(
            openapi_url=openapi_url,
            title=f"{app.title} API",
            redoc_js_url=f"{DOCS_ASSETS}/redoc.standalone.js",
            redoc_favicon_url=f"{DOCS_ASSETS}/favicon.png",
            with_google_fonts=False,
        )

    app.add_api_route("/docs", swagger, include_in_schema=False)
    app.add_api_route("/redoc", redoc, include_in_schema=False)


def create_app(
    settings: Settings | None = None,
    engine: Engine | None = None,
    on_shutdown: Sequence[Callable[[], None]] = (),
) -> FastAPI:
    """The API for ``settings``; pass an ``engine`` to serve one you built (its lifecycle stays yours).
    ``on_shutdown`` callables run when the server stops (e.g. stopping companion processes)."""
    settings = settings or Settings()
    access = check_bind(settings)  # raises InsecureBind: no keys on a non-loopback address
    metrics = Metrics()
    sampler = Sampler(metrics)  # the dashboard's per-second history

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        live = engine or Engine(settings)
        if not live.started:
            live.start()
        if live.search is not None:  # the query encoder starts in the background, not on a request
            threading.Thread(target=live.search.warm, name="liverec-warm", daemon=True).start()
        app.state.engine = live
        (log.info if settings.auth.keys else log.warning)(access)
        live.observe = metrics.observe
        sampler.start(live)
        try:
            with server_gc(settings.server.gc_threshold):
                yield
        finally:
            sampler.stop()
            for stop in on_shutdown:
                stop()
            if engine is None:  # we built it, we close it
                live.close()

    app = FastAPI(
        title="liverec",
        version="0.1.0",
        summary="Real-time recommendations that learn from every event",
        lifespan=lifespan,
        docs_url=None,  # served by `mount_docs` from packaged assets, not a CDN
        redoc_url=None,
    )
    mount_docs(app)
    dashboard.mount_dashboard(app)  # /dashboard and its assets, from installed packages
    app.state.settings = settings
    app.state.metrics = metrics
    app.state.sampler = sampler
    app.state.auth = Authenticator(settings.auth)
    for module in (events, users, items, search, models, health, dashboard):
        app.include_router(module.router)
    declare_responses(app.routes)
    # the last added runs first: metrics wrap the body limit, so its 413s are observed as 413s
    app.add_middleware(JsonOnly)  # a 415 leaves before anything reads the body
    app.add_middleware(BodyLimit, limit=settings.server.max_body_bytes)
    app.add_middleware(RequestMetrics, metrics=metrics)
    if settings.server.cors_origins:  # off by default: no browser origin may call the API
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.server.cors_origins,
            allow_methods=["GET", "POST", "PUT", "DELETE"],
            allow_headers=["Authorization", "Content-Type"],
        )
    app.add_exception_handler(RequestValidationError, parameters_rejected)

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(title=app.title, version=app.version, summary=app.summary, routes=app.routes)
            comps = schema.setdefault("components", {}).setdefault("schemas", {})
            for model in OPENAPI_MODELS:
                js = model.model_json_schema(ref_template="#/components/schemas/{model}")
                comps.update(js.pop("$defs", {}))
                comps[model.__name__] = js
            document(comps)  # descriptions and examples the models do not carry themselves
            _declare_limits(schema, settings)
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    return app
