"""The edges a new user hits first: `--store` given a plain file path (or a folder, or a file that is
no SQLite database), `import DIR --format csv`, the same CSV column options on every command that
reads `--data ... --format csv`, and `liverec train`'s time estimate."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from liverec.cli import app
from liverec.cli.common import CsvOptions
from liverec.cli.train import time_left
from liverec.store import open_store
from liverec.trainer.offline import EpochLog

# the interface: scripts use these names, so every CSV-reading command has all of them
CSV_FLAGS = {
    "--user-col", "--item-col", "--time-col", "--rating-col", "--type-col", "--event-type", "--items-file",
    "--item-id-col", "--item-title-col", "--item-text-cols", "--item-tags-col", "--delimiter",
}  # fmt: skip
CSV_COMMANDS = (["import"], ["evaluate", "offline"], ["evaluate", "prequential"])


def run(*args: str) -> tuple[int, str]:
    """Exit code and all output, rich's wrapping undone; an exception other than an exit is a failure
    (a user would have seen a traceback)."""
    result = CliRunner().invoke(app, list(args))
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, " ".join(result.output.split())


def csv_log(path: Path, users: int = 8, per_user: int = 6) -> Path:
    """A CSV with unusual column names and a ';' delimiter: who;what;when."""
    rows = [
        f"u{u};i{(u + j) % 10};{1_700_000_000 + 60 * (u * per_user + j)}"
        for u in range(users)
        for j in range(per_user)
    ]
    path.write_text("who;what;when\n" + "\n".join(rows) + "\n")
    return path


def command_flags(*names: str) -> set[str]:
    """The long flags of the command ``names`` (typer ships its own click: no isinstance checks)."""
    cmd: Any = typer.main.get_command(app)
    for name in names:
        cmd = cmd.get_command(None, name)
        assert cmd is not None, names
    return {opt for p in cmd.params for opt in p.opts if opt.startswith("--")}


@pytest.mark.parametrize("names", CSV_COMMANDS, ids=" ".join)
def test_every_csv_command_has_the_same_column_options(names: list[str]) -> None:
    assert command_flags(*names) >= CSV_FLAGS
    assert {f"--{f.replace('_', '-')}" for f in CsvOptions.__dataclass_fields__} == CSV_FLAGS


# -- --store -----------------------------------------------------------------------------------------
def test_store_accepts_a_plain_file_path(tmp_path: Path) -> None:
    log = csv_log(tmp_path / "log.csv")
    db = tmp_path / "new" / "events.db"
    code, out = run("import", str(log), "--format", "csv", "--delimiter", ";", "--user-col", "who",
                    "--item-col", "what", "--time-col", "when", "--store", str(db))  # fmt: skip
    assert code == 0, out
    assert "imported 48 events" in out
    with open_store(str(db)) as st, open_store(f"sqlite:///{db}") as same:
        assert st.count_events() == same.count_events() == 48


def test_store_folder_or_foreign_file_is_a_clear_error(tmp_path: Path) -> None:
    log = csv_log(tmp_path / "log.csv")
    args = [
        "import",
        str(log),
        "--format",
        "csv",
        "--delimiter",
        ";",
        "--user-col",
        "who",
        "--item-col",
        "what",
    ]
    folder = tmp_path / "data"
    folder.mkdir()
    code, out = run(*args, "--store", str(folder))
    assert code == 2 and "is a folder" in out and "SQLite file" in out, out
    code, out = run(*args, "--store", f"sqlite:///{folder}")
    assert code == 2 and "is a folder" in out, out
    code, out = run(*args, "--store", str(log))  # a CSV is no store
    assert code == 2 and "is not a SQLite database" in out, out
    code, out = run(*args, "--store", "mongodb://x")
    assert code == 2 and "unknown store URL" in out, out


# -- import: what a folder or a file is taken for ------------------------------------------------------
def test_csv_format_given_a_folder_says_what_is_expected(tmp_path: Path) -> None:
    folder = tmp_path / "ml"
    folder.mkdir()
    code, out = run("import", str(folder), "--format", "csv", "--store", str(tmp_path / "e.db"))
    assert code == 2 and "is a folder" in out and "--format csv expects one CSV file" in out, out
    assert "--format movielens" in out
    code, out = run("import", str(csv_log(tmp_path / "log.csv")), "--store", str(tmp_path / "e.db"))
    assert code == 2 and "--format movielens expects a MovieLens folder" in out and "--format csv" in out, out


def test_unknown_event_type_lists_the_valid_ones(tmp_path: Path) -> None:
    log = csv_log(tmp_path / "log.csv")
    code, out = run("import", str(log), "--format", "csv", "--delimiter", ";", "--user-col", "who",
                    "--item-col", "what", "--event-type", "clik",
                    "--store", str(tmp_path / "e.db"))  # fmt: skip
    assert code == 2 and "'clik'" in out and "click" in out, out


# -- evaluate reads the same CSVs ----------------------------------------------------------------------
def test_evaluate_offline_reads_a_csv_with_renamed_columns(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LIVEREC_DATA_DIR", str(tmp_path / "data"))
    log = csv_log(tmp_path / "log.csv")
    code, out = run("evaluate", "offline", "--data", str(log), "--format", "csv", "--no-baselines",
                    "--delimiter", ";", "--user-col", "who", "--item-col", "what",
                    "--time-col", "when")  # fmt: skip
    assert code == 0, out
    report = json.loads(out[out.index("{") :])
    assert report["users"] == 8 and report["items"] == 10
    code, out = run("evaluate", "offline", "--data", str(log), "--format", "csv", "--no-baselines",
                    "--delimiter", ";")  # fmt: skip
    assert code == 2 and "no column(s) user_id, item_id" in out, out


def test_evaluate_prequential_passes_the_column_options_to_the_reader(tmp_path: Path) -> None:
    """(Only the reading: a column option that names no column is the reader's error, before any
    training.)"""
    log = csv_log(tmp_path / "log.csv")
    code, out = run("evaluate", "prequential", "--data", str(log), "--format", "csv", "--delimiter", ";",
                    "--user-col", "who", "--item-col", "nope", "--no-text")  # fmt: skip
    assert code == 2 and "no column(s) nope" in out and "who, what, when" in out, out


# -- train's estimate ------------------------------------------------------------------------------------
def epoch(n: int, elapsed: float, epochs: int = 200, stops_by: int = 0) -> EpochLog:
    return EpochLog(n, 1.0, elapsed / n, 1000.0, epochs=epochs, elapsed_s=elapsed, stops_by=stops_by)


def test_time_left_bounds_and_early_stop_estimate() -> None:
    assert time_left(epoch(10, 100.0, stops_by=20)) == "left: ≤31m40s, ~1m40s if val stops improving"
    assert time_left(epoch(10, 100.0, epochs=12)) == "left: ~20s"
    assert time_left(epoch(10, 100.0), max_seconds=130.0) == "left: ~30s"  # the time budget ends it first
    assert time_left(epoch(12, 100.0, epochs=12)) == "left: 0s"
