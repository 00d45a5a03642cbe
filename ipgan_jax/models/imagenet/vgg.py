"""VGG-19 with the exact layout of Keras Applications ``VGG19`` (Simonyan & Zisserman 2015).

Reference family: ``keras.applications.VGG19`` (16 3x3 'same' convolutions with ReLU in five
blocks of 2-2-4-4-4, 2x2 max-pools, flatten (NHWC order), fc1/fc2 4096 ReLU, 1000-way head
returning logits). Input: float32 NHWC RGB in [0, 1] at exactly 224x224 (the flatten fixes
the size); Keras' ``caffe`` preprocessing runs inside the model. Parameter names are the Keras
layer names (``block1_conv1`` ... ``fc1``, ``fc2``, ``predictions``).
"""
from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from ipgan_jax.models.imagenet.preprocessing import caffe, check_input
from ipgan_jax.models.precision import to_float32

BLOCKS = ((64, 2), (128, 2), (256, 4), (512, 4), (512, 4))


class VGG19(nn.Module):
    """Keras VGG19. ``__call__(x, train=False, features=False)`` -> logits [B, 1000] (and the
    4096-d fc2 activations when ``features=True``). VGG has no BatchNorm or dropout, so
    ``train`` changes nothing."""
    num_classes: int = 1000
    input_size: int = 224
    dtype: Any = None

    @nn.compact
    def __call__(self, x, train: bool = False, features: bool = False):
        x = jnp.asarray(caffe(check_input(x, self.input_size, "VGG19")), self.dtype)
        for bi, (width, n) in enumerate(BLOCKS, start=1):
            for ci in range(1, n + 1):
                conv = nn.Conv(width, (3, 3), padding="SAME", dtype=self.dtype, name=f"block{bi}_conv{ci}")
                x = nn.relu(conv(x))
            x = nn.max_pool(x, (2, 2), (2, 2))
        x = x.reshape(x.shape[0], -1)
        x = nn.relu(nn.Dense(4096, dtype=self.dtype, name="fc1")(x))
        feats = nn.relu(nn.Dense(4096, dtype=self.dtype, name="fc2")(x))
        logits = nn.Dense(self.num_classes, dtype=self.dtype, name="predictions")(feats)
        return to_float32((logits, feats) if features else logits)


def keras_layer_order():
    order = [f"block{bi}_conv{ci}" for bi, (_, n) in enumerate(BLOCKS, start=1) for ci in range(1, n + 1)]
    return order + ["fc1", "fc2", "predictions"]
