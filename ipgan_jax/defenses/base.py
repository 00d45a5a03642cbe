"""What a defense is: a pure ``defend(params, x) -> x_clean`` plus a trainer.

Every defense (IP-GAN and the baselines) implements ``DefenseTrainer``:

* ``init_state(rng)`` -> state pytree (params, optimiser states, ``'step'``: int32 scalar),
* ``train_step(state, batch, rng)`` -> ``(state, metrics)``: pure, jitted and donated by the
  shared loop in ``ipgan_jax.defenses.loop``, data-parallel over the ``'data'`` mesh axis,
* ``defense_params(state)`` -> the params ``defend`` needs at test time (exported),
* ``defend(params, x)`` -> x_clean: float32 [B, H, W, C] in [0, 1] -> same shape/range.

``target_logits(x)`` / ``target_features(x)`` evaluate the frozen target classifier f; its
variables are closed over as constants and wrapped in ``stop_gradient``, so no optimiser
ever sees them.
"""
from __future__ import annotations

import abc

import jax


class DefenseTrainer(abc.ABC):
    name: str = "defense"

    def __init__(self, config, target_module, target_variables):
        self.config = config
        self.target_module = target_module
        self.target_variables = target_variables
        self.image_shape = (config.image_size, config.image_size, config.channels)

    # -- the frozen target classifier f ------------------------------------------------
    def target_logits(self, x):
        v = jax.lax.stop_gradient(self.target_variables)
        return self.target_module.apply(v, x, train=False)

    def target_features(self, x):
        """(logits, penultimate features) of f."""
        v = jax.lax.stop_gradient(self.target_variables)
        return self.target_module.apply(v, x, train=False, features=True)

    # -- the defense ------------------------------------------------------------------
    @abc.abstractmethod
    def init_state(self, rng) -> dict: ...

    @abc.abstractmethod
    def train_step(self, state: dict, batch: dict, rng) -> tuple[dict, dict]: ...

    @abc.abstractmethod
    def defense_params(self, state: dict): ...

    @abc.abstractmethod
    def defend(self, params, x): ...

    def num_steps(self) -> int:
        return int(self.config.train.num_steps)

    def sample_rows(self, params, x, x_adv):
        """Rows for the sample image grid: list of (label, images [N,H,W,C] in [0,1])."""
        from ipgan_jax.eval.plots import amplify
        x_rec = self.defend(params, x_adv)
        return [("clean", x), ("adversarial", x_adv), ("inv. pert. (scaled)", amplify(x_rec - x_adv)),
                ("defended", x_rec)]
