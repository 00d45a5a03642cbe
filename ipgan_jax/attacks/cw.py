"""Carlini & Wagner L2 attack (Carlini & Wagner 2017), batched and jit-able.

x_adv = (tanh(w0 + delta) + 1) / 2 with w0 = artanh((2x - 1) * 0.999999), so x_adv is always in
(0, 1). For each example, Adam minimises

    ||x_adv - x||_2^2 + c * max(z_y - max_{j != y} z_j + confidence, 0)        (untargeted)
    ||x_adv - x||_2^2 + c * max(max_{j != t} z_j - z_t + confidence, 0)        (targeted)

(the label column is removed with -inf, so negative logits are handled), and a per-example
binary search over c keeps the smallest adversarial perturbation found. Abort-early is per
example: every ceil(steps / 10) steps an example whose loss did not drop below 0.9999 x its
value at the previous check stops; the inner loop ends when every example has stopped, so an
example's result does not depend on the rest of the batch.
"""
from __future__ import annotations

import math
from typing import Callable, NamedTuple, Optional

import jax
import jax.numpy as jnp
import optax

from ipgan_jax import contracts
from ipgan_jax.attacks import core, losses


def _to_tanh_space(x):
    return jnp.arctanh((x - 0.5) / 0.5 * 0.999999)


def _to_pixel_space(w):
    return jnp.tanh(w) * 0.5 + 0.5


class _Outer(NamedTuple):
    consts: jax.Array       # [B]
    lower: jax.Array        # [B]
    upper: jax.Array        # [B]
    best_x: jax.Array       # [B, ...]
    best_norm: jax.Array    # [B] squared L2 of the best adversarial found (inf: none)


class _Inner(NamedTuple):
    step: jax.Array
    delta: jax.Array
    opt_state: optax.OptState
    active: jax.Array       # [B] bool
    prev_loss: jax.Array    # [B]
    found: jax.Array        # [B] bool, adversarial found with the current c
    best_x: jax.Array
    best_norm: jax.Array


@contracts.attack_contract(on_empty=core.empty_result)
def cw_l2(logits_fn: Callable, x: jax.Array, y: jax.Array, *, key: Optional[jax.Array] = None,
          targeted: bool = False, binary_search_steps: int = 9, steps: int = 1000, lr: float = 0.01,
          initial_const: float = 1e-3, confidence: float = 0.0, abort_early: bool = True,
          eps: Optional[float] = None) -> jax.Array:
    """C&W L2. x: float [B, ...] in [0, 1]; y: int [B] labels (targets when ``targeted``).

    ``binary_search_steps`` rounds over c starting at ``initial_const`` (x10 until the first
    success, then bisection); ``steps`` Adam steps of learning rate ``lr`` per round;
    ``confidence`` is kappa. With binary_search_steps >= 10 the last round reruns at the upper
    bound (as in the reference code). Returns the smallest adversarial found per example, the
    clean x where none was found; with ``eps`` set, the perturbation is then projected onto the
    L2 ball of radius eps. Deterministic (``key`` is only used by a randomised model,
    which is attacked with the one fixed draw ``core.model_key(key)``).
    """
    logits_fn = core.deterministic_model(logits_fn, key)
    bss, steps = int(binary_search_steps), int(steps)
    if bss < 1 or steps < 1:
        raise ValueError(f"need binary_search_steps >= 1 and steps >= 1, got {bss}, {steps}")
    x = jnp.asarray(x)
    out_dtype = x.dtype
    dt = jnp.promote_types(out_dtype, jnp.float32)  # tanh space needs >= float32 (0.999999 -> 1 in bf16)
    x = x.astype(dt)
    y = jnp.asarray(y).astype(jnp.int32)
    b = x.shape[0]
    w0 = _to_tanh_space(x)
    x_rec = _to_pixel_space(w0)
    check_every = int(math.ceil(steps / 10))
    opt = optax.adam(lr)

    def f_and_logits(delta, consts):
        xa = _to_pixel_space(w0 + delta)
        logits = logits_fn(xa.astype(out_dtype))
        m = losses.margin(logits, y)
        f = (-m if targeted else m) + confidence
        per_ex = consts * jnp.maximum(f, 0.0).astype(dt) + jnp.sum(
            jnp.square(xa - x_rec), axis=tuple(range(1, x.ndim)))
        return jnp.sum(per_ex), (per_ex, xa, logits)

    grad_fn = jax.value_and_grad(f_and_logits, has_aux=True)

    def inner_body(s: _Inner, consts):
        (_, (per_ex, xa, logits)), g = grad_fn(s.delta, consts)
        adv = losses.is_adversarial(logits, y, targeted, confidence) & s.active
        norm = jnp.sum(jnp.square(xa - x), axis=tuple(range(1, x.ndim)))
        new_best = adv & (norm < s.best_norm)
        best_x = jnp.where(core.expand_per_example(new_best, x), xa, s.best_x)
        best_norm = jnp.where(new_best, norm, s.best_norm)
        found = s.found | adv
        active, prev = s.active, s.prev_loss
        if abort_early:
            check = (s.step % check_every) == 0
            stalled = ~(per_ex <= 0.9999 * prev)
            active = jnp.where(check, active & ~stalled, active)
            prev = jnp.where(check, per_ex, prev)
        updates, opt_state = opt.update(g, s.opt_state, s.delta)
        delta = jnp.where(core.expand_per_example(active, x), s.delta + updates.astype(dt), s.delta)
        return _Inner(s.step + 1, delta, opt_state, active, prev, found, best_x, best_norm)

    def outer_body(i, o: _Outer):
        consts = o.consts
        if bss >= 10:  # the reference code repeats the last search at the upper bound
            consts = jnp.where(i == bss - 1, jnp.minimum(o.upper, 1e10), consts)
        delta0 = jnp.zeros_like(w0)
        s0 = _Inner(jnp.zeros((), jnp.int32), delta0, opt.init(delta0), jnp.ones((b,), bool),
                    jnp.full((b,), jnp.inf, dt), jnp.zeros((b,), bool), o.best_x, o.best_norm)
        s = jax.lax.while_loop(lambda s: (s.step < steps) & jnp.any(s.active),
                               lambda s: inner_body(s, consts), s0)
        upper = jnp.where(s.found, jnp.minimum(o.upper, consts), o.upper)
        lower = jnp.where(s.found, o.lower, jnp.maximum(o.lower, consts))
        consts = jnp.where(jnp.isinf(upper), consts * 10.0, (lower + upper) / 2.0)
        return _Outer(consts.astype(dt), lower, upper, s.best_x, s.best_norm)

    o0 = _Outer(jnp.full((b,), initial_const, dt), jnp.zeros((b,), dt), jnp.full((b,), jnp.inf, dt),
                x, jnp.full((b,), jnp.inf, dt))
    o = jax.lax.fori_loop(0, bss, outer_body, o0)
    x_adv = jnp.where(core.expand_per_example(jnp.isfinite(o.best_norm), x), o.best_x, x)
    if eps is not None:
        x_adv = core.project_l2(x_adv, x, eps)
    return x_adv.astype(out_dtype)
