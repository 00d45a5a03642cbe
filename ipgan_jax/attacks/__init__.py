"""Adversarial attacks as pure, jit-able, batch-first JAX functions.

Every attack has the signature ``attack(logits_fn, x, y, *, key=None, targeted=False, **params)
-> x_adv`` with x float [B, H, W, C] in [0, 1], y int32 [B] (true labels, or targets when
``targeted``), ``logits_fn(x) -> logits [B, K]`` (any differentiable function, any K); x_adv has
x's shape and dtype and lies in the eps ball and in [0, 1]. ``make_attack(cfg, dataset=None)``
builds one from a config; ``ATTACKS`` and ``DEFAULTS`` list them. See ``core`` for the pieces
(init / optimizer / projection / loss) the gradient attacks are assembled from.
"""
from ipgan_jax.attacks import losses, transforms
from ipgan_jax.attacks.apgd import apgd, apgd_targeted
from ipgan_jax.attacks.autoattack import autoattack
from ipgan_jax.attacks.core import (
    AttackInfo, clip_box, get_init, get_projection, l1_norm, linf_bounds, l2_norm, linf_norm, momentum_steepest_descent,
    normalize, project_l2, project_linf, projected_gradient_attack, steepest_descent,
    uniform_l2_init, uniform_linf_init, zero_init,
)
from ipgan_jax.attacks.cw import cw_l2
from ipgan_jax.attacks.deepfool import deepfool
from ipgan_jax.attacks.gradient import bim, fgsm, mifgsm, pgd
from ipgan_jax.attacks.losses import cross_entropy, dlr, dlr_targeted, is_adversarial, margin, objective
from ipgan_jax.attacks.square import square
from ipgan_jax.attacks.transforms import bpda, call_model, eot, fix_key, is_randomized, randomized
from ipgan_jax.attacks.registry import ATTACKS, DEFAULTS, IMAGENET_EPS, attack_params, make_attack

__all__ = [
    "ATTACKS", "DEFAULTS", "IMAGENET_EPS", "attack_params", "make_attack",
    "fgsm", "bim", "pgd", "mifgsm", "cw_l2", "deepfool", "apgd", "apgd_targeted", "square", "autoattack",
    "AttackInfo", "transforms", "bpda", "eot", "randomized", "is_randomized", "fix_key", "call_model",
    "losses", "cross_entropy", "margin", "dlr", "dlr_targeted", "objective", "is_adversarial",
    "projected_gradient_attack", "steepest_descent", "momentum_steepest_descent", "normalize",
    "project_linf", "project_l2", "linf_bounds", "clip_box", "get_projection",
    "zero_init", "uniform_linf_init", "uniform_l2_init", "get_init",
    "l1_norm", "l2_norm", "linf_norm",
]
