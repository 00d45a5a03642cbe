"""The defenses by config name, and loading a trained one for evaluation.

``DEFENSES`` maps ``config.defense`` to its trainer class; ``make_trainer`` builds the one a
config names; ``load_defense`` returns a pure ``defend_fn(x) -> x_clean`` of exported params.

A defense name may carry a tag, ``<defense>:<tag>`` (e.g. ``ipgan_adaptive:s1``): an independently
trained copy of the same method and config (its own initialisation and training randomness, seeded by
the full name; the data order follows ``config.seed``; its own folder
``<workdir>/defenses/<defense>:<tag>/<classifier>``). The evaluation
treats it as one more defense, e.g. to judge a generator on the white-box examples crafted through
its twin G' (transfer between independently trained copies).
"""
from __future__ import annotations

import re
from pathlib import Path

import jax
from absl import logging

from ipgan_jax import contracts, pretrained
from ipgan_jax.defenses.ape_gan import APEGANTrainer
from ipgan_jax.defenses.dae import DAETrainer
from ipgan_jax.defenses.defense_gan import DefenseGANTrainer
from ipgan_jax.defenses.grip_gan import GRIPGANTrainer
from ipgan_jax.defenses.ipgan import IPGANTrainer
from ipgan_jax.defenses.ipgan_adaptive import AdaptiveIPGANTrainer
from ipgan_jax.defenses.uipd import UIPDTrainer
from ipgan_jax.errors import ConfigError, ModelNotFoundError
from ipgan_jax.training.checkpoint import CheckpointError, params_meta, restore_params, tree_fingerprint
from ipgan_jax.training.classifier import load_classifier
from ipgan_jax.training.loop import recipe_diff


class DefenseNotFoundError(ModelNotFoundError):
    """A trained defense that a command needs is not in the workdir; the message names the command
    that trains it (and ``--config.pretrained=True`` for the shipped ones)."""


DEFENSES = {"ipgan": IPGANTrainer, "ipgan_adaptive": AdaptiveIPGANTrainer, "ape_gan": APEGANTrainer,
            "defense_gan": DefenseGANTrainer, "dae": DAETrainer, "uipd": UIPDTrainer, "grip_gan": GRIPGANTrainer}


def binarize(x):
    """Input binarisation ``x > 0.5`` (a control for the white-box evaluation: its gradient is zero
    almost everywhere, so it must be attacked with BPDA). x [B,H,W,C] in [0,1] -> {0, 1}."""
    return (x > 0.5).astype(x.dtype)


# Defenses without parameters: nothing to train or load.
PARAMETER_FREE = {"none": lambda x: x, "binarize": binarize}

_TAG = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")


def split_tag(name: str) -> tuple[str, str]:
    """``'ipgan_adaptive:s1'`` -> ``('ipgan_adaptive', 's1')``; ``'ipgan'`` -> ``('ipgan', '')``.

    A tag is letters, digits, ``_ . -``, starting with a letter or digit; anything else, or a tag on a
    parameter-free defense (nothing is trained, so copies cannot differ), raises ValueError."""
    base, sep, tag = str(name).partition(":")
    if sep and not _TAG.fullmatch(tag):
        raise ConfigError(f"defense {name!r}: a tag after ':' must match {_TAG.pattern} (e.g. ipgan_adaptive:s1)")
    if tag and base in PARAMETER_FREE:
        raise ConfigError(f"defense {name!r}: {base} has no parameters, so it takes no tag")
    return base, tag


def base_defense(name: str) -> str:
    """The method of a (possibly tagged) defense name: ``'ipgan_adaptive:s1'`` -> ``'ipgan_adaptive'``."""
    return split_tag(name)[0]


def resolve_defense(config):
    """``config`` with ``defense`` set to the trainer that will run: ``--config.ipgan.adaptive=True``
    with the default ``defense=ipgan`` means ``ipgan_adaptive`` (its own workdir, so the paper's
    IP-GAN is never overwritten). Returns ``config`` itself when nothing changes."""
    base, tag = split_tag(config.defense)
    if base == "ipgan" and config.ipgan.adaptive:
        config = config.copy_and_resolve_references()
        config.defense = "ipgan_adaptive" + (f":{tag}" if tag else "")
    return config


def defense_dir(config, defense: str | None = None, classifier: str | None = None) -> Path:
    """``<workdir>/defenses/<defense>[:<tag>]/<classifier>`` (a bad tag raises ValueError)."""
    defense = defense or config.defense
    split_tag(defense)
    return Path(config.workdir) / "defenses" / defense / (classifier or config.classifier)


def trained_method(name: str) -> str:
    """The trainer name of ``config.defense`` = ``name`` (tag dropped); ValueError naming the choices when
    it is not a trainable defense (also run early by ``cli.check_config``)."""
    base = base_defense(name)
    if base not in DEFENSES:
        raise ConfigError(f"config.defense={name!r}: choose one of {sorted(DEFENSES)} "
                          "(optionally tagged, <defense>:<tag>, for an independently trained copy)")
    return base


def make_trainer(config, target_module, target_variables):
    """The trainer of ``config.defense`` (tag ignored) against the frozen target (module, variables)."""
    return DEFENSES[trained_method(config.defense)](config, target_module, target_variables)


# the config sections a defense's trainer reads, and in them the keys that define the trained model: its
# architecture and its test-time function defend(x) (see apply_recipe); everything else there is either a
# training setting or a test-time choice of the evaluation (e.g. Defense-GAN's z-search budget)
RECIPE_SECTIONS = {"ipgan": ("ipgan",), "ipgan_adaptive": ("ipgan", "ipgan_adaptive"), "ape_gan": ("ape_gan",),
                   "defense_gan": ("defense_gan",), "dae": ("dae",), "uipd": ("uipd",),
                   "grip_gan": ("ipgan", "grip_gan")}
MODEL_KEYS = {"ipgan": ("generator", "gen_width", "eps_inv"), "ipgan_adaptive": ("generator", "gen_width", "eps_inv"),
              "grip_gan": ("generator", "gen_width", "eps_inv"), "ape_gan": ("gen_width",),
              "defense_gan": ("latent_dim", "gen_width"), "dae": ("width", "activation"),
              "uipd": ("eps", "parametrization")}
OVERRIDE_SECTIONS = ("ipgan_adaptive", "grip_gan")   # sections whose ipgan fields override config.ipgan


# settings that may change when a run resumes: the length, the learning-rate drops, the curriculum (each is
# the run that was scheduled that way from the start), the monitor, and Defense-GAN's test-time z-search
RESUMABLE_KEYS = ("num_steps", "lr_decay_steps", "lr_decay_factor", "attack_phases", "monitor_steps",
                  "monitor_attack", "eval_steps", "eval_restarts", "rec_steps", "rec_restarts", "rec_lr",
                  "rec_momentum", "z_seed")
USES_TRAIN_ATTACKS = ("ipgan", "ipgan_adaptive", "ape_gan", "dae")


def defense_recipe(config) -> dict:
    """The settings that define the defense ``config`` trains (saved with its checkpoints; a run refuses to
    resume under another recipe): seed, data, target, batch, the method's config sections except
    :data:`RESUMABLE_KEYS`, and the training attacks where the method uses them."""
    base = trained_method(config.defense)
    r = {"seed": config.seed, "dataset": config.dataset, "validation_size": config.validation_size,
         "classifier": config.classifier, "defense": config.defense,
         "train": {k: config.train[k] for k in ("batch_size", "num_train_examples", "compute_dtype")}}
    for sect in RECIPE_SECTIONS[base]:
        r[sect] = {k: v for k, v in config[sect].to_dict().items() if k not in RESUMABLE_KEYS}
    if base in USES_TRAIN_ATTACKS:
        r["train_attacks"] = [dict(a) for a in config.train_attacks]
    return r


def load_defense(config, defense: str, classifier: str | None = None, target=None):
    """``(defend_fn, trainer)`` with ``defend_fn(x) -> x_clean`` for a trained defense.

    ``PARAMETER_FREE`` ones ('none', the identity; 'binarize') need nothing trained and have no
    trainer. ``target`` = (module, variables) of f (loaded when omitted). The params come from
    ``<workdir>/defenses/<defense>/<classifier>/params``, or with ``config.pretrained`` from the shipped
    file (``pretrained/<dataset>/defenses/<defense>/<classifier>.msgpack``); either way the trainer is built
    from the config sections the model was trained with (its recipe, recorded with it: :func:`apply_recipe`),
    so an evaluation config cannot change e.g. its ``eps_inv``.
    ``defend_fn.view(name)`` is the defense under attack view ``name`` (the trainer's ``views``, e.g. IP-GAN's
    ``fusion.FUSION_VIEWS``: the same value, another backward pass for the attacker).
    ``defend_fn.params`` are the loaded params; ``defend_fn.source`` records where they came from
    (``pretrained.source_record``) and their ``fingerprint``, for ``results.json``.
    """
    classifier = classifier or config.classifier
    base = base_defense(defense)
    if base in PARAMETER_FREE:
        return PARAMETER_FREE[base], None
    if base not in DEFENSES:
        raise ConfigError(f"unknown defense {defense!r}; choose one of {[*PARAMETER_FREE, *sorted(DEFENSES)]}")
    cfg = config.copy_and_resolve_references()
    cfg.defense, cfg.classifier = defense, classifier
    cfg.train.compute_dtype = "float32"   # attacks through the defense always run in float32
    module, variables = target if target is not None else load_classifier(cfg, classifier)
    path = defense_dir(cfg) / "params"
    if cfg.pretrained:
        key = pretrained.key_of("defense", defense, classifier)
        meta, where = pretrained.entry(pretrained.root(cfg), key), f"shipped {key}"
    else:
        if not path.exists():
            raise DefenseNotFoundError(
                f"no trained {defense} defense for {classifier} at {path}; train it with "
                f"`python run_train.py --config <config> --config.defense={defense} --config.classifier={classifier}`"
                f" (or use the shipped models: --config.pretrained=True)")
        meta, where = params_meta(path), path
    apply_recipe(cfg, base, meta.get("config") or {}, f"the {defense} of {classifier} ({where})")
    trainer = make_trainer(cfg, module, variables)
    abstract = jax.eval_shape(lambda: trainer.defense_params(trainer.init_state(jax.random.PRNGKey(0))))
    if cfg.pretrained:
        params, _ = pretrained.load(cfg, "defense", defense, classifier, abstract)
    else:
        params = restore_params(path, abstract, "defense params")
    check_target(cfg, meta, variables, where)

    def defend_fn(x):
        contracts.check_images(x, f"{defense} input")   # shape/dtype static under jit; values when concrete
        return trainer.defend(params, x)

    def view(name: str):
        """The defense with the backward pass of attack view ``name`` (same forward value; ``exact``: itself)."""
        if name == "exact":
            return defend_fn
        views = getattr(trainer, "views", ("exact",))
        if name not in views:
            raise ConfigError(f"defense {defense} has no attack view {name!r}; its views: {', '.join(views)} "
                              "(and 'bpda', the identity's gradient, for every defense)")

        def viewed(x):
            contracts.check_images(x, f"{defense} input")
            return trainer.defend(params, x, name)
        return viewed
    defend_fn.view = view
    defend_fn.params = params
    defend_fn.source = {**pretrained.source_record(cfg, "defense", defense, classifier, path),
                        "fingerprint": tree_fingerprint(params)}
    return defend_fn, trainer


def apply_recipe(cfg, method: str, recorded: dict, where: str) -> None:
    """A trained model's recipe travels with it: in ``cfg``'s sections that ``method`` reads
    (:data:`RECIPE_SECTIONS`), set the keys that define the model (:data:`MODEL_KEYS`: architecture,
    ``eps_inv``) to their values in ``recorded``, the config the model was trained with (its ``result.json``
    or manifest entry); in place. Where the evaluation config held another value, one line says it is
    ignored (``where`` names the model). Training settings (e.g. ``attack_sources``) stay as they are, so
    loading a model never loads or trains its training-time surrogates."""
    ignored = []
    for sect in RECIPE_SECTIONS.get(method, ()):
        rec = recorded.get(sect)
        if not isinstance(rec, dict) or sect not in cfg:
            continue
        for k in MODEL_KEYS.get(sect, ()):
            if k not in rec:
                if sect in OVERRIDE_SECTIONS and k in cfg[sect]:   # not overridden in training: not now either
                    ignored.append(f"{sect}.{k}={cfg[sect][k]!r} (trained without it)")
                    with cfg.unlocked():
                        del cfg[sect][k]
                continue
            want = rec[k]
            if k not in cfg[sect]:   # e.g. an ipgan field overridden in the ipgan_adaptive section
                with cfg.unlocked():
                    cfg[sect][k] = want
                continue
            now = cfg[sect][k]
            if recipe_diff({k: now}, {k: want}):
                ignored.append(f"{sect}.{k}={now!r} (trained with {want!r})")
                with cfg.unlocked():
                    cfg[sect][k] = type(now)(want) if isinstance(now, (int, float, str)) and want is not None \
                        else want
    if ignored:
        logging.warning("%s is evaluated with the recipe it was trained with; ignoring %s", where, ", ".join(ignored))


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
    if not config.allow_other_classifier:
        raise CheckpointError(msg + ". Retrain the defense, or set --config.allow_other_classifier=True.")
    logging.warning("%s; using it anyway (allowed by the config)", msg)
