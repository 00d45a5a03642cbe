"""Fixed-budget gradient attacks: FGSM/FGM, BIM (I-FGSM), PGD, MI-FGSM.

All share the signature ``attack(logits_fn, x, y, *, key=None, targeted=False, **params) -> x_adv``:

* ``logits_fn``: any differentiable fn float [B, ...] -> logits float [B, K] (a model apply in
  eval mode, or a whole defense pipeline);
* ``x``: float [B, H, W, C] pixels in [0, 1]; ``y``: int [B] true labels (targets if ``targeted``);
* ``step_size=None`` (the default of bim / pgd / mifgsm) is the rule of each norm
  (:func:`ipgan_jax.attacks.core.default_step_size`): Linf, a fixed fraction of eps (eps 0.3 ->
  bim 0.04, pgd 0.01, mifgsm 0.03); L2, 2.5 * eps / steps;
* returns ``x_adv`` with x's shape and dtype, inside the ``eps`` ball (``norm`` 'linf' or 'l2',
  absolute pixel units) and inside [0, 1]; with ``return_info=True`` the pair
  ``(x_adv, core.AttackInfo(success [B], objective [B]))``, so callers need not rerun the model;
* ``success_margin`` (logit units, >= 0, default 0): an iterate is a success (the best-iterate choice and the
  info's ``success``) only when adversarial by more than this (``core.projected_gradient_attack``).

Defaults are the MNIST settings (``DEFAULTS['mnist']`` in :mod:`ipgan_jax.attacks.registry`).
Every function is pure and jit-able with the scalar parameters closed over (``steps`` and the
flags must be static; ``eps`` / ``step_size`` may also be traced scalars).
"""
from __future__ import annotations

from typing import Callable, Optional, Union

import jax

from ipgan_jax import contracts
from ipgan_jax.attacks import core

# default step as a fraction of eps for Linf (the MNIST defaults: eps 0.3 -> 0.04 / 0.01 / 0.03);
# L2 uses 2.5 * eps / steps. See core.default_step_size.
LINF_STEP_RATIO = {"bim": 0.04 / 0.3, "pgd": 0.01 / 0.3, "mifgsm": 0.1}


def _step(name, step_size, norm, eps, steps):
    if step_size is not None:
        return step_size
    return core.default_step_size(norm, eps, steps, LINF_STEP_RATIO[name])


@contracts.attack_contract(on_empty=core.empty_result)
def fgsm(logits_fn: Callable, x: jax.Array, y: jax.Array, *, key: Optional[jax.Array] = None,
         targeted: bool = False, eps: float = 0.3, norm: str = "linf",
         loss: Union[str, Callable] = "ce", random_start: bool = False, return_info: bool = False,
         success_margin: float = 0.0):
    """Fast gradient sign method (Goodfellow et al. 2015); ``norm='l2'`` gives the L2 FGM.

    linf: clip(x + eps * sign(grad_x CE(x, y)), 0, 1) (minus the step when targeted);
    l2: clip(x + eps * g / ||g||_2, 0, 1). ``random_start`` first draws a uniform point in the
    eps ball (needs ``key``), takes the full eps step from there and projects back.
    ``success_margin`` (logit units, >= 0): the margin the info's ``success`` asks for (the last iterate is
    returned whatever it is).
    """
    return core.projected_gradient_attack(
        logits_fn, x, y, key=key, targeted=targeted, eps=eps, steps=1,
        optimizer=core.steepest_descent(eps, norm), loss=loss, norm=norm,
        random_start=random_start, restarts=1, keep_best=False, return_info=return_info,
        success_margin=success_margin)


@contracts.attack_contract(on_empty=core.empty_result)
def bim(logits_fn: Callable, x: jax.Array, y: jax.Array, *, key: Optional[jax.Array] = None,
        targeted: bool = False, eps: float = 0.3, steps: int = 10, step_size: Optional[float] = None,
        norm: str = "linf", loss: Union[str, Callable] = "ce", keep_best: bool = True,
        return_info: bool = False, success_margin: float = 0.0):
    """Basic iterative method / I-FGSM (Kurakin et al. 2017): ``steps`` steps of ``step_size``
    from the clean input, projected onto the eps ball and [0, 1] after each step.

    ``keep_best`` (default) returns each example's best iterate (adversarial first, then highest
    loss) instead of the last one; set it False for the textbook last iterate. ``success_margin`` (logit units,
    >= 0): an iterate counts as adversarial only by more than this margin.
    """
    return core.projected_gradient_attack(
        logits_fn, x, y, key=key, targeted=targeted, eps=eps, steps=steps,
        optimizer=core.steepest_descent(_step("bim", step_size, norm, eps, steps), norm), loss=loss, norm=norm,
        random_start=False, restarts=1, keep_best=keep_best, return_info=return_info,
        success_margin=success_margin)


@contracts.attack_contract(on_empty=core.empty_result)
def pgd(logits_fn: Callable, x: jax.Array, y: jax.Array, *, key: Optional[jax.Array] = None,
        targeted: bool = False, eps: float = 0.3, steps: int = 40, step_size: Optional[float] = None,
        norm: str = "linf", loss: Union[str, Callable] = "ce", random_start: Union[bool, str] = True,
        restarts: int = 1, keep_best: bool = True, return_info: bool = False, warm_eps: Optional[float] = None,
        success_margin: float = 0.0):
    """Projected gradient descent (Madry et al. 2018), Linf or L2.

    ``random_start``: True / 'uniform', a uniform start in the eps ball, or 'corner', a random corner of the
    Linf eps box (every pixel at +-eps), each clipped to [0, 1] (needs ``key``); False starts at x.
    ``restarts``: independent random starts (restart r uses ``fold_in(key, r)``); per example the
    best one is kept: a successful one first, then the one with the highest ``loss``.
    ``restarts > 1`` with ``random_start=False`` raises ValueError (the runs would be identical).
    ``loss``: 'ce' (cross-entropy), 'margin' (C&W f6 margin), 'dlr' (Croce & Hein) or a callable
    ``fn(logits, y) -> [B]`` to maximise. ``keep_best`` also keeps the best iterate within a run.
    ``warm_eps`` (>= eps, optional): first the same attack at ``warm_eps``, then this one warm-started from its
    result projected back onto the eps ball (``core.projected_gradient_attack``'s ``start``).
    ``success_margin`` (logit units, >= 0, default 0): an iterate or restart counts as a success only when it is
    adversarial by more than this (``max_{j != y} z_j > z_y + success_margin``), so the best iterate is one a
    recomputed forward pass still calls adversarial; ValueError when negative.
    """
    step = _step("pgd", step_size, norm, eps, steps)
    start = None
    if warm_eps is not None:
        k_warm = None
        if key is not None:
            key, k_warm = jax.random.split(key)
        start = core.projected_gradient_attack(
            logits_fn, x, y, key=k_warm, targeted=targeted,
            eps=warm_eps, steps=steps, optimizer=core.steepest_descent(step, norm), loss=loss, norm=norm,
            random_start=random_start, restarts=1, keep_best=True, success_margin=success_margin)
    return core.projected_gradient_attack(
        logits_fn, x, y, key=key, targeted=targeted, eps=eps, steps=steps,
        optimizer=core.steepest_descent(step, norm), loss=loss, norm=norm,
        random_start=random_start, restarts=restarts, keep_best=keep_best, return_info=return_info, start=start,
        success_margin=success_margin)


@contracts.attack_contract(on_empty=core.empty_result)
def mifgsm(logits_fn: Callable, x: jax.Array, y: jax.Array, *, key: Optional[jax.Array] = None,
           targeted: bool = False, eps: float = 0.3, steps: int = 10, step_size: Optional[float] = None,
           decay: float = 1.0, norm: str = "linf", loss: Union[str, Callable] = "ce",
           keep_best: bool = True, return_info: bool = False, success_margin: float = 0.0):
    """Momentum iterative FGSM (Dong et al. 2018): g <- decay * g + grad / ||grad||_1,
    x <- proj(x + step_size * sign(g)). ``decay`` is the paper's mu; the default Linf step is
    eps/10 (= the paper's eps/steps at the default 10 steps). ``success_margin`` (logit units, >= 0): an iterate
    counts as adversarial only by more than this margin.
    """
    return core.projected_gradient_attack(
        logits_fn, x, y, key=key, targeted=targeted, eps=eps, steps=steps,
        optimizer=core.momentum_steepest_descent(_step("mifgsm", step_size, norm, eps, steps), decay, norm),
        loss=loss, norm=norm,
        random_start=False, restarts=1, keep_best=keep_best, return_info=return_info, success_margin=success_margin)
