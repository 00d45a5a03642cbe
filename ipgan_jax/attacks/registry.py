"""Attack registry, per-dataset defaults, and the config entry point :func:`make_attack`.

Defaults (absolute pixel units, images in [0, 1]):

MNIST (the function-signature defaults are these values):
  fgsm    eps 0.3 Linf
  bim     eps 0.3, 10 steps of 0.04 (total travel 4/3 eps, as Madry's PGD)
  pgd     eps 0.3, 40 steps of 0.01, random start, 1 restart, CE (Madry et al. 2018)
  mifgsm  eps 0.3, 10 steps of eps/10 = 0.03, decay 1.0 (Dong et al. 2018)
  cw_l2   9 binary-search steps x 1000 Adam steps, lr 0.01, c0 1e-3, kappa 0, abort early
  deepfool L2, 50 steps, overshoot 0.02, top-10 candidates
  apgd    eps 0.3, 100 iterations, CE, 1 run (AutoAttack's APGD-CE); loss='dlr' for APGD-DLR
  apgd_t  eps 0.3, 100 iterations, 9 target classes, 1 run each (APGD-T)
  square  eps 0.3, 5000 queries, p_init 0.8
  square_warm  Square (as square) started from PGD's best iterate (PGD as pgd: 40 steps of 0.01, random start,
          CE, one run)

ImageNet, eps 4/255 (``DEFAULTS['imagenet']``):
  fgsm eps 4/255; bim / pgd 10 steps of 1/255; mifgsm 10 steps of eps/10;
  cw_l2 5 x 200 steps, lr 0.01, c0 1e-2; deepfool as MNIST; apgd / apgd_t / square as MNIST;
  square_warm as square, its PGD as pgd (10 steps of 1/255).
ImageNet eps 16/255 (the paper's large budget): set ``eps: 16/255`` in the config; the default
  step size then scales with eps (16 -> 4/255 per step for bim / pgd, 1.6/255 for mifgsm).
  ``IMAGENET_EPS = (4/255, 16/255)``.

Step-size rule (bim / pgd / mifgsm, and square_warm's PGD as pgd) when a config does not set ``step_size``, per norm:

* Linf: the dataset default ``step_size`` times ``eps / default_eps`` (the default schedule keeps
  its shape; without ``dataset`` the MNIST fractions of eps: pgd eps/30, bim 2 eps/15, mifgsm
  eps/10). ``steps`` does not change it.
* L2: ``2.5 * eps / steps`` (:func:`ipgan_jax.attacks.core.default_step_size`), never derived
  from the Linf default (L2 eps 2.0 with 40 steps: 0.125 per step).

``success_margin`` (logit units, >= 0, default 0) is a spec field of every attack whose success flag steers the
search (fgsm, bim, pgd, mifgsm, apgd, apgd_t, square, square_warm): an iterate counts as adversarial only by more
than that margin in logits (``losses.is_adversarial``'s ``confidence``); a negative value is a ConfigError.

A direct call with ``step_size=None`` (the signature default) applies the same rule with the
MNIST fractions, so ``make_attack(cfg)`` and a direct call with the same arguments are the same
attack; ``make_attack(...).params['step_size']`` shows the resolved value.
"""
from __future__ import annotations

import functools
import inspect
from typing import Any, Callable, Dict, Mapping, Optional

from ipgan_jax import contracts
from ipgan_jax.attacks import losses
from ipgan_jax.attacks.apgd import apgd, apgd_targeted
from ipgan_jax.attacks.core import check_norm, default_step_size
from ipgan_jax.attacks.cw import cw_l2
from ipgan_jax.attacks.deepfool import deepfool
from ipgan_jax.attacks.gradient import LINF_STEP_RATIO, bim, fgsm, mifgsm, pgd
from ipgan_jax.attacks.square import square, square_warm
from ipgan_jax.errors import ConfigError

ATTACKS: Dict[str, Callable] = {
    "fgsm": fgsm,
    "bim": bim,
    "pgd": pgd,
    "mifgsm": mifgsm,
    "cw_l2": cw_l2,
    "deepfool": deepfool,
    "apgd": apgd,
    "apgd_t": apgd_targeted,
    "square": square,
    "square_warm": square_warm,
}

# attacks whose default Linf step follows another attack's rule (``gradient.LINF_STEP_RATIO``)
STEP_RULE = {"square_warm": "pgd"}

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
        "apgd": dict(eps=0.3, norm="linf", steps=100, loss="ce", restarts=1),
        "apgd_t": dict(eps=0.3, norm="linf", steps=100, n_target_classes=9, restarts=1),
        "square": dict(eps=0.3, norm="linf", n_queries=5000, p_init=0.8),
        "square_warm": dict(eps=0.3, norm="linf", n_queries=5000, p_init=0.8, steps=40, step_size=0.01, loss="ce",
                            random_start=True),
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
        "apgd": dict(eps=4 / 255, norm="linf", steps=100, loss="ce", restarts=1),
        "apgd_t": dict(eps=4 / 255, norm="linf", steps=100, n_target_classes=9, restarts=1),
        "square": dict(eps=4 / 255, norm="linf", n_queries=5000, p_init=0.8),
        "square_warm": dict(eps=4 / 255, norm="linf", n_queries=5000, p_init=0.8, steps=10, step_size=1 / 255,
                            loss="ce", random_start=True),
    },
}


def attack_params(name: str) -> Dict[str, Any]:
    """The parameters attack ``name`` accepts in a config, with their signature defaults."""
    fn = _lookup(name)
    return {p.name: p.default for p in inspect.signature(fn).parameters.values()
            if p.kind is inspect.Parameter.KEYWORD_ONLY and p.name != "key"}


def _lookup(name):
    if name not in ATTACKS:
        raise ConfigError(f"unknown attack {name!r}; accepted names: {sorted(ATTACKS)}")
    return ATTACKS[name]


def _as_dict(cfg) -> Dict[str, Any]:
    if hasattr(cfg, "to_dict"):  # ml_collections.ConfigDict / FrozenConfigDict
        cfg = cfg.to_dict()
    if not isinstance(cfg, Mapping):
        raise TypeError(f"attack config must be a dict or ConfigDict, got {type(cfg).__name__}")
    return dict(cfg)


def _default_step(name, base, params, accepted):
    """The per-norm step rule of the module docstring, for a config without ``step_size``."""
    norm = params.get("norm", "linf")
    base_norm = base.get("norm", accepted.get("norm", "linf"))
    if norm == "linf" and base_norm == "linf" and base.get("step_size") is not None and base.get("eps"):
        return base["step_size"] * float(params["eps"]) / float(base["eps"])
    ratio = LINF_STEP_RATIO[STEP_RULE.get(name, name)]
    return default_step_size(norm, float(params["eps"]), int(params["steps"]), ratio)


def make_attack(cfg, dataset: Optional[str] = None) -> Callable:
    """Build ``fn(logits_fn, x, y, key=None) -> x_adv`` from a config.

    cfg: dict / ConfigDict with ``name`` (one of ``ATTACKS``) and any of that attack's keyword
    parameters, e.g. ``{'name': 'pgd', 'eps': 0.3, 'steps': 40, 'step_size': 0.01,
    'random_start': True, 'restarts': 1, 'loss': 'ce', 'norm': 'linf', 'targeted': False}``.
    Missing parameters come from ``DEFAULTS[dataset][name]`` when ``dataset`` is given, else from
    the function signature (the MNIST values). Raises ConfigError (a ValueError) for an unknown name,
    parameter or dataset, and for a bad value (eps < 0 or NaN, step size <= 0, steps < 1, ...:
    ``contracts.PARAM_RULES``). The returned function closes over the (static) parameters and is jit-able:
    ``jax.jit(lambda x, y, k: attack(logits_fn, x, y, k))``; ``key`` may be None for
    deterministic attacks.
    """
    cfg = _as_dict(cfg)
    if "name" not in cfg:
        raise ConfigError(f"attack config needs a 'name'; accepted names: {sorted(ATTACKS)}")
    name = cfg.pop("name")
    fn = _lookup(name)
    accepted = attack_params(name)
    unknown = sorted(set(cfg) - set(accepted))
    if unknown:
        raise ConfigError(f"unknown parameter(s) {unknown} for attack {name!r}; "
                          f"accepted parameters: {sorted(accepted)}")
    if dataset is None:
        base = dict(accepted)
    else:
        if dataset not in DEFAULTS:
            raise ConfigError(f"unknown dataset {dataset!r} for attack defaults; choose one of {sorted(DEFAULTS)}")
        base = dict(DEFAULTS[dataset][name])
    params = dict(base)
    params.update(cfg)
    try:   # a bad value in a config is the user's (ConfigError); the attack functions raise plain ValueError
        if params.get("norm") is not None:
            check_norm(params["norm"])
        if "step_size" in accepted and "step_size" not in cfg:
            params["step_size"] = _default_step(name, base, params, accepted)
        if isinstance(params.get("loss"), str):
            losses.objective(params["loss"])  # raises ValueError naming the accepted losses
        contracts.check_attack_params(params, f"{name} ")   # eps, step sizes, counts: fail here, not mid-run
    except ValueError as e:
        raise ConfigError(str(e)) from None

    def attack(logits_fn: Callable, x, y, key=None):
        # fn checks x, y and the model's output at entry (contracts.attack_contract): shapes and
        # dtypes statically (also under jit), values when concrete
        return fn(logits_fn, x, y, key=key, **params)

    attack.name = name
    attack.params = dict(params)
    functools.update_wrapper(attack, fn, assigned=("__doc__",), updated=())
    return attack
