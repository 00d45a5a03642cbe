"""Pictures: image grids (PNG, via PIL) and curves (matplotlib, Agg backend)."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import numpy as np


def image_grid(rows: Sequence[np.ndarray], row_labels: Sequence[str], path: str | os.PathLike,
               max_cols: int = 8, scale: int | None = None) -> Path:
    """Save a grid whose row i shows images ``rows[i]`` ([N, H, W, C] in [0, 1]) with a label.

    Values are clipped to [0, 1]; grayscale images are shown as gray. ``scale`` (default: about 84 px
    per tile, so 3 for MNIST and 1 for ImageNet) enlarges tiles by pixel repetition. Written atomically.
    """
    from PIL import Image, ImageDraw, ImageFont
    n = min(max_cols, min(len(r) for r in rows))
    h, w = rows[0].shape[1:3]
    scale = scale or max(1, round(84 / h))
    font_size = max(12, h * scale // 10)
    font = ImageFont.load_default(size=font_size)
    label_w = int(0.6 * font_size * max(len(s) for s in row_labels)) + 10
    pad = 2
    H, W = len(rows) * (h * scale + pad) + pad, label_w + n * (w * scale + pad) + pad
    canvas = Image.new("RGB", (W, H), (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    for i, (imgs, label) in enumerate(zip(rows, row_labels)):
        y0 = pad + i * (h * scale + pad)
        draw.text((4, y0 + (h * scale - font_size) // 2), label, fill=(0, 0, 0), font=font)
        for j in range(n):
            a = np.clip(np.asarray(imgs[j], np.float32), 0, 1)
            a = np.repeat(a, 3, -1) if a.shape[-1] == 1 else a
            im = Image.fromarray((a * 255).round().astype(np.uint8)).resize((w * scale, h * scale), Image.NEAREST)
            canvas.paste(im, (label_w + pad + j * (w * scale + pad), y0))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.png")
    canvas.save(tmp)
    os.replace(tmp, path)
    return path


def amplify(perturbation: np.ndarray) -> np.ndarray:
    """Map a signed perturbation to [0, 1] for display (0 -> gray, max |value| -> black/white)."""
    p = np.asarray(perturbation, np.float32)
    m = np.max(np.abs(p), axis=tuple(range(1, p.ndim)), keepdims=True)
    return 0.5 + 0.5 * p / np.maximum(m, 1e-8)


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
