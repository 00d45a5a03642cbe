"""Train the target classifiers (MNIST) data-parallel, with exact resume.

``train_classifier(config, name)`` trains ``name`` on ``config.dataset``'s train split,
checkpoints under ``<workdir>/classifiers/<name>/``, evaluates on the test split and exports
the final parameters to ``<workdir>/classifiers/<name>/params`` (+ ``result.json``).
``load_classifier(config, name)`` returns ``(module, variables)``: the exported MNIST params,
or converted pretrained ImageNet weights (``config.classifier_ckpt``).
"""
from __future__ import annotations

import json
import os
import shutil
import time
import zlib
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
import orbax.checkpoint as ocp
from flax.training import train_state

from ipgan_jax.data.pipeline import config_loader
from ipgan_jax.models.classifiers import get_classifier
from ipgan_jax.training import parallel
from ipgan_jax.training.checkpoint import CheckpointError, Checkpointer, abstract_like
from ipgan_jax.training.logging import MetricsWriter, progress


def classifier_dir(config, name: str) -> Path:
    return Path(config.workdir) / "classifiers" / name


def _tx(cfg, total_steps):
    sched = optax.warmup_cosine_decay_schedule(0.0, cfg.learning_rate, min(cfg.warmup_steps, total_steps // 2),
                                               total_steps, end_value=cfg.learning_rate * 0.01)
    return optax.adamw(sched, weight_decay=cfg.weight_decay)


def create_state(model, rng, image_shape, tx):
    """TrainState (params, opt_state, step) for ``model`` on images of ``image_shape`` = (H, W, C)."""
    params = model.init(rng, jnp.zeros((1, *image_shape), jnp.float32), train=False)["params"]
    return train_state.TrainState.create(apply_fn=model.apply, params=params, tx=tx)


def make_train_step(model, mesh):
    """jit-compiled step(state, batch, rng) -> (state, metrics); state donated, batch sharded."""
    def step(state, batch, rng):
        rng = jax.random.fold_in(rng, state.step)

        def loss_fn(params):
            logits = model.apply({"params": params}, batch["image"], train=True, rngs={"dropout": rng})
            loss = optax.softmax_cross_entropy_with_integer_labels(logits, batch["label"]).mean()
            return loss, logits

        (loss, logits), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
        state = state.apply_gradients(grads=grads)
        acc = jnp.mean(jnp.argmax(logits, -1) == batch["label"])
        return state, {"loss": loss, "accuracy": acc}

    rep, dat = parallel.replicated(mesh), parallel.data_sharded(mesh)
    return jax.jit(step, in_shardings=(rep, dat, rep), out_shardings=(rep, rep), donate_argnums=(0,))


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


def train_classifier(config, name: str | None = None, *, max_steps: int | None = None) -> dict:
    """Train (or resume) classifier ``name``; returns ``{'test_accuracy', 'steps', 'seconds'}``.

    ``max_steps`` stops early after that many total steps without exporting (used to simulate a kill).
    """
    name = name or config.classifier
    cfg = config.classifier_train
    mesh = parallel.make_mesh()
    parallel.check_batch_size(cfg.batch_size, mesh)
    out = classifier_dir(config, name)
    model = get_classifier(name, config.num_classes)
    train_loader = config_loader(config, "train", cfg.batch_size, train=True,
                                 num_examples=cfg.get("num_train_examples"))
    total = int(cfg.num_epochs * train_loader.steps_per_epoch) if cfg.num_steps <= 0 else int(cfg.num_steps)
    tx = _tx(cfg, total)
    rng = jax.random.PRNGKey(config.seed)
    init_rng, step_rng = jax.random.split(jax.random.fold_in(rng, zlib.crc32(name.encode())))
    image_shape = (config.image_size, config.image_size, config.channels)
    abstract = jax.eval_shape(lambda: create_state(model, init_rng, image_shape, tx))
    ckpt = Checkpointer(out / "checkpoints", save_every=cfg.checkpoint_every, keep=cfg.keep)
    state, start = ckpt.restore(abstract_like(abstract, parallel.replicated(mesh)))
    if state is None:
        state = parallel.replicate(create_state(model, init_rng, image_shape, tx), mesh)
    writer = MetricsWriter(out, resume_step=start, enabled=jax.process_index() == 0)
    train_step = make_train_step(model, mesh)
    stop = total if max_steps is None else min(total, max_steps)
    bar = progress(total, initial=start, desc=f"train {name}")
    t0, seen, window = time.time(), 0, []
    for step, batch in zip(range(start, stop), train_loader.iterate(start)):
        state, metrics = train_step(state, parallel.shard_batch(batch, mesh), step_rng)
        window.append(metrics)
        seen += cfg.batch_size
        bar.update(1)
        done = step + 1
        if done % cfg.log_every == 0 or done == stop:
            m = {k: float(np.mean([float(w[k]) for w in window])) for k in window[0]}
            m["images_per_sec"] = seen / (time.time() - t0)
            writer.write(done, m)
            bar.set_postfix(loss=f"{m['loss']:.4f}", acc=f"{m['accuracy']:.3f}", ips=f"{m['images_per_sec']:.0f}")
            window, seen, t0 = [], 0, time.time()
        ckpt.save(done, state, force=(done == stop))
    bar.close()
    ckpt.close()
    if stop < total:
        writer.close()
        return {"steps": stop, "test_accuracy": None}
    eval_bs = -(-cfg.eval_batch_size // mesh.devices.size) * mesh.devices.size
    variables = {"params": state.params}
    val_acc = None
    if config.get("validation_size", 0):
        val_acc = evaluate(model, variables, config_loader(config, "validation", eval_bs, train=False), mesh)
    acc = evaluate(model, variables, config_loader(config, "test", eval_bs, train=False), mesh)
    writer.write(total, {"test_accuracy": acc, **({"validation_accuracy": val_acc} if val_acc is not None else {})})
    writer.close()
    export_params(out, state.params, {"classifier": name, "test_accuracy": acc, "validation_accuracy": val_acc,
                                      "steps": total, "dataset": config.dataset,
                                      "train_records": train_loader.n})
    return {"test_accuracy": acc, "validation_accuracy": val_acc, "steps": total}


def export_params(out: Path, params, meta: dict) -> None:
    """Write final params (orbax) and result.json atomically (replace only when complete)."""
    if jax.process_index() == 0:
        out.mkdir(parents=True, exist_ok=True)
    tmp = out / "params.tmp"
    if tmp.exists():
        shutil.rmtree(tmp)
    ckptr = ocp.StandardCheckpointer()
    ckptr.save(tmp.absolute(), params)
    ckptr.wait_until_finished()
    if jax.process_index() == 0:
        final = out / "params"
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
        (out / "result.json").write_text(json.dumps(meta, indent=2))


def load_classifier(config, name: str | None = None, *, train_if_missing: bool = False):
    """``(module, variables)`` for classifier ``name`` (frozen target f).

    MNIST classifiers come from ``<workdir>/classifiers/<name>/params`` (trained by
    ``run_train.py``); ImageNet classifiers from ``config.classifier_ckpt`` (converted with
    ``python -m ipgan_jax.port``) or, for efficientnet_lite0, from the weights shipped in a package.
    """
    name = name or config.classifier
    module = get_classifier(name, config.num_classes)
    if config.dataset != "mnist":
        from ipgan_jax.port import convert, load_pretrained
        default_dir = Path(config.workdir) / "classifiers" / name / "pretrained"
        ckpt_dir = (config.get("classifier_ckpt") if name == config.classifier else None) or str(default_dir)
        if name == "efficientnet_lite0" and not Path(ckpt_dir).exists():
            convert(name, None, ckpt_dir)  # its weights ship in a package: convert on first use
        return load_pretrained(name, ckpt_dir)
    path = classifier_dir(config, name) / "params"
    if not path.exists():
        if not train_if_missing:
            raise FileNotFoundError(
                f"no trained classifier {name!r} at {path}. Train it with "
                f"`python run_train.py --config configs/mnist.py --config.classifier={name} --config.stage=classifier` "
                f"(or let run_train.py train it before IP-GAN).")
        train_classifier(config, name)
    abstract = jax.eval_shape(lambda: module.init(jax.random.PRNGKey(0), jnp.zeros(
        (1, config.image_size, config.image_size, config.channels)), train=False)["params"])
    try:
        params = ocp.StandardCheckpointer().restore(path.absolute(), abstract)
    except Exception as e:
        raise CheckpointError(f"classifier params at {path} could not be restored "
                              f"({type(e).__name__}: {str(e)[:300]}); delete the folder and retrain.") from e
    return module, {"params": params}
