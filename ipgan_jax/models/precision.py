"""Mixed precision: the ``config.train.compute_dtype`` option and the casts every model shares.

``float32`` (default): everything runs as before. ``bfloat16``: convolutions and matmuls run in
bf16 (flax ``dtype=``) while params, gradients, optimizer state and norm statistics stay float32
(flax's ``param_dtype`` default; Batch/Group/LayerNorm reduce in float32). Each model casts its
input to the compute dtype after its own preprocessing (done in float32) and returns float32
outputs (:func:`to_float32`), so losses, softmaxes and clips never see bf16.

A model's ``dtype`` field is ``None`` for the float32 default (flax's convention: compute in the
dtype of the inputs and params), so the same modules still run in float64 under ``jax.enable_x64``
(the float64 reference gradients of the attack tests rely on it); :func:`canonical` maps float32
to None.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from ipgan_jax.errors import ConfigError

COMPUTE_DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}


def compute_dtype(config):
    """``config.train.compute_dtype`` as a jnp dtype; ConfigError when it is not one of :data:`COMPUTE_DTYPES`."""
    name = config.train.compute_dtype
    if name not in COMPUTE_DTYPES:
        raise ConfigError(f"config.train.compute_dtype={name!r}: choose one of {sorted(COMPUTE_DTYPES)}")
    return COMPUTE_DTYPES[name]


def canonical(dtype):
    """A model's ``dtype`` field for compute dtype ``dtype``: None (no casts) for None / float32."""
    return None if dtype is None or jnp.dtype(dtype) == jnp.float32 else dtype


def with_dtype(module, dtype):
    """``module`` computing in ``dtype``: a clone with its ``dtype`` field set (itself when equal)."""
    dtype = canonical(dtype)
    if canonical(getattr(module, "dtype", None)) == dtype:
        return module
    return module.clone(dtype=dtype)


def to_float32(outputs):
    """Outputs (logits, features, maps) at least float32: narrower floats (bf16) are cast up,
    float32 and float64 pass unchanged."""
    def up(a):
        return jnp.asarray(a, jnp.float32) if jnp.finfo(a.dtype).bits < 32 else a
    return jax.tree.map(up, outputs)
