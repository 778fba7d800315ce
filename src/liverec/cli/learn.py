"""`liverec learn --follow`: the online trainer, as its own process."""

from __future__ import annotations

import logging
import os
import signal
import time
from typing import Annotated, Any

import typer

from liverec.cli.common import ConfigOpt, StoreOpt, app, console, fail, settings_from


@app.command()
def learn(
    config: ConfigOpt = None,
    store: StoreOpt = None,
    follow: Annotated[bool, typer.Option(help="keep following the log (else stop when caught up)")] = True,
    max_seconds: Annotated[float, typer.Option(help="stop after this long (0 = never)")] = 0.0,
    publish_s: Annotated[float | None, typer.Option(help="publish a candidate at least this often")] = None,
    publish_events: Annotated[int | None, typer.Option(help="... or after this many events")] = None,
) -> None:
    """Learn from every event in the log, publishing guarded updates to the model registry."""
    from liverec.registry.registry import ModelRegistry, RegistryError
    from liverec.store import StoreError, open_store
    from liverec.trainer.follow import Decision, Follower

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    publish = {"publish_s": publish_s, "publish_events": publish_events}
    gate_args = {k: v for k, v in publish.items() if v is not None}  # [gate] values, validated there
    settings = settings_from(config, store, **({"gate": gate_args} if gate_args else {}))
    online, gate, filters = settings.online, settings.gate, settings.filters
    if online.nice > 0:
        os.nice(online.nice)  # learning soaks up idle CPU; the server it shares the machine with comes first
    stopping = {"now": False}

    def stop(*_: object) -> None:
        stopping["now"] = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        with open_store(settings.store_url) as st:
            follower = Follower(
                st,
                ModelRegistry(settings.registry_path),
                online,
                gate,
                settings.rewards,
                filters,
                privacy=settings.privacy,  # deleted users leave the live model within its deadline
                retrain=settings.train,
            )

            def report(d: Decision) -> None:
                what = f"published {d.published}" if d.published else "kept live"
                console.print(f"offset {d.offset}: {what} - {d.reason}")

            follower.on_decision = report
            shown: dict[str, Any] = {"why": "", "t": 0.0}

            def progress(status: dict[str, Any]) -> None:
                """Why no version yet, when that changes (or every 30 s): the `/healthz` words."""
                now = time.monotonic()
                if status["why"] == shown["why"] and now - float(shown["t"]) < 30.0:
                    return
                shown.update(why=status["why"], t=now)
                console.print(
                    f"offset {status['offset']:,}: {status['events_waiting']:,} events since the last "
                    f"decision, {status['scored']}/{status['min_eval']} examples scored - {status['why']}"
                )

            follower.on_status = progress
            learner = follower.start()
            console.print(f"learning from offset {learner.offset:,}; live {follower.live_version}")
            follower.run(follow=follow, max_seconds=max_seconds, stop=lambda: stopping["now"])
            follower.save_checkpoint()
            console.print(f"stopped at offset {learner.offset:,} after {learner.examples:,} examples")
    except RegistryError as exc:
        fail(str(exc))
    except StoreError as exc:
        fail(str(exc))
