"""What a simulation reports: totals, the same per window of visits, and plots.

``cumulative_reward`` is clicks; ``regret`` is expected clicks lost to the oracle (both from the
world's true probabilities, so regret is free of click noise); ``ctr`` is clicks / impressions.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np


@dataclass
class Window:
    start: int  # first visit (0-based)
    end: int  # one past the last
    impressions: int
    clicks: int
    ctr: float
    expected_reward: float  # expected clicks of the served slates
    oracle_reward: float  # expected clicks of the oracle's slates
    regret: float
    weighted_reward: float  # the engine's reward weights (click 1, cart 2, purchase 4, dwell, skip)
    model: str  # what served at the end of the window


@dataclass
class SimResult:
    cumulative_reward: float
    regret: float
    ctr: float
    interactions: int
    impressions: int
    expected_reward: float
    oracle_reward: float
    weighted_reward: float
    windows: list[Window]
    versions: list[tuple[int, str]]  # (visit, served model) at every change
    decisions: list[dict[str, Any]]  # the online learner's gate decisions
    initial_model: dict[str, Any] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    plot: str | None = None

    @property
    def publications(self) -> int:
        return sum(1 for d in self.decisions if d.get("published"))

    def to_json(self) -> dict[str, Any]:
        """The one JSON object `liverec simulate` prints; dataclass field order puts the three
        interface keys (cumulative_reward, regret, ctr) first."""
        out = asdict(self)
        out["versions"] = [list(v) for v in self.versions]
        out["publications"] = self.publications
        for key in (
            "cumulative_reward",
            "regret",
            "ctr",
            "expected_reward",
            "oracle_reward",
            "weighted_reward",
        ):
            out[key] = round(float(out[key]), 6)
        return out


def summarize(
    shown: np.ndarray,
    clicks: np.ndarray,
    expected: np.ndarray,
    oracle: np.ndarray,
    weighted: np.ndarray,
    n_windows: int,
    versions: Sequence[tuple[int, str]],
    decisions: list[dict[str, Any]],
) -> SimResult:
    """Totals and per-window figures from per-visit arrays (all (N,))."""
    n = len(shown)
    bounds = np.linspace(0, n, min(n_windows, n) + 1).round().astype(int)
    windows = []
    for a, b in zip(bounds[:-1].tolist(), bounds[1:].tolist(), strict=True):
        imp, clk = int(shown[a:b].sum()), int(clicks[a:b].sum())
        model = next((v for at, v in reversed(versions) if at <= b), versions[0][1] if versions else "")
        windows.append(
            Window(
                start=a,
                end=b,
                impressions=imp,
                clicks=clk,
                ctr=clk / imp if imp else 0.0,
                expected_reward=float(expected[a:b].sum()),
                oracle_reward=float(oracle[a:b].sum()),
                regret=float((oracle[a:b] - expected[a:b]).sum()),
                weighted_reward=float(weighted[a:b].sum()),
                model=model,
            )
        )
    imp_total = int(shown.sum())
    return SimResult(
        cumulative_reward=float(clicks.sum()),
        regret=float((oracle - expected).sum()),
        ctr=float(clicks.sum()) / imp_total if imp_total else 0.0,
        interactions=n,
        impressions=imp_total,
        expected_reward=float(expected.sum()),
        oracle_reward=float(oracle.sum()),
        weighted_reward=float(weighted.sum()),
        windows=windows,
        versions=list(versions),
        decisions=decisions,
    )


def plot_runs(runs: Mapping[str, Sequence[Mapping[str, Any]]], path: Path, title: str = "") -> Path:
    """CTR per window (left) and cumulative regret (right) per named run; several runs under one
    name (seeds) are drawn as their mean with a min-max band. ``runs`` holds `SimResult.to_json`s."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5), dpi=110)
    oracle_drawn = False
    for name, results in runs.items():
        mids = [(w["start"] + w["end"]) / 2 for w in results[0]["windows"]]
        ctr = np.array([[w["ctr"] for w in r["windows"]] for r in results])
        regret = np.array([np.cumsum([w["regret"] for w in r["windows"]]) for r in results])
        ends = [w["end"] for w in results[0]["windows"]]
        (line,) = left.plot(mids, ctr.mean(axis=0), "o-", ms=3, label=name)
        right.plot(ends, regret.mean(axis=0), "-", color=line.get_color(), label=name)
        if len(results) > 1:
            left.fill_between(mids, ctr.min(axis=0), ctr.max(axis=0), color=line.get_color(), alpha=0.15)
            right.fill_between(
                ends, regret.min(axis=0), regret.max(axis=0), color=line.get_color(), alpha=0.15
            )
        if not oracle_drawn:
            oracle_ctr = [
                np.mean(
                    [
                        r["windows"][j]["oracle_reward"] / max(r["windows"][j]["impressions"], 1)
                        for r in results
                    ]
                )
                for j in range(len(mids))
            ]
            left.plot(mids, oracle_ctr, "k:", label="oracle (expected)")
            oracle_drawn = True
    left.set_xlabel("visits")
    left.set_ylabel("click-through rate per window")
    left.set_ylim(bottom=0)
    right.set_xlabel("visits")
    right.set_ylabel("cumulative regret (expected clicks lost to the oracle)")
    for ax in (left, right):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path
