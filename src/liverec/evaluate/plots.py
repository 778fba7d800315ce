"""Plots people would rather look at than tables (matplotlib, Agg: no display needed)."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def plot_windows(models: dict[str, Any], path: Path, title: str, metric: str = "ndcg@10") -> Path:
    """One line per model: ``metric`` per window of the stream."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4.5), dpi=110)
    for name, m in models.items():
        xs = [w["end"] for w in m["windows"]]
        ax.plot(xs, [w[metric] for w in m["windows"]], marker="o", label=f"{name} ({m[metric]:.4f})")
    ax.set_xlabel("streamed events scored")
    ax.set_ylabel(metric.upper())
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path
