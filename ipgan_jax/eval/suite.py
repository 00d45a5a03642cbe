"""The white-box suite as data: each member is a :class:`Member` spec, looked up by name in :data:`MEMBERS`.

A member names a library attack (:data:`ipgan_jax.attacks.ATTACKS`) and says how its settings follow from the
suite's :class:`Budget` (eps, steps, restarts, Square's queries); the harness (``evaluate.Evaluator``) does the rest:
it builds the attack with the evaluation's settings for the dataset (``eval.attack_params``), compiles it once for
every eps, runs it under each attack view of the defense, and keeps one record per (member, view). A member knows
nothing of the harness. Adding one is one entry::

    from ipgan_jax.eval import suite
    suite.MEMBERS["fgsm_rs"] = suite.Member("fgsm", lambda b: dict(eps=b.eps, random_start=True))
    # then: --config.eval.whitebox_suite=pgd_ce,fgsm_rs

A Python-level member (a driver that is not jit-able as a whole, such as AutoAttack's cascade) gives ``driver``:
``driver(logits_fn, x, y, key, mask, **settings) -> (x_adv, log)``, with ``mask`` bool [B] the batch's real
(unpadded) rows and ``log`` a JSON-able dict (or None) that the harness stores with the run's attack logs.
"""
from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax.numpy as jnp
import numpy as np

from ipgan_jax.attacks.autoattack import autoattack
from ipgan_jax.attacks.registry import attack_params
from ipgan_jax.config_lists import parse_names
from ipgan_jax.errors import ConfigError


class Budget(NamedTuple):
    """What a suite member may spend on one image.

    Attributes:
        eps: Linf radius in pixel units ([0, 1] images); a traced scalar inside the compiled attack (one compile
            serves every eps), a float for a Python-level driver.
        steps: iterations per gradient attack (``eval.whitebox_steps`` or the defense's override).
        restarts: random restarts (``eval.whitebox_restarts`` or the defense's override).
        square_queries: Square's query budget per restart (``eval.square_queries``).
    """
    eps: Any
    steps: int
    restarts: int
    square_queries: int


class Member(NamedTuple):
    """One white-box suite member.

    Attributes:
        attack: the library attack's registry name (``ipgan_jax.attacks.make_attack``); for a member with a
            ``driver``, a label only.
        settings: ``settings(budget) -> dict`` of overrides of the evaluation's attack settings.
        driver: None for a jit-able library attack; else the Python-level driver (module docstring).
    """
    attack: str
    settings: Callable[[Budget], dict]
    driver: Callable | None = None


def member_settings(member: Member, budget: Budget, success_margin: float = 0.0) -> dict:
    """The settings a suite member runs with: ``member.settings(budget)``, plus the evaluation's success margin.

    Args:
        member: the suite member.
        budget: its budget.
        success_margin: ``eval.success_margin``, logit units >= 0: set as the attack's ``success_margin`` (an iterate
            counts as a success only when adversarial by more than it) for a library attack that accepts it (pgd,
            apgd, apgd_t, square, square_warm, ...), unless the member sets its own; a member with a ``driver``
            (the ``autoattack`` cascade) and an attack without the keyword run as they are.

    Returns:
        The keyword arguments of the member's attack (or driver), a new dict.
    """
    settings = dict(member.settings(budget))
    if member.driver is None and "success_margin" in attack_params(member.attack):
        settings.setdefault("success_margin", success_margin)
    return settings


def _pgd(loss: str, start="uniform", **extra) -> Member:
    # fixed step 2.5 eps / steps from a random start (uniform in the eps ball, or a random corner of it), the best
    # iterate kept; extra: settings that follow from the budget, e.g. warm_eps
    return Member("pgd", lambda b: dict(eps=b.eps, steps=b.steps, restarts=b.restarts,
                                        step_size=2.5 * b.eps / max(b.steps, 1), loss=loss, random_start=start,
                                        keep_best=True, **{k: f(b) for k, f in extra.items()}))


def _apgd(loss: str) -> Member:
    return Member("apgd", lambda b: dict(eps=b.eps, steps=b.steps, restarts=b.restarts, loss=loss))


def autoattack_driver(logits_fn, x, y, key, mask, **settings):
    """AutoAttack's cascade (``ipgan_jax.attacks.autoattack``) on the batch's real rows only.

    Args:
        logits_fn: fn(x) -> logits [B, K].
        x: float [B, H, W, C] in [0, 1].
        y: int [B] true labels.
        key: PRNG key.
        mask: bool [B], the rows to attack (padding rows are returned unchanged).
        **settings: keyword arguments of ``autoattack`` (eps in pixel units, steps, version, n_queries, ...).

    Returns:
        ``(x_adv, log)``: x_adv float [B, H, W, C]; log the cascade's counts (images each attack broke, in
        order) over the real rows, or None when there are none.
    """
    keep = np.asarray(mask, bool)
    x_np = np.array(x)
    if not keep.any():
        return jnp.asarray(x_np, x.dtype), None
    xa, log = autoattack(logits_fn, jnp.asarray(x_np[keep]), jnp.asarray(np.asarray(y)[keep]), key=key, **settings)
    x_np[keep] = np.asarray(xa)
    return jnp.asarray(x_np, x.dtype), {k: v for k, v in log.items() if k != "robust_flags"}


MEMBERS: dict[str, Member] = {
    "pgd_ce": _pgd("ce"),
    "pgd_margin": _pgd("margin"),
    "pgd_corner": _pgd("ce", start="corner"),   # PGD CE from a random corner of the eps box (every pixel at +-eps)
    # PGD CE warm-started from PGD CE at 1.25 eps (0.375 for 0.3), projected back onto the eps ball
    "pgd_warm": _pgd("ce", warm_eps=lambda b: 1.25 * b.eps),
    "apgd_ce": _apgd("ce"),
    "apgd_dlr": _apgd("dlr"),
    # 9 target classes x 1 run each (AutoAttack's APGD-T); the suite's restarts do not multiply it
    "apgd_t": Member("apgd_t", lambda b: dict(eps=b.eps, steps=b.steps, restarts=1)),
    # score-based, gradient-free: blind to masked gradients; a restart searches again only the images no earlier
    # one broke
    "square": Member("square", lambda b: dict(eps=b.eps, n_queries=b.square_queries, restarts=b.restarts)),
    # Square (the budget's queries and restarts) started from PGD CE's best iterate (the budget's steps of
    # 2.5 eps / steps from a uniform start, one run); never weaker per image than that PGD run
    "square_warm": Member("square_warm", lambda b: dict(eps=b.eps, n_queries=b.square_queries, restarts=b.restarts,
                                                        steps=b.steps, step_size=2.5 * b.eps / max(b.steps, 1),
                                                        loss="ce", random_start="uniform")),
    # AutoAttack's standard cascade: APGD-CE, APGD-T, Square, each only on the images still robust
    "autoattack": Member("autoattack", lambda b: dict(eps=float(b.eps), steps=b.steps, version="standard",
                                                      n_queries=b.square_queries), driver=autoattack_driver),
}

# Names that stand for several members, each run on every image (the block takes the worst case per image):
# 'autoattack_full' = APGD-CE + APGD-T + Square as separate records (costlier than the 'autoattack' cascade,
# never weaker).
GROUPS: dict[str, tuple] = {"autoattack_full": ("apgd_ce", "apgd_t", "square")}


def suite_members(spec) -> list:
    """The member names of a suite.

    Args:
        spec: a comma string or a sequence of member and group names, e.g. ``'pgd_ce,autoattack_full'``.

    Returns:
        The member names, groups expanded, order kept, repeats dropped:
        ``['pgd_ce', 'apgd_ce', 'apgd_t', 'square']``.

    Raises:
        ConfigError: an unknown name, or no name at all.
    """
    names = []
    for n in parse_names(spec):
        if n not in MEMBERS and n not in GROUPS:
            raise ConfigError(f"unknown eval.whitebox_suite entry {n!r}; known: {sorted(MEMBERS) + sorted(GROUPS)}")
        names += [m for m in GROUPS.get(n, (n,)) if m not in names]
    if not names:
        raise ConfigError("eval.whitebox_suite is empty")
    return names
