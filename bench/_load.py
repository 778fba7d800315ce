"""Shared pieces of the HTTP benchmarks: a `liverec serve` subprocess, a lean HTTP/1.1 load generator,
and a synthetic world with co-occurrence structure.

The client is raw ``asyncio`` streams on keep-alive connections with Content-Length framing (chunked
is understood too), on uvloop when it is installed: a general-purpose client such as httpx spends
~0.5 ms per request, which on a 2-core machine would measure the client instead of the server.

API (keep it small; freshness and accuracy benches reuse it):

- ``live_server(...)``: context manager; starts ``liverec serve`` on a free 127.0.0.1 port with a
  fresh ``LIVEREC_DATA_DIR``, waits for ``/healthz``, yields the base URL, always kills it on exit.
- ``server_cpu_s(url)``: CPU seconds used so far by the server behind ``url`` (user + system).
- ``Connection``: one keep-alive connection; ``await conn.request(method, path, body)``.
- ``closed_loop(...)`` / ``open_loop(...)``: bounded load loops returning a ``LoadResult``.
- ``World``: items in taste clusters and users who like a few clusters; ``world.events(...)``.
- ``run(coro)``: ``asyncio`` runner on uvloop if available; ``emit(obj)``: the one JSON object on stdout.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import math
import os
import random
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Coroutine, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

import orjson

T = TypeVar("T")
Request = tuple[str, str, bytes | None]  # (method, path, body)
MakeRequest = Callable[[int], Request]
OnResponse = Callable[[int, "Response"], None]

# -- output --------------------------------------------------------------------------------------


def log(message: str) -> None:
    """Progress goes to stderr: stdout carries exactly one JSON object."""
    print(message, file=sys.stderr, flush=True)


def emit(obj: dict[str, Any]) -> None:
    """Print the benchmark's single JSON object on stdout, with the load average at the end."""
    if isinstance(obj.get("machine"), dict):
        obj["machine"]["loadavg_1m_at_end"] = round(os.getloadavg()[0], 2)
    sys.stdout.write(orjson.dumps(obj, option=orjson.OPT_INDENT_2 | orjson.OPT_SERIALIZE_NUMPY).decode())
    sys.stdout.write("\n")
    sys.stdout.flush()


def run(coro: Coroutine[Any, Any, T]) -> T:
    """Run ``coro`` on uvloop when available (the client's per-request cost matters on 2 cores).

    SIGTERM cancels it like Ctrl-C does, so ``finally`` blocks (stopping the server) still run.
    """
    try:
        import uvloop

        factory: Callable[[], asyncio.AbstractEventLoop] | None = uvloop.new_event_loop
    except ImportError:
        factory = None

    async def main() -> T:
        task = asyncio.current_task()
        if task is not None:
            with contextlib.suppress(NotImplementedError, RuntimeError):
                asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
        return await coro

    with asyncio.Runner(loop_factory=factory) as runner:
        try:
            return runner.run(main())
        except asyncio.CancelledError:
            raise SystemExit(128 + signal.SIGTERM) from None


def client_loop_name() -> str:
    try:
        import uvloop  # noqa: F401
    except ImportError:
        return "asyncio"
    return "uvloop"


def process_cpu_s() -> float:
    """CPU seconds (user + system) of this process: shows whether the client was the bottleneck."""
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def machine() -> dict[str, Any]:
    """What the figures were measured on; load average says whether the machine was shared."""
    return {
        "cpus": os.cpu_count(),
        "loadavg_1m_at_start": round(os.getloadavg()[0], 2),
        "python": sys.version.split()[0],
    }


def fs_type(path: Path) -> str:
    """Filesystem type holding ``path`` (Linux): fsync on tmpfs is free, so durability figures lie there."""
    best, kind = "", "unknown"
    try:
        real = str(path.resolve())
        for line in Path("/proc/mounts").read_text().splitlines():
            parts = line.split()
            mount = parts[1]
            if (real == mount or real.startswith(mount.rstrip("/") + "/")) and len(mount) >= len(best):
                best, kind = mount, parts[2]
    except OSError:
        pass
    return kind


# -- server subprocess -----------------------------------------------------------------------------

_PIDS: dict[str, int] = {}  # base URL -> server pid, for server_cpu_s


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def liverec_command() -> list[str]:
    exe = Path(sys.executable).parent / "liverec"
    if exe.exists():
        return [str(exe)]
    found = shutil.which("liverec")
    if found:
        return [found]
    return [sys.executable, "-c", "from liverec.cli import app; app()"]


def liverec_train(root: Path, epochs: int, text: bool, env: dict[str, str]) -> str:
    """Run ``liverec train --epochs N --promote always`` on the data dir ``root``; returns its output
    (stdout + stderr), raises with it when training fails."""
    cmd = [*liverec_command(), "train", "--epochs", str(epochs), "--promote", "always"]
    cmd += [] if text else ["--no-text"]
    done = subprocess.run(cmd, env=env, cwd=root, capture_output=True, text=True, timeout=3_600)
    if done.returncode != 0:
        raise RuntimeError(f"liverec train failed:\n{done.stdout}\n{done.stderr}")
    return done.stdout + done.stderr


@contextlib.contextmanager
def live_server(
    data_dir: Path | None = None,
    *,
    env: dict[str, str] | None = None,
    args: Sequence[str] = (),
    startup_timeout_s: float = 120.0,
) -> Iterator[str]:
    """Run ``liverec serve`` on a free 127.0.0.1 port; yield ``http://127.0.0.1:PORT``.

    ``data_dir`` defaults to a fresh temporary directory (removed afterwards). Inherited
    ``LIVEREC_*`` variables are dropped so a developer's config cannot skew the figures; pass
    overrides in ``env``. The server is stopped (SIGTERM, then SIGKILL) however the block exits.
    """
    owned = data_dir is None
    root = Path(tempfile.mkdtemp(prefix="liverec-bench-")) if data_dir is None else data_dir
    root.mkdir(parents=True, exist_ok=True)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    child_env = {k: v for k, v in os.environ.items() if not k.startswith("LIVEREC_")}
    child_env.update(
        {"LIVEREC_DATA_DIR": str(root), "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    )
    child_env.update(env or {})
    log_path = root / "server.log"
    cmd = [*liverec_command(), "serve", "--host", "127.0.0.1", "--port", str(port), *args]
    with open(log_path, "wb") as out:
        proc = subprocess.Popen(
            cmd,
            env=child_env,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=root,
            preexec_fn=_die_with_parent if sys.platform == "linux" else None,
        )
    try:
        _wait_healthy(proc, port, startup_timeout_s, log_path)
        _PIDS[url] = proc.pid
        log(f"server pid {proc.pid} at {url} (data {root})")
        yield url
    finally:
        _PIDS.pop(url, None)
        _stop(proc)
        if owned:
            shutil.rmtree(root, ignore_errors=True)


def _die_with_parent() -> None:
    """In the child, before exec: get SIGTERM when the bench dies, even by SIGKILL (Linux prctl)."""
    import ctypes

    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def _wait_healthy(proc: subprocess.Popen[bytes], port: int, timeout_s: float, log_path: Path) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            tail = log_path.read_text(errors="replace")[-4000:]
            raise RuntimeError(f"liverec serve exited with {proc.returncode}:\n{tail}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1.0) as s:
                s.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
                if s.recv(64).startswith(b"HTTP/1.1 200"):
                    return
        except OSError:
            pass
        time.sleep(0.1)
    raise TimeoutError(f"liverec serve not healthy after {timeout_s:.0f}s; see {log_path}")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)


def server_cpu_s(url: str) -> float | None:
    """CPU seconds used so far by the ``live_server`` at ``url`` (Linux /proc; None elsewhere)."""
    pid = _PIDS.get(url)
    if pid is None:
        return None
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks  # utime, stime


def server_cpu_since(url: str, start: float | None) -> float | None:
    """Server CPU seconds used since ``start`` (an earlier `server_cpu_s` reading); None if unknown."""
    now = server_cpu_s(url)
    return None if start is None or now is None else round(now - start, 3)


# -- HTTP/1.1 client -------------------------------------------------------------------------------


class ProtocolError(Exception):
    pass


@dataclass(frozen=True, slots=True)
class Response:
    status: int
    body: bytes

    def json(self) -> Any:
        return orjson.loads(self.body)


class Connection:
    """One keep-alive HTTP/1.1 connection; requests on it are sequential (no pipelining)."""

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        self.host = parts.hostname or "127.0.0.1"
        self.port = parts.port or 80
        self._host_header = f"Host: {self.host}:{self.port}\r\n".encode()
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def _open(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        reader, writer = await asyncio.open_connection(self.host, self.port)
        sock = writer.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._reader, self._writer = reader, writer
        return reader, writer

    async def request(self, method: str, path: str, body: bytes | None = None) -> Response:
        """Send one request and read its response. A failed connection is dropped, then raised."""
        reader, writer = (
            (self._reader, self._writer)
            if self._reader is not None and self._writer is not None
            else await self._open()
        )
        head = f"{method} {path} HTTP/1.1\r\n".encode() + self._host_header
        if body is not None:
            head += b"Content-Type: application/json\r\nContent-Length: %d\r\n" % len(body)
        try:
            writer.write(head + b"\r\n" + body if body is not None else head + b"\r\n")
            await writer.drain()
            return await self._read_response(reader)
        except BaseException:
            await self.close()
            raise

    async def _read_response(self, reader: asyncio.StreamReader) -> Response:
        head = await reader.readuntil(b"\r\n\r\n")
        if not head.startswith(b"HTTP/1."):
            raise ProtocolError(f"bad status line {head[:40]!r}")
        status = int(head[9:12])
        length: int | None = None
        chunked = close = False
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            key = name.strip().lower()
            if key == b"content-length":
                length = int(value)
            elif key == b"transfer-encoding":
                chunked = b"chunked" in value.lower()
            elif key == b"connection":
                close = value.strip().lower() == b"close"
        if chunked:
            body = await _read_chunked(reader)
        elif length is not None:
            body = await reader.readexactly(length)
        elif status in (204, 304) or 100 <= status < 200:
            body = b""
        else:
            raise ProtocolError("response has neither Content-Length nor chunked encoding")
        if close:
            await self.close()
        return Response(status, body)

    async def close(self) -> None:
        writer, self._reader, self._writer = self._writer, None, None
        if writer is not None:
            writer.close()
            # bounded: uvloop may never report a connection closed whose peer has gone away
            with contextlib.suppress(OSError, asyncio.CancelledError, TimeoutError):
                await asyncio.wait_for(writer.wait_closed(), 1.0)


async def _read_chunked(reader: asyncio.StreamReader) -> bytes:
    parts: list[bytes] = []
    while True:
        size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
        if size == 0:
            while await reader.readuntil(b"\r\n") != b"\r\n":  # trailers
                pass
            return b"".join(parts)
        parts.append(await reader.readexactly(size))
        await reader.readexactly(2)


TRANSPORT_ERRORS = (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ProtocolError)


# -- load loops ------------------------------------------------------------------------------------


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile: the smallest value with at least ``q``% of samples at or below it."""
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q / 100.0 * len(ordered)) - 1)]


@dataclass
class LoadResult:
    """What one loop saw. Latencies are seconds, one per request that got a response."""

    connections: int
    latencies_s: list[float] = field(default_factory=list)
    statuses: Counter[int] = field(default_factory=Counter)
    transport_errors: int = 0
    unfinished: int = 0  # cut off by the loop's time bound
    elapsed_s: float = 0.0
    client_cpu_s: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def responses(self) -> int:
        return len(self.latencies_s)

    @property
    def ok(self) -> int:
        return sum(n for s, n in self.statuses.items() if 200 <= s < 300)

    def ms(self, q: float) -> float:
        return round(percentile(self.latencies_s, q) * 1000.0, 3)

    def summary(self) -> dict[str, Any]:
        """JSON-ready figures; ``requests_per_s`` counts 2xx responses only."""
        return {
            "connections": self.connections,
            "requests": self.responses,
            "ok": self.ok,
            "non_2xx": self.responses - self.ok,
            "transport_errors": self.transport_errors,
            "unfinished": self.unfinished,
            "elapsed_s": round(self.elapsed_s, 3),
            "requests_per_s": round(self.ok / self.elapsed_s, 1) if self.elapsed_s > 0 else 0.0,
            "p50_ms": self.ms(50),
            "p90_ms": self.ms(90),
            "p99_ms": self.ms(99),
            "max_ms": self.ms(100),
            "client_cpu_s": round(self.client_cpu_s, 3),
            **self.extra,
        }


async def _bounded(workers: Sequence[Awaitable[None]], seconds: float) -> int:
    """Run the workers; cancel whatever still runs after ``seconds``. Returns how many were cut off."""
    tasks = [asyncio.ensure_future(w) for w in workers]
    try:
        _done, pending = await asyncio.wait(tasks, timeout=seconds)
    finally:  # also when we are cancelled (Ctrl-C): no worker may outlive the loop call
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    for t in tasks:
        exc = None if t.cancelled() else t.exception()
        if exc is not None:
            raise exc
    return len(pending)


async def closed_loop(
    url: str,
    make: MakeRequest,
    *,
    connections: int,
    max_requests: int,
    max_seconds: float,
    on_response: OnResponse | None = None,
    grace_s: float = 30.0,
) -> LoadResult:
    """Max throughput: each of ``connections`` sends its next request as soon as the last returns.

    Stops after ``max_requests`` requests (``make(i)`` builds request i) or when ``max_seconds`` have
    passed; requests still in flight ``grace_s`` later are cancelled and counted as unfinished.
    """
    result = LoadResult(connections)
    counter = itertools.count()
    t0 = time.perf_counter()
    deadline = t0 + max_seconds
    last = [t0]

    async def worker() -> None:
        conn = Connection(url)
        try:
            while (i := next(counter)) < max_requests and time.perf_counter() < deadline:
                method, path, body = make(i)
                start = time.perf_counter()
                try:
                    resp = await conn.request(method, path, body)
                except TRANSPORT_ERRORS:
                    result.transport_errors += 1
                    continue
                done = time.perf_counter()
                last[0] = max(last[0], done)
                result.latencies_s.append(done - start)
                result.statuses[resp.status] += 1
                if on_response is not None:
                    on_response(i, resp)
        finally:
            await conn.close()

    cpu0 = process_cpu_s()
    result.unfinished = await _bounded([worker() for _ in range(connections)], max_seconds + grace_s)
    result.client_cpu_s = process_cpu_s() - cpu0
    result.elapsed_s = last[0] - t0
    return result


async def open_loop(
    url: str,
    make: MakeRequest,
    *,
    rate: float,
    duration_s: float,
    connections: int,
    on_response: OnResponse | None = None,
    grace_s: float = 30.0,
) -> LoadResult:
    """Paced load: request i is due at ``i / rate`` s, whether or not earlier ones have returned.

    Latency runs from the moment a request is released to the pool, so waiting for a free
    connection (the server being slow) counts, but the client's own timer lag does not; that lag
    is reported as ``dispatch_lag_p99_ms``. Sends ``rate * duration_s`` requests in all.
    """
    result = LoadResult(connections)
    n = max(1, round(rate * duration_s))
    queue: asyncio.Queue[tuple[int, float] | None] = asyncio.Queue()
    lags: list[float] = []

    async def dispatcher(t0: float) -> None:
        for i in range(n):
            due = t0 + i / rate
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            released = time.perf_counter()
            lags.append(released - due)
            queue.put_nowait((i, released))
        for _ in range(connections):
            queue.put_nowait(None)

    async def worker() -> None:
        conn = Connection(url)
        try:
            while (job := await queue.get()) is not None:
                i, released = job
                method, path, body = make(i)
                try:
                    resp = await conn.request(method, path, body)
                except TRANSPORT_ERRORS:
                    result.transport_errors += 1
                    continue
                result.latencies_s.append(time.perf_counter() - released)
                result.statuses[resp.status] += 1
                if on_response is not None:
                    on_response(i, resp)
        finally:
            await conn.close()

    cpu0 = process_cpu_s()
    t0 = time.perf_counter()
    tasks = [dispatcher(t0), *(worker() for _ in range(connections))]
    result.unfinished = await _bounded(tasks, duration_s + grace_s)
    result.elapsed_s = time.perf_counter() - t0
    result.client_cpu_s = process_cpu_s() - cpu0
    result.extra = {
        "target_rate": rate,
        "achieved_rate": round(result.ok / result.elapsed_s, 1) if result.elapsed_s > 0 else 0.0,
        "dispatch_lag_p99_ms": round(percentile(lags, 99) * 1000.0, 3),
    }
    return result


async def request_json(url: str, method: str, path: str, body: Any = None) -> Any:
    """One-off request on a fresh connection (setup and checks, not measurements); raises on non-2xx."""
    conn = Connection(url)
    try:
        resp = await conn.request(method, path, None if body is None else orjson.dumps(body))
    finally:
        await conn.close()
    if not 200 <= resp.status < 300:
        raise RuntimeError(f"{method} {path} -> {resp.status}: {resp.body[:500]!r}")
    return resp.json()


# -- synthetic data --------------------------------------------------------------------------------

# (type, share) of a realistic feedback stream: impressions are common, purchases are rare.
EVENT_MIX: tuple[tuple[str, float], ...] = (
    ("impression", 0.30),
    ("click", 0.42),
    ("add_to_cart", 0.07),
    ("purchase", 0.03),
    ("like", 0.04),
    ("dwell", 0.07),
    ("rating", 0.03),
    ("skip", 0.04),
)


@dataclass(frozen=True)
class World:
    """Items grouped in taste clusters; each user likes a few clusters and mostly picks from them.

    That gives item-to-item co-occurrence a real signal: items of one cluster are liked by the same
    users. Within a cluster a few items are much more popular (rank r has weight ~ 1/sqrt(r)).
    """

    n_items: int = 10_000
    n_users: int = 5_000
    n_clusters: int = 100
    clusters_per_user: tuple[int, int] = (2, 3)
    noise: float = 0.1  # share of picks outside the user's clusters
    seed: int = 0

    def item_id(self, row: int) -> str:
        return f"item-{row}"

    def user_id(self, u: int) -> str:
        return f"user-{u}"

    def cluster_of(self, row: int) -> int:
        return row % self.n_clusters

    def cluster_items(self, c: int) -> range:
        """Rows of cluster ``c``, most popular first."""
        return range(c, self.n_items, self.n_clusters)

    def tastes(self) -> list[tuple[int, ...]]:
        """The clusters each user likes (deterministic from ``seed``)."""
        rng = random.Random(self.seed)
        lo, hi = self.clusters_per_user
        return [tuple(rng.sample(range(self.n_clusters), rng.randint(lo, hi))) for _ in range(self.n_users)]

    def items(self) -> list[dict[str, Any]]:
        """Catalog entries for ``POST /v1/items``."""
        return [
            {"item_id": self.item_id(r), "title": f"item {r}", "tags": [f"cluster-{self.cluster_of(r)}"]}
            for r in range(self.n_items)
        ]

    def events(
        self,
        n: int,
        *,
        end_ts: float | None = None,
        span_s: float = 7 * 86400.0,
        mix: Sequence[tuple[str, float]] = EVENT_MIX,
        seed: int | None = None,
    ) -> list[dict[str, Any]]:
        """``n`` valid event dicts (JSON-ready), oldest first, spread over ``span_s`` up to ``end_ts``.

        Event ids are random uuid4 hex, like the server's default, so every run writes new events
        and the log's id index sees realistic (random) inserts. Active users follow a mild power law.
        """
        rng = random.Random(self.seed + 1 if seed is None else seed)
        tastes = self.tastes()
        end = time.time() - 60.0 if end_ts is None else end_ts
        per_cluster = self.n_items // self.n_clusters
        types = [t for t, _ in mix]
        weights = list(itertools.accumulate(w for _, w in mix))
        kinds = rng.choices(types, cum_weights=weights, k=n)
        out: list[dict[str, Any]] = []
        for i, kind in enumerate(kinds):
            u = min(self.n_users - 1, int(self.n_users * rng.random() ** 1.5))
            if rng.random() < self.noise:
                row = rng.randrange(self.n_items)
            else:
                c = rng.choice(tastes[u])
                rank = min(per_cluster - 1, int(per_cluster * rng.random() ** 2))
                row = c + rank * self.n_clusters
            ev: dict[str, Any] = {
                "event_id": uuid.UUID(int=rng.getrandbits(128), version=4).hex,
                "user_id": self.user_id(u),
                "item_id": self.item_id(row),
                "type": kind,
                "timestamp": round(end - span_s + span_s * (i + 1) / n, 3),
            }
            if kind == "dwell":
                ev["value"] = round(rng.uniform(2.0, 180.0), 1)
            elif kind == "rating":
                ev["value"] = float(rng.randint(1, 5))
            elif kind == "impression":
                ev["context"] = {"surface": "home", "position": rng.randrange(10)}
            out.append(ev)
        return out


def batch_bodies(events: Sequence[dict[str, Any]], batch: int) -> list[bytes]:
    """JSON bodies ``{"events": [...]}`` of ``batch`` events each, serialized before any timing."""
    return [orjson.dumps({"events": events[i : i + batch]}) for i in range(0, len(events), batch)]
