"""`liverec serve`: run the HTTP API on the configured store."""

from __future__ import annotations

import gc
from typing import Annotated

import typer
import uvicorn

from liverec.cli.common import ConfigOpt, StoreOpt, app, console, fail, progress_bar, settings_from
from liverec.serve.app import create_app
from liverec.serve.engine import Engine
from liverec.store import StoreError


@app.command()
def serve(
    config: ConfigOpt = None,
    store: StoreOpt = None,
    host: Annotated[str | None, typer.Option(help="bind address")] = None,
    port: Annotated[int | None, typer.Option(help="port")] = None,
) -> None:
    """Serve recommendations over HTTP; state is rebuilt from the event log first."""
    settings = settings_from(config, store)
    if host:
        settings.server.host = host
    if port is not None:
        settings.server.port = port
    try:
        engine = Engine(settings)
        total = engine.store.last_offset()
        with progress_bar("rebuilding live state", total) as advance:
            done = [0]

            def step(at: int, _total: int) -> None:
                advance(at - done[0])
                done[0] = at

            engine.start(progress=step)
    except StoreError as exc:
        fail(str(exc))
        return
    console.print(
        f"liverec on http://{settings.server.host}:{settings.server.port}  store={settings.store_url}  "
        f"events={engine.state.events_applied:,} users={len(engine.state):,} items={len(engine.catalog):,}"
    )
    # Startup objects (live state, catalog) never become garbage: keep the cyclic GC from rescanning
    # them on every collection, and collect young objects less often (fewer pauses per request).
    gc.freeze()
    gc.set_threshold(50_000, 20, 100)
    app_ = create_app(settings, engine)
    try:
        uvicorn.run(app_, host=settings.server.host, port=settings.server.port, access_log=False)
    finally:
        engine.close()
