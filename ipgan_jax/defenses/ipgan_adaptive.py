"""Adaptive IP-GAN: G trained against an attacker who knows it (beyond the paper).

The paper's IP-GAN only ever sees x_adv crafted on f alone; PGD through the whole pipeline
``f(fuse(x, G(x)))`` then drives its robust accuracy to 0. Here a share of every batch is
crafted, inside the jitted train step, **through the current pipeline**
``z -> f(defend(stop_gradient(g), z))`` (PGD with random start, ``config.ipgan_adaptive.attack``),
and G learns to undo those too. The rest of the batch is as in IP-GAN: the first
``ipgan.clean_fraction`` rows clean, the others from the oblivious attack mix. f stays frozen
(it is never in the state). Rows of the batch, by position (static, so the step compiles once):

    [0, n_clean)                      clean
    [n_clean, n_clean + n_adaptive)   PGD through the current pipeline (this module)
    [n_clean + n_adaptive, B)         the oblivious mix (``train_attacks``, ``attack_sources``)

with ``n_adaptive = round(fraction * (B - n_clean))``. ``attack_phases`` makes the pipeline attack
a curriculum: e.g. ``((4000, 20, 0.0375),)`` runs ``attack`` (PGD-7) for the first 4000 steps and
PGD-20 with step 0.0375 from there on. G's loss is IP-GAN's on every row plus,
when ``l_kl`` > 0, TRADES' ``KL(f(d(x)) || f(d(x_adv)))`` on the adaptive rows.

Gradient masking is the failure mode to watch (a G that saturates tanh or the clip, or
binarises, makes PGD fail for the wrong reason): the training monitor also attacks the
pipeline on the validation batch twice (``monitor_attack``: PGD or APGD-CE), with exact gradients
and with tanh and clip differentiated as the identity (the ``straight_through`` view of ``fusion``, BPDA),
and reports both and their minimum (``whitebox/acc``, ``whitebox_st/acc``, ``whitebox_min/acc``).
A straight-through number far below the exact one means the exact gradient is masked.

Config: ``config.ipgan_adaptive`` holds the own fields below; any field of ``config.ipgan`` can
be overridden there for this defense alone (as for GRIP-GAN). ``run_train.py
--config.defense=ipgan_adaptive`` (or ``--config.ipgan.adaptive=True`` with the default defense)
writes to ``<workdir>/defenses/ipgan_adaptive/<classifier>``, beside the oblivious IP-GAN.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from ipgan_jax.attacks import make_attack
from ipgan_jax.data.pipeline import dataset_family
from ipgan_jax.defenses.ipgan import IPGANTrainer, boundaries_reached, with_ipgan_overrides
from ipgan_jax.errors import ConfigError

_OWN_FIELDS = ("num_steps", "fraction", "attack", "attack_phases", "l_kl", "monitor_steps", "monitor_attack")
MONITOR_ATTACKS = ("pgd", "apgd")


def parse_attack_phases(phases) -> tuple[tuple[int, int, float], ...]:
    """``config.ipgan_adaptive.attack_phases`` -> sorted ``((start_step, steps, step_size), ...)``.

    From ``start_step`` on (0-based: the update made at step s uses the phase of s), the
    pipeline attack runs ``steps`` iterations of ``step_size``; before the first start, ``attack``
    as configured. ``()``: one phase. Start steps must be positive and distinct, ``steps`` >= 1,
    ``step_size`` > 0; anything else is a ValueError naming the field."""
    out = []
    for ph in phases or ():
        try:
            start, steps, size = ph
            start_i, steps_i, size_f = int(start), int(steps), float(size)
            ok = start_i == start and steps_i == steps
        except (TypeError, ValueError):
            ok = False
        if not ok or start_i < 1 or steps_i < 1 or not size_f > 0:
            raise ConfigError(f"config.ipgan_adaptive.attack_phases: {ph!r} is not (start_step >= 1, steps >= 1, "
                              f"step_size > 0), e.g. ((4000, 20, 0.0375),)")
        out.append((start_i, steps_i, size_f))
    out.sort()
    if len({p[0] for p in out}) != len(out):
        raise ConfigError(f"config.ipgan_adaptive.attack_phases={tuple(phases)!r}: two phases start at the same step")
    return tuple(out)


class AdaptiveIPGANTrainer(IPGANTrainer):
    name = "ipgan_adaptive"

    @classmethod
    def method_config(cls, config):
        """``config`` with ``config.ipgan_adaptive``'s overrides of ``config.ipgan`` fields applied."""
        return with_ipgan_overrides(config, "ipgan_adaptive", _OWN_FIELDS)

    def __init__(self, config, target_module, target_variables):
        super().__init__(config, target_module, target_variables)   # reads method_config(config)
        own = config.ipgan_adaptive
        self.fraction = float(own.fraction)
        if not 0.0 <= self.fraction <= 1.0:
            raise ConfigError(f"config.ipgan_adaptive.fraction={self.fraction} must be in [0, 1]")
        self.l_kl = float(own.l_kl)
        spec = self.attack_spec = own.attack.to_dict()
        self.pipeline_attack = make_attack(spec, dataset=dataset_family(config.dataset))
        self.attack_phases = parse_attack_phases(own.attack_phases)
        self.phase_attacks = [self.pipeline_attack]
        for start, steps, size in self.attack_phases:
            try:
                self.phase_attacks.append(make_attack({**spec, "steps": steps, "step_size": size},
                                                      dataset=dataset_family(config.dataset)))
            except ValueError as e:
                raise ConfigError(f"config.ipgan_adaptive.attack_phases: the phase from step {start} sets steps "
                                  f"and step_size of attack {spec['name']!r}: {e}") from None
        self.monitor_steps = int(own.monitor_steps)
        self.monitor_attack = str(own.monitor_attack)
        self.monitor_attack_fn = self._make_monitor_attack(config)   # bad values fail here, not mid-training

    def _make_monitor_attack(self, config):
        """The monitor's attack at the training attack's eps: 'pgd': random start, CE, step
        2.5 eps / steps; 'apgd': APGD-CE (AutoAttack's step-size schedule and momentum), which does
        not share the training PGD's fixed step, so a G fitted to that PGD's dynamics does not look
        better than it is."""
        if self.monitor_attack not in MONITOR_ATTACKS:
            raise ConfigError(f"config.ipgan_adaptive.monitor_attack={self.monitor_attack!r}; "
                              f"accepted: {list(MONITOR_ATTACKS)}")
        if self.monitor_steps < 1:
            raise ConfigError(f"config.ipgan_adaptive.monitor_steps={self.monitor_steps} must be >= 1")
        eps = float(self.attack_spec["eps"])
        if self.monitor_attack == "apgd":
            spec = {"name": "apgd", "eps": eps, "steps": self.monitor_steps, "loss": "ce", "restarts": 1}
        else:
            spec = {"name": "pgd", "eps": eps, "steps": self.monitor_steps, "loss": "ce",
                    "step_size": 2.5 * eps / self.monitor_steps, "random_start": True}
            if "norm" in self.attack_spec:
                spec["norm"] = self.attack_spec["norm"]
        return make_attack(spec, dataset=dataset_family(config.dataset))

    # -- which rows are crafted through the pipeline -------------------------------------
    def adaptive_rows(self, batch_size: int) -> tuple[int, int]:
        """Static [lo, hi) of the rows crafted through the current pipeline."""
        lo = int(round(self.cfg.clean_fraction * batch_size))
        return lo, lo + int(round(self.fraction * (batch_size - lo)))

    def pipeline_logits(self, g_params, straight_through=False):
        """``z -> f(defend(g, z))`` with G frozen (the attacker's view); ``straight_through``:
        tanh and clip differentiated as the identity (BPDA)."""
        g = jax.lax.stop_gradient(g_params)
        view = "straight_through" if straight_through else "exact"
        return lambda z: self.target_logits(self.defend(g, z, view))

    def phase_attack(self, step, logits_fn, x, y, key):
        """The pipeline attack of ``attack_phases`` at ``step`` (int32 scalar): with phases, every
        phase's attack is compiled once and ``lax.switch`` runs only the current one, with the same
        key, so a run continued with a phase added at its last step is the run trained with it."""
        if not self.attack_phases:
            return self.pipeline_attack(logits_fn, x, y, key)
        idx = boundaries_reached([p[0] for p in self.attack_phases], step)
        branches = [lambda x, y, k, a=a: a(logits_fn, x, y, k) for a in self.phase_attacks]
        return jax.lax.switch(idx, branches, x, y, key)

    def training_inputs(self, state, x, y, rng):
        x_in = super().training_inputs(state, x, y, rng)
        lo, hi = self.adaptive_rows(x.shape[0])
        if hi == lo:
            return x_in
        x_ada = self.phase_attack(state["step"], self.pipeline_logits(state["g"]), x[lo:hi], y[lo:hi],
                                  jax.random.fold_in(rng, 1))
        return jax.lax.stop_gradient(x_in.at[lo:hi].set(x_ada))

    def generator_loss(self, g_params, d_params, x_in, x, y):
        total, (terms, x_rec, logits_rec) = super().generator_loss(g_params, d_params, x_in, x, y)
        lo, hi = self.adaptive_rows(x.shape[0])
        if self.l_kl > 0 and hi > lo:
            logp_clean = jax.nn.log_softmax(self.target_logits(self.defend(g_params, x[lo:hi])))
            logp_adv = jax.nn.log_softmax(logits_rec[lo:hi])
            kl = jnp.mean(jnp.sum(jnp.exp(logp_clean) * (logp_clean - logp_adv), axis=-1))
            terms = {**terms, "kl": kl}
            total = total + self.l_kl * kl
        return total, (terms, x_rec, logits_rec)

    def extra_metrics(self, logits_rec, y) -> dict:
        lo, hi = self.adaptive_rows(y.shape[0])
        if hi == lo:
            return {}
        return {"train_adaptive_acc": jnp.mean(jnp.argmax(logits_rec[lo:hi], -1) == y[lo:hi])}

    # -- training monitor: white-box accuracy, exact and straight-through ------------------
    def monitor_metrics(self, params, x, y, key) -> dict:
        """Accuracy of f(d(.)) under ``monitor_attack``-``monitor_steps`` through the pipeline
        (``_make_monitor_attack``), with exact and with straight-through (BPDA) gradients, and their
        minimum."""
        exact = self.pipeline_logits(params)
        right = {}
        for name, st in (("whitebox", False), ("whitebox_st", True)):
            x_adv = self.monitor_attack_fn(self.pipeline_logits(params, straight_through=st), x, y, key)
            right[name] = jnp.argmax(exact(x_adv), -1) == y
        out = {f"{k}/acc": jnp.mean(v) for k, v in right.items()}
        out["whitebox_min/acc"] = jnp.mean(right["whitebox"] & right["whitebox_st"])
        return out
