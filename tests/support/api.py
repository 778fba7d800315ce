"""Fixtures for the HTTP API tests: an app on a tmp SQLite store, and real `liverec serve` processes."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from liverec.core.schema import StoredEvent
from liverec.serve.app import create_app
from liverec.serve.engine import Engine
from liverec.settings import ServerSettings, Settings
from liverec.store import open_store

Response = Any  # what TestClient returns: an httpx or httpx2 Response, by Starlette version
SERVER_START_TIMEOUT_S = 30.0  # the CPU is shared; generous but bounded
NOW = time.time()


def make_settings(data_dir: Path, **server: Any) -> Settings:
    """Small limits so that the 413 paths are cheap to reach."""
    limits: dict[str, Any] = {"max_body_bytes": 64 * 1024, "max_batch_events": 50} | server
    return Settings(data_dir=data_dir, server=ServerSettings(**limits))


def event(user: str, item: str, type: str = "click", **fields: Any) -> dict[str, Any]:
    """A JSON event body; a timestamp a little in the past unless given."""
    return {
        "user_id": user,
        "item_id": item,
        "type": type,
        "timestamp": fields.pop("timestamp", NOW - 60),
    } | fields


class Api:
    """A TestClient plus the ways to look behind it: the log (own connection) and the live engine."""

    def __init__(self, client: TestClient, settings: Settings) -> None:
        self.client = client
        self.settings = settings

    @property
    def engine(self) -> Engine:
        engine: Engine = self.client.app.state.engine  # type: ignore[attr-defined]
        return engine

    def post(self, *events: dict[str, Any]) -> Response:
        body: Any = events[0] if len(events) == 1 else {"events": list(events)}
        return self.client.post("/v1/events", json=body)

    def ok(self, *events: dict[str, Any]) -> dict[str, Any]:
        r = self.post(*events)
        assert r.status_code == 200, r.text
        out: dict[str, Any] = r.json()
        return out

    def load(self, events: list[dict[str, Any]]) -> None:
        """Post many events, in batches under the limit."""
        step = self.settings.server.max_batch_events
        for i in range(0, len(events), step):
            out = self.ok(*events[i : i + step])
            assert out["duplicates"] == 0, out

    def recs(self, user: str, k: int = 10, **params: Any) -> dict[str, Any]:
        r = self.client.get(f"/v1/users/{user}/recommendations", params={"k": k, **params})
        assert r.status_code == 200, r.text
        out: dict[str, Any] = r.json()
        return out

    def rec_ids(self, user: str, k: int = 10, **params: Any) -> list[str]:
        return [i["item_id"] for i in self.recs(user, k, **params)["items"]]

    def health(self) -> dict[str, Any]:
        r = self.client.get("/healthz")
        assert r.status_code == 200, r.text
        out: dict[str, Any] = r.json()
        return out

    def log(self) -> list[StoredEvent]:
        """Every event in the log, read through a separate connection to the SQLite file."""
        with open_store(self.settings.store_url) as st:
            return list(st.iter_events())

    def counts(self) -> tuple[int, int]:
        """(events in the log, events applied to live state): both must stay put on a rejection."""
        return len(self.log()), int(self.health()["events"])


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return make_settings(tmp_path / "data")


@pytest.fixture
def api(settings: Settings) -> Iterator[Api]:
    with TestClient(create_app(settings)) as client:  # context manager: the lifespan runs
        yield Api(client, settings)


# -- real servers ---------------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class LiveServer:
    proc: subprocess.Popen[bytes]
    url: str
    data_dir: Path
    log_path: Path

    @property
    def store_url(self) -> str:
        return f"sqlite:///{self.data_dir / 'events.db'}"

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def kill(self) -> None:
        """SIGKILL: no shutdown hooks, no flush; what is durable is all that survives."""
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=30)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.kill()


def start_server(data_dir: Path, log_path: Path, env: dict[str, str] | None = None) -> LiveServer:
    """`liverec serve` on a free port with ``LIVEREC_DATA_DIR=data_dir``; returns once /healthz answers.
    Retried on another port if someone took the free one between our probe and the server's bind."""
    for attempt in range(3):
        try:
            return _start_server(data_dir, log_path, env)
        except PortTaken:
            if attempt == 2:
                raise
    raise AssertionError("unreachable")


class PortTaken(RuntimeError):
    pass


def _start_server(data_dir: Path, log_path: Path, env: dict[str, str] | None) -> LiveServer:
    exe = Path(sys.executable).with_name("liverec")
    assert exe.is_file(), f"console script not installed next to {sys.executable}"
    port = free_port()
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("LIVEREC_")}
    full_env |= {"LIVEREC_DATA_DIR": str(data_dir), "HF_HUB_OFFLINE": "1"} | (env or {})
    with log_path.open("ab") as log:
        proc = subprocess.Popen(
            [str(exe), "serve", "--host", "127.0.0.1", "--port", str(port)],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=full_env,
        )
    server = LiveServer(proc, f"http://127.0.0.1:{port}", data_dir, log_path)
    deadline = time.monotonic() + SERVER_START_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            out = server.output()
            error = PortTaken if "address already in use" in out.lower() else RuntimeError
            raise error(f"liverec serve exited with {proc.returncode}:\n{out}")
        try:
            if httpx.get(f"{server.url}/healthz", timeout=2.0).status_code == 200:
                return server
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    server.kill()
    raise RuntimeError(
        f"liverec serve did not answer /healthz in {SERVER_START_TIMEOUT_S}s:\n{server.output()}"
    )


@pytest.fixture
def live_server(tmp_path: Path) -> Iterator[Any]:
    """A factory for real servers; every one it started is stopped at teardown."""
    started: list[LiveServer] = []

    def factory(data_dir: Path | None = None, env: dict[str, str] | None = None) -> LiveServer:
        server = start_server(data_dir or tmp_path / "server-data", tmp_path / "server.log", env)
        started.append(server)
        return server

    try:
        yield factory
    finally:
        for server in started:
            server.kill()
