"""A `liverec serve` subprocess for the HTTP benchmarks, and `liverec train` for those that serve a
trained model.

- ``live_server(...)``: context manager; starts ``liverec serve`` on a free 127.0.0.1 port with a
  fresh ``LIVEREC_DATA_DIR``, waits for ``/healthz``, yields the base URL, always kills it on exit.
- ``server_cpu_s(url)`` / ``server_cpu_since(url, start)``: CPU seconds used by the server behind
  ``url`` (user + system), to show where a figure's CPU went.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

from _load import log

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
