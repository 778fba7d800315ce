"""`ModelRegistry`: versioned, self-describing model snapshots on a filesystem, and which one is live.

Layout::

    registry/
      versions/v000001/{weights.pt, meta.json, vocab.json}
      LIVE            {"version": "v000003", "history": ["v000001"], "updated_at": ...}

A snapshot is written into a hidden temporary folder, fsynced, then renamed into place: readers
never see a half-written version. LIVE is replaced atomically the same way. Weights are loaded
with ``torch.load(weights_only=True)``: a snapshot cannot run code when it is read.
"""

from __future__ import annotations

import json
import os
import pickle
import shutil
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from liverec.model.transformer import SASRec, TransformerConfig
from liverec.store.base import Deletion

VERSION_PREFIX = "v"


class RegistryError(RuntimeError):
    """A version is missing or unreadable, or there is nothing to roll back to."""


@dataclass
class Snapshot:
    version: str
    model: SASRec
    vocab: list[str]  # item id of each catalog row the model was trained with (model index = row + 1)
    meta: dict[str, Any]


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_json(path: Path, obj: Any) -> None:
    with open(path, "w") as fh:
        json.dump(obj, fh, indent=1, sort_keys=True)
        fh.flush()
        os.fsync(fh.fileno())


class ModelRegistry:
    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.versions_dir = self.root / "versions"
        self.live_file = self.root / "LIVE"

    # -- writing ----------------------------------------------------------------------------------
    def save(
        self,
        model: SASRec,
        vocab: list[str],
        metrics: dict[str, Any] | None = None,
        parent: str | None = None,
        extra: dict[str, Any] | None = None,
    ) -> str:
        """Write a new version atomically and return its name. It is not live until `promote`."""
        if len(vocab) != model.config.n_items:
            raise ValueError(f"vocab has {len(vocab)} ids but the model has {model.config.n_items} items")
        self.versions_dir.mkdir(parents=True, exist_ok=True)
        tmp = self.versions_dir / f".tmp-{uuid.uuid4().hex}"
        tmp.mkdir()
        try:
            with open(tmp / "weights.pt", "wb") as fh:
                torch.save(model.state_dict(), fh)
                fh.flush()
                os.fsync(fh.fileno())
            _write_json(tmp / "vocab.json", vocab)
            meta = {
                "kind": "transformer",
                "config": model.config.to_dict(),
                "metrics": metrics or {},
                "parent": parent,
                "created_at": time.time(),
                **(extra or {}),
            }
            for _ in range(100):  # another writer may take the same number: retry with the next one
                version = self._next_version()
                _write_json(tmp / "meta.json", {**meta, "version": version})
                _fsync_dir(tmp)
                try:
                    os.rename(tmp, self.versions_dir / version)
                except OSError:
                    continue
                _fsync_dir(self.versions_dir)
                return version
            raise RegistryError("could not allocate a version number")
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)

    def _next_version(self) -> str:
        nums = [int(v[len(VERSION_PREFIX) :]) for v in self.list_versions()]
        return f"{VERSION_PREFIX}{(max(nums) + 1) if nums else 1:06d}"

    def promote(self, version: str) -> None:
        """Make ``version`` live; the previously live version goes on the rollback history."""
        self.meta(version)  # must exist and be readable
        state = self._state()
        history = list(state.get("history", []))
        current = state.get("version")
        if current == version:
            return
        if current:
            history.append(current)
        self._write_state({"version": version, "history": history[-100:]})

    def rollback(self) -> str:
        """Make the previously live version live again; returns it."""
        state = self._state()
        history = list(state.get("history", []))
        if not history:
            raise RegistryError("nothing to roll back to: no earlier live version")
        previous = history.pop()
        self._write_state({"version": previous, "history": history})
        return previous

    def delete(self, version: str) -> None:
        """Remove a version that is neither live nor on the rollback history."""
        if version == self.live() or version in self.history():
            raise RegistryError(f"{version} is live or on the rollback history; not deleting it")
        folder = self.versions_dir / version
        if folder.is_dir():
            trash = self.versions_dir / f".tmp-del-{uuid.uuid4().hex}"
            os.rename(folder, trash)  # atomic: readers see the version or nothing
            shutil.rmtree(trash, ignore_errors=True)

    def purge(self, versions: list[str]) -> list[str]:
        """Delete versions for good, even from the rollback history (a deleted user's events are in
        them, so no rollback may bring them back); never the live one. Returns those deleted."""
        live, doomed = self.live(), set(versions)
        if live in doomed:
            raise RegistryError(f"{live} is live; promote a clean version before purging it")
        history = self.history()
        if doomed & set(history):
            self._write_state({"version": live, "history": [v for v in history if v not in doomed]})
        gone = [v for v in versions if (self.versions_dir / v).is_dir()]
        for v in gone:
            self.delete(v)
        return gone

    def _write_state(self, state: dict[str, Any]) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        tmp = self.root / f".LIVE-{uuid.uuid4().hex}"
        _write_json(tmp, {**state, "updated_at": time.time()})
        os.replace(tmp, self.live_file)
        _fsync_dir(self.root)

    # -- reading ----------------------------------------------------------------------------------
    def _state(self) -> dict[str, Any]:
        try:
            with open(self.live_file) as fh:
                state: dict[str, Any] = json.load(fh)
                return state
        except FileNotFoundError:
            return {}

    def live(self) -> str | None:
        version = self._state().get("version")
        return str(version) if version else None

    def history(self) -> list[str]:
        return [str(v) for v in self._state().get("history", [])]

    def list_versions(self) -> list[str]:
        if not self.versions_dir.is_dir():
            return []
        names = [
            p.name for p in self.versions_dir.iterdir() if p.is_dir() and p.name.startswith(VERSION_PREFIX)
        ]
        return sorted(names)

    def meta(self, version: str) -> dict[str, Any]:
        path = self.versions_dir / version / "meta.json"
        try:
            with open(path) as fh:
                meta: dict[str, Any] = json.load(fh)
                return meta
        except FileNotFoundError:
            raise RegistryError(f"no version {version!r} in {self.root}") from None
        except (OSError, ValueError) as exc:  # ValueError: not JSON (json.JSONDecodeError)
            raise RegistryError(f"version {version!r} in {self.root} is unreadable: {exc}") from exc

    def affected_versions(self, deletions: Sequence[Deletion]) -> dict[str, list[int]]:
        """Versions trained on a deleted user's events -> the deletion ``seq``s concerned. A version
        learned every offset from ``trained_from_offset`` (default 1: online versions inherit their
        parents' weights) up to ``trainer_offset``; it is affected by a deletion that removed events
        at or above that start, unless it was retrained after the deletion (``deletions_through`` >=
        its seq). Conservative: a user's lowest offset is not recorded."""
        out: dict[str, list[int]] = {}
        for version in self.list_versions():
            try:
                meta = self.meta(version)
            except RegistryError:
                continue
            start, through = int(meta.get("trained_from_offset", 1)), int(meta.get("deletions_through", 0))
            hits = [d.seq for d in deletions if d.events and d.seq > through and d.max_offset >= start]
            if hits:
                out[version] = hits
        return out

    def load(self, version: str | None = None) -> Snapshot:
        """A version's model (eval mode), vocab and metadata; the live one by default."""
        version = version or self.live()
        if version is None:
            raise RegistryError(f"no live model in {self.root}; train one with `liverec train`")
        meta = self.meta(version)
        folder = self.versions_dir / version
        try:
            with open(folder / "vocab.json") as fh:
                vocab = json.load(fh)
            model = SASRec(TransformerConfig.from_dict(meta["config"]))
            state = torch.load(folder / "weights.pt", map_location="cpu", weights_only=True)
            model.load_state_dict(state)
        # every way a snapshot can be bad (missing or truncated files, bad JSON or config, a pickle
        # that is not plain weights, wrong shapes) is one error, so that callers can keep serving
        except (OSError, ValueError, KeyError, TypeError, RuntimeError, pickle.UnpicklingError) as exc:
            raise RegistryError(f"version {version!r} in {self.root} is unreadable: {exc}") from exc
        model.eval()
        return Snapshot(version=version, model=model, vocab=vocab, meta=meta)
