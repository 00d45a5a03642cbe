"""What a defense is: a pure ``defend(params, x) -> x_clean`` plus a trainer.

Every defense (IP-GAN and the baselines) implements ``DefenseTrainer``:

* ``init_state(rng)`` -> state dict (params, optimiser states, ``'step'``: int32 scalar),
* ``train_step(state, batch, rng)`` -> ``(state, metrics)``: pure, jitted and donated by the
  shared loop (``ipgan_jax.training.loop``), data-parallel over the ``'data'`` mesh axis,
* ``defense_params(state)`` -> the params ``defend`` needs at test time (exported),
* ``defend(params, x)`` -> x_clean: float32 [B, H, W, C] in [0, 1] -> same shape/range.

``target_logits(x)`` / ``target_features(x)`` evaluate the frozen target classifier f; its
variables are closed over as constants and wrapped in ``stop_gradient``, so no optimiser
ever sees them. f computes in ``self.dtype`` = ``config.train.compute_dtype``
(``ipgan_jax.models.precision``; float32 by default) and always returns float32.

``num_steps()`` is ``config.<name>.num_steps`` when > 0, else ``config.train.num_steps``;
``sample_rows`` gives the rows of the sample grids (subclasses add rows in ``extra_sample_rows``).
"""
from __future__ import annotations

import abc

import jax

from ipgan_jax.images import amplify
from ipgan_jax.models import precision


class DefenseTrainer(abc.ABC):
    name: str = "defense"               # also the config section read by num_steps()
    change_label: str = "change x10"    # the sample-grid row of defend(x_adv) - x_adv (amplified)

    @classmethod
    def surrogate_classifiers(cls, config) -> list[str]:
        """The trained classifiers besides the target that the constructor loads for ``config``
        (none here; IP-GAN's attack sources). Constructors load them, never train them: the
        caller makes sure they exist (``run_train.py``'s stage ``all`` trains the missing ones)."""
        return []

    def __init__(self, config, target_module, target_variables):
        self.config = config
        self.dtype = precision.compute_dtype(config)
        self.target_module = precision.with_dtype(target_module, self.dtype)
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
        """``config.<name>.num_steps`` when > 0, else the shared ``config.train.num_steps``."""
        own = int(self.config[self.name].num_steps)
        return own if own > 0 else int(self.config.train.num_steps)

    def monitor_metrics(self, params, x, y, key) -> dict:
        """Extra metrics of the training monitor on the validation batch (x, y) ({} here)."""
        return {}

    def sample_rows(self, params, x, x_adv):
        """Rows for the sample image grid: list of (label, images [N,H,W,C] in [0,1]); ``defend``
        is jitted once (not run op by op)."""
        if getattr(self, "_defend_jit", None) is None:
            self._defend_jit = jax.jit(self.defend)
        x_rec = self._defend_jit(params, x_adv)
        return ([("clean", x), ("adversarial", x_adv), (self.change_label, amplify(x_rec - x_adv)),
                 ("defended", x_rec)] + self.extra_sample_rows(params, x, x_adv))

    def extra_sample_rows(self, params, x, x_adv):
        return []
