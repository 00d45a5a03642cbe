"""Auto-PGD (Croce & Hein 2020, "Reliable evaluation of adversarial robustness with an ensemble
of diverse parameter-free attacks", Algorithm 1), Linf and L2, CE and DLR; targeted APGD-DLR.

One run of ``steps`` iterations, per example (all vectors are [B]):

* start: x0 + eps * u / ||u|| (Linf: u ~ U(-1, 1)^d scaled to Linf norm eps; L2: u Gaussian,
  scaled to L2 norm eps), clipped to [0, 1];
* step size eta = 2 eps; x_{k+1} = P(x_k + 0.75 (z_{k+1} - x_k) + 0.25 (x_k - x_{k-1})) with
  z_{k+1} = P(x_k + eta * d(grad)) (d = sign for Linf, g / ||g||_2 for L2; the first step is
  plain: momentum 1);
* checkpoints (the paper's p_0 = 0, p_1 = 0.22, p_{j+1} = p_j + max(p_j - p_{j-1} - 0.03, 0.06),
  in iterations as the reference code counts them: the first window is int(0.22 steps) long,
  each next one int(0.03 steps) shorter, never shorter than int(0.06 steps); see
  :func:`checkpoints`);
* at a checkpoint the step is halved for the examples where (1) the loss increased in at most a
  fraction rho = 0.75 of the iterations since the last checkpoint, or (2) the step was not halved
  at the last checkpoint and the best loss has not improved since; those restart from their best
  point (x and its gradient);
* the best-loss point and the last adversarial point are tracked; the result is the latter where
  one was found, else the former. ``success_margin`` (logit units, >= 0, default 0) makes "adversarial" mean
  adversarial by more than that margin (``losses.is_adversarial``'s ``confidence``), so the point returned as a
  success is one a recomputed forward pass still calls adversarial.

``restarts`` runs from independent random starts keep, per example, a successful run first, then
the highest loss. For CE the gradient is that of the non-saturating ``losses.gradient_objective``
(the same direction). A randomised model gets fresh keys at every step; ``eot_samples`` > 1
averages the loss gradient over that many draws per step (AutoAttack's 'rand' version: 20).

:func:`apgd_targeted` is APGD-T: APGD on the targeted DLR loss (z_t - z_y) / (z_pi1 - (z_pi3 +
z_pi4)/2) for each of the ``n_target_classes`` most likely other classes of the clean input in
turn (default 9), on the images not yet misclassified.
"""
from __future__ import annotations

from typing import Callable, NamedTuple, Optional, Union

import jax
import jax.numpy as jnp
import numpy as np

from ipgan_jax import contracts
from ipgan_jax.attacks import core, losses
from ipgan_jax.attacks.transforms import call_model, is_randomized

CLEAN_CALL = 0x7FFFFFFF  # model-key index of APGD-T's clean forward pass (picks the targets)


def checkpoints(steps: int):
    """bool [steps] (True at iterations i after which the step-size conditions are checked) and
    int [steps] (the window length k used at that check), as the reference implementation does."""
    steps = int(steps)
    k = max(int(0.22 * steps), 1)
    k_min = max(int(0.06 * steps), 1)
    decr = max(int(0.03 * steps), 1)
    is_check = np.zeros(steps, bool)
    window = np.zeros(steps, np.int32)
    i = k - 1
    while i < steps:
        is_check[i], window[i] = True, k
        k = max(k - decr, k_min)
        i += k
    return is_check, window


def _init(key, x, eps, norm):
    if norm == "linf":
        u = jax.random.uniform(key, x.shape, x.dtype, -1.0, 1.0)
        u = u / core.expand_per_example(core.linf_norm(u) + 1e-12, u)
        return core.project_linf(x + eps * u, x, eps)
    u = jax.random.normal(key, x.shape, x.dtype)
    u = u / core.expand_per_example(core.l2_norm(u) + 1e-12, u)
    return core.project_l2(x + eps * u, x, eps)


class _State(NamedTuple):
    x: jax.Array
    x_old: jax.Array
    grad: jax.Array
    step: jax.Array          # [B]
    x_best: jax.Array
    loss_best: jax.Array     # [B]
    grad_best: jax.Array
    x_adv: jax.Array         # last adversarial iterate (x_best where none)
    success: jax.Array       # [B] bool
    loss_prev: jax.Array     # [B]
    n_increase: jax.Array    # [B] int: loss increases since the last checkpoint
    best_at_check: jax.Array  # [B]
    reduced: jax.Array       # [B] bool: halved at the last checkpoint


def apgd_run(logits_fn, x, *, key, eps, norm, steps, value_fn, grad_fn, success_fn, rho=0.75,
             eot_samples=1, run_index=0, history=False):
    """One APGD run. value_fn / grad_fn: logits [B,K] -> [B] (maximised; grad_fn is what is
    differentiated, a per-example increasing transform of value_fn); success_fn: logits -> bool [B].
    Returns (x_adv [B,...], success [B], best loss [B]): the last successful iterate where the run
    succeeded, else the best-loss iterate. ``history``: also return (best loss [steps+1, B], step
    size [steps+1, B], loss [steps+1, B]) after the start and after each iteration."""
    project = core.get_projection(norm)
    is_check, window = (jnp.asarray(a) for a in checkpoints(steps))
    n_eot = int(eot_samples) if is_randomized(logits_fn) else 1

    def evaluate(xc, i):
        """Mean loss over the draws, its gradient, and success on the first draw."""
        def one(e):
            def f(xc):
                z = call_model(logits_fn, xc, core.model_key(key, run_index, i, e))
                return jnp.sum(grad_fn(z)), z
            (_, z), g = jax.value_and_grad(f, has_aux=True)(xc)
            return value_fn(z), success_fn(z), g.astype(xc.dtype)

        if n_eot == 1:
            return one(0)
        vals, succ, grads = jax.lax.map(one, jnp.arange(n_eot))
        return jnp.mean(vals, 0), succ[0], jnp.mean(grads, 0)

    def direction(g):
        return core.normalize(g, norm) if norm == "linf" else g / core.expand_per_example(core.l2_norm(g) + 1e-12, g)

    x0 = _init(jax.random.fold_in(key, run_index), x, eps, norm)
    v0, s0, g0 = evaluate(x0, 0)
    b = x.shape[0]
    step0 = jnp.full((b,), 2.0 * eps, jnp.promote_types(x.dtype, jnp.float32))
    st = _State(x0, x0, g0, step0, x0, v0, g0, x0, s0, v0, jnp.zeros((b,), jnp.int32), v0,
                jnp.ones((b,), bool))

    def body(i, carry):
        st, hist = carry
        a = jnp.where(i > 0, 0.75, 1.0).astype(x.dtype)
        momentum = st.x - st.x_old
        z = project(st.x + core.expand_per_example(st.step, x).astype(x.dtype) * direction(st.grad), x, eps)
        xn = project(st.x + a * (z - st.x) + (1 - a) * momentum, x, eps)
        v, succ, g = evaluate(xn, i + 1)
        x_adv = jnp.where(core.expand_per_example(succ, x), xn, st.x_adv)
        success = st.success | succ
        n_inc = st.n_increase + (v > st.loss_prev).astype(jnp.int32)
        better = v > st.loss_best
        x_best = jnp.where(core.expand_per_example(better, x), xn, st.x_best)
        grad_best = jnp.where(core.expand_per_example(better, x), g, st.grad_best)
        loss_best = jnp.where(better, v, st.loss_best)
        # checkpoint: halve the step where progress stalled and restart from the best point
        check = is_check[i]
        cond1 = n_inc.astype(jnp.float32) <= rho * window[i].astype(jnp.float32)
        cond2 = ~st.reduced & (st.best_at_check >= loss_best)
        reduce = check & (cond1 | cond2)
        step = jnp.where(reduce, st.step / 2, st.step)
        x_next = jnp.where(core.expand_per_example(reduce, x), x_best, xn)
        g_next = jnp.where(core.expand_per_example(reduce, x), grad_best, g)
        reduced = jnp.where(check, reduce, st.reduced)
        best_at_check = jnp.where(check, loss_best, st.best_at_check)
        n_inc = jnp.where(check, 0, n_inc)
        if history:
            hist = tuple(h.at[i + 1].set(v_) for h, v_ in zip(hist, (loss_best, step, v)))
        return (_State(x_next, st.x, g_next, step, x_best, loss_best, grad_best, x_adv, success, v, n_inc,
                       best_at_check, reduced), hist)

    hist = ()
    if history:
        hist = tuple(jnp.zeros((int(steps) + 1, b), v0.dtype).at[0].set(v_) for v_ in (v0, step0.astype(v0.dtype), v0))
    st, hist = jax.lax.fori_loop(0, int(steps), body, (st, hist))
    x_out = jnp.where(core.expand_per_example(st.success, x), st.x_adv, st.x_best)
    if history:
        return x_out, st.success, st.loss_best, hist
    return x_out, st.success, st.loss_best


def _check(norm, steps, restarts, key):
    core.check_norm(norm)
    if int(steps) < 1 or int(restarts) < 1:
        raise ValueError(f"need steps >= 1 and restarts >= 1, got {steps}, {restarts}")
    if key is None:
        raise ValueError("apgd starts from a random point: pass a PRNG key")


@contracts.attack_contract(on_empty=core.empty_result)
def apgd(logits_fn: Callable, x: jax.Array, y: jax.Array, *, key: Optional[jax.Array] = None,
         targeted: bool = False, eps: float = 0.3, norm: str = "linf", steps: int = 100,
         loss: Union[str, Callable] = "ce", restarts: int = 1, rho: float = 0.75, eot_samples: int = 1,
         return_info: bool = False, success_margin: float = 0.0):
    """APGD (Linf / L2) on ``loss`` ('ce', 'dlr', 'margin' or a callable fn(logits, y) -> [B] to
    maximise). x float [B, ...] in [0, 1]; y int [B] (targets when ``targeted``: 'ce' is then
    -CE(z, t), 'dlr' the target-only DLR). Needs ``key`` (random start). Returns x_adv (inside the
    eps ball and [0, 1], x's dtype), or ``(x_adv, AttackInfo)`` with ``return_info``.
    ``success_margin`` (logit units, >= 0, default 0): an iterate is a success (the last successful iterate is
    returned, a successful restart wins) only when ``max_{j != y} z_j > z_y + success_margin`` (targeted:
    ``z_t > max_{j != t} z_j + success_margin``); 0 is the plain argmax test; ValueError when negative."""
    _check(norm, steps, restarts, key)
    x, y = core.check_input(x, y)
    obj = losses.objective(loss, targeted)
    gobj = losses.gradient_objective(loss, targeted)
    kw = dict(key=key, eps=eps, norm=norm, steps=steps, rho=rho, eot_samples=eot_samples,
              value_fn=lambda z: obj(z, y), grad_fn=lambda z: gobj(z, y),
              success_fn=lambda z: losses.is_adversarial(z, y, targeted, success_margin))

    def restart(r, best):
        xa, succ, val = apgd_run(logits_fn, x, run_index=r, **kw)
        return core.update_best(best, xa, val, succ)

    best = jax.lax.fori_loop(0, int(restarts), restart, core.init_best(x, jnp.promote_types(x.dtype, jnp.float32)))
    return (best.x, core.AttackInfo(best.success, best.objective)) if return_info else best.x


@contracts.attack_contract(on_empty=core.empty_result)
def apgd_targeted(logits_fn: Callable, x: jax.Array, y: jax.Array, *, key: Optional[jax.Array] = None,
                  eps: float = 0.3, norm: str = "linf", steps: int = 100, n_target_classes: int = 9,
                  restarts: int = 1, rho: float = 0.75, eot_samples: int = 1, return_info: bool = False,
                  success_margin: float = 0.0):
    """APGD-T: untargeted attack by targeted APGD-DLR on each of the ``n_target_classes`` (capped at
    K - 1) most likely other classes of the clean logits, in decreasing order, ``restarts`` runs
    each. y: int [B] true labels. Success = misclassified. Returns like :func:`apgd`; the
    objective in the info is the targeted DLR of the run that produced x_adv. ``success_margin`` (logit units,
    >= 0, default 0): success = misclassified by more than it, ``max_{j != y} z_j > z_y + success_margin``;
    ValueError when negative."""
    _check(norm, steps, restarts, key)
    x, y = core.check_input(x, y)
    z0 = call_model(logits_fn, x, core.model_key(key, CLEAN_CALL))
    n_t = min(int(n_target_classes), z0.shape[-1] - 1)
    if n_t < 1:
        raise ValueError("apgd_targeted needs at least 2 classes and n_target_classes >= 1")
    order = jax.lax.top_k(z0, n_t + 1)[1].astype(jnp.int32)   # [B, n_t + 1], descending

    def per_target(ti, best):
        # the (ti+2)-th most likely clean class; if y is not the top class, skip y itself
        cand = order[:, ti + 1]
        t = jnp.where(cand == y, order[:, 0], cand)

        def restart(r, best):
            xa, succ, val = apgd_run(
                logits_fn, x, key=jax.random.fold_in(key, ti), eps=eps, norm=norm, steps=steps, rho=rho,
                eot_samples=eot_samples, run_index=r,
                value_fn=lambda z: losses.dlr_targeted_label(z, y, t),
                grad_fn=lambda z: losses.dlr_targeted_label(z, y, t),
                success_fn=lambda z: losses.is_adversarial(z, y, False, success_margin))
            return core.update_best(best, xa, val, succ)

        return jax.lax.fori_loop(0, int(restarts), restart, best)

    best = jax.lax.fori_loop(0, n_t, per_target, core.init_best(x, jnp.promote_types(x.dtype, jnp.float32)))
    return (best.x, core.AttackInfo(best.success, best.objective)) if return_info else best.x
