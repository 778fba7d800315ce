"""`liverec serve`: run the HTTP API on the configured store."""

from __future__ import annotations

import gc
import logging
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Annotated

import typer

from liverec.cli.common import ConfigOpt, StoreOpt, app, console, fail, progress_bar, settings_from


@app.command()
def serve(
    config: ConfigOpt = None,
    store: StoreOpt = None,
    host: Annotated[str | None, typer.Option(help="bind address")] = None,
    port: Annotated[int | None, typer.Option(help="port")] = None,
    learn: Annotated[
        bool, typer.Option(help="also run the online trainer (`liverec learn --follow`)")
    ] = False,
    insecure: Annotated[
        bool,
        typer.Option(
            "--insecure",
            help="serve without API keys on a non-loopback address ([auth] insecure): anyone who can "
            "connect is admin",
        ),
    ] = False,
) -> None:
    """Serve recommendations over HTTP; state is rebuilt from the event log first."""
    import uvicorn
    from rich.markup import escape

    from liverec.serve.app import create_app
    from liverec.serve.auth import InsecureBind, check_bind
    from liverec.serve.engine import Engine
    from liverec.settings import redact_url
    from liverec.store import StoreError

    settings = settings_from(config, store)
    if host:
        settings.server.host = host
    if port is not None:
        settings.server.port = port
    if insecure:
        settings.auth.insecure = True
    try:  # before the (long) state rebuild: a refusal should be immediate (create_app checks too)
        check_bind(settings)
    except InsecureBind as exc:
        fail(escape(str(exc)))  # escaped: [[auth.keys]] is no rich markup
        return
    # liverec's own log lines (access mode at start, model swaps) to stderr; uvicorn has its own
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
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
        f"liverec on http://{settings.server.host}:{settings.server.port}  "
        f"store={redact_url(settings.store_url)}  "
        f"events={engine.state.events_applied:,} users={len(engine.state):,} items={len(engine.catalog):,}"
    )
    # Startup objects (live state, catalog) never become garbage: keep the cyclic GC from rescanning
    # them on every collection, and collect young objects less often (fewer pauses per request).
    gc.freeze()
    gc.set_threshold(50_000, 20, 100)
    learner = start_learner(config, store) if learn else None
    stops = [lambda: stop_process(learner)] if learner is not None else []
    app_ = create_app(settings, engine, on_shutdown=stops)  # stopped in the lifespan, before uvicorn exits
    try:
        uvicorn.run(app_, host=settings.server.host, port=settings.server.port, access_log=False)
    finally:
        if learner is not None:
            stop_process(learner)
        engine.close()


def start_learner(config: Path | None, store: str | None) -> subprocess.Popen[bytes]:
    """The online trainer as its own process (its own GIL and cores), on the same config and store."""
    cmd = [sys.executable, "-m", "liverec", "learn", "--follow"]
    if config:
        cmd += ["--config", str(config)]
    if store:
        cmd += ["--store", store]
    console.print(f"starting the online trainer: {' '.join(cmd[2:])}")
    return subprocess.Popen(cmd, env={**os.environ, "HF_HUB_OFFLINE": "1"}, preexec_fn=_die_with_parent)


def _die_with_parent() -> None:
    """In the child: get SIGTERM if the server dies, even by SIGKILL (Linux prctl PR_SET_PDEATHSIG)."""
    if sys.platform.startswith("linux"):
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)


def stop_process(proc: subprocess.Popen[bytes], timeout: float = 15.0) -> None:
    """SIGTERM (the learner checkpoints and exits), then SIGKILL if it does not."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
