"""The one training loop: the target classifiers, IP-GAN and every baseline run through it.

A *trainer* is any object with two pure functions over a state pytree (a dict with an int32
``'step'`` entry):

* ``init_state(rng) -> state``,
* ``train_step(state, batch, rng) -> (state, metrics)``: ``batch`` is
  ``{'image': float32 [B, H, W, C] in [0, 1], 'label': int32 [B]}`` (B global); the step folds
  ``state['step']`` into ``rng`` itself, so the key of step k is a function of k alone.

``TrainLoop`` jit-compiles ``train_step`` data-parallel (state replicated and donated, batch split
over the ``'data'`` mesh axis), resumes from the latest orbax checkpoint (exactly: the data
position and the per-step key are functions of the step), logs window averages to
``metrics.jsonl`` and TensorBoard, draws a progress bar, and runs periodic actions
(:class:`Periodic`, in the style of big_vision's ``itstime``) such as held-out evaluation and
sample grids. The caller evaluates and exports after ``run`` (``checkpoint.export_params``).

Reliability: the workdir is checked writable and locked (:class:`WorkdirLockedError` names the
other process); logged losses are checked finite at every log point and the state before every
save (:class:`~ipgan_jax.training.checkpoint.NonFiniteError`: nothing non-finite is saved); a
checkpoint beyond ``total_steps`` is an error, never exported under the smaller step count.
"""
from __future__ import annotations

import dataclasses
import fcntl
import json
import math
import os
import signal
import socket
import threading
import time
from pathlib import Path
from typing import Callable, Optional, Sequence

import jax
import numpy as np
from absl import logging

from ipgan_jax import files, provenance
from ipgan_jax.errors import UserError
from ipgan_jax.training import parallel
from ipgan_jax.training.checkpoint import Checkpointer, CheckpointError, NonFiniteError, abstract_like
from ipgan_jax.training.logging import MetricsWriter, progress


def itstime(step: int, every: int, total: Optional[int] = None) -> bool:
    """True every ``every`` steps (never when ``every`` <= 0) and at the last step ``total``."""
    return (every > 0 and step % every == 0) or (total is not None and step == total)


@dataclasses.dataclass
class Periodic:
    """An action ``fn(step, state) -> dict | None`` run after step ``every``, ``2*every``, ... and
    after the last step of the run's total. A returned dict is written to the metrics, each key
    prefixed with ``prefix``."""
    every: int
    fn: Callable
    prefix: str = ""

    def __call__(self, step: int, total: int, state, writer: MetricsWriter) -> Optional[dict]:
        if not itstime(step, self.every, total):
            return None
        out = self.fn(step, state)
        if out:
            writer.write(step, {f"{self.prefix}{k}": v for k, v in out.items()})
        return out


def jit_train_step(train_step, mesh):
    """``train_step`` jit-compiled data-parallel: state replicated and donated, batch sharded."""
    rep, dat = parallel.replicated(mesh), parallel.data_sharded(mesh)
    return jax.jit(train_step, in_shardings=(rep, dat, rep), out_shardings=(rep, rep), donate_argnums=(0,))


class RecipeChangedError(CheckpointError):
    """A run would resume (or re-export) under other settings than the ones it was trained with."""


def _flat(d, prefix=""):
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def _exit_on_sigterm(signum, frame):
    raise SystemExit(128 + signum)


def recipe_diff(old: dict, new: dict) -> list[str]:
    """``['key: old -> new', ...]`` over the dotted keys of two recipes (JSON forms compared, so a
    tuple equals the list it was saved as); [] when they agree."""
    a, b = _flat(files.json_safe(old)), _flat(files.json_safe(new))
    norm = lambda v: json.dumps(v, sort_keys=True)   # noqa: E731
    return [f"{k}: {a.get(k, '(unset)')!r} -> {b.get(k, '(unset)')!r}" for k in sorted(set(a) | set(b))
            if norm(a.get(k)) != norm(b.get(k))]


class WorkdirLockedError(UserError, RuntimeError):
    """Another live process trains in the same workdir."""


class WorkdirLock:
    """An exclusive ``flock`` on ``<workdir>/.lock`` (released by the kernel when the holder dies,
    so a killed run never leaves a stale lock); the file names the holder (pid, host)."""

    def __init__(self, workdir: Path):
        self.path = Path(workdir) / ".lock"
        self.fh = open(self.path, "a+")
        try:
            fcntl.flock(self.fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            self.fh.seek(0)
            holder = self.fh.read().strip() or "unknown"
            self.fh.close()
            raise WorkdirLockedError(f"{workdir} is in use by another training process ({holder}); wait for it, "
                                     f"stop it, or choose another --config.workdir") from None
        self.fh.seek(0)
        self.fh.truncate()
        self.fh.write(f"pid {os.getpid()} on {socket.gethostname()}")
        self.fh.flush()

    def release(self) -> None:
        if not self.fh.closed:
            fcntl.flock(self.fh, fcntl.LOCK_UN)
            self.fh.close()


def check_finite_metrics(step: int, metrics: dict, desc: str) -> None:
    """Raise :class:`NonFiniteError` naming ``step`` and the metric when a value is NaN/Inf."""
    bad = {k: v for k, v in metrics.items() if not math.isfinite(v)}
    if bad:
        raise NonFiniteError(f"{desc}: {', '.join(f'{k}={v}' for k, v in bad.items())} at step {step}; training "
                             f"stopped and nothing was saved from this point. Likely cause: a learning rate that "
                             f"is too large or not a number (check the config's learning_rate / lr_* values), "
                             f"or corrupt input data.")


def _mean(window: list) -> dict:
    return {k: float(np.mean([float(w[k]) for w in window])) for k in window[0]}


class TrainLoop:
    """Train ``trainer`` for ``total_steps`` steps in ``workdir`` (resumes what is there).

    ``cfg`` gives ``batch_size`` (global), ``log_every``, ``checkpoint_every`` and ``keep``.
    ``init_rng`` seeds ``init_state``; ``step_rng`` is passed to every step. ``initial_state``:
    ``fn(abstract_state) -> (state, step)``, the state to start from when the workdir holds no
    checkpoint (default: ``init_state``). ``recipe``: the settings that define the model (saved with every
    checkpoint; resuming under another recipe raises :class:`RecipeChangedError`; ``resumable`` lists, for
    that message, what may change). After ``__init__``,
    ``state`` is the restored (or fresh) state, ``start`` its step, ``writer`` the metrics writer.
    """

    def __init__(self, workdir: str | os.PathLike, trainer, *, loader, total_steps: int, cfg, init_rng,
                 step_rng, desc: str = "train", mesh=None, ckpt_meta: Optional[dict] = None,
                 allow_meta_mismatch: bool = False, initial_state: Optional[Callable] = None,
                 recipe: Optional[dict] = None, resumable: str = ""):
        self.workdir = Path(workdir)
        self.trainer, self.loader, self.total = trainer, loader, int(total_steps)
        self.cfg, self.step_rng, self.desc = cfg, step_rng, desc
        self.mesh = parallel.make_mesh() if mesh is None else mesh
        parallel.check_batch_size(cfg.batch_size, self.mesh)
        self.lock = None
        if jax.process_index() == 0:
            files.check_writable(self.workdir, "workdir", "--config.workdir")
            self.lock = WorkdirLock(self.workdir)
        try:
            meta = dict(ckpt_meta or {}, **({"recipe": files.json_safe(recipe)} if recipe is not None else {}))
            self.ckpt = Checkpointer(self.workdir / "checkpoints", save_every=cfg.checkpoint_every, keep=cfg.keep,
                                     meta=meta, allow_meta_mismatch=allow_meta_mismatch)
            abstract = jax.eval_shape(trainer.init_state, init_rng)
            self.state, self.start = self.ckpt.restore(abstract_like(abstract, parallel.replicated(self.mesh)))
            if self.state is not None and recipe is not None:
                self.check_recipe(self.ckpt.meta_of(self.start).get("recipe"), recipe, resumable)
            if self.state is None and initial_state is not None:   # e.g. a shipped train state
                state, self.start = initial_state(abstract)
                self.state = parallel.replicate(state, self.mesh)
            if self.start > self.total:
                raise CheckpointError(
                    f"{self.ckpt.directory} holds a checkpoint at step {self.start}, beyond num_steps={self.total}: "
                    f"it would be exported as step {self.total}. Rerun with num_steps >= {self.start}, or use a "
                    f"fresh --config.workdir.")
            if self.state is None:
                self.state = parallel.replicate(jax.jit(trainer.init_state)(init_rng), self.mesh)
        except BaseException:
            self._release()
            raise
        self.writer = MetricsWriter(self.workdir, resume_step=self.start, enabled=jax.process_index() == 0)
        self.bar = None

    def check_recipe(self, old: Optional[dict], new: dict, resumable: str) -> None:
        """Refuse (:class:`RecipeChangedError`, one line naming the keys) a checkpoint written under
        another recipe; ``resumable`` names the settings that may change on resume. A checkpoint that
        records no recipe (older versions) passes."""
        diff = recipe_diff(old, new) if old is not None else []
        if diff:
            raise RecipeChangedError(
                f"{self.ckpt.directory} holds step {self.start} of a run trained with another recipe "
                f"({'; '.join(diff)}): resuming or re-exporting it would mislabel the model. To train a new "
                f"model, give it another name (e.g. --config.defense=<defense>:<tag>) or another --config.workdir. "
                f"Settings that may change on resume: {resumable}")

    def _release(self) -> None:
        if self.lock is not None:
            self.lock.release()

    def run(self, actions: Sequence[Periodic] = (), max_steps: Optional[int] = None) -> bool:
        """Train up to step ``min(total_steps, max_steps)``; ``max_steps`` stops early as a kill
        would (used by tests). Returns True when the run has reached ``total_steps``."""
        total, cfg = self.total, self.cfg
        stop = total if max_steps is None else min(total, max_steps)
        train_step = jit_train_step(self.trainer.train_step, self.mesh)
        # XLA:CPU with several devices (emulated ones, or CPU hosts): a step dispatched while the
        # previous one is still running can deadlock in its all-reduce (one device never joins the
        # rendezvous; seen with jax 0.10.2 on 4 and 8 emulated devices). Waiting for each step there
        # costs little (a CPU has no transfer to overlap); accelerators keep async dispatch.
        sync_each_step = self.mesh.devices.size > 1 and self.mesh.devices.flat[0].platform == "cpu"
        self.bar = progress(total, initial=self.start, desc=self.desc)
        t0, seen, window = time.time(), 0, []
        t_start, started, commit = time.time(), provenance.now_utc(), provenance.git_commit()
        # SIGTERM (kill, a scheduler's stop) ends the run like Ctrl-C: through the finally below, so the segment
        # trained so far is recorded in provenance.jsonl (the default handler would skip it); exit status 143
        previous = (signal.signal(signal.SIGTERM, _exit_on_sigterm)
                    if threading.current_thread() is threading.main_thread() else None)
        try:
            for step, batch in zip(range(self.start, stop), self.loader.iterate(self.start)):
                self.state, metrics = train_step(self.state, parallel.shard_batch(batch, self.mesh), self.step_rng)
                if sync_each_step:
                    jax.block_until_ready(metrics)
                window.append(metrics)
                seen += cfg.batch_size
                self.bar.update(1)
                done = step + 1
                if itstime(done, cfg.log_every, stop):
                    avg = _mean(window)
                    check_finite_metrics(done, avg, self.desc)
                    avg["images_per_sec"] = seen / (time.time() - t0)
                    self.writer.write(done, avg)
                    self.bar.set_postfix({k: f"{avg[k]:.4g}" for k in list(avg)[:3]})
                    window, seen, t0 = [], 0, time.time()
                for action in actions:
                    action(done, total, self.state, self.writer)
                self.ckpt.save(done, self.state, force=(done == stop))
        finally:
            self.bar.close()
            reached = self.ckpt.latest_step() or self.start   # the step a rerun would resume from
            self.ckpt.close()
            if jax.process_index() == 0 and reached > self.start:
                provenance.append_segment(self.workdir, self.start, reached, time.time() - t_start, started,
                                          commit)
            if previous is not None:
                signal.signal(signal.SIGTERM, previous)
        return stop == total

    def report(self, text: str) -> None:
        """A line above the progress bar (to the log when there is none)."""
        if self.bar is not None:
            self.bar.write(text)
        else:
            logging.info("%s", text)

    def close(self) -> None:
        self.writer.close()
        self._release()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
