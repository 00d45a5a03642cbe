"""Discriminators (Flax linen): x float32 [B, H, W, C] in [0, 1] -> real/fake logits.

* ``DCGANDiscriminator`` (MNIST): conv64 s2 / conv128 s2 / conv256 s2 with LeakyReLU(0.2)
  and LayerNorm, then a linear layer -> logits [B].
* ``PatchGANDiscriminator`` (ImageNet; pix2pix 70x70): conv64 s2 / 128 s2 / 256 s2 / 512 s1 /
  1 s1 -> a logit map [B, H/8, W/8]; the GAN loss averages over patches.
Stateless (LayerNorm / no norm), so D is a pure function of (params, x).
"""
from __future__ import annotations

import flax.linen as nn


class DCGANDiscriminator(nn.Module):
    width: int = 64

    @nn.compact
    def __call__(self, x):
        h = x * 2.0 - 1.0
        for i, mult in enumerate((1, 2, 4)):
            h = nn.Conv(self.width * mult, (4, 4), strides=2, padding="SAME")(h)
            if i > 0:
                h = nn.LayerNorm()(h)
            h = nn.leaky_relu(h, 0.2)
        return nn.Dense(1)(h.reshape(h.shape[0], -1))[:, 0]


class PatchGANDiscriminator(nn.Module):
    width: int = 64

    @nn.compact
    def __call__(self, x):
        h = x * 2.0 - 1.0
        for i, (mult, stride) in enumerate(((1, 2), (2, 2), (4, 2), (8, 1))):
            h = nn.Conv(self.width * mult, (4, 4), strides=stride, padding="SAME")(h)
            if i > 0:
                h = nn.LayerNorm(reduction_axes=(-3, -2, -1))(h)
            h = nn.leaky_relu(h, 0.2)
        return nn.Conv(1, (4, 4), padding="SAME")(h)[..., 0]


def get_discriminator(name: str, width: int = 64) -> nn.Module:
    if name == "dcgan":
        return DCGANDiscriminator(width)
    if name == "patchgan":
        return PatchGANDiscriminator(width)
    raise ValueError(f"unknown discriminator {name!r}; choose 'dcgan' or 'patchgan'")
