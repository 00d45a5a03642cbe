"""Train the target classifiers (MNIST) data-parallel, with exact resume.

``train_classifier(config, name)`` trains ``name`` on ``config.dataset``'s train split through the
shared :class:`~ipgan_jax.training.loop.TrainLoop`, checkpoints under
``<workdir>/classifiers/<name>/``, evaluates on the validation and test splits and exports the
final parameters to ``<workdir>/classifiers/<name>/params`` (+ ``result.json``).
``load_classifier(config, name)`` returns ``(module, variables)``: the exported MNIST params,
or converted pretrained ImageNet weights (``config.classifier_ckpt``). Loading never trains: a
missing MNIST classifier is a :class:`ClassifierNotFoundError` naming the command that trains it
(``run_train.py``'s stage ``all`` trains the missing ones explicitly, before the defense).
"""
from __future__ import annotations

import json
import zlib
from pathlib import Path

import jax
import jax.numpy as jnp
import optax

from ipgan_jax import pretrained, provenance
from ipgan_jax.data.pipeline import config_loader
from ipgan_jax.errors import ModelNotFoundError
from ipgan_jax.models.classifiers import get_classifier
from ipgan_jax.models.imagenet.weights.port import convert, load_pretrained
from ipgan_jax.training import parallel
from ipgan_jax.training.checkpoint import export_params, restore_params, tree_fingerprint
from ipgan_jax.training.loop import TrainLoop


class ClassifierNotFoundError(ModelNotFoundError):
    """A trained classifier that a command needs is not in the workdir; the message names the
    command that trains it (and ``--config.pretrained=True`` for the shipped ones)."""


def classifier_dir(config, name: str) -> Path:
    """``<workdir>/classifiers/<name>``: checkpoints, metrics and the exported ``params``."""
    return Path(config.workdir) / "classifiers" / name


def classifier_trained(config, name: str | None = None) -> bool:
    """Whether classifier ``name`` (default ``config.classifier``) needs no training before
    :func:`load_classifier` can load it: a shipped one (``config.pretrained``), an ImageNet one (ported,
    or converted on first use), or an MNIST one exported to ``<workdir>/classifiers/<name>/params``."""
    name = name or config.classifier
    if config.pretrained or config.dataset != "mnist":
        return True
    return (classifier_dir(config, name) / "params").exists()


def train_classifier_command(config, name: str) -> str:
    """The command that trains MNIST classifier ``name`` into ``config.workdir``."""
    workdir = "" if config.workdir == "workdir/mnist" else f" --config.workdir={config.workdir}"
    return (f"python run_train.py --config configs/mnist.py --config.stage=classifier "
            f"--config.classifier={name}{workdir}")


def make_optimizer(cfg, total_steps: int):
    """Adam-W with linear warmup and cosine decay to 1% of ``cfg.learning_rate``."""
    sched = optax.warmup_cosine_decay_schedule(0.0, cfg.learning_rate, min(cfg.warmup_steps, total_steps // 2),
                                               total_steps, end_value=cfg.learning_rate * 0.01)
    return optax.adamw(sched, weight_decay=cfg.weight_decay)


class ClassifierTrainer:
    """Softmax cross-entropy training of ``model`` on images of ``image_shape`` = (H, W, C).

    State: ``{'step': int32, 'params': ..., 'opt_state': ...}`` (the same pytree as the flax
    ``TrainState`` used before, so older checkpoints resume).
    """

    def __init__(self, model, tx, image_shape):
        self.model, self.tx, self.image_shape = model, tx, tuple(image_shape)

    def init_state(self, rng) -> dict:
        params = self.model.init(rng, jnp.zeros((1, *self.image_shape), jnp.float32), train=False)["params"]
        return {"step": jnp.zeros((), jnp.int32), "params": params, "opt_state": self.tx.init(params)}

    def train_step(self, state, batch, rng):
        """-> (state, {'loss', 'accuracy'}); dropout keyed by ``fold_in(rng, step)``."""
        rng = jax.random.fold_in(rng, state["step"])

        def loss_fn(params):
            logits = self.model.apply({"params": params}, batch["image"], train=True, rngs={"dropout": rng})
            loss = optax.softmax_cross_entropy_with_integer_labels(logits, batch["label"]).mean()
            return loss, logits

        (loss, logits), grads = jax.value_and_grad(loss_fn, has_aux=True)(state["params"])
        updates, opt_state = self.tx.update(grads, state["opt_state"], state["params"])
        new = {"step": state["step"] + 1, "params": optax.apply_updates(state["params"], updates),
               "opt_state": opt_state}
        return new, {"loss": loss, "accuracy": jnp.mean(jnp.argmax(logits, -1) == batch["label"])}


def make_eval_step(model, mesh):
    def step(variables, batch):
        logits = model.apply(variables, batch["image"], train=False)
        correct = (jnp.argmax(logits, -1) == batch["label"]) & batch["mask"]
        return jnp.sum(correct), jnp.sum(batch["mask"])
    rep, dat = parallel.replicated(mesh), parallel.data_sharded(mesh)
    return jax.jit(step, in_shardings=(rep, dat), out_shardings=(rep, rep))


def evaluate(model, variables, loader, mesh) -> float:
    """Top-1 accuracy of ``model`` over one ordered pass of ``loader`` (padding masked)."""
    eval_step = make_eval_step(model, mesh)
    correct = total = 0
    for batch in loader.iterate(prefetch=2):
        c, t = eval_step(variables, parallel.shard_batch(batch, mesh))
        correct += int(c)
        total += int(t)
    return correct / max(total, 1)


# classifier_train settings that may change on resume: the length (a longer run stretches the cosine schedule
# from the resumed step on) and the cadence
CLASSIFIER_RESUMABLE = ("num_epochs", "num_steps", "log_every", "checkpoint_every", "keep", "eval_batch_size")


def classifier_recipe(config, name: str) -> dict:
    """The settings that define classifier ``name`` (saved with its checkpoints; a run refuses to resume
    under another recipe)."""
    return {"seed": config.seed, "dataset": config.dataset, "validation_size": config.validation_size,
            "classifier": name, "classifier_train": {k: v for k, v in config.classifier_train.to_dict().items()
                                                     if k not in CLASSIFIER_RESUMABLE}}


def train_classifier(config, name: str | None = None, *, max_steps: int | None = None) -> dict:
    """Train (or resume) classifier ``name``; returns ``{'test_accuracy', 'validation_accuracy', 'steps'}``.

    ``max_steps`` stops early after that many total steps without exporting (used to simulate a kill).
    """
    name = name or config.classifier
    cfg = config.classifier_train
    out = classifier_dir(config, name)
    model = get_classifier(name, config.num_classes)
    train_loader = config_loader(config, "train", cfg.batch_size, train=True, num_examples=cfg.num_train_examples)
    total = int(cfg.num_epochs * train_loader.steps_per_epoch) if cfg.num_steps <= 0 else int(cfg.num_steps)
    trainer = ClassifierTrainer(model, make_optimizer(cfg, total),
                                (config.image_size, config.image_size, config.channels))
    init_rng, step_rng = jax.random.split(jax.random.fold_in(jax.random.PRNGKey(config.seed),
                                                             zlib.crc32(name.encode())))
    with TrainLoop(out, trainer, loader=train_loader, total_steps=total, cfg=cfg, init_rng=init_rng,
                   step_rng=step_rng, desc=f"train {name}", recipe=classifier_recipe(config, name),
                   resumable="classifier_train." + ", classifier_train.".join(CLASSIFIER_RESUMABLE)) as loop:
        if not loop.run(max_steps=max_steps):
            return {"steps": min(total, max_steps), "test_accuracy": None}
        mesh = loop.mesh
        eval_bs = -(-cfg.eval_batch_size // mesh.devices.size) * mesh.devices.size
        variables = {"params": loop.state["params"]}
        val_acc = None
        if config.validation_size:
            val_acc = evaluate(model, variables, config_loader(config, "validation", eval_bs, train=False), mesh)
        acc = evaluate(model, variables, config_loader(config, "test", eval_bs, train=False), mesh)
        loop.writer.write(total, {"test_accuracy": acc,
                                  **({"validation_accuracy": val_acc} if val_acc is not None else {})})
    params = loop.state["params"]
    export_params(out, params, {"classifier": name, "test_accuracy": acc, "validation_accuracy": val_acc,
                                "steps": int(loop.state["step"]), "dataset": config.dataset,
                                "train_records": train_loader.n, "fingerprint": tree_fingerprint({"params": params}),
                                "provenance": provenance.read_segments(out),
                                "config": json.loads(config.to_json_best_effort())})
    return {"test_accuracy": acc, "validation_accuracy": val_acc, "steps": total}


def load_classifier(config, name: str | None = None):
    """``(module, variables)`` for classifier ``name`` (default ``config.classifier``), frozen.

    MNIST classifiers come from ``<workdir>/classifiers/<name>/params`` (trained by
    ``run_train.py``); ImageNet classifiers from ``config.classifier_ckpt`` (converted with
    ``python -m ipgan_jax.models.imagenet.weights.port``) or, for efficientnet_lite0, from the
    weights shipped in a package. ``config.pretrained``: the classifier shipped in
    ``pretrained/<dataset>/classifiers/<name>.msgpack`` (verified against its manifest), never
    the workdir's. Nothing is ever trained here.

    Args:
        config: the run's config (``dataset``, ``workdir``, ``pretrained``, ...).
        name: the classifier, e.g. ``lenet`` or ``lenet_s1``; default ``config.classifier``.

    Returns:
        ``(module, {"params": ...})``.

    Raises:
        ClassifierNotFoundError: an MNIST classifier that has not been trained (the message names
            the command that trains it).
    """
    name = name or config.classifier
    module = get_classifier(name, config.num_classes)
    if config.dataset != "mnist":
        if config.pretrained:
            raise pretrained.PretrainedError(f"no {config.dataset} classifier ships with the repository; drop "
                                             f"--config.pretrained=True (ImageNet weights: see README, ImageNet)")
        default_dir = Path(config.workdir) / "classifiers" / name / "pretrained"
        ckpt_dir = (config.classifier_ckpt if name == config.classifier else None) or str(default_dir)
        if name == "efficientnet_lite0" and not Path(ckpt_dir).exists():
            convert(name, None, ckpt_dir)  # its weights ship in a package: convert on first use
        return load_pretrained(name, ckpt_dir)
    abstract = jax.eval_shape(lambda: module.init(jax.random.PRNGKey(0), jnp.zeros(
        (1, config.image_size, config.image_size, config.channels)), train=False)["params"])
    if config.pretrained:
        params, _ = pretrained.load(config, "classifier", name, None, abstract)
        return module, {"params": params}
    path = classifier_dir(config, name) / "params"
    if not path.exists():
        raise ClassifierNotFoundError(
            f"no trained classifier {name!r} at {path}: train it with `{train_classifier_command(config, name)}` "
            f"(run_train.py's default --config.stage=all trains the missing classifiers before the defense), "
            f"or use the shipped classifiers: --config.pretrained=True")
    return module, {"params": restore_params(path, abstract, "classifier params")}
