"""Inverse-perturbation generators (Flax linen).

``UNetGenerator(x)``: x float32 [B, H, W, C] in [0, 1] -> raw map float32 [B, H, W, C]
(unbounded; ``ipgan_jax.models.fusion.fuse`` bounds it with ``eps_inv * tanh``). Any H, W
(28, 224, 299 ...): upsampling resizes to the skip connection's exact shape.

* MNIST size (``depth=2``, width 32): 28 -> 14 -> 7, two residual blocks at 7x7, ~0.3M params.
* ImageNet size (``depth=4``, width 32, 6 residual blocks at 1/16 resolution): an HGD-like
  U-Net with a ResNet-block bottleneck, ~4M params.
GroupNorm instead of BatchNorm keeps G stateless (no batch statistics), so ``apply`` is a pure
function of (params, x) both in training and at test time.
"""
from __future__ import annotations

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp

from ipgan_jax.models.fast_conv import conv_general_dilated as _fast_conv

# flax's Conv (same parameters and names), with gradients that XLA:CPU runs fast in loops
Conv = functools.partial(nn.Conv, conv_general_dilated=_fast_conv)


def _norm(ch):
    return nn.GroupNorm(num_groups=min(8, ch), epsilon=1e-5)


class ConvBlock(nn.Module):
    features: int
    strides: int = 1

    @nn.compact
    def __call__(self, x):
        x = Conv(self.features, (3, 3), strides=self.strides, padding="SAME")(x)
        return nn.leaky_relu(_norm(self.features)(x), 0.2)


class ResBlock(nn.Module):
    features: int

    @nn.compact
    def __call__(self, x):
        h = nn.relu(_norm(self.features)(Conv(self.features, (3, 3), padding="SAME")(x)))
        h = _norm(self.features)(Conv(self.features, (3, 3), padding="SAME")(h))
        return x + h


class UNetGenerator(nn.Module):
    out_channels: int = 1
    width: int = 32
    depth: int = 2
    num_res_blocks: int = 2
    max_width: int = 256

    @nn.compact
    def __call__(self, x):
        chans = [min(self.width * 2 ** i, self.max_width) for i in range(self.depth + 1)]
        h = ConvBlock(chans[0])(x * 2.0 - 1.0)
        skips = [h]
        for c in chans[1:]:
            h = ConvBlock(c, strides=2)(h)
            h = ConvBlock(c)(h)
            skips.append(h)
        for _ in range(self.num_res_blocks):
            h = ResBlock(chans[-1])(h)
        for c, skip in zip(reversed(chans[:-1]), reversed(skips[:-1])):
            h = jax.image.resize(h, (h.shape[0], *skip.shape[1:3], h.shape[-1]), "nearest")
            h = ConvBlock(c)(h)
            h = ConvBlock(c)(jnp.concatenate([h, skip], -1))
        # Zero-initialised head: G starts as the identity defense (x_rec = x_adv).
        return Conv(self.out_channels, (3, 3), padding="SAME", kernel_init=nn.initializers.zeros)(h)


def get_generator(name: str, channels: int, width: int = 32, image_size: int = 28) -> nn.Module:
    """'unet' picks the MNIST-size U-Net for small images and the ImageNet-size one for >= 128."""
    if name != "unet":
        raise ValueError(f"unknown generator {name!r}; choose 'unet'")
    if image_size >= 128:
        return UNetGenerator(out_channels=channels, width=width, depth=4, num_res_blocks=6)
    return UNetGenerator(out_channels=channels, width=width, depth=2, num_res_blocks=2)
