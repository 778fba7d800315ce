"""The HTTP benchmarks' load generator: a lean HTTP/1.1 client, bounded load loops and the single
JSON object on stdout. The server subprocess is in `_server.py`, the synthetic traffic in `_world.py`.

The client is raw ``asyncio`` streams on keep-alive connections with Content-Length framing (chunked
is understood too), on uvloop when it is installed: a general-purpose client such as httpx spends
~0.5 ms per request, which on a 2-core machine would measure the client instead of the server.

API (keep it small; freshness and accuracy benches reuse it):

- ``Connection``: one keep-alive connection; ``await conn.request(method, path, body)``.
- ``closed_loop(...)`` / ``open_loop(...)``: bounded load loops returning a ``LoadResult``.
- ``run(coro)``: ``asyncio`` runner on uvloop if available; ``emit(obj)``: the one JSON object on stdout.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import math
import os
import resource
import signal
import socket
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Coroutine, Sequence
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
