"""`liverec import`: load an interaction log (MovieLens or any CSV) into the store."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from liverec.cli.common import ConfigOpt, StoreOpt, app, console, fail, progress_bar, settings_from

if TYPE_CHECKING:
    from liverec.events.datasets import CsvColumns, Dataset, ItemColumns


class Format(StrEnum):
    movielens = "movielens"
    csv = "csv"


def read_dataset(
    path: Path,
    fmt: Format,
    columns: CsvColumns | None = None,
    items_file: Path | None = None,
    item_columns: ItemColumns | None = None,
    delimiter: str = ",",
) -> Dataset:
    from liverec.events.datasets import CsvColumns, ItemColumns, load_csv, load_movielens

    if fmt is Format.movielens:
        return load_movielens(path)
    columns = CsvColumns() if columns is None else columns
    item_columns = ItemColumns() if item_columns is None else item_columns
    return load_csv(path, columns, items_file, item_columns, delimiter)


@app.command("import")
def import_(
    path: Annotated[Path, typer.Argument(help="a MovieLens folder (u.data, u.item) or a CSV file")],
    fmt: Annotated[Format, typer.Option("--format", "-f")] = Format.movielens,
    config: ConfigOpt = None,
    store: StoreOpt = None,
    user_col: Annotated[str, typer.Option(help="CSV: user id column")] = "user_id",
    item_col: Annotated[str, typer.Option(help="CSV: item id column")] = "item_id",
    time_col: Annotated[str | None, typer.Option(help="CSV: timestamp column (ISO-8601 or epoch)")] = None,
    rating_col: Annotated[
        str | None, typer.Option(help="CSV: rating column; rows become rating events")
    ] = None,
    type_col: Annotated[str | None, typer.Option(help="CSV: event type column")] = None,
    event_type: Annotated[str, typer.Option(help="CSV: event type when there is no type column")] = "click",
    items_file: Annotated[Path | None, typer.Option(help="CSV: a file of items")] = None,
    item_id_col: Annotated[str, typer.Option(help="items file: id column")] = "item_id",
    item_title_col: Annotated[str | None, typer.Option(help="items file: title column")] = None,
    item_text_cols: Annotated[str, typer.Option(help="items file: comma-separated text columns")] = "",
    item_tags_col: Annotated[str | None, typer.Option(help="items file: tags column")] = None,
    delimiter: Annotated[str, typer.Option(help="CSV delimiter")] = ",",
    batch: Annotated[int, typer.Option(min=1, help="events per durable batch")] = 10_000,
) -> None:
    """Import events and items; re-importing the same file adds nothing (event ids are stable)."""
    from liverec.events.datasets import CsvColumns, DatasetError, ItemColumns
    from liverec.store import StoreError, open_store

    settings = settings_from(config, store)
    try:
        columns = CsvColumns(user_col, item_col, time_col, rating_col, type_col, event_type)  # type: ignore[arg-type]
        item_columns = ItemColumns(
            item_id_col, item_title_col, tuple(c for c in item_text_cols.split(",") if c), item_tags_col
        )
        data = read_dataset(path, fmt, columns, items_file, item_columns, delimiter)
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
        f"into {settings.store_url}"
    )
