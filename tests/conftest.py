"""Service fixtures: the real Postgres and Redis, started here if they are not running.

Each test gets its own namespace (a fresh Postgres schema, a fresh Redis key prefix), dropped after
the test, so tests never see each other's data and can run against a shared server.
"""

from __future__ import annotations

import os
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
import redis
import torch

# Shared fixtures and helpers: the tiny trained world (support/world.py) and the HTTP API (support/api.py).
pytest_plugins = ["support.world", "support.api"]

PG_HOST, PG_PORT, PG_DB = "127.0.0.1", 5432, "test"
PG_USERS = ("root", "postgres")
REDIS_URL = "redis://127.0.0.1:6379/0"
START_TIMEOUT_S = 60.0
REDIS_START = [
    "redis-server", "--daemonize", "yes", "--bind", "127.0.0.1", "-::1", "--port", "6379",
    "--save", "", "--appendonly", "no", "--dir", "/var/lib/redis", "--logfile", "/var/log/redis/ci.log",
]  # fmt: skip


def _pg_url(user: str) -> str:
    return f"postgresql://{user}@{PG_HOST}:{PG_PORT}/{PG_DB}"


def _pg_try() -> tuple[str | None, str]:
    """The first URL that connects, else None and the last error."""
    error = ""
    for user in PG_USERS:
        try:
            with psycopg.connect(_pg_url(user), connect_timeout=3) as conn:
                conn.execute("SELECT 1")
            return _pg_url(user), ""
        except psycopg.OperationalError as exc:
            error = str(exc)
    return None, error


def _start_postgres() -> None:
    versions = sorted(
        os.listdir("/etc/postgresql"), key=lambda v: float(v) if v.replace(".", "").isdigit() else 0
    )
    cmd = ["pg_ctlcluster", "--skip-systemctl-redirect", versions[-1], "main", "start"]
    subprocess.run(cmd, check=False, capture_output=True, timeout=START_TIMEOUT_S)


def _start_redis() -> None:
    Path("/var/lib/redis").mkdir(parents=True, exist_ok=True)
    Path("/var/log/redis").mkdir(parents=True, exist_ok=True)
    subprocess.run(REDIS_START, check=False, capture_output=True, timeout=START_TIMEOUT_S)


def _redis_up() -> bool:
    try:
        return bool(redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2).ping())
    except redis.RedisError:
        return False


@pytest.fixture(scope="session")
def postgres_url() -> str:
    """URL of the test database on a running Postgres (started if needed)."""
    url, error = _pg_try()
    if url is None:
        _start_postgres()
        deadline = time.monotonic() + START_TIMEOUT_S
        while url is None and time.monotonic() < deadline:
            time.sleep(0.5)
            url, error = _pg_try()
    if url is None:
        raise RuntimeError(f"Postgres at {PG_HOST}:{PG_PORT}/{PG_DB} did not come up: {error}")
    return url


@pytest.fixture(scope="session")
def redis_url() -> str:
    """URL of a running Redis (started if needed)."""
    if not _redis_up():
        _start_redis()
        deadline = time.monotonic() + START_TIMEOUT_S
        while not _redis_up():
            if time.monotonic() > deadline:
                raise RuntimeError(f"Redis at {REDIS_URL} did not come up")
            time.sleep(0.2)
    return REDIS_URL


@pytest.fixture
def postgres_store_url(postgres_url: str) -> Iterator[str]:
    """A store URL with a schema of its own, dropped after the test."""
    schema = f"t_{uuid.uuid4().hex[:16]}"
    yield f"{postgres_url}?schema={schema}"
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute("SET lock_timeout = '30s'")  # never hang the suite on a store left open
        conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


@pytest.fixture
def redis_store_url(redis_url: str) -> Iterator[str]:
    """A store URL with a key prefix of its own, whose keys are deleted after the test."""
    prefix = f"t{uuid.uuid4().hex[:16]}"
    yield f"{redis_url}?prefix={prefix}"
    client = redis.Redis.from_url(redis_url)
    keys = list(client.scan_iter(match=f"{{{prefix}}}:*", count=1000))
    for at in range(0, len(keys), 1000):
        client.delete(*keys[at : at + 1000])
    client.close()


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The developer's LIVEREC_* variables must not leak in; the text encoder stays offline; torch runs
    on one thread (tiny models are fastest so on a shared CPU), restored afterwards."""
    for name in list(os.environ):
        if name.startswith("LIVEREC_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
