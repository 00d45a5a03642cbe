"""The one train loop every defense shares (big_vision style).

``train_defense(config)``: load (or first train) the frozen target classifier, build the
defense trainer named by ``config.defense``, then run its jitted, donated, data-parallel
``train_step`` with orbax checkpoints (exact resume: state + step; the data position and the
per-step PRNG key are functions of the step), a progress bar, metrics (JSON lines +
TensorBoard), periodic held-out evaluation (DSR under each training attack, clean accuracy
after the defense, SSIM), and PNG sample grids. Exports the test-time params at the end to
``<workdir>/defenses/<defense>/<classifier>/params``.
"""
from __future__ import annotations

import time
import zlib
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from ipgan_jax.attacks import make_attack
from ipgan_jax.data.pipeline import config_loader, dataset_family
from ipgan_jax.eval import metrics as M
from ipgan_jax.eval.plots import image_grid
from ipgan_jax.training import parallel
from ipgan_jax.training.checkpoint import Checkpointer, abstract_like
from ipgan_jax.training.classifier import export_params, load_classifier
from ipgan_jax.training.logging import MetricsWriter, progress


def defense_dir(config, defense: str | None = None, classifier: str | None = None) -> Path:
    return Path(config.workdir) / "defenses" / (defense or config.defense) / (classifier or config.classifier)


def make_trainer(config, target_module, target_variables):
    from ipgan_jax.defenses import DEFENSES
    if config.defense not in DEFENSES:
        raise ValueError(f"config.defense={config.defense!r}: choose one of {sorted(DEFENSES)}")
    return DEFENSES[config.defense](config, target_module, target_variables)


def heldout_batch(config, n: int) -> dict:
    """A fixed batch of ``n`` validation images (the end of the train split, never trained on) for
    monitoring and model selection. Test images are never used here. Without a validation split
    (``config.validation_size`` 0, e.g. the 20-photo ImageNet demo) the first training images are used.
    """
    split = "validation" if config.get("validation_size", 0) else "train"
    b = config_loader(config, split, n, train=False, num_examples=n).batch(0)
    return {"image": b["image"], "label": b["label"]}


def make_monitor(config, trainer):
    """jitted fn(params, x, y, key) -> {metric: value} for each training attack (oblivious)."""
    specs = []
    for s in config.train_attacks:
        s = dict(s)
        s.pop("eps_min", None)
        specs.append(s)
    attacks = [(s["name"], make_attack(s, dataset=dataset_family(config.dataset))) for s in specs]

    def monitor(params, x, y, key):
        logits_fn = trainer.target_logits
        pred_clean = jnp.argmax(logits_fn(x), -1)
        x_clean_def = trainer.defend(params, x)
        out = {"clean_acc": jnp.mean(pred_clean == y),
               "defended_clean_acc": jnp.mean(jnp.argmax(logits_fn(x_clean_def), -1) == y)}
        for i, (name, attack) in enumerate(attacks):
            x_adv = attack(logits_fn, x, y, jax.random.fold_in(key, i))
            x_rec = trainer.defend(params, x_adv)
            c = M.counts(pred_clean, jnp.argmax(logits_fn(x_adv), -1), jnp.argmax(logits_fn(x_rec), -1), y)
            out[f"{name}/dsr"] = c["defended"] / jnp.maximum(c["attack_success"], 1)
            out[f"{name}/asr"] = c["attack_success"] / jnp.maximum(c["clean_correct"], 1)
            out[f"{name}/ssim_rec"] = jnp.mean(M.ssim(x, x_rec))
            out[f"{name}/ssim_adv"] = jnp.mean(M.ssim(x, x_adv))
        return out

    first = attacks[0][1]
    samples = jax.jit(lambda params, x, y, key: (first(trainer.target_logits, x, y, key),))
    return jax.jit(monitor), samples


def train_defense(config, *, max_steps: int | None = None) -> dict:
    """Train (or resume) ``config.defense`` against ``config.classifier``; returns final monitor metrics.

    ``max_steps`` stops after that many total steps without exporting (simulates a kill in tests).
    """
    out = defense_dir(config)
    target_module, target_variables = load_classifier(config, train_if_missing=True)
    trainer = make_trainer(config, target_module, target_variables)
    mesh = parallel.make_mesh()
    parallel.check_batch_size(config.train.batch_size, mesh)
    rng = jax.random.PRNGKey(config.seed)
    init_rng, step_rng, mon_rng = jax.random.split(
        jax.random.fold_in(rng, zlib.crc32(f"{config.defense}/{config.classifier}".encode())), 3)
    total = trainer.num_steps()
    ckpt = Checkpointer(out / "checkpoints", save_every=config.train.checkpoint_every, keep=config.train.keep)
    abstract = jax.eval_shape(trainer.init_state, init_rng)
    state, start = ckpt.restore(abstract_like(abstract, parallel.replicated(mesh)))
    if state is None:
        state = parallel.replicate(jax.jit(trainer.init_state)(init_rng), mesh)
    rep, dat = parallel.replicated(mesh), parallel.data_sharded(mesh)
    train_step = jax.jit(trainer.train_step, in_shardings=(rep, dat, rep), out_shardings=(rep, rep),
                         donate_argnums=(0,))
    loader = config_loader(config, "train", config.train.batch_size, train=True,
                           num_examples=config.train.get("num_train_examples"))
    held = heldout_batch(config, config.train.eval_batch_size)
    monitor, make_samples = make_monitor(config, trainer)
    writer = MetricsWriter(out, resume_step=start, enabled=jax.process_index() == 0)
    stop = total if max_steps is None else min(total, max_steps)
    bar = progress(total, initial=start, desc=f"train {config.defense}/{config.classifier}")
    last = {}

    def run_monitor(step):
        nonlocal last
        params = trainer.defense_params(state)
        m = {k: float(v) for k, v in monitor(params, held["image"], held["label"], mon_rng).items()}
        writer.write(step, {f"eval/{k}": v for k, v in m.items()})
        last = m
        return m

    def write_samples(step, name):
        params = trainer.defense_params(state)
        n = min(8, held["image"].shape[0])
        (x_adv,) = make_samples(params, held["image"][:n], held["label"][:n], mon_rng)
        rows = trainer.sample_rows(params, held["image"][:n], np.asarray(x_adv))
        if jax.process_index() == 0:
            image_grid([np.asarray(r) for _, r in rows], [lbl for lbl, _ in rows], out / "samples" / name)

    t0, seen, window = time.time(), 0, []
    for step, batch in zip(range(start, stop), loader.iterate(start)):
        state, m = train_step(state, parallel.shard_batch(batch, mesh), step_rng)
        window.append(m)
        seen += config.train.batch_size
        bar.update(1)
        done = step + 1
        if done % config.train.log_every == 0 or done == stop:
            avg = {k: float(np.mean([float(w[k]) for w in window])) for k in window[0]}
            avg["images_per_sec"] = seen / (time.time() - t0)
            writer.write(done, avg)
            bar.set_postfix({k: f"{avg[k]:.3f}" for k in list(avg)[:3]})
            window, seen, t0 = [], 0, time.time()
        if done % config.train.eval_every == 0 or done == total:
            mm = run_monitor(done)
            bar.write(f"step {done}: " + ", ".join(f"{k}={v:.3f}" for k, v in mm.items() if "dsr" in k or "acc" in k))
        if done % config.train.sample_every == 0 or done == total:
            write_samples(done, f"step_{done:06d}.png")
        ckpt.save(done, state, force=(done == stop))
    bar.close()
    ckpt.close()
    if stop < total:
        writer.close()
        return {"steps": stop}
    if not last:
        run_monitor(total)
    writer.close()
    write_samples(total, "final.png")
    export_params(out, jax.device_get(trainer.defense_params(state)),
                  {"defense": config.defense, "classifier": config.classifier, "steps": total,
                   "heldout": last})
    return {"steps": total, **{k: round(v, 4) for k, v in last.items()}}
