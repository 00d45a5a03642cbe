"""Adversarial examples made on the fly inside a jitted train step.

``make_training_attack(specs, logits_fn, dataset=..., clean_fraction=...)`` -> ``fn(x, y, rng) -> x_in``
where, per step, one attack of ``specs`` (``config.train_attacks``, or a defense's own list) is drawn
(``lax.switch``: all branches are compiled once, only the drawn one runs) and each example's budget
is drawn uniformly in [eps_min, eps]: the attack runs at ``eps`` and its perturbation is scaled by
``eps_i / eps`` (still inside the example's eps_i ball and the [0,1] box). The first
``clean_fraction`` of the batch stays clean, so G also learns to leave clean images alone. The
result carries no gradient.

``logits_fn`` may also be a list of frozen classifiers (the target f first, then surrogates):
each step then draws its source model uniformly as well, in the spirit of ensemble adversarial
training (Tramer et al. 2018), so G also sees perturbations crafted on other models.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from ipgan_jax.attacks import make_attack
from ipgan_jax.data.pipeline import dataset_family
from ipgan_jax.errors import ConfigError


def make_training_attack(specs, logits_fn, *, dataset: str, clean_fraction: float):
    """The training-attack maker of the module docstring.

    Args:
        specs: attack specs (``make_attack`` fields, plus ``eps_min``: the bottom of the eps draw).
        logits_fn: the frozen classifier, or a list of them (the target first), the attacks are crafted on.
        dataset: the config's dataset (its attack defaults).
        clean_fraction: the share of the batch (its first rows) left clean.

    Returns:
        ``fn(x, y, rng) -> x_in``, jittable, without gradient.
    """
    specs = [dict(s) for s in specs]
    if not specs:
        raise ConfigError("config.train_attacks is empty: give at least one attack")
    attacks, eps_bounds = [], []
    for s in specs:
        eps_min = s.pop("eps_min", s.get("eps"))
        attacks.append(make_attack(s, dataset=dataset_family(dataset)))
        eps_bounds.append((float(eps_min), float(s["eps"])))

    listed = list(logits_fn) if isinstance(logits_fn, (list, tuple)) else [logits_fn]
    sources = list(dict.fromkeys(listed))          # unique, in order; a repeat raises its weight
    weights = [listed.count(f) for f in sources]
    # one branch per (source, attack): source weight / len(attacks) each
    branches = [lambda x, y, k, a=a, f=f: a(f, x, y, k) for f in sources for a in attacks]
    probs = jnp.asarray([w for w in weights for _ in attacks], jnp.float32)
    probs = probs / jnp.sum(probs)
    lows = jnp.asarray([b[0] for b in eps_bounds] * len(sources))
    highs = jnp.asarray([b[1] for b in eps_bounds] * len(sources))

    def fn(x, y, rng):
        k_sel, k_att, k_eps = jax.random.split(rng, 3)
        idx = jax.random.randint(k_sel, (), 0, len(branches)) if len(sources) == 1 else \
            jax.random.choice(k_sel, len(branches), p=probs)
        lo, hi = lows[idx], highs[idx]
        x_adv = jax.lax.switch(idx, branches, x, y, k_att)
        scale = jax.random.uniform(k_eps, (x.shape[0], 1, 1, 1), minval=lo, maxval=hi) / hi
        x_adv = jnp.clip(x + (x_adv - x) * scale, 0.0, 1.0)
        n_clean = int(round(clean_fraction * x.shape[0]))
        keep_clean = (jnp.arange(x.shape[0]) < n_clean)[:, None, None, None]
        return jax.lax.stop_gradient(jnp.where(keep_clean, x, x_adv))

    return fn
