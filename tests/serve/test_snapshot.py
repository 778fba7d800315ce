"""Snapshots of the folded state (`serve.snapshot`): atomic files that a start trusts only when whole,
of its own store, and not past the log's end; anything else is skipped with a warning."""

from __future__ import annotations

import logging
import random
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from liverec.core.schema import Event
from liverec.serve import snapshot
from liverec.serve.engine import Engine
from liverec.settings import PolicySettings, ServerSettings, Settings, StateSettings
from support.world import wait_until

T0 = 1_700_000_000.0

URL = "sqlite:////tmp/a/events.db"


def parts(n: int) -> dict[str, object]:
    shared = {"u1": np.arange(n)}
    return {"state": shared, "counts": shared, "n": n}  # shared references stay shared


def test_save_then_newest_round_trips_and_keeps_the_newest_two(tmp_path: Path) -> None:
    for offset in (10, 20, 30):
        snapshot.save(tmp_path, URL, offset, deletion_seq=1, parts=parts(offset))
    files = sorted(p.name for p in tmp_path.iterdir())
    assert files == ["snapshot-000000000000020.bin", "snapshot-000000000000030.bin"]
    snap = snapshot.newest(tmp_path, URL, last_offset=30)
    assert snap is not None and (snap.offset, snap.deletion_seq) == (30, 1)
    assert snap.parts["n"] == 30 and snap.parts["state"] is snap.parts["counts"]
    np.testing.assert_array_equal(snap.parts["state"]["u1"], np.arange(30))  # type: ignore[index]


def test_a_corrupt_newest_falls_back_to_the_older_one_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    snapshot.save(tmp_path, URL, 10, 0, parts(10))
    newer = snapshot.save(tmp_path, URL, 20, 0, parts(20))
    data = bytearray(newer.read_bytes())
    data[-5] ^= 0xFF  # one flipped byte in the body
    newer.write_bytes(bytes(data))
    with caplog.at_level(logging.WARNING):
        snap = snapshot.newest(tmp_path, URL, last_offset=20)
    assert snap is not None and snap.offset == 10
    assert "digest mismatch" in caplog.text and newer.name in caplog.text


def test_truncated_garbage_other_store_and_future_offsets_are_all_skipped(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    good = snapshot.save(tmp_path, URL, 10, 0, parts(10), keep=5)
    snapshot.save(tmp_path, "sqlite:////tmp/b/events.db", 11, 0, parts(11), keep=5)  # another log
    truncated = snapshot.save(tmp_path, URL, 12, 0, parts(12), keep=5)
    truncated.write_bytes(truncated.read_bytes()[:-10])
    (tmp_path / "snapshot-000000000000013.bin").write_bytes(b"not json\n\x00\x01")
    snapshot.save(tmp_path, URL, 99, 0, parts(99), keep=5)  # past the log's end (a replaced log)
    with caplog.at_level(logging.WARNING):
        snap = snapshot.newest(tmp_path, URL, last_offset=50)
    assert snap is not None and snap.path == good
    for why in ("past the log's end", "unreadable header", "digest mismatch", "another store"):
        assert why in caplog.text, why


def test_no_directory_or_no_valid_file_means_a_full_replay(tmp_path: Path) -> None:
    assert snapshot.newest(tmp_path / "missing", URL, 10) is None
    (tmp_path / "snapshot-000000000000001.bin").write_bytes(b"")
    assert snapshot.newest(tmp_path, URL, 10) is None


# -- an engine restarting from its snapshot ------------------------------------------------------
def engine_settings(data_dir: Path, **server: Any) -> Settings:
    """Thompson sampling and search on: policy statistics and the search ranker are folded too."""
    return Settings(
        data_dir=data_dir,
        server=ServerSettings(snapshot_every_s=0, **server),
        policy=PolicySettings(name="thompson"),
    )


def workload(n: int, seed: int = 0) -> list[list[Event]]:
    """Batches of served lists with clicks naming them, searches with clicks, and purchases."""
    rng = random.Random(seed)
    items = [f"i{k}" for k in range(40)]
    batches = []
    for b in range(n):
        user, shown, t = f"u{rng.randrange(15)}", rng.sample(items, 3), T0 + 20 * b
        surface = "search" if b % 4 == 0 else None
        ctx = {"request_id": f"r{b}", "policy": "thompson", "propensity": 0.5, "surface": surface}
        evs = [
            Event(user_id=user, item_id=it, type="impression", timestamp=t, context={**ctx, "position": j})
            for j, it in enumerate(shown)
        ]
        j = rng.randrange(3)
        evs.append(Event(user_id=user, item_id=shown[j], type="click", timestamp=t + 1,
                         context={"request_id": f"r{b}", "position": j}))  # fmt: skip
        if rng.random() < 0.3:
            evs.append(Event(user_id=user, item_id=rng.choice(items), type="purchase", timestamp=t + 2))
        batches.append(evs)
    return batches


def fingerprint_of(e: Engine) -> dict[str, Any]:
    """What an engine folded, by item id (rows are internal)."""
    ids, n = e.catalog.ids, len(e.catalog)
    counts: Any = e.recommender.policy.counts  # type: ignore[attr-defined]
    shown, clicked = counts.get(np.arange(n))
    return {
        "users": {u: [ids[r] for r in st.items] for u, st in e.state.users.items()},
        "popularity": dict(zip(ids, e.popularity.counts(n).round(9).tolist(), strict=True)),
        "policy": {ids[r]: (int(shown[r]), int(clicked[r])) for r in range(n) if shown[r]},
        "events": e.state.events_applied,
        "offset": e.state.last_offset,
        "board": {k: dict(v) for k, v in e.dashboard.totals.items()},
        "search": e.search.learner.stats if e.search is not None else None,
    }


def run(data_dir: Path, batches: list[list[Event]], **server: Any) -> dict[str, Any]:
    e = Engine(engine_settings(data_dir, **server)).start(models=False)
    try:
        for evs in batches:
            e.ingest(evs)
        return fingerprint_of(e)
    finally:
        e.close()


def restarted(data_dir: Path, **server: Any) -> tuple[dict[str, Any], int]:
    """A fresh start on the same data: what it folded, and the offset it started replaying after."""
    e = Engine(engine_settings(data_dir, **server)).start(models=False)
    try:
        return fingerprint_of(e), e.snapshot_offset
    finally:
        e.close()


def test_a_restart_from_the_snapshot_plus_the_tail_equals_the_full_replay(tmp_path: Path) -> None:
    batches = workload(60)
    run(tmp_path, batches[:40])  # a clean shutdown writes the snapshot
    assert snapshot.newest(tmp_path / "snapshots", f"sqlite:///{tmp_path / 'events.db'}", 10**9)
    live = run(tmp_path, batches[40:], snapshots=False)  # the tail, not snapshotted
    from_snapshot, loaded_at = restarted(tmp_path)
    full, none = restarted(tmp_path, snapshots=False)
    assert loaded_at > 0 and none == 0
    assert from_snapshot == full == live
    assert sum(s for s, _ in full["policy"].values()) > 0 and full["search"] is not None


def test_a_corrupt_snapshot_or_a_later_deletion_means_the_full_replay(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    batches = workload(30)
    run(tmp_path, batches)
    (path,) = (tmp_path / "snapshots").glob("snapshot-*.bin")
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    full, _ = restarted(tmp_path, snapshots=False)
    with caplog.at_level(logging.WARNING):
        again, loaded_at = restarted(tmp_path)  # ... and writes a good snapshot at shutdown
    assert loaded_at == 0 and again == full and "digest mismatch" in caplog.text

    e = Engine(engine_settings(tmp_path, snapshots=False)).start(models=False)
    try:
        assert e.delete_user("u3")["events"] > 0  # after the (now good) snapshot
    finally:
        e.close()
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        after, loaded_at = restarted(tmp_path)
    assert loaded_at == 0 and "u3" not in after["users"] and "a user was deleted since" in caplog.text


def test_changed_settings_are_not_restored_from_a_snapshot(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    run(tmp_path, workload(10))
    e = Engine(engine_settings(tmp_path).model_copy(update={"state": StateSettings(max_sequence=3)}))
    with caplog.at_level(logging.WARNING):
        e.start(models=False)
    try:
        assert e.snapshot_offset == 0 and "settings that shape live state changed" in caplog.text
        assert max(len(st.items) for st in e.state.users.values()) <= 3
    finally:
        e.close()


def test_periodic_snapshots_follow_new_events(tmp_path: Path) -> None:
    e = Engine(engine_settings(tmp_path).model_copy(
        update={"server": ServerSettings(snapshot_every_s=0.1, snapshot_min_events=5)}
    )).start(models=False)  # fmt: skip
    try:
        e.ingest(workload(3)[0] + workload(3)[1])
        wait_until(lambda: e.snapshot_offset == e.state.last_offset, "a periodic snapshot")
        assert e.snapshotter is not None and e.snapshotter.taken >= 1
    finally:
        e.close()
