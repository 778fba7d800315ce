"""The demo's subprocesses: `liverec serve` (with or without the online learner) and `liverec train`,
their configuration files, and making sure every one of them is gone at the end."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

CLI_CMD = "from liverec.cli import app; app()"
MARKER = ".liverec-demo"  # only a directory holding this file is wiped at start

# A tiny Transformer so that `liverec train` takes seconds; the policies of the two serving phases.
MODEL_TOML = """\
[model]
d_model = 32
n_layers = 1
n_heads = 2
max_len = 50
dropout = 0.2

[train]
batch_size = 128
lr = 0.003
patience = 2
threads = 2
max_seconds = {train_max_s}

[online]
threads = 1

[gate]
publish_s = {publish_s}
min_eval = 50
"""


class DemoError(RuntimeError):
    """The demo could not run (server did not start, died, or the data dir is not ours to wipe)."""


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def fresh_data_dir(path: Path) -> None:
    """Empty ``path`` for a new run; refuse to wipe a non-empty directory the demo did not create."""
    if path.exists():
        if not (path / MARKER).exists() and any(path.iterdir()):
            raise DemoError(f"{path} is not empty and was not made by `liverec demo`; not wiping it")
        shutil.rmtree(path)
    path.mkdir(parents=True)
    (path / MARKER).write_text("created by `liverec demo`; wiped at the start of every run\n")


def write_configs(
    data_dir: Path, policy: str, warmup_policy: str, publish_s: float, train_max_s: float
) -> tuple[Path, Path]:
    """(warm-up config, live config): same model and trainer, different serving policies."""
    common = MODEL_TOML.format(publish_s=publish_s, train_max_s=train_max_s)
    warm, live = data_dir / "warmup.toml", data_dir / "live.toml"
    warm.write_text(f'{common}\n[policy]\nname = "{warmup_policy}"\n')
    live.write_text(f'{common}\n[policy]\nname = "{policy}"\n')
    return warm, live


def tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def children(pid: int) -> list[int]:
    """Direct child processes of ``pid`` (Linux /proc; empty elsewhere or once it is gone)."""
    out: list[int] = []
    with contextlib.suppress(OSError):
        for task in os.listdir(f"/proc/{pid}/task"):
            with contextlib.suppress(OSError), open(f"/proc/{pid}/task/{task}/children") as fh:
                out += [int(c) for c in fh.read().split()]
    return out


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    with contextlib.suppress(OSError), open(f"/proc/{pid}/stat") as fh:
        return fh.read().split(") ", 1)[1][:1] != "Z"  # a zombie is gone, only not yet reaped
    return True


def end_pid(pid: int, timeout: float = 15.0) -> None:
    """SIGTERM a process we started (directly or through the server), SIGKILL if it lingers."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)
        deadline = time.monotonic() + timeout
        while alive(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        if not alive(pid):
            return


def stop_process(proc: subprocess.Popen[bytes], timeout: float = 20.0) -> int | None:
    """SIGTERM (uvicorn shuts down cleanly, stops its learner and closes the store), then SIGKILL."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return proc.returncode


def cli(args: list[str], log: Path, env: dict[str, str]) -> subprocess.Popen[bytes]:
    with log.open("ab") as fh:
        return subprocess.Popen(
            [sys.executable, "-c", CLI_CMD, *args], stdout=fh, stderr=subprocess.STDOUT, env=env
        )


@dataclass
class Server:
    """One `liverec serve` subprocess; ``learn`` also starts the online trainer as its own process."""

    config: Path
    store_url: str
    port: int
    log: Path
    env: dict[str, str]
    learn: bool = False
    proc: subprocess.Popen[bytes] | None = None
    learner_pid: int | None = None
    exit_code: int | None = None
    helpers: list[int] = field(default_factory=list)  # child processes seen (the learner)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self, timeout_s: float) -> Server:
        args = ["serve", "--config", str(self.config), "--store", self.store_url]
        args += ["--host", "127.0.0.1", "--port", str(self.port), *(["--learn"] if self.learn else [])]
        self.proc = cli(args, self.log, self.env)
        self.wait_healthy(timeout_s)
        if self.learn:
            deadline = time.monotonic() + 10.0
            while not (kids := children(self.pid)) and time.monotonic() < deadline:
                time.sleep(0.05)
            self.helpers = kids
            self.learner_pid = kids[0] if kids else None
        return self

    def wait_healthy(self, timeout_s: float) -> None:
        assert self.proc is not None
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise DemoError(f"liverec serve exited with {self.proc.returncode}:\n{tail(self.log)}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{self.url}/healthz", timeout=2.0).status_code == 200:
                    return
            time.sleep(0.1)
        raise DemoError(f"liverec serve did not answer /healthz within {timeout_s:.0f}s:\n{tail(self.log)}")

    def died(self) -> bool:
        return self.proc is not None and self.proc.poll() is not None

    def stop(self) -> int | None:
        """Stop the server (it stops its learner first), then end any child that outlived it."""
        if self.proc is None:
            return None
        self.helpers = sorted(set(self.helpers) | set(children(self.pid)))
        self.exit_code = stop_process(self.proc)
        for pid in self.helpers:
            if alive(pid):
                end_pid(pid)
        return self.exit_code
