"""DeepFool (Moosavi-Dezfooli et al. 2016), L2 and Linf, restricted to top-k candidate classes.

Each step linearises f_k(x) = z_k(x) - z_y(x) for the candidate classes k and moves to the
nearest linearised boundary: r = (|f_k| + 1e-4) / ||w_k||_2 * w_k / ||w_k||_2 (L2) or
(|f_k| + 1e-4) / ||w_k||_1 * sign(w_k) (Linf) with w_k = grad f_k and k the closest candidate.
The accumulated perturbation is applied with ``(1 + overshoot)``; examples stop once they are
adversarial, and the loop ends when all are (or after ``steps``).

Untargeted: the candidates are y plus the ``candidates - 1`` highest other classes of the clean
logits, so a step costs one forward pass and ``candidates`` backward passes whatever K is (1000
ImageNet classes are fine). Targeted: the only boundary is between the target and the current
strongest other class.
"""
from __future__ import annotations

from typing import Callable, Optional

import jax
import jax.numpy as jnp

from ipgan_jax import contracts
from ipgan_jax.attacks import core, losses


@contracts.attack_contract(on_empty=core.empty_result)
def deepfool(logits_fn: Callable, x: jax.Array, y: jax.Array, *, key: Optional[jax.Array] = None,
             targeted: bool = False, steps: int = 50, overshoot: float = 0.02, candidates: int = 10,
             norm: str = "l2", eps: Optional[float] = None) -> jax.Array:
    """DeepFool. x: float [B, ...] in [0, 1]; y: int [B] (targets when ``targeted``).

    Returns x_adv in [0, 1] with x's shape/dtype; with ``eps`` set the perturbation is projected
    onto the ``norm`` ball of radius eps. Deterministic (``key`` is only used by a randomised model,
    which is attacked with the one fixed draw ``core.model_key(key)``).
    """
    logits_fn = core.deterministic_model(logits_fn, key)
    core.check_norm(norm)
    steps = int(steps)
    x = jnp.asarray(x)
    y = jnp.asarray(y).astype(jnp.int32)
    dt = x.dtype
    z0 = logits_fn(x)
    num_classes = z0.shape[-1]
    c = min(int(candidates), num_classes)
    if c < 2:
        raise ValueError(f"deepfool needs candidates >= 2 and >= 2 classes, got {candidates}, K={num_classes}")
    if not targeted:
        masked = jnp.where(jnp.arange(num_classes)[None] == y[:, None], -jnp.inf, z0)
        others = jax.lax.top_k(masked, c - 1)[1].astype(jnp.int32)
        fixed_cand = jnp.concatenate([y[:, None], others], axis=1)          # [B, c]

    def rowwise(v):
        return core.expand_per_example(v, x)

    def body(carry):
        i, xc, p_total, _ = carry
        z, vjp = jax.vjp(logits_fn, xc)
        if targeted:
            cand = jnp.stack([losses.best_other_class(z, y), y], axis=1)     # [B, 2]
        else:
            cand = fixed_cand
        is_adv = losses.is_adversarial(z, y, targeted)
        grads = jax.vmap(lambda idx: vjp(jax.nn.one_hot(idx, num_classes, dtype=z.dtype))[0],
                         in_axes=1)(cand)                                   # [c', B, ...]
        zc = jnp.take_along_axis(z, cand, axis=1)                          # [B, c']
        f = (zc[:, 1:] - zc[:, :1]).astype(dt)                              # [B, c'-1]
        w = (grads[1:] - grads[:1]).astype(dt)                              # [c'-1, B, ...]
        if norm == "l2":
            wn = jax.vmap(core.l2_norm)(w).T                                # [B, c'-1]
        else:
            wn = jax.vmap(core.l1_norm)(w).T
        dist = jnp.abs(f) / (wn + 1e-8)
        best = jnp.argmin(dist, axis=1)
        rows = jnp.arange(x.shape[0])
        d_best = dist[rows, best] + 1e-4
        w_best = jnp.moveaxis(w, 0, 1)[rows, best]                          # [B, ...]
        if norm == "l2":
            step = rowwise(d_best / (wn[rows, best] + 1e-8)) * w_best
        else:
            step = rowwise(d_best) * jnp.sign(w_best)
        keep = rowwise(is_adv)
        p_total = jnp.where(keep, p_total, p_total + step)
        xn = jnp.where(keep, xc, core.clip_box(x + (1.0 + overshoot) * p_total))
        return i + 1, xn, p_total, jnp.all(is_adv)

    init = (jnp.zeros((), jnp.int32), x, jnp.zeros_like(x), jnp.zeros((), bool))
    _, x_adv, _, _ = jax.lax.while_loop(lambda c_: (c_[0] < steps) & ~c_[3], body, init)
    if eps is not None:
        x_adv = core.get_projection(norm)(x_adv, x, eps)
    return x_adv.astype(dt)
