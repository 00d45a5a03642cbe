"""ResNet-50 with the exact layout of Keras Applications ``ResNet50`` (v1, He et al. 2016).

Reference family: ``keras.applications.ResNet50`` / ``keras.applications.resnet`` (the
"v1" layout: stride on the first 1x1 convolution of each stage's first block, biased
convolutions, BatchNorm epsilon 1.001e-5, softmax head replaced by logits). Input: float32
NHWC RGB in [0, 1] at 224x224; Keras' ``caffe`` preprocessing (x*255, RGB->BGR, minus the
BGR ImageNet mean) runs inside the model. Parameter names are the Keras layer names
(``conv1_conv``, ``conv2_block1_0_bn``, ..., ``predictions``), so Keras weights map by name.
"""
from __future__ import annotations

import functools
from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from ipgan_jax.models.imagenet.preprocessing import caffe, check_input
from ipgan_jax.models.precision import to_float32

BN_EPS = 1.001e-5
STAGES = (("conv2", 64, 3, 1), ("conv3", 128, 4, 2), ("conv4", 256, 6, 2), ("conv5", 512, 3, 2))


class ResNet50(nn.Module):
    """Keras ResNet50 v1. ``__call__(x, train=False, features=False)`` -> logits [B, 1000]
    (and the 2048-d global-average-pooled features when ``features=True``)."""
    num_classes: int = 1000
    input_size: int = 224
    dtype: Any = None

    @nn.compact
    def __call__(self, x, train: bool = False, features: bool = False):
        x = jnp.asarray(caffe(check_input(x, self.input_size, "ResNet50")), self.dtype)
        conv = functools.partial(nn.Conv, dtype=self.dtype)

        def bn(h, name):
            return nn.BatchNorm(use_running_average=not train, momentum=0.99, epsilon=BN_EPS, dtype=self.dtype,
                                name=name)(h)

        x = conv(64, (7, 7), (2, 2), padding=((3, 3), (3, 3)), name="conv1_conv")(x)
        x = nn.relu(bn(x, "conv1_bn"))
        x = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))                 # ZeroPadding2D then valid pool
        x = nn.max_pool(x, (3, 3), (2, 2), padding="VALID")
        for stage, filters, blocks, stride in STAGES:
            for b in range(1, blocks + 1):
                name = f"{stage}_block{b}"
                s = stride if b == 1 else 1
                if b == 1:
                    shortcut = conv(4 * filters, (1, 1), (s, s), padding="VALID", name=f"{name}_0_conv")(x)
                    shortcut = bn(shortcut, f"{name}_0_bn")
                else:
                    shortcut = x
                h = conv(filters, (1, 1), (s, s), padding="VALID", name=f"{name}_1_conv")(x)
                h = nn.relu(bn(h, f"{name}_1_bn"))
                h = conv(filters, (3, 3), padding="SAME", name=f"{name}_2_conv")(h)
                h = nn.relu(bn(h, f"{name}_2_bn"))
                h = conv(4 * filters, (1, 1), padding="VALID", name=f"{name}_3_conv")(h)
                h = bn(h, f"{name}_3_bn")
                x = nn.relu(shortcut + h)
        feats = jnp.mean(x, axis=(1, 2))
        logits = nn.Dense(self.num_classes, dtype=self.dtype, name="predictions")(feats)
        return to_float32((logits, feats) if features else logits)


def keras_layer_order():
    """Weighted layers in Keras' ``model.layers`` order (what a Keras-3 ``.weights.h5`` numbers
    per class): in each stage's first block the shortcut sits between the 3x3 and last conv."""
    order = ["conv1_conv", "conv1_bn"]
    for stage, _, blocks, _ in STAGES:
        for b in range(1, blocks + 1):
            n = f"{stage}_block{b}"
            order += [f"{n}_1_conv", f"{n}_1_bn", f"{n}_2_conv", f"{n}_2_bn"]
            if b == 1:
                order += [f"{n}_0_conv", f"{n}_3_conv", f"{n}_0_bn", f"{n}_3_bn"]
            else:
                order += [f"{n}_3_conv", f"{n}_3_bn"]
    return order + ["predictions"]
