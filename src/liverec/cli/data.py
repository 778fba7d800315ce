"""`liverec import`: load an interaction log (MovieLens or any CSV) into the store."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from liverec.cli.common import (
    ConfigOpt,
    CsvOptions,
    StoreOpt,
    app,
    console,
    csv_options,
    fail,
    progress_bar,
    settings_from,
)

if TYPE_CHECKING:
    from liverec.events.datasets import Dataset


class Format(StrEnum):
    movielens = "movielens"
    csv = "csv"


def read_dataset(path: Path, fmt: Format, csv: CsvOptions | None = None) -> Dataset:
    """The events (and items) of ``path``. A path of the wrong kind for ``fmt`` (a folder given as a
    CSV, a file given as a MovieLens folder) is a DatasetError that says what is expected; a bad
    column option is a ValueError."""
    from liverec.events.datasets import DatasetError, load_csv, load_movielens

    if fmt is Format.movielens:
        if path.is_file():
            raise DatasetError(
                f"{path} is a file; --format movielens expects a MovieLens folder (u.data, u.item). "
                "For a CSV file use --format csv"
            )
        if path.is_dir() and not (path / "u.data").is_file():
            raise DatasetError(f"{path} has no u.data; --format movielens expects a MovieLens 100k folder")
        return load_movielens(path)
    if path.is_dir():
        raise DatasetError(
            f"{path} is a folder; --format csv expects one CSV file of interactions (items go in "
            "--items-file). For a MovieLens folder use --format movielens"
        )
    csv = csv or CsvOptions()
    return load_csv(path, csv.columns(), csv.items_file, csv.item_columns(), csv.delimiter)


@app.command("import")
@csv_options
def import_(
    path: Annotated[Path, typer.Argument(help="a MovieLens folder (u.data, u.item) or a CSV file")],
    fmt: Annotated[Format, typer.Option("--format", "-f")] = Format.movielens,
    config: ConfigOpt = None,
    store: StoreOpt = None,
    batch: Annotated[int, typer.Option(min=1, help="events per durable batch")] = 10_000,
    *,
    csv: CsvOptions,
) -> None:
    """Import events and items; re-importing the same file adds nothing (event ids are stable)."""
    from liverec.events.datasets import DatasetError
    from liverec.settings import redact_url
    from liverec.store import StoreError, open_store

    settings = settings_from(config, store)
    try:
        data = read_dataset(path, fmt, csv)
    except (DatasetError, ValueError) as exc:
        fail(str(exc))
        return
    try:
        with open_store(settings.store_url) as st:
            if data.items:
                st.upsert_items(data.items)
            accepted = duplicates = 0
            with progress_bar(f"importing {data.name}", len(data.events)) as advance:
                for i in range(0, len(data.events), batch):
                    chunk = data.events[i : i + batch]
                    result = st.append(chunk)
                    accepted += len(result.accepted)
                    duplicates += result.duplicates
                    advance(len(chunk))
    except StoreError as exc:
        fail(str(exc))
        return
    console.print(
        f"imported {accepted:,} events ({duplicates:,} duplicates skipped) and {len(data.items):,} items "
        f"into {redact_url(settings.store_url)}"
    )
