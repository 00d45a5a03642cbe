"""UIPD (Chen et al., Acta Automatica Sinica 2023): one universal inverse perturbation.

A single delta [H, W, C], learned from CLEAN training data only, that minimises the frozen
target's cross-entropy on ``clip(x + delta, 0, 1)`` (it pushes inputs deeper into their own
class region); the defense is ``defend(x_adv) = clip(x_adv + delta, 0, 1)``.

The bound ``||delta||_inf <= eps`` (``config.uipd.eps``, pixel units, 0.3 by default) is kept
by projection after every Adam step (``parametrization='project'``) or by
``delta = eps * tanh(w)`` (``parametrization='tanh'``). delta starts at 0 (the identity defense).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

from ipgan_jax.defenses import losses
from ipgan_jax.defenses.base import DefenseTrainer
from ipgan_jax.errors import ConfigError
from ipgan_jax.images import amplify


class UIPDTrainer(DefenseTrainer):
    name = "uipd"

    def __init__(self, config, target_module, target_variables):
        super().__init__(config, target_module, target_variables)
        cfg = self.cfg = config.uipd
        if cfg.parametrization not in ("project", "tanh"):
            raise ConfigError(f"config.uipd.parametrization={cfg.parametrization!r}: choose 'project' or 'tanh'")
        self.tx = optax.adam(cfg.lr)

    def delta(self, w):
        eps = float(self.cfg.eps)
        if self.cfg.parametrization == "tanh":
            return eps * jnp.tanh(w)
        return jnp.clip(w, -eps, eps)

    def defend(self, params, x):
        """x [B,H,W,C] in [0,1] -> clip(x + delta, 0, 1)."""
        return jnp.clip(x + params["delta"][None], 0.0, 1.0)

    def defense_params(self, state):
        return {"delta": self.delta(state["w"])}

    def init_state(self, rng):
        w = jnp.zeros(self.image_shape, jnp.float32)
        return {"step": jnp.zeros((), jnp.int32), "w": w, "opt": self.tx.init(w)}

    def loss(self, w, x, y):
        logits = self.target_logits(self.defend({"delta": self.delta(w)}, x))
        return losses.classification_loss(logits, y), logits

    def train_step(self, state, batch, rng):
        x, y = batch["image"], batch["label"]
        (loss, logits), grads = jax.value_and_grad(self.loss, has_aux=True)(state["w"], x, y)
        upd, opt = self.tx.update(grads, state["opt"], state["w"])
        w = optax.apply_updates(state["w"], upd)
        if self.cfg.parametrization == "project":
            w = jnp.clip(w, -self.cfg.eps, self.cfg.eps)
        d = self.delta(w)
        metrics = {"loss": loss, "train_acc": jnp.mean(jnp.argmax(logits, -1) == y),
                   "delta_linf": jnp.max(jnp.abs(d)), "delta_l2": jnp.sqrt(jnp.sum(jnp.square(d)))}
        return {"step": state["step"] + 1, "w": w, "opt": opt}, metrics

    def extra_sample_rows(self, params, x, x_adv):
        return [("delta (scaled)", amplify(jnp.broadcast_to(params["delta"][None], x.shape)))]
