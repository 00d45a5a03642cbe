"""Attack registry, per-dataset defaults, and the config entry point :func:`make_attack`.

Defaults (absolute pixel units, images in [0, 1]):

MNIST (the function-signature defaults are these values):
  fgsm    eps 0.3 Linf
  bim     eps 0.3, 10 steps of 0.04 (total travel 4/3 eps, as Madry's PGD)
  pgd     eps 0.3, 40 steps of 0.01, random start, 1 restart, CE (Madry et al. 2018)
  mifgsm  eps 0.3, 10 steps of eps/10 = 0.03, decay 1.0 (Dong et al. 2018)
  cw_l2   9 binary-search steps x 1000 Adam steps, lr 0.01, c0 1e-3, kappa 0, abort early
  deepfool L2, 50 steps, overshoot 0.02, top-10 candidates

ImageNet, eps 4/255 (``DEFAULTS['imagenet']``):
  fgsm eps 4/255; bim / pgd 10 steps of 1/255; mifgsm 10 steps of eps/10;
  cw_l2 5 x 200 steps, lr 0.01, c0 1e-2; deepfool as MNIST.
ImageNet eps 16/255 (the paper's large budget): set ``eps: 16/255`` in the config; the default
  step size then scales with eps (16 -> 4/255 per step for bim / pgd, 1.6/255 for mifgsm).
  ``IMAGENET_EPS = (4/255, 16/255)``.

Rule: when a config sets ``eps`` but not ``step_size``, the default ``step_size`` is multiplied
by ``eps / default_eps`` so the default schedule keeps its shape. Calling an attack function
directly never rescales anything.
"""
from __future__ import annotations

import functools
import inspect
from typing import Any, Callable, Dict, Mapping, Optional

from ipgan_jax import contracts
from ipgan_jax.attacks import losses
from ipgan_jax.attacks.core import check_norm
from ipgan_jax.attacks.cw import cw_l2
from ipgan_jax.attacks.deepfool import deepfool
from ipgan_jax.attacks.gradient import bim, fgsm, mifgsm, pgd

ATTACKS: Dict[str, Callable] = {
    "fgsm": fgsm,
    "bim": bim,
    "pgd": pgd,
    "mifgsm": mifgsm,
    "cw_l2": cw_l2,
    "deepfool": deepfool,
}

IMAGENET_EPS = (4 / 255, 16 / 255)

DEFAULTS: Dict[str, Dict[str, Dict[str, Any]]] = {
    "mnist": {
        "fgsm": dict(eps=0.3, norm="linf", loss="ce", random_start=False),
        "bim": dict(eps=0.3, steps=10, step_size=0.04, norm="linf", loss="ce"),
        "pgd": dict(eps=0.3, steps=40, step_size=0.01, norm="linf", loss="ce", random_start=True,
                    restarts=1),
        "mifgsm": dict(eps=0.3, steps=10, step_size=0.03, decay=1.0, norm="linf", loss="ce"),
        "cw_l2": dict(binary_search_steps=9, steps=1000, lr=0.01, initial_const=1e-3,
                      confidence=0.0, abort_early=True),
        "deepfool": dict(steps=50, overshoot=0.02, candidates=10, norm="l2"),
    },
    "imagenet": {
        "fgsm": dict(eps=4 / 255, norm="linf", loss="ce", random_start=False),
        "bim": dict(eps=4 / 255, steps=10, step_size=1 / 255, norm="linf", loss="ce"),
        "pgd": dict(eps=4 / 255, steps=10, step_size=1 / 255, norm="linf", loss="ce",
                    random_start=True, restarts=1),
        "mifgsm": dict(eps=4 / 255, steps=10, step_size=0.4 / 255, decay=1.0, norm="linf", loss="ce"),
        "cw_l2": dict(binary_search_steps=5, steps=200, lr=0.01, initial_const=1e-2,
                      confidence=0.0, abort_early=True),
        "deepfool": dict(steps=50, overshoot=0.02, candidates=10, norm="l2"),
    },
}


def attack_params(name: str) -> Dict[str, Any]:
    """The parameters attack ``name`` accepts in a config, with their signature defaults."""
    fn = _lookup(name)
    return {p.name: p.default for p in inspect.signature(fn).parameters.values()
            if p.kind is inspect.Parameter.KEYWORD_ONLY and p.name != "key"}


def _lookup(name):
    if name not in ATTACKS:
        raise ValueError(f"unknown attack {name!r}; accepted names: {sorted(ATTACKS)}")
    return ATTACKS[name]


def _as_dict(cfg) -> Dict[str, Any]:
    if hasattr(cfg, "to_dict"):  # ml_collections.ConfigDict / FrozenConfigDict
        cfg = cfg.to_dict()
    if not isinstance(cfg, Mapping):
        raise TypeError(f"attack config must be a dict or ConfigDict, got {type(cfg).__name__}")
    return dict(cfg)


def make_attack(cfg, dataset: Optional[str] = None) -> Callable:
    """Build ``fn(logits_fn, x, y, key=None) -> x_adv`` from a config.

    cfg: dict / ConfigDict with ``name`` (one of ``ATTACKS``) and any of that attack's keyword
    parameters, e.g. ``{'name': 'pgd', 'eps': 0.3, 'steps': 40, 'step_size': 0.01,
    'random_start': True, 'restarts': 1, 'loss': 'ce', 'norm': 'linf', 'targeted': False}``.
    Missing parameters come from ``DEFAULTS[dataset][name]`` when ``dataset`` is given, else from
    the function signature (the MNIST values). Raises ValueError for an unknown name, parameter
    or dataset. The returned function closes over the (static) parameters and is jit-able:
    ``jax.jit(lambda x, y, k: attack(logits_fn, x, y, k))``; ``key`` may be None for
    deterministic attacks.
    """
    cfg = _as_dict(cfg)
    if "name" not in cfg:
        raise ValueError(f"attack config needs a 'name'; accepted names: {sorted(ATTACKS)}")
    name = cfg.pop("name")
    fn = _lookup(name)
    accepted = attack_params(name)
    unknown = sorted(set(cfg) - set(accepted))
    if unknown:
        raise ValueError(f"unknown parameter(s) {unknown} for attack {name!r}; "
                         f"accepted parameters: {sorted(accepted)}")
    if dataset is None:
        base = dict(accepted)
    else:
        if dataset not in DEFAULTS:
            raise ValueError(f"unknown dataset {dataset!r} for attack defaults; choose one of {sorted(DEFAULTS)}")
        base = dict(DEFAULTS[dataset][name])
    params = dict(base)
    if "eps" in cfg and "step_size" not in cfg and base.get("step_size") is not None \
            and base.get("eps"):
        params["step_size"] = base["step_size"] * float(cfg["eps"]) / float(base["eps"])
    params.update(cfg)
    if params.get("norm") is not None:
        check_norm(params["norm"])
    if isinstance(params.get("loss"), str):
        losses.objective(params["loss"])  # raises ValueError naming the accepted losses
    contracts.check_eps(params.get("eps"), f"{name} eps")
    contracts.check_step_size(params.get("step_size"), f"{name} step_size")

    def attack(logits_fn: Callable, x, y, key=None):
        contracts.check_attack_inputs(logits_fn, x, y)   # static under jit; values when concrete
        return fn(logits_fn, x, y, key=key, **params)

    attack.name = name
    attack.params = dict(params)
    functools.update_wrapper(attack, fn, assigned=("__doc__",), updated=())
    return attack
