"""Adversarial attacks as pure, jit-able, batch-first JAX functions.

Every attack has the signature ``attack(logits_fn, x, y, *, key=None, targeted=False, **params)
-> x_adv`` with x float [B, H, W, C] in [0, 1], y int32 [B] (true labels, or targets when
``targeted``), ``logits_fn(x) -> logits [B, K]`` (any differentiable function, any K); x_adv has
x's shape and dtype and lies in the eps ball and in [0, 1]. ``make_attack(cfg, dataset=None)``
builds one from a config; ``ATTACKS`` and ``DEFAULTS`` list them. See ``core`` for the pieces
(init / optimizer / projection / loss) the gradient attacks are assembled from.

Attacks: fgsm, bim, pgd, mifgsm, cw_l2, deepfool, apgd (APGD-CE / APGD-DLR, Linf / L2),
apgd_targeted (registry name ``apgd_t``: APGD-T over the top-9 other classes), square (Square
attack, Linf / L2, score-based; ``start=`` a first start), square_warm (Square from PGD's best
iterate). ``return_info=True`` (all but cw_l2 / deepfool) returns
``(x_adv, AttackInfo(success [B] bool, objective [B], queries [B] or None))`` so callers need not
rerun the model.

Float32: attacks differentiate ``losses.gradient_objective`` -- for CE the logsumexp margin
``logsumexp_{j != y}(z_j - z_y)``, an increasing function of CE with the same gradient direction
that does not saturate on confident models (the true CE gradient underflows to 0 in float32
above a label margin of ~87, and is inaccurate long before with the textbook form).
``losses.cross_entropy`` itself returns the true CE and its true gradient.

Ensemble (Python-level driver, not jit-able as a whole; it jits each attack)::

    x_adv, log = autoattack(logits_fn, x, y, key=key, eps=0.3, norm="linf",
                            version="standard",          # APGD-CE, APGD-T, Square ('rand': APGD-CE, APGD-DLR + EOT)
                            attacks=None,                # or a subset/order of ('apgd-ce','apgd-dlr','apgd-t','square')
                            steps=100, n_queries=5000, n_target_classes=9, eot_samples=None)
    log == {'n', 'clean', 'broken': {attack: images it broke}, 'robust', 'robust_accuracy',
            'attacks', 'not_run' (['fab-t'] for 'standard': FAB-T is not implemented), 'robust_flags'}

Each attack runs only on the images still robust; x_adv is the per-example worst case.

Transforms of a model (``transforms``): ``bpda(fn, backward=None)`` (exact forward, VJP of
``backward``, identity by default); randomised models are ``logits_fn(x, key)`` marked with
``randomized(fn)``; ``eot(fn, n)`` averages n draws (its gradient is the mean gradient); every
attack passes a fresh key per model call to a randomised model (``call_model``), and APGD's
``eot_samples`` averages the loss gradient over draws; ``fix_key`` fixes one draw.

Input contract (``ipgan_jax.contracts.attack_contract``, one decorator on every public attack
above, ``square_compacting`` and ``autoattack`` included): x float NHWC [B, H, W, C] with C 1 or 3
in [0, 1], y int [B] in [0, K) (K from the model's abstract output, which must be [B, K]), eps
finite >= 0, step sizes finite > 0, counts static ints >= 1; ValueError naming the attack and the
argument. Shapes and dtypes are checked at trace time (also under jit); label / pixel ranges,
NaN pixels and scalar values only when concrete (skipped for tracers). An empty batch returns
an empty result without calling the model. ``bpda`` checks that ``backward`` has fn's output
shape; ``eot`` refuses a model that takes no key (deterministic).
"""
from ipgan_jax.attacks import core, losses, transforms
from ipgan_jax.attacks.apgd import apgd, apgd_targeted
from ipgan_jax.attacks.autoattack import autoattack
from ipgan_jax.attacks.core import (
    NORMS,
    RANDOM_STARTS,
    AttackInfo,
    clip_box,
    corner_linf_init,
    default_step_size,
    expand_per_example,
    get_init,
    get_projection,
    l1_norm,
    l2_norm,
    linf_bounds,
    linf_norm,
    momentum_steepest_descent,
    normalize,
    project_l2,
    project_linf,
    projected_gradient_attack,
    steepest_descent,
    uniform_l2_init,
    uniform_linf_init,
    zero_init,
)
from ipgan_jax.attacks.cw import cw_l2
from ipgan_jax.attacks.deepfool import deepfool
from ipgan_jax.attacks.gradient import bim, fgsm, mifgsm, pgd
from ipgan_jax.attacks.losses import cross_entropy, dlr, dlr_targeted, is_adversarial, margin, objective
from ipgan_jax.attacks.registry import ATTACKS, DEFAULTS, IMAGENET_EPS, attack_params, make_attack
from ipgan_jax.attacks.square import square, square_compacting, square_warm
from ipgan_jax.attacks.transforms import bpda, call_model, eot, fix_key, is_randomized, randomized

__all__ = [
    "ATTACKS", "DEFAULTS", "IMAGENET_EPS", "attack_params", "make_attack",
    "fgsm", "bim", "pgd", "mifgsm", "cw_l2", "deepfool", "apgd", "apgd_targeted", "square", "square_compacting",
    "square_warm",
    "autoattack",
    "AttackInfo", "transforms", "bpda", "eot", "randomized", "is_randomized", "fix_key", "call_model",
    "losses", "cross_entropy", "margin", "dlr", "dlr_targeted", "objective", "is_adversarial",
    "core", "NORMS", "default_step_size", "expand_per_example",
    "projected_gradient_attack", "steepest_descent", "momentum_steepest_descent", "normalize",
    "project_linf", "project_l2", "linf_bounds", "clip_box", "get_projection",
    "zero_init", "uniform_linf_init", "uniform_l2_init", "corner_linf_init", "RANDOM_STARTS", "get_init",
    "l1_norm", "l2_norm", "linf_norm",
]
