"""Image grids (PNG, via PIL) for sample pictures of training and evaluation.

Images are float NHWC in [0, 1]; grayscale (C = 1) is shown as gray.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from ipgan_jax.files import atomic_path


def image_grid(rows: Sequence[np.ndarray], row_labels: Sequence[str], path: str | os.PathLike,
               max_cols: int = 8, scale: int | None = None) -> Path:
    """Save a grid whose row i shows images ``rows[i]`` ([N, H, W, C] in [0, 1]) with a label.

    Values are clipped to [0, 1]; grayscale images are shown as gray. ``scale`` (default: about 84 px
    per tile, so 3 for MNIST and 1 for ImageNet) enlarges tiles by pixel repetition. Written atomically.
    """
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
    with atomic_path(path, suffix=".png") as tmp:
        canvas.save(tmp)
    return Path(path)


def amplify(perturbation: np.ndarray) -> np.ndarray:
    """Map a signed perturbation to [0, 1] for display (0 -> gray, max |value| -> black/white)."""
    p = np.asarray(perturbation, np.float32)
    m = np.max(np.abs(p), axis=tuple(range(1, p.ndim)), keepdims=True)
    return 0.5 + 0.5 * p / np.maximum(m, 1e-8)
