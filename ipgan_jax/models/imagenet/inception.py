"""Inception-v3 with the exact layout of Keras Applications ``InceptionV3`` (Szegedy et al. 2016).

Reference family: ``keras.applications.InceptionV3`` (94 conv-BN-ReLU units: bias-free
convolutions, BatchNorm without scale, epsilon 1e-3; mixed0..mixed10; average pools that
exclude the padding, like TF/Keras; global average pool; 1000-way head returning logits).
Input: float32 NHWC RGB in [0, 1] at 299x299; Keras' ``tf`` preprocessing (x*2 - 1) runs
inside the model.

Parameter names: unit ``k`` (k = 0..93, the order in which Keras creates the layers, i.e. the
numeric order of its auto-generated names ``conv2d[_k]`` / ``batch_normalization[_k]``) is
``conv{k}`` + ``bn{k}``; the head is ``predictions``.
"""
from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from ipgan_jax.models.imagenet.preprocessing import check_input, tf
from ipgan_jax.models.precision import to_float32

BN_EPS = 1e-3
NUM_UNITS = 94

# Keras' ``model.layers`` order of the 94 units (a Functional model sorts layers by depth, not
# by creation): the i-th Conv2D (and the i-th BatchNormalization) of ``model.layers`` -- which a
# Keras-3 ``.weights.h5`` stores as ``conv2d_i`` / ``batch_normalization_i`` -- is unit
# KERAS_LAYER_ORDER[i]. Checked against a live Keras model in tests/test_port.py.
KERAS_LAYER_ORDER = tuple(int(i) for i in (
    "0,1,2,3,4,8,6,9,5,7,10,11,15,13,16,12,14,17,18,22,20,23,19,21,24,25,27,28,26,29,34,35,31,36,"
    "32,37,30,33,38,39,44,45,41,46,42,47,40,43,48,49,54,55,51,56,52,57,50,53,58,59,64,65,61,66,62,"
    "67,60,63,68,69,72,73,70,74,71,75,80,77,81,78,79,82,83,76,84,89,86,90,87,88,91,92,85,93").split(","))


def _avg_pool_same(x):
    return nn.avg_pool(x, (3, 3), (1, 1), padding="SAME", count_include_pad=False)


def _max_pool(x):
    return nn.max_pool(x, (3, 3), (2, 2), padding="VALID")


class InceptionV3(nn.Module):
    """Keras InceptionV3. ``__call__(x, train=False, features=False)`` -> logits [B, 1000] (and
    the 2048-d global-average-pooled features when ``features=True``)."""
    num_classes: int = 1000
    input_size: int = 299
    dtype: Any = None

    @nn.compact
    def __call__(self, x, train: bool = False, features: bool = False):
        x = jnp.asarray(tf(check_input(x, self.input_size, "InceptionV3")), self.dtype)
        count = [0]

        def cbn(h, filters, kh, kw, strides=(1, 1), padding="SAME"):
            k = count[0]
            count[0] += 1
            h = nn.Conv(filters, (kh, kw), strides, padding=padding, use_bias=False, dtype=self.dtype,
                        name=f"conv{k}")(h)
            h = nn.BatchNorm(use_running_average=not train, momentum=0.99, epsilon=BN_EPS, use_scale=False,
                             dtype=self.dtype, name=f"bn{k}")(h)
            return nn.relu(h)

        cat = lambda *xs: jnp.concatenate(xs, axis=-1)  # noqa: E731

        x = cbn(x, 32, 3, 3, (2, 2), "VALID")
        x = cbn(x, 32, 3, 3, padding="VALID")
        x = cbn(x, 64, 3, 3)
        x = _max_pool(x)
        x = cbn(x, 80, 1, 1, padding="VALID")
        x = cbn(x, 192, 3, 3, padding="VALID")
        x = _max_pool(x)

        for pool_filters in (32, 64, 64):                                  # mixed0, 1, 2: 35x35
            b1 = cbn(x, 64, 1, 1)
            b5 = cbn(cbn(x, 48, 1, 1), 64, 5, 5)
            b3 = cbn(cbn(cbn(x, 64, 1, 1), 96, 3, 3), 96, 3, 3)
            bp = cbn(_avg_pool_same(x), pool_filters, 1, 1)
            x = cat(b1, b5, b3, bp)

        b3 = cbn(x, 384, 3, 3, (2, 2), "VALID")                              # mixed3: -> 17x17
        bd = cbn(cbn(cbn(x, 64, 1, 1), 96, 3, 3), 96, 3, 3, (2, 2), "VALID")
        x = cat(b3, bd, _max_pool(x))

        for c7 in (128, 160, 160, 192):                                     # mixed4..7: 17x17
            b1 = cbn(x, 192, 1, 1)
            b7 = cbn(cbn(cbn(x, c7, 1, 1), c7, 1, 7), 192, 7, 1)
            bd = cbn(x, c7, 1, 1)
            bd = cbn(cbn(cbn(cbn(bd, c7, 7, 1), c7, 1, 7), c7, 7, 1), 192, 1, 7)
            bp = cbn(_avg_pool_same(x), 192, 1, 1)
            x = cat(b1, b7, bd, bp)

        b3 = cbn(cbn(x, 192, 1, 1), 320, 3, 3, (2, 2), "VALID")              # mixed8: -> 8x8
        b7 = cbn(cbn(cbn(cbn(x, 192, 1, 1), 192, 1, 7), 192, 7, 1), 192, 3, 3, (2, 2), "VALID")
        x = cat(b3, b7, _max_pool(x))

        for _ in range(2):                                                  # mixed9, 10: 8x8
            b1 = cbn(x, 320, 1, 1)
            b3 = cbn(x, 384, 1, 1)
            b3 = cat(cbn(b3, 384, 1, 3), cbn(b3, 384, 3, 1))
            bd = cbn(cbn(x, 448, 1, 1), 384, 3, 3)
            bd = cat(cbn(bd, 384, 1, 3), cbn(bd, 384, 3, 1))
            bp = cbn(_avg_pool_same(x), 192, 1, 1)
            x = cat(b1, b3, bd, bp)
        assert count[0] == NUM_UNITS, count[0]

        feats = jnp.mean(x, axis=(1, 2))
        logits = nn.Dense(self.num_classes, dtype=self.dtype, name="predictions")(feats)
        return to_float32((logits, feats) if features else logits)
