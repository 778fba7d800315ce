"""`liverec simulate`: the real engine, policy and learner against a drifting simulated world."""

from __future__ import annotations

import json
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer

from liverec.cli.common import app, fail, progress_bar


class Learner(StrEnum):
    online = "online"
    frozen = "frozen"


class ModelKind(StrEnum):
    transformer = "transformer"
    popularity = "popularity"


def parse_params(pairs: list[str]) -> dict[str, Any]:
    """``k=v`` pairs; values are read as JSON when they parse (numbers, booleans), else as text."""
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"expected key=value, got {pair!r}")
        try:
            out[key.strip()] = json.loads(raw)
        except json.JSONDecodeError:
            out[key.strip()] = raw
    return out


@app.command()
def simulate(
    policy: Annotated[
        str, typer.Option(help="greedy, epsilon, plackett_luce, thompson, linucb, random, oracle")
    ] = "thompson",
    learner: Annotated[
        Learner, typer.Option(help="online: learn and publish while serving")
    ] = Learner.online,
    interactions: Annotated[int, typer.Option(min=1, help="visits after the warm-up")] = 10_000,
    seed: Annotated[int, typer.Option(help="world, policy and training seed (--search: the first seed)")] = 0,
    model: Annotated[ModelKind, typer.Option(help="what scores items")] = ModelKind.transformer,
    drift: Annotated[float, typer.Option(min=0, help="taste rotation per visit, radians")] = 0.03,
    arrival_rate: Annotated[float, typer.Option(min=0, help="new items per visit, on average")] = 0.01,
    users: Annotated[int | None, typer.Option(min=2, help="default 1000 (--search: 300)")] = None,
    items: Annotated[int | None, typer.Option(min=1, help="default 1000 (--search: 500)")] = None,
    warmup: Annotated[int, typer.Option(min=0, help="visits logged by a uniformly random policy")] = 20_000,
    learn_every: Annotated[int, typer.Option(min=1, help="visits between online learner steps")] = 50,
    candidates: Annotated[
        int, typer.Option(min=1, help="the model's top items the policy chooses from")
    ] = 100,
    windows: Annotated[int, typer.Option(min=1, help="windows of the per-window report")] = 20,
    policy_param: Annotated[
        list[str] | None, typer.Option("--policy-param", help="policy parameter k=v (repeatable)")
    ] = None,
    online_param: Annotated[
        list[str] | None, typer.Option("--online-param", help="OnlineConfig field k=v (repeatable)")
    ] = None,
    store: Annotated[str, typer.Option(help="store URL (an empty one)")] = "memory://",
    plot: Annotated[Path | None, typer.Option(help="write a PNG of CTR and regret over time")] = None,
    workdir: Annotated[
        Path | None, typer.Option(help="registry and checkpoints (default: a temp dir)")
    ] = None,
    search: Annotated[
        bool, typer.Option(help="search sessions: debiased vs naive vs frozen click learning")
    ] = False,
    sessions: Annotated[int, typer.Option(min=1, help="--search: sessions per seed")] = 5000,
    seeds: Annotated[int, typer.Option(min=1, help="--search: how many seeds, from --seed on")] = 3,
    position_decay: Annotated[
        float, typer.Option(min=0, help="--search: position p is examined with (1 + p) ** -this")
    ] = 1.0,
) -> None:
    """Serve a drifting simulated world with the real engine and print one JSON object with
    cumulative_reward (clicks), regret (expected clicks lost to the oracle) and ctr.

    With --search: search sessions (queries from each user's interests, clicks under position bias)
    served by three search learners, printing NDCG@10 against the true relevance per learner."""
    from liverec.sim.report import plot_runs
    from liverec.sim.simulate import SimConfig
    from liverec.sim.simulate import simulate as run

    if search:
        _search(sessions, list(range(seed, seed + seeds)), users or 300, items or 500, position_decay)
        return
    users, items = users or 1000, items or 1000
    try:
        cfg = SimConfig(
            policy=policy,
            policy_params=parse_params(policy_param or []),
            learner=learner.value,
            model=model.value,
            interactions=interactions,
            seed=seed,
            users=users,
            items=items,
            drift=drift,
            arrival_rate=arrival_rate,
            warmup=warmup,
            learn_every=learn_every,
            candidates=candidates,
            online_params=parse_params(online_param or []),
            windows=windows,
            store=store,
        )
        cfg.validate()
    except ValueError as exc:
        fail(str(exc))
        return
    with progress_bar("simulating", interactions) as advance:
        shown = [0]

        def on_progress(done: int, _total: int) -> None:
            advance(done - shown[0])
            shown[0] = done

        try:
            result = run(cfg, workdir=workdir, progress=on_progress)
        except (ValueError, TypeError) as exc:
            fail(str(exc))
            return
    out = result.to_json()
    if plot is not None:
        name = f"{model.value} {learner.value} {policy}"
        out["plot"] = str(plot_runs({name: [out]}, plot, title=f"liverec simulate (seed {seed})"))
    typer.echo(json.dumps(out))


def _search(sessions: int, seeds: list[int], users: int, items: int, position_decay: float) -> None:
    """`liverec simulate --search`: one JSON object on stdout, a table on stderr."""
    from liverec.sim.search import SearchConfig, simulate_search, summarize, table
    from liverec.sim.simulate import MemoEncoder

    cfgs = [
        SearchConfig(sessions=sessions, seed=s, users=users, items=items, position_decay=position_decay)
        for s in seeds
    ]
    try:
        for cfg in cfgs:
            cfg.validate()
    except ValueError as exc:
        fail(str(exc))
        return
    encoder = MemoEncoder()
    results = []
    with progress_bar("search sessions", sessions * len(cfgs)) as advance:
        for cfg in cfgs:
            done = [0]

            def on_progress(n: int, _total: int, done: list[int] = done) -> None:
                advance(n - done[0])
                done[0] = n

            results.append(simulate_search(cfg, encoder.encode, on_progress))
    summary = summarize(results)
    typer.echo(table(summary), err=True)
    typer.echo(json.dumps(summary))
