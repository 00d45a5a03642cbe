"""Defenses: one interface (``DefenseTrainer``: ``defend(params, x) -> x_clean`` + a train step).

``DEFENSES`` maps a config name (``config.defense``) to its trainer class;
``train_defense(config)`` runs the shared loop; ``load_defense`` returns a pure defend fn.
"""
from ipgan_jax.defenses.base import DefenseTrainer
from ipgan_jax.defenses.ape_gan import APEGANTrainer
from ipgan_jax.defenses.dae import DAETrainer
from ipgan_jax.defenses.defense_gan import DefenseGANTrainer
from ipgan_jax.defenses.grip_gan import GRIPGANTrainer
from ipgan_jax.defenses.ipgan import IPGANTrainer
from ipgan_jax.defenses.uipd import UIPDTrainer

DEFENSES = {"ipgan": IPGANTrainer, "ape_gan": APEGANTrainer, "defense_gan": DefenseGANTrainer,
            "dae": DAETrainer, "uipd": UIPDTrainer, "grip_gan": GRIPGANTrainer}


def train_defense(config, **kw):
    from ipgan_jax.defenses.loop import train_defense as _train
    return _train(config, **kw)


def load_defense(config, defense: str, classifier: str | None = None, target=None):
    """``(defend_fn, trainer)`` with ``defend_fn(x) -> x_clean`` for a trained defense.

    'none' gives the identity. ``target`` = (module, variables) of f (loaded when omitted).
    """
    import jax
    import orbax.checkpoint as ocp

    from ipgan_jax.defenses.loop import defense_dir
    from ipgan_jax.training.checkpoint import CheckpointError
    from ipgan_jax.training.classifier import load_classifier

    classifier = classifier or config.classifier
    if defense == "none":
        return (lambda x: x), None
    if defense not in DEFENSES:
        raise ValueError(f"unknown defense {defense!r}; choose one of {['none', *sorted(DEFENSES)]}")
    cfg = config.copy_and_resolve_references()
    cfg.defense, cfg.classifier = defense, classifier
    module, variables = target if target is not None else load_classifier(cfg, classifier)
    trainer = DEFENSES[defense](cfg, module, variables)
    path = defense_dir(cfg) / "params"
    if not path.exists():
        raise FileNotFoundError(
            f"no trained {defense} defense for {classifier} at {path}; train it with "
            f"`python run_train.py --config <config> --config.defense={defense} --config.classifier={classifier}`")
    abstract = jax.eval_shape(lambda: trainer.defense_params(trainer.init_state(jax.random.PRNGKey(0))))
    try:
        params = ocp.StandardCheckpointer().restore(path.absolute(), abstract)
    except Exception as e:
        raise CheckpointError(f"defense params at {path} could not be restored ({type(e).__name__}: "
                              f"{str(e)[:300]}); delete the folder and retrain.") from e
    return (lambda x: trainer.defend(params, x)), trainer
