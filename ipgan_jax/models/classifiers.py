"""MNIST target classifiers (Flax linen). Inputs: float32 [B, 28, 28, 1] pixels in [0, 1].

Outputs: logits float32 [B, num_classes]. ``features=True`` also returns the penultimate
(high-level) feature vector used by IP-GAN's feature loss. ``train`` switches dropout on.
``dtype`` is the compute dtype (``ipgan_jax.models.precision``): params and outputs stay float32.

* LeNet-5 (LeCun et al. 1998) adapted to 28x28: conv6-5x5 (same) / pool / conv16-5x5 / pool /
  120 / 84 / 10, ReLU.
* M_CNN: the paper does not publish it; we use the standard "MNIST model" of Carlini & Wagner
  (2017): conv32-conv32-pool-conv64-conv64-pool-200-200-10, ReLU, dropout 0.5.
* AlexNet adapted to 28x28x1: AlexNet's five conv layers (3x3 kernels, widths 32-64-128-128-64,
  AlexNet's 96-256-384-384-256 scaled down for 28x28 and a CPU budget) with three max-pools,
  then 256-256-10 with dropout 0.5.
"""
from __future__ import annotations

import functools
from typing import Any, Sequence

import flax.linen as nn
import jax.numpy as jnp

from ipgan_jax.errors import ConfigError
from ipgan_jax.models.fast_conv import conv_general_dilated as _fast_conv
from ipgan_jax.models.precision import canonical, to_float32

# flax's Conv (same parameters and names), with gradients that XLA:CPU runs fast in loops
Conv = functools.partial(nn.Conv, conv_general_dilated=_fast_conv)

MNIST_MEAN, MNIST_STD = 0.1307, 0.3081


def _normalize(x, dtype):
    """Normalisation lives inside the model: callers always pass [0,1] pixels; -> ``dtype``
    (None: keep the input's dtype)."""
    return jnp.asarray((x - MNIST_MEAN) / MNIST_STD, dtype)


def _layers(dtype):
    """(Conv, Dense) computing in ``dtype``."""
    return functools.partial(Conv, dtype=dtype), functools.partial(nn.Dense, dtype=dtype)


class LeNet5(nn.Module):
    num_classes: int = 10
    dtype: Any = None

    @nn.compact
    def __call__(self, x, train: bool = False, features: bool = False):
        x = _normalize(x, self.dtype)
        conv, dense = _layers(self.dtype)
        x = nn.relu(conv(6, (5, 5), padding="SAME")(x))
        x = nn.max_pool(x, (2, 2), (2, 2))
        x = nn.relu(conv(16, (5, 5), padding="VALID")(x))
        x = nn.max_pool(x, (2, 2), (2, 2))
        x = x.reshape(x.shape[0], -1)
        x = nn.relu(dense(120)(x))
        h = nn.relu(dense(84)(x))
        logits = dense(self.num_classes)(h)
        return to_float32((logits, h) if features else logits)


class MCNN(nn.Module):
    num_classes: int = 10
    dropout: float = 0.5
    dtype: Any = None

    @nn.compact
    def __call__(self, x, train: bool = False, features: bool = False):
        x = _normalize(x, self.dtype)
        conv, dense = _layers(self.dtype)
        for width in (32, 64):
            x = nn.relu(conv(width, (3, 3), padding="VALID")(x))
            x = nn.relu(conv(width, (3, 3), padding="VALID")(x))
            x = nn.max_pool(x, (2, 2), (2, 2))
        x = x.reshape(x.shape[0], -1)
        x = nn.relu(dense(200)(x))
        x = nn.Dropout(self.dropout, deterministic=not train)(x)
        h = nn.relu(dense(200)(x))
        logits = dense(self.num_classes)(h)
        return to_float32((logits, h) if features else logits)


class AlexNetMNIST(nn.Module):
    num_classes: int = 10
    widths: Sequence[int] = (32, 64, 128, 128, 64)
    hidden: int = 256
    dropout: float = 0.5
    dtype: Any = None

    @nn.compact
    def __call__(self, x, train: bool = False, features: bool = False):
        x = _normalize(x, self.dtype)
        conv, dense = _layers(self.dtype)
        w = self.widths
        x = nn.relu(conv(w[0], (3, 3), padding="SAME")(x))
        x = nn.max_pool(x, (2, 2), (2, 2))                      # 14
        x = nn.relu(conv(w[1], (3, 3), padding="SAME")(x))
        x = nn.max_pool(x, (2, 2), (2, 2))                      # 7
        x = nn.relu(conv(w[2], (3, 3), padding="SAME")(x))
        x = nn.relu(conv(w[3], (3, 3), padding="SAME")(x))
        x = nn.relu(conv(w[4], (3, 3), padding="SAME")(x))
        x = nn.max_pool(x, (3, 3), (2, 2))                      # 3
        x = x.reshape(x.shape[0], -1)
        x = nn.Dropout(self.dropout, deterministic=not train)(x)
        x = nn.relu(dense(self.hidden)(x))
        x = nn.Dropout(self.dropout, deterministic=not train)(x)
        h = nn.relu(dense(self.hidden)(x))
        logits = dense(self.num_classes)(h)
        return to_float32((logits, h) if features else logits)


MNIST_CLASSIFIERS = {"lenet": LeNet5, "mcnn": MCNN, "alexnet": AlexNetMNIST}


def classifier_arch(name: str) -> str:
    """The architecture of a classifier name: ``lenet`` -> ``lenet``; ``lenet_s1`` -> ``lenet``.

    ``<arch>_<tag>`` names an independently trained copy of an MNIST architecture (its own
    initialisation, seeded by the full name): the surrogate models used as extra attack sources
    in training (``config.ipgan.attack_sources``).
    """
    arch = name.split("_", 1)[0]
    return arch if ("_" in name and arch in MNIST_CLASSIFIERS) else name


def get_classifier(name: str, num_classes: int = 10, dtype=None) -> nn.Module:
    """Build a classifier module by name, computing in ``dtype``. MNIST: lenet | mcnn | alexnet, or
    ``<arch>_<tag>`` for an independently trained copy (see :func:`classifier_arch`). ImageNet
    names are resolved by ``ipgan_jax.models.imagenet`` when it is installed."""
    if classifier_arch(name) in MNIST_CLASSIFIERS:
        return MNIST_CLASSIFIERS[classifier_arch(name)](num_classes=num_classes, dtype=canonical(dtype))
    try:
        from ipgan_jax.models import imagenet
    except ImportError:
        imagenet = None
    if imagenet is not None and name in getattr(imagenet, "IMAGENET_CLASSIFIERS", {}):
        return imagenet.get_imagenet_classifier(name, num_classes=num_classes, dtype=dtype)
    known = sorted(MNIST_CLASSIFIERS) + sorted(getattr(imagenet, "IMAGENET_CLASSIFIERS", {}))
    raise ConfigError(f"unknown classifier {name!r}; choose one of {known}")
