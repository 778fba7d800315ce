"""Shared CLI pieces: the typer app, settings from --config/--store, the CSV column options, progress
bars, clean errors."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar, get_type_hints

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

if TYPE_CHECKING:
    from liverec.events.datasets import CsvColumns, ItemColumns
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
    str | None,
    typer.Option(
        "--store", help="store URL (sqlite:///..., postgresql://..., redis://...) or a SQLite file path"
    ),
]


CSV_PANEL = "CSV columns (--format csv)"


def _csv(help: str) -> Any:
    return typer.Option(help=help, rich_help_panel=CSV_PANEL)


@dataclass(frozen=True)
class CsvOptions:
    """The column options of every command that reads ``--format csv``: one definition, so their names
    (an interface: scripts use them) are the same everywhere. Each field becomes ``--field-name``;
    `csv_options` adds them to a command."""

    user_col: Annotated[str, _csv("CSV: user id column")] = "user_id"
    item_col: Annotated[str, _csv("CSV: item id column")] = "item_id"
    time_col: Annotated[str | None, _csv("CSV: timestamp column (ISO-8601 or epoch)")] = None
    rating_col: Annotated[str | None, _csv("CSV: rating column; rows become rating events")] = None
    type_col: Annotated[str | None, _csv("CSV: event type column")] = None
    event_type: Annotated[str, _csv("CSV: event type when there is no type column")] = "click"
    items_file: Annotated[Path | None, _csv("CSV: a file of items")] = None
    item_id_col: Annotated[str, _csv("items file: id column")] = "item_id"
    item_title_col: Annotated[str | None, _csv("items file: title column")] = None
    item_text_cols: Annotated[str, _csv("items file: comma-separated text columns")] = ""
    item_tags_col: Annotated[str | None, _csv("items file: tags column")] = None
    delimiter: Annotated[str, _csv("CSV delimiter")] = ","

    def columns(self) -> CsvColumns:
        """The event column map; an unknown ``--event-type`` is a ValueError naming the valid ones."""
        from liverec.core.schema import EventType
        from liverec.events.datasets import CsvColumns

        try:
            etype = EventType(self.event_type)
        except ValueError:
            valid = ", ".join(t.value for t in EventType)
            raise ValueError(f"--event-type {self.event_type!r} is not one of: {valid}") from None
        return CsvColumns(self.user_col, self.item_col, self.time_col, self.rating_col, self.type_col, etype)

    def item_columns(self) -> ItemColumns:
        from liverec.events.datasets import ItemColumns

        text = tuple(c.strip() for c in self.item_text_cols.split(",") if c.strip())
        return ItemColumns(self.item_id_col, self.item_title_col, text, self.item_tags_col)


F = TypeVar("F", bound=Callable[..., Any])


def csv_options(command: F) -> F:
    """Give a command the `CsvOptions` flags; it receives them as one ``csv: CsvOptions`` argument.
    (Typer reads a command's signature, so the wrapper's signature lists the flags one by one.)"""
    sig = inspect.signature(command, eval_str=True)
    hints = get_type_hints(CsvOptions, include_extras=True)
    added = [
        inspect.Parameter(f.name, inspect.Parameter.KEYWORD_ONLY, default=f.default, annotation=hints[f.name])
        for f in fields(CsvOptions)
    ]
    params = [p for p in sig.parameters.values() if p.name != "csv"] + added

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        csv = CsvOptions(**{f.name: kwargs.pop(f.name) for f in fields(CsvOptions) if f.name in kwargs})
        return command(*args, csv=csv, **kwargs)

    wrapper.__signature__ = sig.replace(parameters=params)  # type: ignore[attr-defined]
    wrapper.__annotations__ = {p.name: p.annotation for p in params}
    return wrapper  # type: ignore[return-value]


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
