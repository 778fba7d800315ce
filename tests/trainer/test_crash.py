"""SIGKILL the real trainer (`liverec learn --follow`) at random moments while a writer keeps
appending to the log, restart it each time, and let a last run catch up: no event is lost.

At-least-once, checked exactly: the learner counts the examples it has learned (`examples`, saved in
its checkpoint with the offset they reach). Each checkpoint must hold exactly as many examples as
there are learnable positives (filtered, with a user history before them) in the log up to its
offset, counted independently here; and every restart must resume at the checkpoint's offset. So
the weights of each checkpoint learned every event up to its offset once (work lost with a killed
process is redone, never skipped), and the last one reaches the end of the log. Meanwhile a monitor
checks that every version the registry lists loads, LIVE always loads, and so does the checkpoint.
"""

from __future__ import annotations

import os
import random
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import torch

from liverec.core.rewards import Rewards
from liverec.core.schema import Event, EventType
from liverec.registry.registry import RegistryError
from liverec.store import open_store
from liverec.trainer.filters import EventFilter
from support.world import ITEM_IDS

from .conftest import N_USERS, STREAM_T0, Rig, click, last_items, next_item

KILLS = 4
SEED = 7
START_TIMEOUT_S = 90.0  # the CPU is shared: generous but bounded
CATCH_UP_TIMEOUT_S = 120.0
BATCH = 40  # events per append
WRITE_EVERY_S = 0.1


def writer_events(batch: int, last: dict[str, str]) -> list[Event]:
    """Batch ``batch`` of the live stream: walks go on from ``last`` (each user's last item, updated),
    with some jumps, skips and impressions mixed in."""
    rng = random.Random(batch)
    out = []
    for k in range(BATCH):
        n = batch * BATCH + k
        uid = f"u{n % N_USERS}"
        ts = STREAM_T0 + n * 1.0  # a user every 5 min: real walks, not repeats the filter holds back
        if k % 10 == 3:
            out.append(click(uid, rng.choice(ITEM_IDS), ts, EventType.skip, event_id=f"w{n}"))
        elif k % 7 == 5:
            out.append(click(uid, rng.choice(ITEM_IDS), ts, EventType.impression, event_id=f"w{n}"))
        else:
            last[uid] = next_item(rng.choice(ITEM_IDS) if k % 13 == 0 else last[uid])
            out.append(click(uid, last[uid], ts, event_id=f"w{n}"))
    return out


class Writer(threading.Thread):
    def __init__(self, store_url: str) -> None:
        super().__init__(daemon=True)
        self.store_url = store_url
        self.stop = threading.Event()
        self.batches = 0
        self.last = last_items()

    def run(self) -> None:
        with open_store(self.store_url) as st:
            while not self.stop.is_set():
                st.append(writer_events(self.batches, self.last))
                self.batches += 1
                self.stop.wait(WRITE_EVERY_S)


class Monitor(threading.Thread):
    """Polls the registry and the checkpoint while trainers come and go."""

    def __init__(self, rig: Rig) -> None:
        super().__init__(daemon=True)
        self.rig = rig
        self.checkpoints: set[tuple[int, int]] = set()  # (offset, examples) seen
        self.loaded: set[str] = set()
        self.errors: list[str] = []
        self.stop = threading.Event()

    def check(self) -> None:
        reg = self.rig.registry
        for v in reg.list_versions():
            if v in self.loaded:
                continue
            try:
                reg.load(v)
                self.loaded.add(v)
            except RegistryError as exc:
                self.errors.append(f"listed version {v} does not load: {exc}")
        live = reg.live()
        try:
            reg.load(live)
        except RegistryError as exc:
            self.errors.append(f"LIVE {live} does not load: {exc}")
        ckpt = checkpoint_path(self.rig)
        if ckpt.exists():
            state = load_checkpoint(ckpt)
            self.checkpoints.add((int(state["offset"]), int(state["examples"])))

    def run(self) -> None:
        while not self.stop.wait(0.05):
            try:
                self.check()
            except Exception as exc:  # anything unreadable is a finding, not a crash of the monitor
                self.errors.append(f"{type(exc).__name__}: {exc}")


def checkpoint_path(rig: Rig) -> Path:
    return rig.registry.root / "trainer" / "checkpoint.pt"


def load_checkpoint(path: Path) -> dict[str, Any]:
    state: dict[str, Any] = torch.load(path, map_location="cpu", weights_only=True)
    return state


def learnable_up_to(rig: Rig, start: int, offsets: list[int]) -> dict[int, int]:
    """Independently: how many positives in (``start``, offset] pass the default filter and have an
    accepted positive of the same user before them, on another item (a repeat of the item just
    engaged with is no example): the examples an exactly-once learner made."""
    filt, reward = EventFilter(), Rewards(rig.settings.rewards)
    last_item: dict[str, str] = {}
    want, out, count = sorted(set(offsets)), {}, 0
    for s in rig.store.iter_events():
        while want and s.offset > want[0]:
            out[want.pop(0)] = count
        if not want:
            break
        ev = s.event
        if ev.type is EventType.impression or filt.check(ev) is not None or reward(ev) <= 0:
            continue
        if last_item.get(ev.user_id, ev.item_id) != ev.item_id and s.offset > start:
            count += 1
        last_item[ev.user_id] = ev.item_id
    for o in want:
        out[o] = count
    return out


def config(rig: Rig, path: Path) -> Path:
    path.write_text(
        f'data_dir = "{rig.settings.data_dir}"\n'
        "[online]\nthreads = 1\nbatch_size = 64\n"
        "[gate]\npublish_events = 300\npublish_s = 0.3\nmin_eval = 20\n"
    )
    return path


def learn(cfg: Path, log: Path, follow: bool) -> subprocess.Popen[bytes]:
    exe = Path(sys.executable).with_name("liverec")
    env = {k: v for k, v in os.environ.items() if not k.startswith("LIVEREC_")} | {"HF_HUB_OFFLINE": "1"}
    cmd = [str(exe), "learn", "--follow" if follow else "--no-follow", "--config", str(cfg)]
    with log.open("wb") as out:
        return subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env)


def resumed_at(log: Path, proc: subprocess.Popen[bytes], timeout: float) -> int | None:
    """The offset the trainer says it resumes from, once it says it (None if it died first)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        m = re.search(r"learning from offset ([\d,]+)", log.read_text(errors="replace"))
        if m:
            return int(m.group(1).replace(",", ""))
        if proc.poll() is not None:
            return None
        time.sleep(0.05)
    raise AssertionError(f"the trainer did not start in {timeout:.0f}s:\n{log.read_text()}")


def test_sigkill_and_restart_of_the_trainer_loses_no_event(rig: Rig, tmp_path: Path) -> None:
    """Kill -9 the trainer four times at random moments under a steady write load, restarting it
    each time: every restart resumes at the checkpoint's offset, every checkpoint holds exactly
    one learning of each learnable event up to its offset, the last run catches up to the end of
    the log, and the registry and checkpoint never show anything half-written."""
    rng = random.Random(SEED)
    cfg = config(rig, tmp_path / "liverec.toml")
    start = int(rig.registry.meta(rig.v1)["trainer_offset"])
    ckpt = checkpoint_path(rig)
    writer, monitor = Writer(rig.settings.store_url), Monitor(rig)
    writer.start()
    monitor.start()
    resumes: list[tuple[int, int]] = []  # (offset in the checkpoint before the start, resumed at)
    try:
        try:
            for k in range(KILLS):
                before = int(load_checkpoint(ckpt)["offset"]) if ckpt.exists() else start
                log = tmp_path / f"learn-{k}.log"
                proc = learn(cfg, log, follow=True)
                try:
                    at = resumed_at(log, proc, START_TIMEOUT_S)
                    assert at is not None, log.read_text()
                    resumes.append((before, at))
                    time.sleep(rng.uniform(0.2, 2.5))  # a random moment: learning, deciding, saving
                    assert proc.poll() is None, log.read_text()
                finally:
                    proc.send_signal(signal.SIGKILL)
                    proc.wait(timeout=30)
                assert proc.returncode == -signal.SIGKILL
                monitor.check()
        finally:
            writer.stop.set()
            writer.join(timeout=30)

        log = tmp_path / "learn-final.log"
        before = int(load_checkpoint(ckpt)["offset"]) if ckpt.exists() else start
        proc = learn(cfg, log, follow=False)  # catch up, then stop
        try:
            resumes.append((before, resumed_at(log, proc, START_TIMEOUT_S) or -1))
            assert proc.wait(timeout=CATCH_UP_TIMEOUT_S) == 0, log.read_text()
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    finally:  # a failed run must not leave the monitor loading models (drawing on torch's RNG)
        monitor.stop.set()
        monitor.join(timeout=30)
    monitor.check()

    last = rig.store.last_offset()
    final = load_checkpoint(ckpt)
    assert int(final["offset"]) == last
    assert writer.batches > 20 and last > start + 1_000
    assert all(before == at for before, at in resumes), resumes
    offsets = sorted({o for o, _ in monitor.checkpoints} | {last})
    assert len(offsets) >= KILLS  # checkpoints kept moving between kills
    expected = learnable_up_to(rig, start, offsets)
    wrong = [(o, n, expected[o]) for o, n in sorted(monitor.checkpoints) if n != expected[o]]
    assert not wrong, f"(offset, examples, expected): {wrong[:5]}"
    assert int(final["examples"]) == expected[last] > 0
    assert not monitor.errors, monitor.errors[:5]
    assert monitor.loaded and rig.registry.live() in monitor.loaded
    for v in rig.registry.list_versions():
        rig.registry.load(v)
