"""IP-GAN: inverse perturbation fusing GAN (Zhang et al., Acta Electronica Sinica 2023).

G (U-Net) reads x_adv and produces a raw map; the fused reconstruction is
``x_rec = clip(x_adv + eps_inv * tanh(G(x_adv)), 0, 1)``. D (DCGAN / PatchGAN) separates clean
x from x_rec. G's loss: ``l_pix*MSE(x_rec, x) + l_adv*BCE(D(x_rec), 1) + l_cls*CE(f(x_rec), y)
+ l_feat*L1(phi(x_rec), phi(x))`` with the frozen target f; phi = f's penultimate layer
(or its logits). x_adv is made on the fly inside the jitted step, from the config's attack
mix against f, with a per-example eps; a ``clean_fraction`` of each batch passes clean.
G, D and f compute in ``config.train.compute_dtype`` (params, optimizer state and losses float32).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

from ipgan_jax.config_lists import parse_names
from ipgan_jax.defenses import losses
from ipgan_jax.defenses.base import DefenseTrainer
from ipgan_jax.defenses.training_attacks import make_training_attack
from ipgan_jax.errors import ConfigError
from ipgan_jax.models.discriminator import get_discriminator
from ipgan_jax.models.fusion import FUSION_VIEWS
from ipgan_jax.models.generator import get_generator
from ipgan_jax.models.precision import with_dtype
from ipgan_jax.training.classifier import load_classifier


def adam(cfg, lr):
    return optax.adam(lr, b1=cfg.b1, b2=cfg.b2)


def boundaries_reached(bounds, step):
    """How many of the (static) step ``bounds`` ``step`` (int32 scalar) has reached: the update made
    at step s counts a boundary b when b <= s (steps are 0-based). The rule of ``lr_decay_steps``
    and of ``ipgan_adaptive.attack_phases``."""
    return jnp.sum(jnp.asarray(bounds, jnp.int32) <= step)


def lr_scale(cfg, step):
    """Factor on both learning rates at ``step`` (int32 scalar): ``cfg.lr_decay_factor`` to the
    number of ``cfg.lr_decay_steps`` boundaries already reached (steps are 0-based: the update
    made at step s uses the factor of s). 1.0 without boundaries.

    Applied to Adam's updates, not through an optax schedule: Adam's update is linear in its
    learning rate, so scaling the update is exactly a scaled lr, and the optimizer state keeps
    its structure, so a run started without a decay resumes with one."""
    raw = cfg.lr_decay_steps or ()
    raw = (raw,) if isinstance(raw, (str, int, float)) else raw
    try:
        bounds = sorted(int(b) for b in raw if float(b) == int(b))
        if len(bounds) != len(raw):
            raise ValueError
    except (TypeError, ValueError):
        raise ConfigError(f"config.ipgan.lr_decay_steps={cfg.lr_decay_steps!r} must be a tuple of step numbers, "
                          "e.g. \"--config.ipgan.lr_decay_steps=(3000,)\"") from None
    if any(b < 1 for b in bounds):
        raise ConfigError(f"config.ipgan.lr_decay_steps={tuple(bounds)} must be positive step numbers")
    factor = float(cfg.lr_decay_factor)
    if not 0.0 < factor <= 1.0:
        raise ConfigError(f"config.ipgan.lr_decay_factor={factor} must be in (0, 1]")
    if not bounds:
        return None
    return jnp.asarray(factor, jnp.float32) ** boundaries_reached(bounds, step)


def with_ipgan_overrides(config, section: str, own_fields):
    """A copy of ``config`` whose ``ipgan`` fields are overridden by ``config.<section>`` (an
    IP-GAN variant's own section), except the variant's ``own_fields``. An unknown field is a
    ValueError naming both lists."""
    merged = config.copy_and_resolve_references()
    over = config[section].to_dict()
    unknown = sorted(k for k in over if k not in own_fields and k not in merged.ipgan)
    if unknown:
        raise ConfigError(f"config.{section} has unknown field(s) {unknown}; it takes {sorted(own_fields)} "
                          f"and any field of config.ipgan: {sorted(merged.ipgan)}")
    merged.ipgan.update({k: v for k, v in over.items() if k not in own_fields})
    return merged


def attack_source_names(cfg, target: str) -> list[str]:
    """The entries of ``cfg.attack_sources`` (``cfg`` is ``config.ipgan`` or a variant's merged
    section), in order, repeats kept (a name listed twice is drawn twice as often): 'target' is f,
    any other name a trained classifier.

    Args:
        cfg: the IP-GAN config section.
        target: the name of the target classifier (``config.classifier``), which must be written
            'target'.

    Returns:
        The list of names.

    Raises:
        ConfigError: 'target' is missing, or the target is listed under its own name.
    """
    names = list(parse_names(cfg.attack_sources))
    if "target" not in names:
        raise ConfigError(f"config.ipgan.attack_sources={cfg.attack_sources!r} must include 'target'")
    if target in names:
        raise ConfigError(f"attack source {target!r} is the target itself: write 'target'")
    return names


class IPGANTrainer(DefenseTrainer):
    name = "ipgan"
    change_label = "inv. pert. (scaled)"

    @classmethod
    def method_config(cls, config):
        """``config`` as this trainer reads it: IP-GAN reads it unchanged; a variant overrides
        ``config.ipgan`` fields from its own section (:func:`with_ipgan_overrides`)."""
        return config

    @classmethod
    def surrogate_classifiers(cls, config) -> list[str]:
        """The trained classifiers besides the target that the constructor loads: those of
        ``config.ipgan.attack_sources`` (as this trainer reads it), each once, in order."""
        cfg = cls.method_config(config)
        return list(dict.fromkeys(n for n in attack_source_names(cfg.ipgan, cfg.classifier) if n != "target"))

    def __init__(self, config, target_module, target_variables):
        config = self.method_config(config)
        super().__init__(config, target_module, target_variables)
        cfg = self.cfg = config.ipgan
        if not (isinstance(cfg.eps_inv, (int, float)) and 0 < cfg.eps_inv <= 1):
            raise ConfigError(f"config.ipgan.eps_inv={cfg.eps_inv!r} must be in (0, 1] (pixel units): 0 would train "
                              "and export the identity as a defense")
        self.generator = get_generator(cfg.generator, config.channels, cfg.gen_width, config.image_size,
                                       dtype=self.dtype)
        self.discriminator = get_discriminator(cfg.discriminator, cfg.disc_width, dtype=self.dtype)
        self.g_tx, self.d_tx = adam(cfg, cfg.lr_g), adam(cfg, cfg.lr_d)
        lr_scale(cfg, 0)   # bad lr_decay_* values fail here, before any data is read
        self.make_adversarial = make_training_attack(config.train_attacks, self.attack_source_logits(),
                                                     dataset=config.dataset, clean_fraction=cfg.clean_fraction)

    def attack_source_logits(self):
        """Frozen logits fns of ``config.ipgan.attack_sources``, in order (:func:`attack_source_names`):
        'target' is f, any other name a trained classifier, loaded, never trained: a missing one
        is a ``ClassifierNotFoundError`` naming the command that trains it. A name listed twice is
        drawn twice as often."""
        fns, loaded = [], {}
        for n in attack_source_names(self.cfg, self.config.classifier):
            if n == "target":
                fns.append(self.target_logits)
                continue
            if n in loaded:
                fns.append(loaded[n])
                continue
            module, variables = load_classifier(self.config, n)
            module, v = with_dtype(module, self.dtype), jax.lax.stop_gradient(variables)
            loaded[n] = lambda x, m=module, v=v: m.apply(v, x, train=False)
            fns.append(loaded[n])
        return fns

    # -- pure pieces ---------------------------------------------------------------
    # the attack views of the defense (fusion.FUSION_VIEWS): one forward value, another backward pass
    views = tuple(FUSION_VIEWS)

    def defend(self, params, x, view: str = "exact"):
        """x [B,H,W,C] in [0,1] -> x_rec, same shape, in [0,1]. ``view`` picks the backward pass an attacker
        differentiates (``fusion.FUSION_VIEWS``); the value is the same in every view."""
        return FUSION_VIEWS[view](x, self.generator.apply({"params": params}, x), self.cfg.eps_inv)

    def defense_params(self, state):
        return state["g"]

    def init_state(self, rng):
        kg, kd = jax.random.split(rng)
        x = jnp.zeros((1, *self.image_shape), jnp.float32)
        g = self.generator.init(kg, x)["params"]
        d = self.discriminator.init(kd, x)["params"]
        return {"step": jnp.zeros((), jnp.int32), "g": g, "d": d,
                "g_opt": self.g_tx.init(g), "d_opt": self.d_tx.init(d)}

    def generator_loss(self, g_params, d_params, x_in, x, y):
        """Weighted G loss and its terms; x_in is the (mostly adversarial) input to G."""
        cfg = self.cfg
        x_rec = self.defend(g_params, x_in)
        logits_rec, feat_rec = self.target_features(x_rec)
        logits_clean, feat_clean = self.target_features(x)
        if cfg.feat_layer == "logits":
            feat_rec, feat_clean = logits_rec, logits_clean
        terms = {
            "pix": losses.pixel_loss(x_rec, x),
            "adv": losses.gan_generator_loss(self.discriminator.apply({"params": d_params}, x_rec)),
            "cls": losses.classification_loss(logits_rec, y),
            "feat": losses.feature_loss(feat_rec, jax.lax.stop_gradient(feat_clean)),
        }
        total = (cfg.l_pix * terms["pix"] + cfg.l_adv * terms["adv"] + cfg.l_cls * terms["cls"]
                 + cfg.l_feat * terms["feat"])
        return total, (terms, x_rec, logits_rec)

    def discriminator_loss(self, d_params, x, x_rec):
        real = self.discriminator.apply({"params": d_params}, x)
        fake = self.discriminator.apply({"params": d_params}, jax.lax.stop_gradient(x_rec))
        return losses.gan_discriminator_loss(real, fake)

    def training_inputs(self, state, x, y, rng):
        """G's training input for this step (no gradient): the oblivious attack mix of
        ``make_adversarial`` (variants may also use the current state)."""
        del state
        return self.make_adversarial(x, y, rng)

    def extra_metrics(self, logits_rec, y) -> dict:
        """Extra per-step metrics of a variant ({} here)."""
        return {}

    def train_step(self, state, batch, rng):
        """One simultaneous G/D update from a single forward pass of G (no second G forward):
        G's loss sees the current D, D's loss sees x_rec of the current G (stop-gradient)."""
        rng = jax.random.fold_in(rng, state["step"])
        x, y = batch["image"], batch["label"]
        x_in = self.training_inputs(state, x, y, rng)
        (g_loss, (terms, x_rec, logits_rec)), g_grads = jax.value_and_grad(self.generator_loss, has_aux=True)(
            state["g"], state["d"], x_in, x, y)
        d_loss, d_grads = jax.value_and_grad(self.discriminator_loss)(state["d"], x, x_rec)
        g_updates, g_opt = self.g_tx.update(g_grads, state["g_opt"], state["g"])
        d_updates, d_opt = self.d_tx.update(d_grads, state["d_opt"], state["d"])
        scale = lr_scale(self.cfg, state["step"])
        if scale is not None:
            g_updates, d_updates = jax.tree.map(lambda u: u * scale, (g_updates, d_updates))
        metrics = {"g_loss": g_loss, "d_loss": d_loss, **{f"loss_{k}": v for k, v in terms.items()},
                   "train_defended_acc": jnp.mean(jnp.argmax(logits_rec, -1) == y),
                   **self.extra_metrics(logits_rec, y)}
        return {"step": state["step"] + 1, "g": optax.apply_updates(state["g"], g_updates),
                "d": optax.apply_updates(state["d"], d_updates), "g_opt": g_opt, "d_opt": d_opt}, metrics
