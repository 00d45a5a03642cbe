"""Training a defense: the target classifier, the trainer, and the shared loop with its monitor.

``train_defense(config)``: load the frozen target classifier (and the surrogates the trainer and the
monitor attack through: :func:`required_classifiers`; nothing is trained here, a missing one is a
``ClassifierNotFoundError`` naming the command that trains it), build the
defense trainer named by ``config.defense``, then run it through the one training loop
(``ipgan_jax.training.loop``: jitted, donated, data-parallel steps, exact resume from orbax
checkpoints, progress bar, metrics as JSON lines + TensorBoard) with two periodic actions:
held-out evaluation on the validation split (DSR under each training attack, clean accuracy
after the defense, SSIM) and PNG sample grids. Exports the test-time params at the end to
``<workdir>/defenses/<defense>/<classifier>/params``.
"""
from __future__ import annotations

import json
import zlib

import jax
import jax.numpy as jnp
import numpy as np
from absl import logging

from ipgan_jax import metrics as M
from ipgan_jax import pretrained, provenance
from ipgan_jax.attacks import make_attack
from ipgan_jax.config_lists import parse_names
from ipgan_jax.data.pipeline import config_loader, dataset_family
from ipgan_jax.defenses.registry import (
    DEFENSES,
    RECIPE_SECTIONS,
    RESUMABLE_KEYS,
    defense_dir,
    defense_recipe,
    make_trainer,
    resolve_defense,
    trained_method,
)
from ipgan_jax.errors import ConfigError
from ipgan_jax.images import image_grid
from ipgan_jax.training.checkpoint import CheckpointError, export_params, tree_fingerprint
from ipgan_jax.training.classifier import (
    ClassifierNotFoundError,
    classifier_trained,
    load_classifier,
    train_classifier_command,
)
from ipgan_jax.training.loop import Periodic, RecipeChangedError, TrainLoop, recipe_diff


def heldout_batch(config, n: int) -> dict:
    """A fixed batch of ``n`` validation images (the end of the train split, never trained on) for
    monitoring and model selection. Test images are never used here. Without a validation split
    (``config.validation_size`` 0, e.g. the 20-photo ImageNet demo) the first training images are used.
    """
    split = "validation" if config.validation_size else "train"
    b = config_loader(config, split, n, train=False, num_examples=n).batch(0)
    return {"image": b["image"], "label": b["label"]}


def monitor_sources(config) -> list[str]:
    """Classifier names of ``config.train.monitor_sources`` ("": none)."""
    names = parse_names(config.train.monitor_sources)
    for n in names:
        if n in ("target", config.classifier):
            raise ConfigError(f"config.train.monitor_sources={config.train.monitor_sources!r}: {n!r} is the "
                              "target itself, which the monitor always attacks; list other classifiers")
    return names


def required_classifiers(config) -> list[str]:
    """Every trained classifier that training ``config.defense`` loads, each once, in order: the target
    ``config.classifier``, the surrogates its trainer crafts training attacks on (IP-GAN's
    ``config.ipgan.attack_sources``) and those of ``config.train.monitor_sources``.

    Args:
        config: the run's config.

    Returns:
        Classifier names, e.g. ``['lenet', 'lenet_s1', 'alexnet_s1']``.
    """
    config = resolve_defense(config)
    trainer_cls = DEFENSES[trained_method(config.defense)]
    return list(dict.fromkeys([config.classifier, *trainer_cls.surrogate_classifiers(config),
                               *monitor_sources(config)]))


def missing_classifiers(config) -> list[str]:
    """The classifiers of :func:`required_classifiers` that are not trained yet (never any with
    ``config.pretrained`` or for ImageNet, whose classifiers are shipped or ported, not trained)."""
    return [n for n in required_classifiers(config) if not classifier_trained(config, n)]


def check_classifiers(config) -> None:
    """Raise ``ClassifierNotFoundError`` naming every missing classifier of :func:`required_classifiers`
    and the commands that train them; nothing is trained here."""
    missing = missing_classifiers(config)
    if not missing:
        return
    cmds = " && ".join(f"`{train_classifier_command(config, n)}`" for n in missing)
    raise ClassifierNotFoundError(
        f"training {resolve_defense(config).defense} against {config.classifier} needs the trained classifier(s) "
        f"{', '.join(missing)}, not found in {config.workdir}/classifiers: train them with {cmds}, or run "
        f"run_train.py with --config.stage=all (the default), which trains the missing ones before the defense "
        f"(or use the shipped classifiers: --config.pretrained=True)")


def make_monitor(config, trainer):
    """jitted fn(params, x, y, key) -> {metric: value}: for each training attack (at its top eps), the
    oblivious DSR (crafted on f: ``<attack>/dsr``) and, for each classifier of
    ``config.train.monitor_sources``, the transfer DSR (crafted on that classifier, judged on f:
    ``<attack>@<source>/dsr``), a validation estimate of Table 1's setting 2 to choose step counts on."""
    specs = []
    for s in config.train_attacks:
        s = dict(s)
        s.pop("eps_min", None)
        specs.append(s)
    attacks = [(s["name"], make_attack(s, dataset=dataset_family(config.dataset))) for s in specs]
    sources = []
    for n in monitor_sources(config):
        module, variables = load_classifier(config, n)   # never trained here: a missing one is an error
        variables = jax.lax.stop_gradient(variables)
        sources.append((n, lambda x, m=module, v=variables: m.apply(v, x, train=False)))

    def monitor(params, x, y, key):
        logits_fn = trainer.target_logits
        pred_clean = jnp.argmax(logits_fn(x), -1)
        x_clean_def = trainer.defend(params, x)
        out = {"clean_acc": jnp.mean(pred_clean == y),
               "defended_clean_acc": jnp.mean(jnp.argmax(logits_fn(x_clean_def), -1) == y)}

        def judge(prefix, x_adv):   # x_adv judged on f, with and without the defense -> x_rec
            x_rec = trainer.defend(params, x_adv)
            c = M.counts(pred_clean, jnp.argmax(logits_fn(x_adv), -1), jnp.argmax(logits_fn(x_rec), -1), y)
            out[f"{prefix}/dsr"] = c["defended"] / jnp.maximum(c["attack_success"], 1)
            out[f"{prefix}/asr"] = c["attack_success"] / jnp.maximum(c["clean_correct"], 1)
            return x_rec

        for i, (name, attack) in enumerate(attacks):
            x_adv = attack(logits_fn, x, y, jax.random.fold_in(key, i))
            x_rec = judge(name, x_adv)
            out[f"{name}/ssim_rec"] = jnp.mean(M.ssim(x, x_rec))
            out[f"{name}/ssim_adv"] = jnp.mean(M.ssim(x, x_adv))
            for j, (src, src_logits) in enumerate(sources):
                judge(f"{name}@{src}", attack(src_logits, x, y, jax.random.fold_in(key, 1000 * (j + 1) + i)))
        out.update(trainer.monitor_metrics(params, x, y, jax.random.fold_in(key, len(attacks))))
        return out

    first = attacks[0][1]
    samples = jax.jit(lambda params, x, y, key: (first(trainer.target_logits, x, y, key),))
    return jax.jit(monitor), samples


def shipped_train_state(config, abstract, fingerprint: str, out) -> tuple:
    """``(state, step)`` of the shipped train state ``train_states/<defense>/<classifier>`` (for
    ``config.continue_pretrained``), checked against the target's ``fingerprint``; its training history
    is copied into ``<out>/provenance.jsonl`` so the exported model records every sitting."""
    import ml_collections
    e = pretrained.entry(pretrained.root(config), pretrained.key_of("train_state", config.defense, config.classifier))
    diff = recipe_diff(defense_recipe(ml_collections.ConfigDict(e["config"])), defense_recipe(config))
    if diff:
        raise RecipeChangedError(f"the shipped train state {config.defense}/{config.classifier} was trained with "
                                 f"another recipe ({'; '.join(diff)}); continue it with its own settings (its "
                                 f"command is in {pretrained.MANIFEST}), or train a new model from scratch")
    state, e = pretrained.load(config, "train_state", config.defense, config.classifier, abstract)
    if e.get("classifier_fingerprint") not in (None, fingerprint) and not config.allow_other_classifier:
        raise CheckpointError(f"the shipped train state {config.defense}/{config.classifier} was trained against "
                              f"other {config.classifier} params than the ones loaded now; train against the shipped "
                              f"classifier (--config.pretrained=True) or set --config.allow_other_classifier=True")
    if jax.process_index() == 0 and not provenance.read_segments(out):
        for seg in e.get("training", {}).get("segments", []):
            provenance.write_segment(out, seg)
    logging.warning("continuing the shipped %s/%s from step %d", config.defense, config.classifier, int(state["step"]))
    return state, int(state["step"])


def train_defense(config, *, max_steps: int | None = None) -> dict:
    """Train (or resume) ``config.defense`` against ``config.classifier``; returns final monitor metrics.

    The classifiers it needs (:func:`required_classifiers`) must be trained already: this never trains
    one (``run_train.py``'s stage ``all`` does, explicitly, before calling it).

    Args:
        config: the run's config.
        max_steps: stop after that many total steps without exporting (simulates a kill in tests).

    Returns:
        The final monitor metrics and ``steps``.

    Raises:
        ClassifierNotFoundError: a classifier of :func:`required_classifiers` is not trained.
    """
    config = resolve_defense(config)
    out = defense_dir(config)
    check_classifiers(config)   # every missing one named at once, before anything is built
    target = load_classifier(config)
    fingerprint = tree_fingerprint(target[1])   # of the frozen f: a defense is tied to these params
    trainer = make_trainer(config, *target)
    init_rng, step_rng, mon_rng = jax.random.split(jax.random.fold_in(
        jax.random.PRNGKey(config.seed), zlib.crc32(f"{config.defense}/{config.classifier}".encode())), 3)
    total = trainer.num_steps()
    loader = config_loader(config, "train", config.train.batch_size, train=True,
                           num_examples=config.train.num_train_examples)
    held = heldout_batch(config, config.train.eval_batch_size)
    monitor, make_samples = make_monitor(config, trainer)
    last = {}

    def run_monitor(step, state):
        params = trainer.defense_params(state)
        last.clear()
        last.update({k: float(v) for k, v in monitor(params, held["image"], held["label"], mon_rng).items()})
        return last

    def write_samples(step, state, name=None):
        params = trainer.defense_params(state)
        n = min(8, held["image"].shape[0])
        (x_adv,) = make_samples(params, held["image"][:n], held["label"][:n], mon_rng)
        rows = trainer.sample_rows(params, held["image"][:n], np.asarray(x_adv))
        if jax.process_index() == 0:
            image_grid([np.asarray(r) for _, r in rows], [lbl for lbl, _ in rows],
                       out / "samples" / (name or f"step_{step:06d}.png"))

    initial = (lambda abstract: shipped_train_state(config, abstract, fingerprint, out)) \
        if config.continue_pretrained else None
    with TrainLoop(out, trainer, loader=loader, total_steps=total, cfg=config.train, init_rng=init_rng,
                   step_rng=step_rng, desc=f"train {config.defense}/{config.classifier}",
                   ckpt_meta={"classifier_fingerprint": fingerprint},
                   allow_meta_mismatch=bool(config.allow_other_classifier),
                   initial_state=initial, recipe=defense_recipe(config),
                   resumable=", ".join(["train.num_steps", "the logging / checkpoint / monitor cadence"] + [
                       f"{s}.{k}" for s in RECIPE_SECTIONS[trained_method(config.defense)]
                       for k in RESUMABLE_KEYS if k in config[s]])) as loop:
        def evaluate(step, state):
            m = run_monitor(step, state)
            loop.report(f"step {step}: " + ", ".join(f"{k}={v:.3f}" for k, v in m.items() if "dsr" in k or "acc" in k))
            return m

        actions = [Periodic(config.train.eval_every, evaluate, prefix="eval/"),
                   Periodic(config.train.sample_every, write_samples)]
        if not loop.run(actions, max_steps=max_steps):
            return {"steps": min(total, max_steps)}
        if not last:   # resumed at the end: the monitor has not run in this process
            loop.writer.write(total, {f"eval/{k}": v for k, v in run_monitor(total, loop.state).items()})
        write_samples(total, loop.state, "final.png")
    export_params(out, jax.device_get(trainer.defense_params(loop.state)),
                  {"defense": config.defense, "classifier": config.classifier, "steps": int(loop.state["step"]),
                   "heldout": last, "classifier_fingerprint": fingerprint,
                   "provenance": provenance.read_segments(out), "config": json.loads(config.to_json_best_effort())})
    return {"steps": total, **{k: round(v, 4) for k, v in last.items()}}
