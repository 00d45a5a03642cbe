"""Input contracts at the public edges (attacks, ``defend``, the evaluation flags).

Every check raises ``ValueError`` with a message that says what was expected. Shape and dtype
checks are static, so they also run on tracers (inside ``jax.jit``) at no cost; value checks
(range, finiteness, label bounds) run only on concrete arrays and are skipped on tracers, so a
jitted hot path is exactly as fast as without them.

Conventions: images float [B, H, W, C] (NHWC) in [0, 1]; labels int [B] in [0, K); every eps in
pixel units, finite and >= 0; step sizes finite and > 0.
"""
from __future__ import annotations

import math
from typing import Optional

import jax
import numpy as np

_TOL = 1e-5   # float rounding of an image computed in float32 (e.g. x + delta clipped)


def is_concrete(x) -> bool:
    """True when ``x``'s values are known here (not a tracer inside jit/grad/vmap)."""
    return not isinstance(x, jax.core.Tracer)


def _dtype(x) -> np.dtype:
    return np.dtype(x.dtype) if hasattr(x, "dtype") else np.asarray(x).dtype


def check_images(x, name: str = "images") -> None:
    """``x`` must be float [B, H, W, C] (NHWC) with values in [0, 1] (values checked when concrete)."""
    shape, dtype = tuple(np.shape(x)), _dtype(x)
    if len(shape) != 4:
        raise ValueError(f"{name} must be a batch [B, H, W, C] (NHWC) in [0, 1]; got shape {shape}")
    if shape[1] in (1, 3) and shape[3] not in (1, 3):
        raise ValueError(f"{name} of shape {shape} look like NCHW [B, C, H, W]; this library takes NHWC "
                         f"[B, H, W, C] in [0, 1]: transpose with x.transpose(0, 2, 3, 1)")
    if not np.issubdtype(dtype, np.floating):
        raise ValueError(f"{name} must be float NHWC in [0, 1]; got dtype {dtype} (for uint8 pixels use "
                         f"x.astype('float32') / 255)")
    if not is_concrete(x):
        return
    a = np.asarray(x)
    if not np.isfinite(a).all():
        raise ValueError(f"{name} hold NaN/Inf; expected float NHWC in [0, 1]")
    lo, hi = (float(a.min()), float(a.max())) if a.size else (0.0, 0.0)
    if lo < -_TOL or hi > 1 + _TOL:
        hint = " (they look like [0, 255] pixels: divide by 255)" if hi > 1.5 and lo >= 0 else ""
        raise ValueError(f"{name} must be in [0, 1] (NHWC); got values in [{lo:.4g}, {hi:.4g}]{hint}")


def check_labels(y, batch: int, num_classes: Optional[int] = None, name: str = "labels") -> None:
    """``y`` must be int [batch] with values in [0, num_classes) (values checked when concrete)."""
    shape, dtype = tuple(np.shape(y)), _dtype(y)
    if shape != (batch,):
        raise ValueError(f"{name} must have shape [B] = ({batch},) to match the images; got shape {shape}")
    if not np.issubdtype(dtype, np.integer):
        raise ValueError(f"{name} must be integer class indices; got dtype {dtype}")
    if not is_concrete(y) or batch == 0:
        return
    a = np.asarray(y)
    if a.min() < 0 or (num_classes is not None and a.max() >= num_classes):
        k = "K" if num_classes is None else str(num_classes)
        raise ValueError(f"{name} must be in [0, {k}); got values in [{a.min()}, {a.max()}]")


def _scalar(v, what: str) -> Optional[float]:
    if v is None or not is_concrete(v):
        return None
    a = np.asarray(v)
    if a.size != 1:
        raise ValueError(f"{what} must be a scalar; got shape {a.shape}")
    return float(a.reshape(()))


def check_eps(eps, name: str = "eps") -> None:
    """``eps`` (pixel units) must be finite and >= 0 (skipped for None and tracers)."""
    v = _scalar(eps, name)
    if v is not None and not (math.isfinite(v) and v >= 0):
        raise ValueError(f"{name} must be finite and >= 0 (pixel units, images in [0, 1]); got {v}")


def check_step_size(step_size, name: str = "step_size") -> None:
    """``step_size`` must be finite and > 0 (skipped for None and tracers)."""
    v = _scalar(step_size, name)
    if v is not None and not (math.isfinite(v) and v > 0):
        raise ValueError(f"{name} must be finite and > 0; got {v}")


def check_attack_inputs(logits_fn, x, y) -> None:
    """Images NHWC in [0, 1] and labels int [B] in [0, K), K from ``logits_fn``'s output shape
    (looked up only when the labels are concrete, i.e. outside jit)."""
    check_images(x)
    k = None
    if is_concrete(y) and is_concrete(x):
        k = int(jax.eval_shape(logits_fn, jax.ShapeDtypeStruct(np.shape(x), x.dtype)).shape[-1])
    check_labels(y, np.shape(x)[0], k)
