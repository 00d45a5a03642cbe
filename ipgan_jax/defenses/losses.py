"""Loss terms as pure functions (all reduce to a scalar mean over the batch).

Images are float32 [B, H, W, C] in [0, 1]; logits float32 [B, K] (or [B, ...] patch maps
for the GAN terms); labels int32 [B].
"""
from __future__ import annotations

import jax.numpy as jnp
import optax

from ipgan_jax.attacks.losses import cross_entropy


def pixel_loss(x_rec, x):
    """Mean squared error per pixel, ``mean((x_rec - x)^2)``."""
    return jnp.mean(jnp.square(x_rec - x))


def gan_generator_loss(d_fake_logits):
    """Non-saturating generator loss ``BCE(D(x_rec), 1)``."""
    return jnp.mean(optax.sigmoid_binary_cross_entropy(d_fake_logits, jnp.ones_like(d_fake_logits)))


def gan_discriminator_loss(d_real_logits, d_fake_logits):
    """``BCE(D(x), 1) + BCE(D(x_rec), 0)``."""
    real = optax.sigmoid_binary_cross_entropy(d_real_logits, jnp.ones_like(d_real_logits))
    fake = optax.sigmoid_binary_cross_entropy(d_fake_logits, jnp.zeros_like(d_fake_logits))
    return jnp.mean(real) + jnp.mean(fake)


def classification_loss(logits, labels):
    """Target-DNN guidance: cross-entropy of f(x_rec) against the true label (the float32-stable
    form of :func:`ipgan_jax.attacks.losses.cross_entropy`)."""
    return jnp.mean(cross_entropy(logits, labels))


def feature_loss(feat_rec, feat_clean):
    """High-level feature loss ``mean |phi(x_rec) - phi(x)|`` (L1)."""
    return jnp.mean(jnp.abs(feat_rec - feat_clean))
