"""Curves (matplotlib, Agg backend). Image grids live in :mod:`ipgan_jax.images`."""
from __future__ import annotations

from pathlib import Path


def line_plot(xs, series: dict, path, xlabel: str, ylabel: str, title: str = "") -> Path:
    """One line per ``series`` entry (name -> ys) over ``xs``; saved as PNG."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(5.5, 4))
    for name, ys in series.items():
        ax.plot(xs, ys, marker="o", label=name)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_ylim(-0.02, 1.02)
    ax.grid(alpha=0.3)
    if title:
        ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
