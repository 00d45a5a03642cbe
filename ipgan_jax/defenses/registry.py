"""The defenses by config name, and loading a trained one for evaluation.

``DEFENSES`` maps ``config.defense`` to its trainer class; ``make_trainer`` builds the one a
config names; ``load_defense`` returns a pure ``defend_fn(x) -> x_clean`` of exported params.
"""
from __future__ import annotations

from pathlib import Path

import jax

from ipgan_jax import contracts
from ipgan_jax.defenses.ape_gan import APEGANTrainer
from ipgan_jax.defenses.dae import DAETrainer
from ipgan_jax.defenses.defense_gan import DefenseGANTrainer
from ipgan_jax.defenses.grip_gan import GRIPGANTrainer
from ipgan_jax.defenses.ipgan import IPGANTrainer
from ipgan_jax.defenses.ipgan_adaptive import AdaptiveIPGANTrainer
from ipgan_jax.defenses.uipd import UIPDTrainer
from ipgan_jax.training.checkpoint import CheckpointError, params_meta, restore_params, tree_fingerprint
from ipgan_jax.training.classifier import load_classifier

DEFENSES = {"ipgan": IPGANTrainer, "ipgan_adaptive": AdaptiveIPGANTrainer, "ape_gan": APEGANTrainer,
            "defense_gan": DefenseGANTrainer, "dae": DAETrainer, "uipd": UIPDTrainer, "grip_gan": GRIPGANTrainer}


def binarize(x):
    """Input binarisation ``x > 0.5`` (a control for the white-box evaluation: its gradient is zero
    almost everywhere, so it must be attacked with BPDA). x [B,H,W,C] in [0,1] -> {0, 1}."""
    return (x > 0.5).astype(x.dtype)


# Defenses without parameters: nothing to train or load.
PARAMETER_FREE = {"none": lambda x: x, "binarize": binarize}


def resolve_defense(config):
    """``config`` with ``defense`` set to the trainer that will run: ``--config.ipgan.adaptive=True``
    with the default ``defense=ipgan`` means ``ipgan_adaptive`` (its own workdir, so the paper's
    IP-GAN is never overwritten). Returns ``config`` itself when nothing changes."""
    if config.defense == "ipgan" and "ipgan" in config and config.ipgan.get("adaptive", False):
        config = config.copy_and_resolve_references()
        config.defense = "ipgan_adaptive"
    return config


def defense_dir(config, defense: str | None = None, classifier: str | None = None) -> Path:
    return Path(config.workdir) / "defenses" / (defense or config.defense) / (classifier or config.classifier)


def make_trainer(config, target_module, target_variables):
    """The trainer of ``config.defense`` against the frozen target (module, variables)."""
    if config.defense not in DEFENSES:
        raise ValueError(f"config.defense={config.defense!r}: choose one of {sorted(DEFENSES)}")
    return DEFENSES[config.defense](config, target_module, target_variables)


def load_defense(config, defense: str, classifier: str | None = None, target=None):
    """``(defend_fn, trainer)`` with ``defend_fn(x) -> x_clean`` for a trained defense.

    ``PARAMETER_FREE`` ones ('none', the identity; 'binarize') need nothing trained and have no
    trainer. ``target`` = (module, variables) of f (loaded when omitted).
    """
    classifier = classifier or config.classifier
    if defense in PARAMETER_FREE:
        return PARAMETER_FREE[defense], None
    if defense not in DEFENSES:
        raise ValueError(f"unknown defense {defense!r}; choose one of {[*PARAMETER_FREE, *sorted(DEFENSES)]}")
    cfg = config.copy_and_resolve_references()
    cfg.defense, cfg.classifier = defense, classifier
    cfg.train.compute_dtype = "float32"   # attacks through the defense always run in float32
    module, variables = target if target is not None else load_classifier(cfg, classifier)
    trainer = make_trainer(cfg, module, variables)
    path = defense_dir(cfg) / "params"
    if not path.exists():
        raise FileNotFoundError(
            f"no trained {defense} defense for {classifier} at {path}; train it with "
            f"`python run_train.py --config <config> --config.defense={defense} --config.classifier={classifier}`")
    abstract = jax.eval_shape(lambda: trainer.defense_params(trainer.init_state(jax.random.PRNGKey(0))))
    params = restore_params(path, abstract, "defense params")
    check_target(cfg, params_meta(path), variables, path)

    def defend_fn(x):
        contracts.check_images(x, f"{defense} input")   # shape/dtype static under jit; values when concrete
        return trainer.defend(params, x)
    return defend_fn, trainer


def check_target(config, meta: dict, variables, path) -> None:
    """Refuse a defense exported against other classifier params than ``variables`` (the
    recorded ``classifier_fingerprint``), unless ``config.allow_other_classifier``. Legacy
    exports (no fingerprint) pass."""
    want = meta.get("classifier_fingerprint")
    if want is None or want == tree_fingerprint(variables):
        return
    msg = (f"the defense at {path} was trained against other {config.classifier} params than the ones "
           f"loaded now (classifier fingerprint {want[:12]} != {tree_fingerprint(variables)[:12]}; was the "
           f"classifier retrained?)")
    if not config.get("allow_other_classifier", False):
        raise CheckpointError(msg + ". Retrain the defense, or set --config.allow_other_classifier=True.")
    print(f"note: {msg}; using it anyway (allowed by the config)")
