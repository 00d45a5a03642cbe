"""The AutoAttack ensemble (Croce & Hein 2020): parameter-free attacks run one after the other,
each only on the images still robust, the result being the per-example worst case.

    x_adv, log = autoattack(logits_fn, x, y, key=key, eps=0.3)                 # standard, Linf
    x_adv, log = autoattack(eot_model, x, y, key=key, eps=0.3, version="rand")  # randomised defense

Versions (as the reference implementation):

* ``'standard'``: APGD-CE (1 run), APGD-T (9 target classes, 1 run each), Square (5000 queries).
  The reference also runs FAB-T between APGD-T and Square; it is not implemented here (the log
  says so under ``'not_run'``), which matters little in practice (FAB-T rarely breaks an image
  that APGD-T did not), but it is a difference.
* ``'rand'``: APGD-CE and APGD-DLR, 1 run each, with the loss gradient averaged over
  ``eot_samples`` = 20 draws per step of a randomised model (see ``transforms.randomized`` /
  ``transforms.eot``); for a deterministic model EOT changes nothing.
* ``attacks=(...)`` overrides the list: any of ``'apgd-ce'``, ``'apgd-dlr'``, ``'apgd-t'``,
  ``'square'``.

This driver is Python-level (like the reference): after each attack it keeps only the images
still robust, gathers them into a batch padded to the next power of two (so few shapes compile),
and runs the next attack on that batch. An image counts as broken when the model (a fresh draw,
for a randomised one) misclassifies the attack's output. Images misclassified clean are not
attacked. x_adv holds the successful adversarial for broken images and the first attack's output
(APGD-CE's highest-loss point) for the others; every x_adv is inside the eps ball and [0, 1].
"""
from __future__ import annotations

from typing import Callable, Dict, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from ipgan_jax import contracts
from ipgan_jax.attacks import core
from ipgan_jax.attacks.apgd import apgd, apgd_targeted
from ipgan_jax.attacks.square import square_compacting
from ipgan_jax.attacks.transforms import call_model

VERSIONS = {"standard": ("apgd-ce", "apgd-t", "square"), "rand": ("apgd-ce", "apgd-dlr")}
ATTACK_NAMES = ("apgd-ce", "apgd-dlr", "apgd-t", "square")
NOT_IMPLEMENTED = {"standard": ("fab-t",)}


@contracts.attack_contract
def autoattack(logits_fn: Callable, x, y, *, key, eps: float, norm: str = "linf",
               version: str = "standard", attacks: Optional[Sequence[str]] = None, steps: int = 100,
               n_queries: int = 5000, n_target_classes: int = 9, eot_samples: Optional[int] = None,
               min_bucket: int = 8):
    """Run the ensemble. x float [B, H, W, C] in [0, 1], y int [B] true labels.

    Returns ``(x_adv, log)``; log: ``n`` (images), ``clean`` (correctly classified), ``broken``
    {attack: images it broke, in order}, ``robust`` (images no attack broke), ``robust_accuracy``
    (robust / n), ``attacks`` (the list run), ``not_run`` (attacks of the reference version that
    are not implemented) and ``robust_flags`` (bool numpy [B]). ``steps``: APGD iterations;
    ``n_queries``: Square's budget; ``eot_samples``: default 20 for 'rand', 1 otherwise.
    ``attacks=[]`` (nothing to run) is a ValueError. An empty batch (B == 0) returns x and a log
    with every count 0 (``robust_accuracy`` 0.0) without calling the model.
    """
    core.check_norm(norm)
    if attacks is None:
        if version not in VERSIONS:
            raise ValueError(f"unknown autoattack version {version!r}; choose one of {sorted(VERSIONS)} "
                             f"or pass attacks=")
        attacks = VERSIONS[version]
        not_run = NOT_IMPLEMENTED.get(version, ())
    else:
        attacks = tuple(attacks)
        if not attacks:
            raise ValueError(f"autoattack: attacks={list(attacks)} runs nothing; pass attacks=None for the "
                             f"{version!r} version's list or a non-empty subset of {list(ATTACK_NAMES)}")
        not_run = ()
    unknown = [a for a in attacks if a not in ATTACK_NAMES]
    if unknown:
        raise ValueError(f"unknown attack(s) {unknown}; accepted: {list(ATTACK_NAMES)} (FAB is not implemented)")
    if key is None:
        raise ValueError("autoattack needs a PRNG key")
    if eot_samples is None:
        eot_samples = 20 if version == "rand" else 1
    x, y = core.check_input(x, y)
    n = x.shape[0]
    if n == 0:   # nothing to attack: do not call the model (many cannot reshape an empty batch)
        return x, dict(n=0, clean=0, broken={name: 0 for name in attacks}, attacks=list(attacks),
                       not_run=list(not_run), robust=0, robust_accuracy=0.0, robust_flags=np.zeros(0, bool))

    runners: Dict[str, Callable] = {
        "apgd-ce": lambda xs, ys, k: apgd(logits_fn, xs, ys, key=k, eps=eps, norm=norm, steps=steps, loss="ce",
                                          eot_samples=eot_samples),
        "apgd-dlr": lambda xs, ys, k: apgd(logits_fn, xs, ys, key=k, eps=eps, norm=norm, steps=steps, loss="dlr",
                                           eot_samples=eot_samples),
        "apgd-t": lambda xs, ys, k: apgd_targeted(logits_fn, xs, ys, key=k, eps=eps, norm=norm, steps=steps,
                                                  n_target_classes=n_target_classes, eot_samples=eot_samples),
        # host-level: drops the images it has broken every few hundred queries
        "square": lambda xs, ys, k: square_compacting(logits_fn, xs, ys, key=k, eps=eps, norm=norm,
                                                      n_queries=n_queries, min_bucket=min_bucket),
    }

    predict = jax.jit(lambda xs, k: jnp.argmax(call_model(logits_fn, xs, k), -1))
    x_np, y_np = np.asarray(x), np.asarray(y)
    robust = np.asarray(predict(x, core.model_key(key, 0))) == y_np
    log = dict(n=int(n), clean=int(robust.sum()), broken={}, attacks=list(attacks), not_run=list(not_run))
    x_adv = x_np.copy()
    first = True
    for ai, name in enumerate(attacks):
        idx = np.nonzero(robust)[0]
        if idx.size == 0:
            log["broken"][name] = 0
            continue
        size = core.bucket_size(idx.size, min_bucket)
        pad = np.concatenate([idx, np.full(size - idx.size, idx[0])])
        k = jax.random.fold_in(key, ai + 1)
        run = runners[name] if name == "square" else jax.jit(runners[name])
        xa = np.asarray(run(jnp.asarray(x_np[pad]), jnp.asarray(y_np[pad]), k))[: idx.size]
        pred = np.asarray(predict(jnp.asarray(xa), core.model_key(k, 1)))
        broke = pred != y_np[idx]
        if first:
            x_adv[idx] = xa  # unbroken images keep the first attack's point
            first = False
        else:
            x_adv[idx[broke]] = xa[broke]
        robust[idx[broke]] = False
        log["broken"][name] = int(broke.sum())
    log["robust"] = int(robust.sum())
    log["robust_accuracy"] = float(robust.mean()) if n else 0.0
    log["robust_flags"] = robust
    return jnp.asarray(x_adv, x.dtype), log
