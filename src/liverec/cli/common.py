"""Shared CLI pieces: the typer app, settings from --config/--store, progress bars, clean errors."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

if TYPE_CHECKING:
    from liverec.settings import Settings

app = typer.Typer(
    name="liverec",
    help="liverec: real-time recommendations that learn from every event.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
console = Console(stderr=True)

ConfigOpt = Annotated[Path | None, typer.Option("--config", "-c", help="TOML settings file")]
StoreOpt = Annotated[
    str | None, typer.Option("--store", help="store URL, e.g. sqlite:///liverec-data/events.db")
]


def _print_version(value: bool) -> None:
    if value:
        import liverec

        typer.echo(f"liverec {liverec.__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_print_version, is_eager=True, help="print the version and exit"),
    ] = False,
) -> None:
    pass


def settings_from(config: Path | None, store: str | None = None, **overrides: Any) -> Settings:
    """Settings from --config and flags; configuration errors exit 2 with a readable message."""
    from liverec.settings import load_settings

    if store:
        overrides["store_url"] = store
    try:
        return load_settings(config, **overrides)
    except (FileNotFoundError, ValueError) as exc:
        fail(f"bad configuration: {exc}")
        raise  # unreachable, for type checkers


def fail(message: str, code: int = 2) -> None:
    console.print(f"[bold red]error:[/] {message}")
    raise typer.Exit(code)


@contextmanager
def progress_bar(description: str, total: int | None) -> Iterator[Callable[[int], None]]:
    """A rich progress bar; yields ``advance(n)``. Quiet when stderr is not a terminal."""
    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=False,
        disable=not console.is_terminal,
    ) as progress:
        task = progress.add_task(description, total=total)
        yield lambda n: progress.advance(task, n)
