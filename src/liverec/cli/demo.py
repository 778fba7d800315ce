"""`liverec demo`: start the service, let simulated users use it over HTTP, print how it did."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from liverec.cli.common import app, console, fail

if TYPE_CHECKING:
    from liverec.sim.demo import DemoStatus, DemoSummary

# liverec.sim.demo.DEFAULT_DATA_DIR, spelled out so that --help needs no numpy (a test keeps them equal)
DEMO_DATA_DIR = Path("liverec-data/demo")


@app.command()
def demo(
    duration: Annotated[float, typer.Option(help="seconds of simulated traffic", min=1)] = 60.0,
    port: Annotated[int, typer.Option(help="server port (0 = a free one)", min=0, max=65535)] = 0,
    users: Annotated[int, typer.Option(help="simulated users (a third are the random control)")] = 300,
    items: Annotated[int, typer.Option(help="catalog size")] = 500,
    seed: Annotated[int, typer.Option(help="world seed")] = 0,
    data_dir: Annotated[Path, typer.Option(help="store and plot go here; wiped at start")] = DEMO_DATA_DIR,
    workers: Annotated[int, typer.Option(help="concurrent simulated clients", min=1)] = 4,
    drift: Annotated[float, typer.Option(help="taste rotation per visit, radians", min=0)] = 0.0,
    arrival_rate: Annotated[float, typer.Option(help="new items per visit, on average", min=0)] = 0.0,
    policy: Annotated[str, typer.Option(help="exploration policy once the Transformer serves")] = "thompson",
    train_epochs: Annotated[int, typer.Option(help="epochs of the initial `liverec train`", min=1)] = 8,
    search_share: Annotated[
        float, typer.Option(help="share of the liverec cohort's visits that search instead", min=0, max=0.99)
    ] = 0.25,
) -> None:
    """Run the whole product against simulated users and compare it to a random control cohort:
    popularity warm-up, `liverec train` on its log, then `liverec serve --learn` with exploration."""
    import httpx

    from liverec.sim.demo import DemoError, run_demo

    with Progress(
        TextColumn("[bold]simulating"),
        BarColumn(),
        TimeElapsedColumn(),
        TextColumn("{task.fields[line]}"),
        console=console,
        transient=True,
    ) as progress:
        task = progress.add_task("demo", total=duration, line="starting liverec serve ...")
        next_line = [0.0]  # without a terminal, print a status line every 10 s instead of a bar

        def show(s: DemoStatus) -> None:
            line = (
                f"[{s.phase}] {s.steps:,} visits  {s.events_posted:,} events  {s.model or '-'}  "
                f"CTR liverec {s.liverec_ctr:.3f} vs random {s.random_ctr:.3f}"
                + (f"  [red]{s.errors} errors[/]" if s.errors else "")
            )
            progress.update(task, completed=s.elapsed_s, line=line)
            if not console.is_terminal and s.elapsed_s >= next_line[0]:
                console.print(f"{s.elapsed_s:5.1f}s  {line}", highlight=False)
                next_line[0] += 10.0

        try:
            summary = run_demo(
                duration_s=duration,
                port=port,
                users=users,
                items=items,
                seed=seed,
                data_dir=data_dir,
                workers=workers,
                drift=drift,
                arrival_rate=arrival_rate,
                policy=policy,
                train_epochs=train_epochs,
                search_share=search_share,
                on_status=show,
                on_ready=lambda url: progress.console.print(
                    f"[bold]live dashboard:[/] {url}  (up while the demo runs; no key needed on loopback)",
                    highlight=False,
                ),
            )
        except (DemoError, ValueError, OSError, httpx.HTTPError) as exc:
            fail(str(exc), code=1)
            return
    print_summary(summary, Console())


def print_summary(s: DemoSummary, out: Console) -> None:
    """The run as tables: phases, throughput and latency, then click-through and models per window."""
    from liverec.sim.demo_stats import model_label

    total = s.total
    head = Table(title="liverec demo", show_header=False, title_justify="left")
    head.add_column(style="bold")
    head.add_column()
    head.add_row("duration", f"{s.duration_s:.1f} s")
    head.add_row("world", f"{s.users} users ({s.control_users} random control), {s.items} items")
    head.add_row(
        "  setup", f"catalog text encoded into the store's cache in {s.setup_s:.1f} s (before traffic)"
    )
    for p in s.phases:
        head.add_row(f"  {p.name}", f"{p.start_s:5.1f}-{p.end_s:5.1f} s  {p.detail}")
    head.add_row("visits", f"{s.steps:,}")
    head.add_row(
        "events ingested", f"{s.total_events:,} ({s.events_per_s:,.0f} events/s, impressions included)"
    )
    head.add_row("GET recommendations", f"p50 {s.latency_p50_ms:.1f} ms, p99 {s.latency_p99_ms:.1f} ms")
    if s.searches:
        head.add_row(
            "searches",
            f"{s.searches:,}; clicks per result {s.search_ctr_first_half:.3f} in the first half, "
            f"{s.search_ctr_second_half:.3f} in the second (the ranker learns from the clicks)",
        )
        head.add_row(
            "GET search", f"p50 {s.search_latency_p50_ms:.1f} ms, p99 {s.search_latency_p99_ms:.1f} ms"
        )
    head.add_row(
        "CTR over the run",
        f"liverec {total.liverec_ctr:.3f}, random {total.random_ctr:.3f}, lift {total.lift:+.0%}  "
        f"(oracle {s.oracle_ctr:.3f})",
    )
    trained = f"{s.initial_model} (val ndcg@10 {s.initial_val_ndcg:.3f})" if s.initial_model else "none"
    head.add_row("initial model", trained)
    head.add_row(
        "online updates", f"{s.online_versions} versions published; live at the end: {s.live_version or '-'}"
    )
    head.add_row("HTTP errors", str(s.errors))
    head.add_row("store", str(s.store_path))
    if s.plot_path:
        head.add_row("plot", str(s.plot_path))
    head.add_row("summary", str(s.data_dir / "summary.json"))
    out.print(head)

    ctr = Table(title="click-through per window", title_justify="left")
    for col in ("window", "liverec CTR", "random CTR", "lift", "impressions (liverec/random)", "model"):
        ctr.add_column(col, justify="left" if col == "model" else "right")
    for w in [*s.windows, total]:
        label = "all" if w is total else f"{w.start_s:.0f}-{w.end_s:.0f} s"
        ctr.add_row(
            label,
            f"{w.liverec_ctr:.3f}",
            f"{w.random_ctr:.3f}",
            f"{w.lift:+.0%}",
            f"{w.liverec_impressions:,} / {w.random_impressions:,}",
            model_label(w.models),
        )
    out.print(ctr)
