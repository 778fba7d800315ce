"""SIGKILL a real server mid-stream: every acknowledged event survives exactly once, batches whole.

Clients stream batches of uniquely-identified events; the server is killed (no shutdown, no flush)
while requests are in flight, restarted on the same SQLite file, and every batch is then re-sent
as a client retry would. Only what the log holds afterwards counts.
"""

from __future__ import annotations

import queue
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import pytest

from liverec.store import open_store
from support.api import LiveServer, event

N_BATCHES = 80
BATCH = 200
CLIENTS = 3
KILL_AFTER_ACKS = 8
ACK_WAIT_S = 60.0  # bounded: the machine is shared


def batches() -> list[list[dict[str, Any]]]:
    t = time.time() - 3600
    return [
        [
            event(
                f"u{(b * 7 + i) % 50}",
                f"i{(b * 13 + i) % 97}",
                event_id=f"b{b:03d}-e{i:03d}",
                timestamp=t + i,
            )
            for i in range(BATCH)
        ]
        for b in range(N_BATCHES)
    ]


class Stream:
    """Client threads that post batches from a queue and record which ones were acknowledged."""

    def __init__(self, url: str, data: list[list[dict[str, Any]]]) -> None:
        self.url = url
        self.data = data
        self.todo: queue.Queue[int] = queue.Queue()
        for b in range(len(data)):
            self.todo.put(b)
        self.acked: set[int] = set()
        self.failed: set[int] = set()
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self._run, daemon=True) for _ in range(CLIENTS)]

    def _run(self) -> None:
        with httpx.Client(base_url=self.url, timeout=30.0) as client:
            while not self.stop.is_set():
                try:
                    b = self.todo.get_nowait()
                except queue.Empty:
                    return
                try:
                    r = client.post("/v1/events", json={"events": self.data[b]})
                    ok = r.status_code == 200 and r.json() == {"accepted": BATCH, "duplicates": 0}
                except httpx.HTTPError:
                    ok = False
                with self.lock:
                    (self.acked if ok else self.failed).add(b)

    def start(self) -> None:
        for t in self.threads:
            t.start()

    def n_acked(self) -> int:
        with self.lock:
            return len(self.acked)

    def join(self) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(timeout=60)
            assert not t.is_alive()


def read_log(store_url: str) -> tuple[list[int], Counter[str]]:
    with open_store(store_url) as st:
        events = list(st.iter_events())
    return [s.offset for s in events], Counter(s.event.event_id for s in events)


def per_batch(ids: Counter[str]) -> Counter[int]:
    return Counter(int(i[1:4]) for i in ids)


@pytest.mark.slow
def test_sigkill_mid_stream_loses_no_acknowledged_event(tmp_path: Path, live_server: Any) -> None:
    data = batches()
    data_dir = tmp_path / "data"
    server: LiveServer = live_server(data_dir)
    stream = Stream(server.url, data)
    stream.start()
    deadline = time.monotonic() + ACK_WAIT_S
    while stream.n_acked() < KILL_AFTER_ACKS and time.monotonic() < deadline:
        time.sleep(0.005)
    assert stream.n_acked() >= KILL_AFTER_ACKS, server.output()
    server.kill()  # requests are in flight: the client threads are posting continuously
    stream.join()
    acked = set(stream.acked)
    assert len(acked) < N_BATCHES  # the kill really came mid-stream...
    assert stream.failed  # ...with requests in flight (the clients never pause between posts)

    # 1. straight after the crash, read the file directly
    offsets, ids = read_log(server.store_url)
    assert len(offsets) == len(set(offsets))
    assert offsets == sorted(offsets)
    assert all(n == 1 for n in ids.values())
    counts = per_batch(ids)
    for b in acked:
        assert counts[b] == BATCH, f"acknowledged batch {b} has {counts[b]} of {BATCH} events"
    for b, n in counts.items():
        assert n == BATCH, f"batch {b} is partially in the log ({n} of {BATCH})"
    expected = {f"b{b:03d}-e{i:03d}" for b in acked for i in range(BATCH)}
    assert expected <= set(ids)

    # 2. a restarted server rebuilds from that log, and every client retry is idempotent
    restarted: LiveServer = live_server(data_dir)
    with httpx.Client(base_url=restarted.url, timeout=30.0) as client:
        assert client.get("/healthz").json()["events"] == len(offsets)
        for b, batch in enumerate(data):
            r = client.post("/v1/events", json={"events": batch})
            assert r.status_code == 200, r.text
            out = r.json()
            if counts[b] == BATCH:
                assert out == {"accepted": 0, "duplicates": BATCH}, b
            else:
                assert out == {"accepted": BATCH, "duplicates": 0}, b
        assert client.get("/healthz").json()["events"] == N_BATCHES * BATCH
    restarted.stop()
    offsets, ids = read_log(restarted.store_url)
    assert len(offsets) == len(set(offsets)) == N_BATCHES * BATCH
    assert set(ids) == {e["event_id"] for batch in data for e in batch}
    assert all(n == 1 for n in ids.values())
