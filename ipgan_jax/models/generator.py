"""Inverse-perturbation generators (Flax linen).

``UNetGenerator(x)``: x float32 [B, H, W, C] in [0, 1] -> raw map float32 [B, H, W, C]
(unbounded; ``ipgan_jax.models.fusion.fuse`` bounds it with ``eps_inv * tanh``). Any H, W
(28, 224, 299 ...): upsampling resizes to the skip connection's exact shape. ``dtype``: the
compute dtype (``ipgan_jax.models.precision``); params and the output map stay float32.

* MNIST size (``depth=2``, width 32): 28 -> 14 -> 7, two residual blocks at 7x7, ~0.3M params.
* ImageNet size (``depth=4``, width 32, 6 residual blocks at 1/16 resolution): an HGD-like
  U-Net with a ResNet-block bottleneck, ~4M params.
GroupNorm instead of BatchNorm keeps G stateless (no batch statistics), so ``apply`` is a pure
function of (params, x) both in training and at test time.
"""
from __future__ import annotations

import functools
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from ipgan_jax.errors import ConfigError
from ipgan_jax.models.fast_conv import conv_general_dilated as _fast_conv
from ipgan_jax.models.precision import canonical, to_float32

# flax's Conv (same parameters and names), with gradients that XLA:CPU runs fast in loops
Conv = functools.partial(nn.Conv, conv_general_dilated=_fast_conv)


def _norm(ch, dtype):
    """GroupNorm with float32 statistics, output in ``dtype``."""
    return nn.GroupNorm(num_groups=min(8, ch), epsilon=1e-5, dtype=dtype)


class ConvBlock(nn.Module):
    features: int
    strides: int = 1
    dtype: Any = None

    @nn.compact
    def __call__(self, x):
        x = Conv(self.features, (3, 3), strides=self.strides, padding="SAME", dtype=self.dtype)(x)
        return nn.leaky_relu(_norm(self.features, self.dtype)(x), 0.2)


class ResBlock(nn.Module):
    features: int
    dtype: Any = None

    @nn.compact
    def __call__(self, x):
        f, dt = self.features, self.dtype
        h = nn.relu(_norm(f, dt)(Conv(f, (3, 3), padding="SAME", dtype=dt)(x)))
        h = _norm(f, dt)(Conv(f, (3, 3), padding="SAME", dtype=dt)(h))
        return x + h


class UNetGenerator(nn.Module):
    out_channels: int = 1
    width: int = 32
    depth: int = 2
    num_res_blocks: int = 2
    max_width: int = 256
    dtype: Any = None

    @nn.compact
    def __call__(self, x):
        dt = self.dtype
        chans = [min(self.width * 2 ** i, self.max_width) for i in range(self.depth + 1)]
        h = ConvBlock(chans[0], dtype=dt)(jnp.asarray(x * 2.0 - 1.0, dt))
        skips = [h]
        for c in chans[1:]:
            h = ConvBlock(c, strides=2, dtype=dt)(h)
            h = ConvBlock(c, dtype=dt)(h)
            skips.append(h)
        for _ in range(self.num_res_blocks):
            h = ResBlock(chans[-1], dtype=dt)(h)
        for c, skip in zip(reversed(chans[:-1]), reversed(skips[:-1])):
            h = jax.image.resize(h, (h.shape[0], *skip.shape[1:3], h.shape[-1]), "nearest")
            h = ConvBlock(c, dtype=dt)(h)
            h = ConvBlock(c, dtype=dt)(jnp.concatenate([h, skip], -1))
        # Zero-initialised head: G starts as the identity defense (x_rec = x_adv).
        head = Conv(self.out_channels, (3, 3), padding="SAME", kernel_init=nn.initializers.zeros, dtype=dt)
        return to_float32(head(h))


def get_generator(name: str, channels: int, width: int = 32, image_size: int = 28,
                  dtype=None) -> nn.Module:
    """'unet' picks the MNIST-size U-Net for small images and the ImageNet-size one for >= 128;
    ``dtype`` is its compute dtype."""
    if name != "unet":
        raise ConfigError(f"unknown generator {name!r}; choose 'unet'")
    depth, num_res_blocks = (4, 6) if image_size >= 128 else (2, 2)
    return UNetGenerator(out_channels=channels, width=width, depth=depth, num_res_blocks=num_res_blocks,
                         dtype=canonical(dtype))
