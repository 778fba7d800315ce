"""`liverec import`: MovieLens folders and any CSV into the store, idempotently, with clear errors."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from typer.testing import CliRunner

from liverec.cli import app
from liverec.core.schema import EventType, StoredEvent
from liverec.events.datasets import ML_GENRES
from liverec.store import open_store

RATINGS = [  # user, item, rating, unix time
    ("1", "10", 5, 881250949),
    ("1", "20", 3, 881250960),
    ("2", "10", 4, 881251000),
    ("3", "30", 1, 881250900),
]
MOVIES = [  # id, title, release, genres
    ("10", "Toy Story (1995)", "01-Jan-1995", {"Animation", "Children's", "Comedy"}),
    ("20", "Café Society (1997)", "15-Mar-1997", {"Drama"}),
    ("30", "Heat (1995)", "", {"Action", "Crime", "Thriller"}),
]


def run(*args: str) -> tuple[int, str]:
    """Exit code and all output (stdout and stderr), with rich's line wrapping undone."""
    result = CliRunner().invoke(app, list(args))
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, " ".join(result.output.split())


def squash(text: str) -> str:
    return "".join(text.split())


def movielens(root: Path, ratings: Sequence[tuple[str, str, int, int]] = RATINGS) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "u.data").write_text("".join(f"{u}\t{i}\t{r}\t{t}\n" for u, i, r, t in ratings))
    lines = []
    for item_id, title, release, genres in MOVIES:
        flags = "|".join("1" if g in genres else "0" for g in ML_GENRES)
        lines.append(f"{item_id}|{title}|{release}||http://example.org/{item_id}|{flags}\n")
    (root / "u.item").write_bytes("".join(lines).encode("latin-1"))
    return root


def events_in(url: str) -> list[StoredEvent]:
    with open_store(url) as st:
        return list(st.iter_events())


def test_movielens_import_and_reimport(tmp_path: Path) -> None:
    folder = movielens(tmp_path / "ml-tiny")
    url = f"sqlite:///{tmp_path / 'store' / 'events.db'}"
    code, out = run("import", str(folder), "--store", url)
    assert code == 0, out
    assert "imported 4 events" in out

    events = events_in(url)
    assert len(events) == len(RATINGS)
    assert [e.event.timestamp for e in events] == sorted(t for *_, t in RATINGS)  # in time order
    by_pair = {(e.event.user_id, e.event.item_id): e.event for e in events}
    for u, i, r, t in RATINGS:
        ev = by_pair[(u, i)]
        assert (ev.type, ev.value, ev.timestamp) == (EventType.rating, float(r), float(t))
    with open_store(url) as st:
        items = {i.item_id: i for i in st.list_items()}
    assert set(items) == {m[0] for m in MOVIES}
    for item_id, title, release, genres in MOVIES:
        item = items[item_id]
        assert item.title == title  # latin-1 decoded
        assert set(item.tags) == genres
        if release:
            assert item.attributes == {"release": release}
            assert item.created_at == datetime.strptime(release, "%d-%b-%Y").replace(tzinfo=UTC).timestamp()

    code, out = run("import", str(folder), "--store", url)
    assert code == 0, out
    assert "imported 0 events (4 duplicates skipped)" in out
    assert len(events_in(url)) == len(RATINGS)
    with open_store(url) as st:
        assert len(st.list_items()) == len(MOVIES)

    more = movielens(tmp_path / "ml-more", [*RATINGS, ("4", "20", 2, 881252000)])
    code, out = run("import", str(more), "--store", url)
    assert code == 0, out
    assert "imported 1 events (4 duplicates skipped)" in out
    assert len(events_in(url)) == len(RATINGS) + 1


def test_movielens_store_from_config_file(tmp_path: Path) -> None:
    folder = movielens(tmp_path / "ml")
    cfg = tmp_path / "liverec.toml"
    cfg.write_text(f'data_dir = "{tmp_path / "from-config"}"\n')
    code, out = run("import", str(folder), "--config", str(cfg))
    assert code == 0, out
    assert len(events_in(f"sqlite:///{tmp_path / 'from-config' / 'events.db'}")) == len(RATINGS)


def test_movielens_bad_row_names_file_and_line(tmp_path: Path) -> None:
    folder = movielens(tmp_path / "ml")
    with (folder / "u.data").open("a") as fh:
        fh.write("5\t10\t4\n")  # line 5: no timestamp
    url = f"sqlite:///{tmp_path / 's.db'}"
    code, out = run("import", str(folder), "--store", url)
    assert code != 0
    assert f"{folder / 'u.data'}:5:" in squash(out)
    assert events_in(url) == []  # nothing half-imported


def test_movielens_missing_folder(tmp_path: Path) -> None:
    code, out = run("import", str(tmp_path / "nowhere"), "--store", f"sqlite:///{tmp_path / 's.db'}")
    assert code != 0
    assert "file not found" in out
    assert "u.data" in squash(out)


def write_csv(path: Path, rows: list[str]) -> Path:
    path.write_text("\n".join(rows) + "\n")
    return path


CSV_ROWS = [
    "uid,iid,when,stars,extra",
    "alice,m1,2024-01-01T10:00:00Z,4.5,x",
    "bob,m1,2024-01-01T09:00:00+00:00,2,y",
    "alice,m2,1704103200,5,z",
]


def test_generic_csv_with_custom_columns_and_items(tmp_path: Path) -> None:
    log = write_csv(tmp_path / "log.csv", CSV_ROWS)
    items = write_csv(
        tmp_path / "movies.csv",
        ["movie,name,desc,genre", "m1,Heat,LA heist,crime", "m2,Up,Balloons,family", "m3,Unrated,,"],
    )
    url = f"sqlite:///{tmp_path / 's.db'}"
    args = ["import", str(log), "--format", "csv", "--store", url]
    args += ["--user-col", "uid", "--item-col", "iid", "--time-col", "when", "--rating-col", "stars"]
    args += ["--items-file", str(items), "--item-id-col", "movie", "--item-title-col", "name"]
    args += ["--item-text-cols", "desc,genre"]
    code, out = run(*args)
    assert code == 0, out
    assert "imported 3 events" in out and "3 items" in out

    events = [s.event for s in events_in(url)]
    assert [(e.user_id, e.item_id, e.value) for e in events] == [
        ("bob", "m1", 2.0),  # sorted by time
        ("alice", "m1", 4.5),
        ("alice", "m2", 5.0),
    ]
    assert all(e.type is EventType.rating for e in events)
    assert events[1].timestamp == datetime(2024, 1, 1, 10, tzinfo=UTC).timestamp()
    assert events[2].timestamp == 1704103200.0
    with open_store(url) as st:
        heat, up, unrated = (st.get_item(i) for i in ("m1", "m2", "m3"))
    assert heat is not None and up is not None and unrated is not None
    assert (heat.title, heat.text) == ("Heat", "LA heist. crime")
    assert (up.title, up.text) == ("Up", "Balloons. family")
    assert (unrated.title, unrated.text) == ("Unrated", "")

    code, out = run(*args)  # ids come from file name and line: stable across runs
    assert code == 0, out
    assert "imported 0 events (3 duplicates skipped)" in out
    assert len(events_in(url)) == 3


def test_csv_without_rating_uses_the_event_type(tmp_path: Path) -> None:
    log = write_csv(tmp_path / "clicks.csv", ["user_id,item_id", "u1,a", "u2,b"])
    url = f"sqlite:///{tmp_path / 's.db'}"
    code, out = run("import", str(log), "--format", "csv", "--store", url, "--event-type", "purchase")
    assert code == 0, out
    assert [s.event.type for s in events_in(url)] == [EventType.purchase, EventType.purchase]


def test_csv_bad_row_names_file_and_line(tmp_path: Path) -> None:
    rows = [*CSV_ROWS[:3], "carol,m2,2024-01-02T00:00:00Z,five,w", CSV_ROWS[3]]
    log = write_csv(tmp_path / "log.csv", rows)
    url = f"sqlite:///{tmp_path / 's.db'}"
    args = ["import", str(log), "--format", "csv", "--store", url, "--user-col", "uid", "--item-col", "iid"]
    code, out = run(*args, "--time-col", "when", "--rating-col", "stars")
    assert code != 0
    assert f"{log}:4:" in squash(out)
    assert "five" in out
    assert events_in(url) == []

    future = write_csv(tmp_path / "when.csv", [CSV_ROWS[0], CSV_ROWS[1], "bob,m1,not-a-date,2,y"])
    code, out = run(args[0], str(future), *args[2:], "--time-col", "when")
    assert code != 0
    assert f"{future}:3:timestamp" in squash(out)


def test_csv_blank_id_names_the_field(tmp_path: Path) -> None:
    log = write_csv(tmp_path / "log.csv", ["user_id,item_id", "u1,a", "  ,b"])
    code, out = run("import", str(log), "--format", "csv", "--store", f"sqlite:///{tmp_path / 's.db'}")
    assert code != 0
    assert f"{log}:3:user_id" in squash(out)


def test_csv_missing_column_is_a_clear_message(tmp_path: Path) -> None:
    log = write_csv(tmp_path / "log.csv", CSV_ROWS)
    url = f"sqlite:///{tmp_path / 's.db'}"
    code, out = run("import", str(log), "--format", "csv", "--store", url, "--user-col", "customer")
    assert code != 0
    assert "no column(s) customer" in out
    assert "uid" in out  # the header is shown, so the fix is obvious

    items = write_csv(tmp_path / "items.csv", ["id,name", "m1,Heat"])
    args = ["import", str(log), "--format", "csv", "--store", url, "--user-col", "uid", "--item-col", "iid"]
    code, out = run(*args, "--items-file", str(items), "--item-title-col", "title")
    assert code != 0
    assert "no column(s) item_id, title" in out
    assert events_in(url) == []


def test_bad_config_is_a_clear_message(tmp_path: Path) -> None:
    log = write_csv(tmp_path / "log.csv", ["user_id,item_id", "u1,a"])
    code, out = run("import", str(log), "--format", "csv", "--config", str(tmp_path / "missing.toml"))
    assert code == 2
    assert "bad configuration" in out and "missing.toml" in squash(out)
