"""A learned smooth surrogate of a defense, for BPDA (Athalye et al. 2018): the attack view ``surrogate``.

A defense whose exact gradient is useless (a saturated fusion, a near-binariser) may still be a smooth-looking map
from inputs to outputs. The attacker fits a small smooth network s to imitate d, then differentiates s in place
of d while the forward pass stays d's own (``attacks.transforms.bpda(d, backward=s)``). Unlike the identity of
plain BPDA, s follows what d actually does to the image. s is fitted on training images (never test images) and on
those images plus uniform noise in the eps box, the region a white-box attack visits; the fit is the attacker's
cost, paid once per (classifier, defense) in a run.

    s, mse = fit_surrogate(defend, images, key=key, eps=0.3, steps=1000)   # images float [N, H, W, C] in [0, 1]
    view = bpda(defend, backward=s)
"""
from __future__ import annotations

from typing import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax


class SmoothSurrogate(nn.Module):
    """x + a small residual conv net with GELU activations: smooth everywhere, the identity at initialisation.

    Input and output float [B, H, W, C] (no clip: its gradient never vanishes at the box edges)."""
    width: int = 32

    @nn.compact
    def __call__(self, x):
        h = nn.gelu(nn.Conv(self.width, (3, 3))(x))
        h = nn.gelu(nn.Conv(self.width, (3, 3))(h))
        return x + nn.Conv(x.shape[-1], (3, 3), kernel_init=nn.initializers.zeros)(h)


def fit_surrogate(defend: Callable, images, *, key, eps: float, steps: int = 1000, batch_size: int = 64,
                  width: int = 32, lr: float = 1e-3) -> tuple[Callable, float]:
    """Fit a :class:`SmoothSurrogate` to ``defend`` by mean squared error.

    Args:
        defend: the defense, ``x -> x_rec``, float [B, H, W, C] in [0, 1] (jit-able).
        images: float [N, H, W, C] in [0, 1], training images (not test images).
        key: PRNG key (initialisation, batches, noise).
        eps: Linf radius (pixel units) of the uniform noise added to half of each batch.
        steps: Adam steps.
        batch_size: images per step.
        width: the surrogate's channels.
        lr: Adam's learning rate.

    Returns:
        ``(surrogate, mse)``: ``surrogate(x) -> x_rec`` (jit-able, smooth) and its mean squared error to
        ``defend`` over the last 10% of the steps' batches.
    """
    images = jnp.asarray(np.asarray(images, np.float32))
    model = SmoothSurrogate(width)
    k_init, k_run = jax.random.split(key)
    params = model.init(k_init, images[:1])
    opt = optax.adam(lr)

    def step(carry, k):
        params, state = carry
        k_idx, k_noise, k_half = jax.random.split(k, 3)
        x = images[jax.random.randint(k_idx, (batch_size,), 0, images.shape[0])]
        noisy = jax.random.bernoulli(k_half, 0.5, (batch_size, 1, 1, 1))
        x = jnp.where(noisy, jnp.clip(x + jax.random.uniform(k_noise, x.shape, x.dtype, -eps, eps), 0, 1), x)
        target = jax.lax.stop_gradient(defend(x))
        loss, grads = jax.value_and_grad(lambda p: jnp.mean(jnp.square(model.apply(p, x) - target)))(params)
        updates, state = opt.update(grads, state, params)
        return (optax.apply_updates(params, updates), state), loss

    (params, _), losses = jax.jit(lambda p, ks: jax.lax.scan(step, (p, opt.init(p)), ks))(
        params, jax.random.split(k_run, steps))
    tail = max(1, steps // 10)
    return (lambda x: model.apply(params, x)), float(jnp.mean(losses[-tail:]))
