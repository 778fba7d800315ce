"""The demo's bookkeeping: click-through of both cohorts per time window, which model served, and
the plot."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

LIVEREC, RANDOM = 0, 1  # cohorts


@dataclass(frozen=True)
class Step:
    """One visit: when it started (s since start), cohort, items shown, clicks, who served it."""

    t: float
    cohort: int
    shown: int
    clicks: int
    model: str = ""  # the server's answer ("transformer@v000003", "popularity-cooc"); "" for control


@dataclass(frozen=True)
class Phase:
    name: str
    start_s: float
    end_s: float
    detail: str = ""


@dataclass(frozen=True)
class WindowStats:
    """Click-through of both cohorts in one time window of the run, and the models that served."""

    start_s: float
    end_s: float
    liverec_impressions: int = 0
    liverec_clicks: int = 0
    random_impressions: int = 0
    random_clicks: int = 0
    models: tuple[str, ...] = ()  # distinct models that served the liverec cohort, in order of version

    @property
    def liverec_ctr(self) -> float:
        return _ratio(self.liverec_clicks, self.liverec_impressions)

    @property
    def random_ctr(self) -> float:
        return _ratio(self.random_clicks, self.random_impressions)

    @property
    def overall_ctr(self) -> float:
        return _ratio(
            self.liverec_clicks + self.random_clicks, self.liverec_impressions + self.random_impressions
        )

    @property
    def lift(self) -> float:
        """Relative CTR gain of liverec over random (0.5 = +50%); nan without random clicks."""
        return self.liverec_ctr / self.random_ctr - 1.0 if self.random_ctr > 0 else float("nan")


def _ratio(a: float, b: float) -> float:
    return a / b if b else 0.0


def combine(windows: Sequence[WindowStats]) -> WindowStats:
    """One window spanning ``windows`` (e.g. the second half of a run)."""
    if not windows:
        return WindowStats(0.0, 0.0)
    return WindowStats(
        windows[0].start_s,
        windows[-1].end_s,
        sum(w.liverec_impressions for w in windows),
        sum(w.liverec_clicks for w in windows),
        sum(w.random_impressions for w in windows),
        sum(w.random_clicks for w in windows),
        tuple(sorted({m for w in windows for m in w.models})),
    )


def model_label(models: Sequence[str]) -> str:
    """Short text for the models of a window: ``v000002..v000005 (4)``, ``popularity-cooc``."""
    versions = [m.split("@", 1)[1] for m in models if "@" in m]
    others = [m for m in models if "@" not in m]
    parts = list(others)
    if len(versions) == 1:
        parts.append(versions[0])
    elif versions:
        parts.append(f"{versions[0]}..{versions[-1]} ({len(versions)})")
    return ", ".join(parts) or "-"


def windows_of(steps: Sequence[Step], elapsed: float, n: int) -> list[WindowStats]:
    """Per-window impressions and clicks of both cohorts, by the time each visit started."""
    width = max(elapsed, 1e-9) / n
    acc = np.zeros((n, 2, 2), dtype=np.int64)
    models: list[set[str]] = [set() for _ in range(n)]
    for s in steps:
        w = min(int(s.t / width), n - 1)
        acc[w, s.cohort] += (s.shown, s.clicks)
        if s.model:
            models[w].add(s.model)
    out = []
    for i in range(n):
        (li, lc), (ri, rc) = acc[i].tolist()
        out.append(WindowStats(i * width, (i + 1) * width, li, lc, ri, rc, tuple(sorted(models[i]))))
    return out


@dataclass
class Tally:
    """What the simulated clients record, under the demo's lock."""

    steps: list[Step] = field(default_factory=list)
    latencies: list[float] = field(default_factory=list)
    oracle_clicks: float = 0.0  # expected clicks of the oracle's lists for the liverec visits
    shown: np.ndarray = field(default_factory=lambda: np.zeros((2, 2), dtype=np.int64))
    events_posted: int = 0
    errors: int = 0
    searches: list[tuple[float, int, int]] = field(default_factory=list)  # (t, results shown, clicks)
    search_latencies: list[float] = field(default_factory=list)


def plot_windows(windows: list[WindowStats], phases: Sequence[Phase], path: Path) -> Path:
    """CTR per window, liverec vs random, with the run's phases shaded, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    mid = [(w.start_s + w.end_s) / 2 for w in windows]
    fig, ax = plt.subplots(figsize=(8, 4.5), dpi=110)
    colors = {"warm-up": "#f2f2f2", "training": "#e8eef8", "restart": "#fbeaea", "live learning": "#eaf6ea"}
    for p in phases:
        ax.axvspan(p.start_s, p.end_s, color=colors.get(p.name, "#f7f7f7"), zorder=0)
        ax.text((p.start_s + p.end_s) / 2, 0.0, p.name, ha="center", va="bottom", fontsize=8, color="#555")
    ax.plot(mid, [w.liverec_ctr for w in windows], "o-", label="liverec")
    ax.plot(mid, [w.random_ctr for w in windows], "s--", label="random (control)")
    for j, (x, w) in enumerate(zip(mid, windows, strict=True)):  # the Transformer versions that served
        versions = [m for m in w.models if "@" in m]
        label = model_label(versions) if versions else model_label(w.models)
        ax.annotate(
            label,
            (x, w.liverec_ctr),
            textcoords="offset points",
            xytext=(0, 6 + 9 * (j % 2)),
            ha="center",
            fontsize=7,
            color="#1f4e79",
        )
    ax.set_xlabel("seconds since start")
    ax.set_ylabel("click-through rate (clicks / impressions)")
    top = max([w.liverec_ctr for w in windows] + [w.random_ctr for w in windows] + [0.01])
    ax.set_ylim(0, 1.3 * top)  # room for the version labels
    ax.set_title(f"liverec vs random on the same simulated users (lift {combine(windows).lift:+.0%})")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path
