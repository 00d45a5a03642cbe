"""APE-GAN (Shen et al. 2017): a GAN that maps adversarial examples back to clean ones.

G (encoder-decoder): conv64 4x4 s2, BN, LReLU(0.2) / conv128 4x4 s2, BN, LReLU / deconv64 4x4 s2,
BN, ReLU / deconv C 4x4 s2, sigmoid (28 -> 14 -> 7 -> 14 -> 28), so ``x_clean = G(x_adv)`` lies
in [0, 1] (the original uses tanh on [-1, 1] data; sigmoid is the same map for [0, 1] data).
D: conv64 3x3 s2, LReLU / conv128 3x3 s2, BN, LReLU / conv256 3x3 s2, BN, LReLU / linear -> a
logit (the sigmoid lives in the BCE loss, numerically stable).

Losses: D: ``BCE(D(x), 1) + BCE(D(G(x_adv)), 0)``; G: ``l_pix*MSE(G(x_adv), x) +
l_adv*BCE(D(G(x_adv)), 1)`` with (0.7, 0.3). Adam 2e-4, beta1 0.5. One ``train_step`` = one D
update followed by TWO G updates (as the original), all on the same batch. x_adv is FGSM
(eps 0.15 on MNIST; ``config.ape_gan.train_attacks``, or ``config.train_attacks`` when that is empty)
against the frozen target f, made inside the jitted step; a ``clean_fraction`` of the batch may stay
clean (0 = the paper).

BatchNorm: the running averages are part of the state and are exported with the weights:
``defense_params = {'params': ..., 'batch_stats': ...}``; ``defend`` uses the running averages
(eval mode), so it is a pure function of (params, x). In training, BN uses the batch statistics
of the (global, data-parallel) batch.

The "deconv" layers are ``ipgan_jax.models.fast_conv.ConvTranspose`` (flax's function and
parameters, computed in a form whose gradients are fast on XLA:CPU).
"""
from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from ipgan_jax.defenses import losses
from ipgan_jax.defenses.base import DefenseTrainer
from ipgan_jax.defenses.training_attacks import make_training_attack
from ipgan_jax.models.fast_conv import ConvTranspose


def _bn(train):
    # PyTorch's BatchNorm2d defaults (momentum 0.1 -> flax momentum 0.9, eps 1e-5).
    return nn.BatchNorm(use_running_average=not train, momentum=0.9, epsilon=1e-5)


class APEGenerator(nn.Module):
    out_channels: int = 1
    width: int = 64

    @nn.compact
    def __call__(self, x, train: bool = False):
        w = self.width
        h = nn.Conv(w, (4, 4), strides=2, padding="SAME", use_bias=False)(x * 2.0 - 1.0)
        h = nn.leaky_relu(_bn(train)(h), 0.2)
        h = nn.Conv(2 * w, (4, 4), strides=2, padding="SAME", use_bias=False)(h)
        h = nn.leaky_relu(_bn(train)(h), 0.2)
        h = ConvTranspose(w, 4, 2, use_bias=False)(h)
        h = nn.relu(_bn(train)(h))
        h = ConvTranspose(self.out_channels, 4, 2)(h)
        h = h[:, :x.shape[1], :x.shape[2]]          # odd sizes: crop back to the input size
        return nn.sigmoid(h)


class APEDiscriminator(nn.Module):
    width: int = 64

    @nn.compact
    def __call__(self, x, train: bool = False):
        w = self.width
        h = nn.leaky_relu(nn.Conv(w, (3, 3), strides=2, padding="SAME")(x * 2.0 - 1.0), 0.2)
        h = nn.Conv(2 * w, (3, 3), strides=2, padding="SAME", use_bias=False)(h)
        h = nn.leaky_relu(_bn(train)(h), 0.2)
        h = nn.Conv(4 * w, (3, 3), strides=2, padding="SAME", use_bias=False)(h)
        h = nn.leaky_relu(_bn(train)(h), 0.2)
        return nn.Dense(1)(h.reshape(h.shape[0], -1))[:, 0]


class APEGANTrainer(DefenseTrainer):
    name = "ape_gan"

    def __init__(self, config, target_module, target_variables):
        super().__init__(config, target_module, target_variables)
        cfg = self.cfg = config.ape_gan
        self.generator = APEGenerator(config.channels, cfg.gen_width)
        self.discriminator = APEDiscriminator(cfg.disc_width)
        self.g_tx = optax.adam(cfg.lr_g, b1=cfg.b1, b2=cfg.b2)
        self.d_tx = optax.adam(cfg.lr_d, b1=cfg.b1, b2=cfg.b2)
        self.make_adversarial = make_training_attack(cfg.train_attacks or config.train_attacks, self.target_logits,
                                                     dataset=config.dataset, clean_fraction=cfg.clean_fraction)

    # -- test time ---------------------------------------------------------------------
    def defend(self, params, x):
        """x [B,H,W,C] in [0,1] -> G(x) in [0,1] (BN in eval mode: running averages)."""
        return self.generator.apply(params, x, train=False)

    def defense_params(self, state):
        return {"params": state["g"], "batch_stats": state["g_stats"]}

    # -- training ----------------------------------------------------------------------
    def init_state(self, rng):
        kg, kd = jax.random.split(rng)
        x = jnp.zeros((2, *self.image_shape), jnp.float32)
        gv = self.generator.init(kg, x, train=False)
        dv = self.discriminator.init(kd, x, train=False)
        return {"step": jnp.zeros((), jnp.int32), "g": gv["params"], "g_stats": gv["batch_stats"],
                "d": dv["params"], "d_stats": dv["batch_stats"],
                "g_opt": self.g_tx.init(gv["params"]), "d_opt": self.d_tx.init(dv["params"])}

    def _g_apply(self, g, g_stats, x):
        out, upd = self.generator.apply({"params": g, "batch_stats": g_stats}, x, train=True,
                                        mutable=["batch_stats"])
        return out, upd["batch_stats"]

    def _d_apply(self, d, d_stats, x):
        out, upd = self.discriminator.apply({"params": d, "batch_stats": d_stats}, x, train=True,
                                            mutable=["batch_stats"])
        return out, upd["batch_stats"]

    def generator_loss(self, g, g_stats, d, d_stats, x_adv, x):
        """(total, (terms, x_rec, new g_stats, new d_stats)); BN in training mode."""
        x_rec, g_stats = self._g_apply(g, g_stats, x_adv)
        d_fake, d_stats = self._d_apply(d, d_stats, x_rec)
        terms = {"pix": losses.pixel_loss(x_rec, x), "adv": losses.gan_generator_loss(d_fake)}
        total = self.cfg.l_pix * terms["pix"] + self.cfg.l_adv * terms["adv"]
        return total, (terms, x_rec, g_stats, d_stats)

    def discriminator_loss(self, d, d_stats, x, x_rec):
        real, d_stats = self._d_apply(d, d_stats, x)
        fake, d_stats = self._d_apply(d, d_stats, jax.lax.stop_gradient(x_rec))
        return losses.gan_discriminator_loss(real, fake), d_stats

    def train_step(self, state, batch, rng):
        rng = jax.random.fold_in(rng, state["step"])
        x, y = batch["image"], batch["label"]
        x_adv = self.make_adversarial(x, y, rng)
        g, g_stats, g_opt = state["g"], state["g_stats"], state["g_opt"]
        d, d_stats, d_opt = state["d"], state["d_stats"], state["d_opt"]
        # one D step on the current G ...
        x_rec, _ = self._g_apply(g, g_stats, x_adv)
        (d_loss, d_stats), d_grads = jax.value_and_grad(self.discriminator_loss, has_aux=True)(
            d, d_stats, x, x_rec)
        d_upd, d_opt = self.d_tx.update(d_grads, d_opt, d)
        d = optax.apply_updates(d, d_upd)

        # ... then two G steps against the updated D (D's BN stats are not updated by G's steps).
        def g_step(carry, _):
            g, g_stats, g_opt = carry
            (loss, (terms, _, g_stats_new, _)), grads = jax.value_and_grad(self.generator_loss, has_aux=True)(
                g, g_stats, d, d_stats, x_adv, x)
            upd, g_opt = self.g_tx.update(grads, g_opt, g)
            return (optax.apply_updates(g, upd), g_stats_new, g_opt), (loss, terms)

        # unrolled: XLA:CPU runs weight-gradient convs inside a while loop ~20x slower
        (g, g_stats, g_opt), (g_losses, terms) = jax.lax.scan(
            g_step, (g, g_stats, g_opt), None, length=int(self.cfg.g_steps), unroll=True)
        x_def = self.defend({"params": g, "batch_stats": g_stats}, x_adv)
        metrics = {"g_loss": g_losses[-1], "d_loss": d_loss,
                   **{f"loss_{k}": v[-1] for k, v in terms.items()},
                   "train_defended_acc": jnp.mean(jnp.argmax(self.target_logits(x_def), -1) == y)}
        new = {"step": state["step"] + 1, "g": g, "g_stats": g_stats, "d": d, "d_stats": d_stats,
               "g_opt": g_opt, "d_opt": d_opt}
        return new, metrics
