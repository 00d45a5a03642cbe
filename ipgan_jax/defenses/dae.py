"""DAE: a MagNet-style denoising autoencoder (Meng & Chen 2017, the "reformer").

Net (stacked 3x3 convs, width ``width``): conv-conv / avgpool 2 / conv-conv / upsample 2
(nearest) / conv / conv C + sigmoid, so ``x_clean = AE(x)`` lies in [0, 1]. MagNet's MNIST
reformer has the same layout with 3 filters and sigmoid activations; we use ``width`` = 32
filters and ``activation`` ReLU by default (trains in a few hundred CPU steps; set
``activation='sigmoid', width=3`` for MagNet's exact net). Odd sizes: the upsampled map is
resized to the input's size. The net reads ``2x - 1`` (centred input): on raw [0, 1] inputs
with adversarial examples in the batch, Adam drove the sigmoid output into saturation (output
0 everywhere, MSE stuck at ~0.1) within 20 steps. Stateless (no norm), so ``defend`` is a pure
fn of (params, x).
The convs are ``fast_conv.Conv`` (= ``nn.Conv`` 'SAME', with an input gradient that stays fast
inside the attacks' ``lax`` loops on CPU).

Training: pixel MSE ``mean (AE(x_in) - x)^2`` with ``x_in = clip(x_src + noise_std * N(0, I), 0, 1)``
(noise_std 0.1 as MagNet). ``x_src`` is x for the first ``1 - adv_fraction`` of the batch and
an adversarial example from the config's training-attack mix (``config.train_attacks``, the
same on-the-fly attacks as IP-GAN) for the rest: "noisy / adversarial inputs -> clean" (the
spec); ``adv_fraction = 0`` is pure MagNet (noise only). Adam.
"""
from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from ipgan_jax.defenses import losses
from ipgan_jax.defenses.base import DefenseTrainer
from ipgan_jax.defenses.training_attacks import make_training_attack
from ipgan_jax.models.fast_conv import Conv

_ACTS = {"relu": nn.relu, "sigmoid": nn.sigmoid, "leaky_relu": lambda h: nn.leaky_relu(h, 0.2)}


class DenoisingAutoencoder(nn.Module):
    out_channels: int = 1
    width: int = 32
    activation: str = "relu"

    @nn.compact
    def __call__(self, x):
        act = _ACTS[self.activation]
        conv = lambda c: Conv(c, 3)  # noqa: E731
        h = act(conv(self.width)(x * 2.0 - 1.0))
        h = act(conv(self.width)(h))
        h = nn.avg_pool(h, (2, 2), (2, 2), padding="SAME")
        h = act(conv(self.width)(h))
        h = act(conv(self.width)(h))
        h = jax.image.resize(h, (h.shape[0], x.shape[1], x.shape[2], h.shape[-1]), "nearest")
        h = act(conv(self.width)(h))
        return nn.sigmoid(conv(self.out_channels)(h))


class DAETrainer(DefenseTrainer):
    name = "dae"

    def __init__(self, config, target_module, target_variables):
        super().__init__(config, target_module, target_variables)
        cfg = self.cfg = config.dae
        self.net = DenoisingAutoencoder(config.channels, cfg.width, cfg.activation)
        self.tx = optax.adam(cfg.lr)
        self.make_adversarial = None
        if cfg.adv_fraction > 0:
            self.make_adversarial = make_training_attack(config.train_attacks, self.target_logits,
                                                         dataset=config.dataset, clean_fraction=1.0 - cfg.adv_fraction)

    def defend(self, params, x):
        """x [B,H,W,C] in [0,1] -> AE(x) in [0,1]."""
        return self.net.apply({"params": params}, x)

    def defense_params(self, state):
        return state["params"]

    def init_state(self, rng):
        p = self.net.init(rng, jnp.zeros((1, *self.image_shape), jnp.float32))["params"]
        return {"step": jnp.zeros((), jnp.int32), "params": p, "opt": self.tx.init(p)}

    def make_inputs(self, x, y, rng):
        """Noisy (and partly adversarial) inputs for the batch (no gradient)."""
        k_att, k_noise = jax.random.split(rng)
        src = x if self.make_adversarial is None else self.make_adversarial(x, y, k_att)
        noisy = src + self.cfg.noise_std * jax.random.normal(k_noise, x.shape)
        return jax.lax.stop_gradient(jnp.clip(noisy, 0.0, 1.0))

    def loss(self, params, x_in, x):
        return losses.pixel_loss(self.defend(params, x_in), x)

    def train_step(self, state, batch, rng):
        rng = jax.random.fold_in(rng, state["step"])
        x, y = batch["image"], batch["label"]
        x_in = self.make_inputs(x, y, rng)
        loss, grads = jax.value_and_grad(self.loss)(state["params"], x_in, x)
        upd, opt = self.tx.update(grads, state["opt"], state["params"])
        params = optax.apply_updates(state["params"], upd)
        x_def = self.defend(params, x_in)
        metrics = {"loss": loss,
                   "train_defended_acc": jnp.mean(jnp.argmax(self.target_logits(x_def), -1) == y)}
        return {"step": state["step"] + 1, "params": params, "opt": opt}, metrics
