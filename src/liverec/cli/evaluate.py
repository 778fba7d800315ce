"""`liverec evaluate ...`: offline (leave-one-out, full ranking), and more evaluators as they land."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Column, Table

from liverec.cli.common import ConfigOpt, CsvOptions, StoreOpt, app, console, csv_options, fail, settings_from
from liverec.cli.data import Format, read_dataset

evaluate_app = typer.Typer(help="Evaluate models honestly.", no_args_is_help=True)
app.add_typer(evaluate_app, name="evaluate")

METRICS = ("ndcg@10", "hr@10", "ndcg@20", "hr@20", "mrr", "coverage@10")
SEARCH_TRAIN_SECONDS = 150.0  # `evaluate search`: the Transformer's budget when [train] sets none


def print_table(results: dict[str, dict[str, Any]]) -> None:
    # fits 80 columns (a piped console): long model names fold onto a second line, figures never shrink
    heads = [k.replace("coverage", "cov") for k in METRICS]
    figures = [Column(h, min_width=len(h), no_wrap=True) for h in heads]
    table = Table(
        Column("model", overflow="fold"), *figures, Column("ndcg@10 95%", min_width=11, no_wrap=True)
    )
    for name, m in results.items():
        low, high = m.get("ndcg@10_ci95", (float("nan"), float("nan")))
        table.add_row(name, *(f"{m.get(k, float('nan')):.4f}" for k in METRICS), f"{low:.3f}-{high:.3f}")
    console.print(table)


@evaluate_app.command()
@csv_options
def offline(
    config: ConfigOpt = None,
    store: StoreOpt = None,
    data: Annotated[Path | None, typer.Option(help="evaluate on a file instead of the store")] = None,
    fmt: Annotated[Format, typer.Option("--format")] = Format.movielens,
    version: Annotated[list[str] | None, typer.Option(help="registered version(s); default: all")] = None,
    baselines: Annotated[
        bool, typer.Option(help="also popularity, item-kNN, ALS and sequential rules (tuned on validation)")
    ] = True,
    min_len: Annotated[int, typer.Option(help="users with fewer positives are skipped")] = 5,
    *,
    csv: CsvOptions,
) -> None:
    """Leave-one-out by time, full ranking over all items: HR, NDCG, MRR, coverage, and NDCG@10's 95%
    bootstrap interval over the users ("ndcg@10_ci95"): a table on stderr, one JSON object on stdout."""
    from liverec.core.split import leave_one_out, sequences_from_events
    from liverec.evaluate.offline import baselines as run_baselines
    from liverec.evaluate.offline import rank_snapshot_all, sequences_from_store, served_rules, with_interval
    from liverec.events.datasets import DatasetError
    from liverec.registry.registry import ModelRegistry, RegistryError
    from liverec.store import StoreError, open_store

    settings = settings_from(config, store)
    try:
        if data is not None:
            ds = read_dataset(data, fmt, csv)
            seqs = sequences_from_events(ds.events, ds.items, settings.rewards)
        else:
            with open_store(settings.store_url) as st:
                seqs = sequences_from_store(st)
    except (DatasetError, StoreError, ValueError) as exc:
        fail(str(exc))
        return
    split = leave_one_out(seqs, min_len=min_len)
    if not split.train:
        fail(f"no user has {min_len} or more positive interactions")
    results: dict[str, dict[str, Any]] = {}
    registry = ModelRegistry(settings.registry_path)
    versions = version or registry.list_versions()
    # also as served, with the [rules] settings: counted once, added to every version
    counted = served_rules(split, settings.rules) if settings.rules.weight > 0 and versions else None
    for v in versions:
        try:
            snap = registry.load(v)
            # the network alone and, with rules, as served: one forward pass per user for both
            alone, *served = rank_snapshot_all(snap, split, rules=settings.rules, counted=counted)
            results[f"transformer@{v}"] = with_interval(alone)
            if served:
                results[f"transformer@{v}+rules"] = with_interval(served[0])
        except RegistryError as exc:
            fail(str(exc))
    if baselines:
        results.update(run_baselines(split))
    print_table(results)
    print(json.dumps({"users": len(split.train), "items": split.n_items, "models": results}, default=float))


@evaluate_app.command()
@csv_options
def prequential(
    data: Annotated[Path, typer.Option(help="a time-ordered log: MovieLens folder or CSV")],
    fmt: Annotated[Format, typer.Option("--format")] = Format.movielens,
    config: ConfigOpt = None,
    seeds: Annotated[list[int] | None, typer.Option("--seed", help="repeat per seed (default 0 1 2)")] = None,
    offline_fraction: Annotated[float, typer.Option(min=0.05, max=0.95)] = 0.5,
    delay: Annotated[
        int, typer.Option(min=1, help="predictions use weights at most this many events old")
    ] = 64,
    text: Annotated[bool, typer.Option(help="use the text encoder for item content")] = True,
    plot: Annotated[Path, typer.Option(help="where to save the PNG")] = Path("prequential.png"),
    *,
    csv: CsvOptions,
) -> None:
    """Replay a log in time order: train offline on the first part, stream the rest test-then-train,
    comparing the online-updated Transformer, the frozen one and online popularity."""
    from liverec.core.split import sequences_from_events
    from liverec.evaluate.plots import plot_windows
    from liverec.evaluate.prequential import prequential as run
    from liverec.events.datasets import DatasetError
    from liverec.model.text import TextEncoder
    from liverec.store import open_store

    settings = settings_from(config)
    try:
        ds = read_dataset(data, fmt, csv)
    except (DatasetError, ValueError) as exc:
        fail(str(exc))
        return
    vectors = None
    if text:
        seqs = sequences_from_events(ds.events, ds.items)
        with open_store(f"sqlite:///{settings.data_dir / 'embeddings.db'}") as cache:
            vectors = TextEncoder().encode_cached([seqs.texts.get(i, "") for i in seqs.vocab.ids], cache)
    runs = []
    for seed in seeds or [0, 1, 2]:
        console.print(f"seed {seed}")
        train = settings.train.model_copy(update={"seed": seed})
        online = settings.online.model_copy(update={"seed": seed})
        runs.append(
            run(ds, vectors, settings.model, train, online, offline_fraction, delay, log=console.print)
        )
    out = average_runs(runs)
    plot_windows(out["models"], plot, title=f"prequential NDCG@10 on {data.name} ({len(runs)} seeds)")
    console.print(f"plot: {plot}")
    print(json.dumps(out, default=float))


def average_runs(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Means over seeds of every model's metrics and windows; each run is kept under "runs"."""
    models: dict[str, Any] = {}
    for name in runs[0]["models"]:
        per = [r["models"][name] for r in runs]
        windows = [
            {
                **w,
                "ndcg@10": float(sum(p["windows"][k]["ndcg@10"] for p in per) / len(per)),
                "hr@10": float(sum(p["windows"][k]["hr@10"] for p in per) / len(per)),
            }
            for k, w in enumerate(per[0]["windows"])
        ]
        models[name] = {
            "ndcg@10": sum(p["ndcg@10"] for p in per) / len(per),
            "hr@10": sum(p["hr@10"] for p in per) / len(per),
            "events": per[0]["events"],
            "windows": windows,
        }
    ratio = models["online"]["ndcg@10"] / max(models["frozen"]["ndcg@10"], 1e-12)
    return {
        "models": models,
        "events_streamed": runs[0]["events_streamed"],
        "online_vs_frozen_ndcg@10": ratio,
        "seeds": len(runs),
        "runs": runs,
    }


@evaluate_app.command()
@csv_options
def search(
    data: Annotated[Path, typer.Option(help="the interaction log: MovieLens folder or CSV")],
    fmt: Annotated[Format, typer.Option("--format")] = Format.movielens,
    config: ConfigOpt = None,
    queries: Annotated[
        Path | None, typer.Option(help="a CSV of searches (user, item found, query, time); default: tags")
    ] = None,
    query_user_col: Annotated[str, typer.Option(help="queries file: user id column")] = "user_id",
    query_item_col: Annotated[str, typer.Option(help="queries file: item id column")] = "item_id",
    query_col: Annotated[str, typer.Option(help="queries file: query text column")] = "query",
    query_time_col: Annotated[str, typer.Option(help="queries file: time column")] = "timestamp",
    test_fraction: Annotated[
        float, typer.Option(min=0.05, max=0.95, help="--queries: newest share of time that is test")
    ] = 0.5,
    seeds: Annotated[list[int] | None, typer.Option("--seed", help="repeat per seed (default 0)")] = None,
    online: Annotated[bool, typer.Option(help="also replay the test cases, learning online")] = False,
    *,
    csv: CsvOptions,
) -> None:
    """Search (BM25 + semantic + personal, learned ranker) against BM25, semantic and the recommender
    alone, full catalog: HR@10, NDCG@10 (95% interval over cases), MRR; JSON on stdout. Without
    --queries, each user's last positive is searched for by its tags (leave-one-out)."""
    from liverec.evaluate.search import evaluate_search, transformer_personal
    from liverec.evaluate.search_cases import QueryColumns, read_queries
    from liverec.events.datasets import DatasetError
    from liverec.model.text import TextEncoder
    from liverec.store import open_store

    settings = settings_from(config)
    train = settings.train
    if not train.max_seconds:  # bounded: a run is minutes (the Transformer dominates)
        train = train.model_copy(update={"max_seconds": SEARCH_TRAIN_SECONDS})
    try:
        ds = read_dataset(data, fmt, csv)
        cols = QueryColumns(query_user_col, query_item_col, query_col, query_time_col)
        rows = read_queries(queries, cols, csv.delimiter) if queries is not None else None
        encoder = TextEncoder()
        with open_store(f"sqlite:///{settings.data_dir / 'embeddings.db'}") as cache:
            out = evaluate_search(
                ds,
                lambda texts: encoder.encode_cached(texts, cache),
                transformer_personal(settings.model, train, console.print),
                seeds or [0],
                rows,
                test_fraction,
                online,
                settings.rewards,
                console.print,
            )
    except (DatasetError, ValueError) as exc:
        fail(str(exc))
        return
    table = Table("model", "ndcg@10", "hr@10", "mrr", "ndcg@10 95%")
    for name, m in out["models"].items():
        low, high = m["ndcg@10_ci95"]
        table.add_row(name, *(f"{m[k]:.4f}" for k in ("ndcg@10", "hr@10", "mrr")), f"{low:.3f}-{high:.3f}")
    console.print(table)
    for name, key in (
        ("search / " + out["paired"]["baseline"], "paired"),
        ("online / frozen", "paired_online"),
    ):
        if key in out and out[key]["ratio"] is not None:
            low, high = out[key]["ratio_ci95"] or (float("nan"), float("nan"))
            console.print(f"{name} NDCG@10: {out[key]['ratio']:.3f} (paired 95%: {low:.3f}-{high:.3f})")
    print(json.dumps(out, default=float))


@evaluate_app.command()
def ope(
    obd: Annotated[
        Path | None, typer.Option(help="Open Bandit Dataset folder ({random,bts}/{campaign}/*.csv)")
    ] = None,
    campaign: Annotated[str, typer.Option(help="OBD campaign: all, men or women")] = "all",
    config: ConfigOpt = None,
    store: StoreOpt = None,
    policy: Annotated[str | None, typer.Option(help="with a store: only this logged policy")] = None,
    n_bootstrap: Annotated[int, typer.Option(min=1, help="bootstrap resamples per interval")] = 10_000,
    alpha: Annotated[float, typer.Option(min=0.001, max=0.5, help="1 - confidence level")] = 0.05,
    seed: Annotated[int, typer.Option(help="seeds BTS simulation, cross-fitting, bootstrap")] = 12345,
    n_sim: Annotated[int, typer.Option(min=1, help="OBD: Monte Carlo draws for BTS's action_dist")] = 100_000,
    n_folds: Annotated[int, typer.Option(min=1, help="OBD: cross-fitting folds of the reward model")] = 3,
    affinity: Annotated[bool, typer.Option(help="OBD: add user-item affinities to the context")] = False,
    obp_intervals: Annotated[bool, typer.Option(help="OBD: also obp's bootstrap intervals")] = True,
) -> None:
    """Off-policy evaluation (JSON on stdout). With --obd: BTS's click rate estimated from the random
    logs by IPW, SNIPW, DM and DR, cross-checked against obp. Otherwise: impressions and rewards
    joined from the store, per logged policy."""
    if obd is not None:
        from liverec.evaluate.obd import CAMPAIGNS, OBDError, obd_report

        if campaign not in CAMPAIGNS:
            fail(f"--campaign must be one of {', '.join(CAMPAIGNS)}")
        try:
            report = obd_report(
                obd,
                campaign,
                n_sim=n_sim,
                n_bootstrap_samples=n_bootstrap,
                n_folds=n_folds,
                alpha=alpha,
                random_state=seed,
                affinity=affinity,
                compare_intervals=obp_intervals,
            )
        except OBDError as exc:
            fail(str(exc))
            return
        print(json.dumps(report, default=float))
        return

    from liverec.evaluate.ope import logged_report
    from liverec.events.join import RewardJoiner
    from liverec.settings import redact_url
    from liverec.store import StoreError, open_store

    settings = settings_from(config, store)
    try:
        joiner = RewardJoiner.from_settings(settings)
        with open_store(settings.store_url) as st:
            records = joiner.feed_many(st.iter_events())
        records.extend(joiner.flush())
    except (StoreError, ValueError) as exc:
        fail(str(exc))
        return
    policies = logged_report(records, policy, alpha, n_bootstrap, seed)
    if policy is not None and not policies:
        fail(f"no impressions logged by policy {policy!r}")
    stats = joiner.stats
    print(
        json.dumps(
            {
                "store": redact_url(settings.store_url),
                "impressions": stats.impressions,
                "join": {**joiner.config.model_dump(), **vars(stats)},
                "policies": policies,
            },
            default=float,
        )
    )
