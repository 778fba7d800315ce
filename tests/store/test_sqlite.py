"""What the contract cannot say about SQLite: the file settings that make it durable and shareable."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from liverec.core.schema import Event
from liverec.store import StoreError, open_store
from liverec.store.sqlite import SQLiteEventStore

READER = """
import json, sys
from liverec.store import open_store
with open_store(sys.argv[1]) as store:
    print(json.dumps([[s.offset, s.event.event_id] for s in store.read()]))
"""


def ev(eid: str, user: str = "u", item: str = "i") -> Event:
    return Event(event_id=eid, user_id=user, item_id=item, type="click", timestamp=1_700_000_000.0)


def test_wal_mode_and_full_sync(tmp_path: Path) -> None:
    store = SQLiteEventStore(tmp_path / "events.db")
    try:
        assert store._db.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL: fsync every commit
        store.append([ev("a")])
    finally:
        store.close()
    other = sqlite3.connect(tmp_path / "events.db")  # WAL is a property of the file, not the connection
    assert other.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    other.close()


def test_another_process_sees_committed_events_while_the_writer_is_open(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'events.db'}"
    with open_store(url) as store:
        written = store.append([ev(f"e{i}", user=f"u{i % 2}") for i in range(5)]).accepted
        out = subprocess.run(
            [sys.executable, "-c", READER, url], capture_output=True, text=True, timeout=60, check=True
        )
        assert json.loads(out.stdout) == [[s.offset, s.event.event_id] for s in written]


def test_url_forms(tmp_path: Path) -> None:
    with open_store(f"sqlite:///{tmp_path}/nested/dir/events.db") as store:  # parents are created
        store.append([ev("a")])
    assert (tmp_path / "nested" / "dir" / "events.db").is_file()
    with pytest.raises(ValueError, match="sqlite:///"):
        open_store("sqlite://relative.db")


def test_a_file_that_is_not_a_database_is_a_store_error(tmp_path: Path) -> None:
    path = tmp_path / "events.db"
    path.write_bytes(b"this is not an SQLite database, just some bytes" * 100)
    with pytest.raises(StoreError, match="cannot open SQLite store"):
        SQLiteEventStore(path)
    assert path.read_bytes().startswith(b"this is not")  # and it was left alone


def test_a_deleted_user_leaves_no_copy_in_the_db_or_wal_files(tmp_path: Path) -> None:
    """secure_delete zeroes the freed rows and the TRUNCATE checkpoint empties the WAL, so the
    user's id (which every event row of theirs holds) is in neither file afterwards."""
    path = tmp_path / "events.db"
    secret = "deleted-user-7f3a9c"
    with open_store(f"sqlite:///{path}") as store:
        store.append([ev(f"e{i}", user=secret if i % 2 else "keep-me", item=f"i{i % 5}") for i in range(400)])
        files = [path, Path(f"{path}-wal")]
        assert any(secret.encode() in f.read_bytes() for f in files if f.exists())  # it was on disk
        assert store.delete_user(secret) == 200
        for f in files:
            assert not f.exists() or secret.encode() not in f.read_bytes(), f
        assert Path(f"{path}-wal").stat().st_size == 0  # truncated, not only checkpointed
        assert b"keep-me" in path.read_bytes()  # the others are still there
        assert len(store.user_history("keep-me")) == 200
