"""`liverec evaluate ...`: offline (leave-one-out, full ranking), and more evaluators as they land."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from liverec.cli.common import ConfigOpt, StoreOpt, app, console, fail, settings_from
from liverec.cli.data import Format, read_dataset
from liverec.events.datasets import DatasetError
from liverec.store import StoreError, open_store

evaluate_app = typer.Typer(help="Evaluate models honestly.", no_args_is_help=True)
app.add_typer(evaluate_app, name="evaluate")

METRICS = ("ndcg@10", "hr@10", "ndcg@20", "hr@20", "mrr", "coverage@10")


def print_table(results: dict[str, dict[str, Any]]) -> None:
    table = Table("model", *METRICS)
    for name, m in results.items():
        table.add_row(name, *(f"{m.get(k, float('nan')):.4f}" for k in METRICS))
    console.print(table)


@evaluate_app.command()
def offline(
    config: ConfigOpt = None,
    store: StoreOpt = None,
    data: Annotated[Path | None, typer.Option(help="evaluate on a file instead of the store")] = None,
    fmt: Annotated[Format, typer.Option("--format")] = Format.movielens,
    version: Annotated[list[str] | None, typer.Option(help="registered version(s); default: all")] = None,
    baselines: Annotated[
        bool, typer.Option(help="also popularity, item-kNN and ALS (tuned on validation)")
    ] = True,
    min_len: Annotated[int, typer.Option(help="users with fewer positives are skipped")] = 5,
) -> None:
    """Leave-one-out by time, full ranking over all items: HR, NDCG, MRR, coverage (JSON on stdout)."""
    from liverec.evaluate.offline import baselines as run_baselines
    from liverec.evaluate.offline import evaluate_snapshot, sequences_from_store
    from liverec.evaluate.split import leave_one_out, sequences_from_events
    from liverec.registry.registry import ModelRegistry, RegistryError

    settings = settings_from(config, store)
    try:
        if data is not None:
            ds = read_dataset(data, fmt)
            seqs = sequences_from_events(ds.events, ds.items, settings.rewards)
        else:
            with open_store(settings.store_url) as st:
                seqs = sequences_from_store(st)
    except (DatasetError, StoreError) as exc:
        fail(str(exc))
        return
    split = leave_one_out(seqs, min_len=min_len)
    if not split.train:
        fail(f"no user has {min_len} or more positive interactions")
    results: dict[str, dict[str, Any]] = {}
    registry = ModelRegistry(settings.registry_dir)  # type: ignore[arg-type]
    for v in version or registry.list_versions():
        try:
            results[f"transformer@{v}"] = evaluate_snapshot(registry.load(v), split)
        except RegistryError as exc:
            fail(str(exc))
    if baselines:
        results.update(run_baselines(split))
    print_table(results)
    print(json.dumps({"users": len(split.train), "items": split.n_items, "models": results}, default=float))
