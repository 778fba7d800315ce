"""Read interaction logs from files into `Event`s and `Item`s: MovieLens, or any CSV with a column map.

Every row is validated like an API request, and a bad row is reported with its file and line.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from pydantic import ValidationError

from liverec.core.schema import Event, EventType, Item


class DatasetError(ValueError):
    """A file is missing, or a row cannot be read; the message names the file and line."""


@dataclass
class Dataset:
    name: str
    events: list[Event]  # sorted by timestamp (stable: file order breaks ties)
    items: list[Item] = field(default_factory=list)


def _row_error(path: Path, line: int, exc: Exception) -> DatasetError:
    if isinstance(exc, ValidationError):
        first = exc.errors(include_url=False)[0]
        where = ".".join(str(p) for p in first["loc"])
        return DatasetError(f"{path}:{line}: {where}: {first['msg']}")
    return DatasetError(f"{path}:{line}: {exc}")


def _require(path: Path) -> Path:
    if not path.is_file():
        raise DatasetError(f"file not found: {path}")
    return path


ML_GENRES = (
    "unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime", "Documentary", "Drama",
    "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance", "Sci-Fi", "Thriller", "War", "Western",
)  # fmt: skip


def load_movielens(path: str | Path) -> Dataset:
    """MovieLens 100k: ``u.data`` (user, item, rating, unix time) and ``u.item`` (titles, genres)."""
    root = Path(path)
    data = _require(root / "u.data")
    events: list[Event] = []
    with data.open(encoding="latin-1") as fh:
        for line_no, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                user, item, rating, ts = line.split("\t")
                events.append(
                    Event(
                        event_id=f"ml-{user}-{item}",
                        user_id=user,
                        item_id=item,
                        type=EventType.rating,
                        value=float(rating),
                        timestamp=int(ts),
                    )
                )
            except (ValueError, ValidationError) as exc:
                raise _row_error(data, line_no, exc) from None
    items: list[Item] = []
    item_file = root / "u.item"
    if item_file.is_file():
        with item_file.open(encoding="latin-1") as fh:
            for line_no, line in enumerate(fh, 1):
                parts = line.rstrip("\n").split("|")
                if len(parts) < 5 + len(ML_GENRES):
                    continue
                try:
                    genres = [g for g, flag in zip(ML_GENRES, parts[5:], strict=False) if flag == "1"]
                    items.append(
                        Item(
                            item_id=parts[0],
                            title=parts[1],
                            tags=genres,
                            attributes={"release": parts[2]} if parts[2] else {},
                            created_at=_release_epoch(parts[2]),
                        )
                    )
                except (ValueError, ValidationError) as exc:
                    raise _row_error(item_file, line_no, exc) from None
    events.sort(key=lambda e: e.timestamp)
    return Dataset(name=root.name, events=events, items=items)


def _release_epoch(text: str) -> float:
    try:
        return datetime.strptime(text, "%d-%b-%Y").replace(tzinfo=UTC).timestamp()
    except ValueError:
        return 0.0


@dataclass(frozen=True)
class CsvColumns:
    """Which CSV columns hold what. Only user and item are required."""

    user: str = "user_id"
    item: str = "item_id"
    time: str | None = None
    rating: str | None = None
    type: str | None = None  # a column of event types; else `event_type` for every row
    event_type: EventType = EventType.click
    event_id: str | None = None


@dataclass(frozen=True)
class ItemColumns:
    item_id: str = "item_id"
    title: str | None = None
    text: Sequence[str] = ()  # concatenated into the item text
    tags: str | None = None  # a column of '|'- or ','-separated tags


def _reader(path: Path, delimiter: str) -> Iterator[tuple[int, dict[str, str]]]:
    with _require(path).open(newline="", encoding="utf-8-sig") as fh:
        reader = csv.DictReader(fh, delimiter=delimiter)
        for row in reader:
            yield reader.line_num, row


def _check_columns(path: Path, header: Sequence[str], wanted: Sequence[str | None]) -> None:
    missing = [c for c in wanted if c and c not in header]
    if missing:
        raise DatasetError(f"{path}: no column(s) {', '.join(missing)}; the header has {', '.join(header)}")


def _header(path: Path, delimiter: str) -> list[str]:
    with _require(path).open(newline="", encoding="utf-8-sig") as fh:
        return next(csv.reader(fh, delimiter=delimiter), [])


def load_csv(
    path: str | Path,
    columns: CsvColumns = CsvColumns(),
    items_file: str | Path | None = None,
    item_columns: ItemColumns = ItemColumns(),
    delimiter: str = ",",
) -> Dataset:
    """Interactions from any CSV, mapped by `CsvColumns`; items (optional) mapped by `ItemColumns`."""
    src = Path(path)
    c = columns
    _check_columns(src, _header(src, delimiter), [c.user, c.item, c.time, c.rating, c.type, c.event_id])
    events: list[Event] = []
    for line_no, row in _reader(src, delimiter):
        try:
            etype = row[c.type] if c.type else (EventType.rating if c.rating else c.event_type)
            fields: dict[str, object] = {"user_id": row[c.user], "item_id": row[c.item], "type": etype}
            if c.time:
                fields["timestamp"] = row[c.time]
            if c.rating and row.get(c.rating, "") != "":
                fields["value"] = float(row[c.rating])
            fields["event_id"] = row[c.event_id] if c.event_id else f"{src.stem}-{line_no}"
            events.append(Event.model_validate(fields))
        except (ValueError, ValidationError) as exc:
            raise _row_error(src, line_no, exc) from None
    items: list[Item] = []
    if items_file is not None:
        ipath = Path(items_file)
        ic = item_columns
        _check_columns(ipath, _header(ipath, delimiter), [ic.item_id, ic.title, ic.tags, *ic.text])
        for line_no, row in _reader(ipath, delimiter):
            try:
                tags = row[ic.tags].replace("|", ",").split(",") if ic.tags and row[ic.tags] else []
                items.append(
                    Item(
                        item_id=row[ic.item_id],
                        title=row[ic.title] if ic.title else "",
                        text=". ".join(row[t] for t in ic.text if row.get(t)),
                        tags=[t.strip() for t in tags if t.strip()],
                    )
                )
            except (ValueError, ValidationError) as exc:
                raise _row_error(ipath, line_no, exc) from None
    events.sort(key=lambda e: e.timestamp)
    return Dataset(name=src.stem, events=events, items=items)
