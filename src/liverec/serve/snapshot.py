"""Snapshots of what a server folds from the log, so a restart replays only the tail.

A snapshot is everything `Engine` derives from the log (catalog rows, live user state, popularity and
co-occurrence counts, rules counts, the serving filter, policy statistics and open impressions, the
search ranker's learning), pickled together (shared references stay shared) with the log offset and
deletion sequence it covers, taken under the engine's writer lock so nothing lands in between.

The file is written beside the others as a temporary, fsynced, then renamed: a reader sees a whole
snapshot or none. A header line (JSON) names its format, offset, store and a SHA-256 of the body; a
start takes the newest one whose header and digest check out and whose store and offset fit the log,
and falls back to an older one, then to the full replay, with a warning for each it skips.

Pickle runs code on load: a snapshot is as trusted as the registry's checkpoints, written by the
server into its own data directory; never point ``snapshot_dir`` at files others can write.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import pickle
import threading
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from liverec.store.base import Deletion

if TYPE_CHECKING:
    from liverec.serve.engine import Engine

log = logging.getLogger(__name__)

FORMAT = 1
PREFIX, SUFFIX = "snapshot-", ".bin"


@dataclass(frozen=True)
class Snapshot:
    offset: int  # the last log offset folded into ``parts``
    deletion_seq: int  # the last deletion record honoured in ``parts``
    created_at: float
    parts: dict[str, Any]
    path: Path


def store_key(url: str) -> str:
    """Which log a snapshot belongs to: a digest of the store URL (no credentials on disk)."""
    return hashlib.sha256(url.encode()).hexdigest()[:16]


def save(
    directory: Path, store_url: str, offset: int, deletion_seq: int, parts: dict[str, Any], keep: int = 2
) -> Path:
    """Write a snapshot atomically; keeps the newest ``keep``. The caller holds the engine's locks
    while ``parts`` is pickled (here), so the parts and ``offset`` agree."""
    directory.mkdir(parents=True, exist_ok=True)
    body = pickle.dumps(parts, protocol=pickle.HIGHEST_PROTOCOL)
    header = {
        "format": FORMAT,
        "offset": offset,
        "deletion_seq": deletion_seq,
        "store": store_key(store_url),
        "created_at": time.time(),
        "bytes": len(body),
        "sha256": hashlib.sha256(body).hexdigest(),
    }
    path = directory / f"{PREFIX}{offset:015d}{SUFFIX}"
    tmp = directory / f".{path.name}.{uuid.uuid4().hex}"
    with open(tmp, "wb") as f:
        f.write(json.dumps(header).encode() + b"\n")
        f.write(body)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)  # the rename itself survives a crash
    finally:
        os.close(fd)
    for old in sorted(directory.glob(f"{PREFIX}*{SUFFIX}"))[:-keep]:
        old.unlink(missing_ok=True)
    for stray in directory.glob(f".{PREFIX}*"):  # temporaries of a crashed write
        if time.time() - stray.stat().st_mtime > 60:
            stray.unlink(missing_ok=True)
    return path


def header_of(path: Path) -> dict[str, Any]:
    """A snapshot file's header line; ValueError when it is not one of ours."""
    with open(path, "rb") as f:
        line = f.readline(4096)
    try:
        header = json.loads(line)
    except ValueError:
        raise ValueError("unreadable header") from None
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise ValueError(f"not a format-{FORMAT} snapshot header")
    return header


def read(path: Path) -> Snapshot:
    """One snapshot file, checked; ValueError says what is wrong with it."""
    header = header_of(path)
    with open(path, "rb") as f:
        f.readline(4096)
        body = f.read()
    if len(body) != header.get("bytes") or hashlib.sha256(body).hexdigest() != header.get("sha256"):
        raise ValueError("truncated or corrupt (digest mismatch)")
    parts = pickle.loads(body)  # our own file, its digest checked (see the module docstring)
    return Snapshot(
        int(header["offset"]), int(header["deletion_seq"]), float(header["created_at"]), parts, path
    )


def newest(directory: Path, store_url: str, last_offset: int) -> Snapshot | None:
    """The newest valid snapshot of this store that the log still covers (its offset not past the
    log's end: a snapshot of a newer, since-replaced log must not be trusted); None = full replay."""
    if not directory.is_dir():
        return None
    key = store_key(store_url)
    for path in sorted(directory.glob(f"{PREFIX}*{SUFFIX}"), reverse=True):
        try:
            header = header_of(path)
            if header.get("store") != key:
                raise ValueError("taken of another store")
            if int(header.get("offset", -1)) > last_offset:
                raise ValueError(f"covers offset {header.get('offset')}, past the log's end {last_offset}")
            return read(path)
        except (OSError, ValueError, pickle.UnpicklingError, EOFError, AttributeError, ImportError) as exc:
            log.warning(
                "snapshot %s skipped: %s; trying an older one, else replaying the whole log", path.name, exc
            )
    return None


# -- the engine's side: what is snapshotted, and putting it back ---------------------------------
# The settings that shape what folding builds: a snapshot taken under others is not used.
FOLD_SETTINGS = ("rewards", "state", "popularity", "rules", "filters", "policy", "join", "search")


def fingerprint(engine: Engine) -> str:
    s = engine.settings
    text = json.dumps(
        {name: getattr(s, name).model_dump(mode="json") for name in FOLD_SETTINGS}, sort_keys=True
    )
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def directory(engine: Engine) -> Path:
    server = engine.settings.server
    return server.snapshot_dir or engine.settings.data_dir / "snapshots"


def take(engine: Engine) -> Path:
    """Snapshot everything the engine folds (the caller holds its writer and state locks)."""
    search = engine.search.fold_state() if engine.search is not None else None
    parts = {
        "settings": fingerprint(engine),
        "catalog": engine.catalog,
        "state": engine.state,
        "popularity": engine.popularity,
        "rules": engine.rules,
        "filter": engine.filter,
        "held": engine.held,
        "policy": engine.recommender.policy,
        "feedback": engine.feedback,
        "dashboard": engine.dashboard,
        "search": search,
    }
    path = save(directory(engine), engine.store.url, engine.state.last_offset, engine.deletion_seq, parts)
    engine.snapshot_offset = engine.state.last_offset
    return path


def restore(engine: Engine, last_offset: int, deletions: Sequence[Deletion]) -> bool:
    """Adopt the newest usable snapshot before the log's tail is replayed; False = replay it all.
    A snapshot is not used when the settings that shape folding changed, or when a user was deleted
    after it (their events are gone from the log, but not from the snapshot)."""
    snap = newest(directory(engine), engine.store.url, last_offset)
    if snap is None:
        return False
    why = None
    if snap.parts.get("settings") != fingerprint(engine):
        why = "the settings that shape live state changed since"
    elif any(d.seq > snap.deletion_seq for d in deletions):
        why = "a user was deleted since"
    elif (engine.search is None) != (snap.parts.get("search") is None):
        why = "search was switched on or off since"
    if why:
        log.warning("snapshot %s not used: %s; replaying the whole log", snap.path.name, why)
        return False
    adopt(engine, snap.parts)
    engine.snapshot_offset, engine.deletion_seq = snap.offset, snap.deletion_seq
    log.info("loaded snapshot %s (offset %d); replaying the log after it", snap.path.name, snap.offset)
    return True


def adopt(engine: Engine, parts: dict[str, Any]) -> None:
    """Put a snapshot's objects in place of the fresh ones and point their users at them (nothing
    has read the fresh ones yet: this runs first thing in `Engine.start`)."""
    engine.catalog, engine.state = parts["catalog"], parts["state"]
    engine.popularity = parts["popularity"]
    engine.models = [engine.popularity]
    engine.rules, engine.filter, engine.held = parts["rules"], parts["filter"], parts["held"]
    engine.feedback, engine.dashboard = parts["feedback"], parts["dashboard"]
    rec = engine.recommender
    rec.catalog, rec.state, rec.model, rec.policy = (
        engine.catalog,
        engine.state,
        engine.popularity,
        parts["policy"],
    )
    if engine.search is not None:
        engine.search.catalog = engine.catalog
        engine.search.restore_fold_state(parts["search"])
    engine.__dict__.pop("explainer", None)  # a cached property built on the fresh catalog


class Periodic:
    """Snapshots every ``every_s`` seconds once ``min_events`` new events were folded (a thread)."""

    def __init__(self, engine: Engine, every_s: float, min_events: int) -> None:
        self.engine, self.every_s, self.min_events = engine, every_s, min_events
        self.taken = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="liverec-snapshots", daemon=True)

    def start(self) -> Periodic:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=60)

    def _run(self) -> None:
        engine = self.engine
        while not self._stop.wait(self.every_s):
            if engine.state.last_offset - engine.snapshot_offset < max(self.min_events, 1):
                continue
            try:
                engine.save_snapshot()
                self.taken += 1
            except Exception:  # a failed snapshot costs a longer restart, never the server
                log.exception("periodic snapshot failed")
