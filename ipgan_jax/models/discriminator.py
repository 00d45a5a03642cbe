"""Discriminators (Flax linen): x float32 [B, H, W, C] in [0, 1] -> real/fake logits.

* ``DCGANDiscriminator`` (MNIST): conv64 s2 / conv128 s2 / conv256 s2 with LeakyReLU(0.2)
  and LayerNorm, then a linear layer -> logits [B].
* ``PatchGANDiscriminator`` (ImageNet; pix2pix 70x70): conv64 s2 / 128 s2 / 256 s2 / 512 s1 /
  1 s1 -> a logit map [B, H/8, W/8]; the GAN loss averages over patches.
Stateless (LayerNorm / no norm), so D is a pure function of (params, x). ``dtype``: the compute
dtype (``ipgan_jax.models.precision``); params and the logits stay float32.
"""
from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from ipgan_jax.errors import ConfigError
from ipgan_jax.models.precision import canonical, to_float32


class DCGANDiscriminator(nn.Module):
    width: int = 64
    dtype: Any = None

    @nn.compact
    def __call__(self, x):
        h = jnp.asarray(x * 2.0 - 1.0, self.dtype)
        for i, mult in enumerate((1, 2, 4)):
            h = nn.Conv(self.width * mult, (4, 4), strides=2, padding="SAME", dtype=self.dtype)(h)
            if i > 0:
                h = nn.LayerNorm(dtype=self.dtype)(h)
            h = nn.leaky_relu(h, 0.2)
        return to_float32(nn.Dense(1, dtype=self.dtype)(h.reshape(h.shape[0], -1))[:, 0])


class PatchGANDiscriminator(nn.Module):
    width: int = 64
    dtype: Any = None

    @nn.compact
    def __call__(self, x):
        h = jnp.asarray(x * 2.0 - 1.0, self.dtype)
        for i, (mult, stride) in enumerate(((1, 2), (2, 2), (4, 2), (8, 1))):
            h = nn.Conv(self.width * mult, (4, 4), stride, padding="SAME", dtype=self.dtype)(h)
            if i > 0:
                h = nn.LayerNorm(reduction_axes=(-3, -2, -1), dtype=self.dtype)(h)
            h = nn.leaky_relu(h, 0.2)
        return to_float32(nn.Conv(1, (4, 4), padding="SAME", dtype=self.dtype)(h)[..., 0])


def get_discriminator(name: str, width: int = 64, dtype=None) -> nn.Module:
    """'dcgan' (MNIST) or 'patchgan' (ImageNet) of base ``width``, computing in ``dtype``."""
    if name == "dcgan":
        return DCGANDiscriminator(width, canonical(dtype))
    if name == "patchgan":
        return PatchGANDiscriminator(width, canonical(dtype))
    raise ConfigError(f"unknown discriminator {name!r}; choose 'dcgan' or 'patchgan'")
