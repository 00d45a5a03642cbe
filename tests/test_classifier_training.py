"""MNIST classifiers: architectures, learning, 1-vs-8-device equality, exact resume, errors."""
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from ipgan_jax.data.pipeline import make_loader
from ipgan_jax.models.classifiers import get_classifier
from ipgan_jax.training import parallel
from ipgan_jax.training.classifier import ClassifierTrainer, classifier_dir, load_classifier, train_classifier
from ipgan_jax.training.logging import read_metrics
from ipgan_jax.training.loop import jit_train_step

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.parametrize("name", ["lenet", "mcnn", "alexnet"])
def test_classifier_shapes(name):
    model = get_classifier(name)
    x = jnp.zeros((2, 28, 28, 1))
    v = model.init(jax.random.PRNGKey(0), x)
    logits, feats = model.apply(v, x, features=True)
    assert logits.shape == (2, 10) and feats.ndim == 2


def test_unknown_classifier():
    with pytest.raises(ValueError, match="unknown classifier"):
        get_classifier("resnet9000")


def _batch(n=64, step=0):
    return make_loader("mnist", "train", n, seed=0, num_examples=2048).batch(step)


@pytest.mark.parametrize("name", ["lenet", "mcnn"])
def test_classifier_learns(name):
    mesh = parallel.make_mesh()
    trainer = ClassifierTrainer(get_classifier(name), optax.adam(1e-3), (28, 28, 1))
    state = parallel.replicate(trainer.init_state(jax.random.PRNGKey(0)), mesh)
    step = jit_train_step(trainer.train_step, mesh)
    batch = parallel.shard_batch(_batch(), mesh)
    losses = []
    for _ in range(15):
        state, m = step(state, batch, jax.random.PRNGKey(1))
        losses.append(float(m["loss"]))
    assert losses[-1] < 0.5 * losses[0]


def test_same_step_on_1_and_8_devices():
    assert jax.device_count() == 8, "conftest sets 8 emulated CPU devices"
    # mcnn has dropout: the rng must also be layout independent
    trainer = ClassifierTrainer(get_classifier("mcnn"), optax.adam(1e-3), (28, 28, 1))
    batch = _batch(64)
    results = []
    for devices in (jax.devices()[:1], jax.devices()):
        mesh = parallel.make_mesh(devices)
        state = parallel.replicate(trainer.init_state(jax.random.PRNGKey(0)), mesh)
        step = jit_train_step(trainer.train_step, mesh)
        for _ in range(3):
            state, m = step(state, parallel.shard_batch(batch, mesh), jax.random.PRNGKey(7))
        results.append((jax.device_get(state["params"]), float(m["loss"])))
    (p1, l1), (p8, l8) = results
    assert abs(l1 - l8) < 1e-5
    for a, b in zip(jax.tree.leaves(p1), jax.tree.leaves(p8)):
        np.testing.assert_allclose(a, b, atol=2e-5, rtol=1e-4)


def test_kill_and_resume_equals_uninterrupted(tiny_config, tmp_path):
    c = tiny_config
    c.classifier = "lenet"
    full = c.copy_and_resolve_references()
    full.workdir = str(tmp_path / "full")
    train_classifier(full)
    # "Kill" after step 15: the last checkpoint is step 10; the rerun resumes from it.
    r = train_classifier(c, max_steps=15)
    assert r["test_accuracy"] is None and not (classifier_dir(c, "lenet") / "params").exists()
    rows = read_metrics(classifier_dir(c, "lenet") / "metrics.jsonl")
    assert max(r["step"] for r in rows) == 15
    train_classifier(c)
    rows = read_metrics(classifier_dir(c, "lenet") / "metrics.jsonl")
    steps = [r["step"] for r in rows if "loss" in r]
    assert steps == sorted(set(steps)) and steps[-1] == 30  # no duplicated history after the resume
    _, va = load_classifier(full, "lenet")
    _, vb = load_classifier(c, "lenet")
    for a, b in zip(jax.tree.leaves(va), jax.tree.leaves(vb)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_corrupt_checkpoint_gives_clear_error(tiny_config):
    c = tiny_config
    train_classifier(c, max_steps=10)
    ckpt = classifier_dir(c, "lenet") / "checkpoints" / "10"
    files = [p for p in ckpt.rglob("*") if p.is_file()]
    assert files
    for p in files:
        p.write_bytes(b"garbage")
    # the only checkpoint is unusable: it is set aside (never deleted) with a message, and training
    # starts from scratch (tests/test_reliability.py covers the fallback to an older good step)
    result = train_classifier(c)
    assert result["steps"] == c.classifier_train.num_steps
    moved = classifier_dir(c, "lenet") / "checkpoints.corrupt" / "10"
    assert moved.is_dir() and sorted(p.read_bytes() for p in moved.rglob("*") if p.is_file()) == [b"garbage"] * len(files)


def test_missing_classifier_message(tiny_config):
    with pytest.raises(FileNotFoundError, match="run_train.py"):
        load_classifier(tiny_config, "alexnet")


def _run(*args, env=None):
    e = dict(os.environ, **(env or {}))
    return subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True, env=e)


def test_cli_unknown_config_key():
    r = _run("run_train.py", "--config", "configs/mnist_tiny.py", "--config.train.nonexistent_key=1")
    assert r.returncode == 2
    assert "unknown config key" in r.stderr and "nonexistent_key" in r.stderr
    assert "Traceback" not in r.stderr


@pytest.mark.parametrize("override,message", [
    ("--config.stage=bogus", "config.stage='bogus'"),                       # a top-level field
    ("--config.train.batch_size=-4", "config.train.batch_size must be positive, got -4"),  # nested
    ("--config.nonexistent=1", "unknown config key"),                        # locked: no new keys
    ("--config.ipgan.d_steps=1", "unknown config key"),                      # a removed dead field
])
def test_cli_overrides_reach_the_config_and_unknown_keys_fail(override, message):
    r = _run("run_train.py", "--config", "configs/mnist_tiny.py", override)
    assert r.returncode == 2, r.stderr[-2000:]
    assert message in r.stderr and "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_cli_missing_dataset(tmp_path):
    r = _run("run_train.py", "--config", "configs/mnist_tiny.py", f"--config.workdir={tmp_path}",
             f"--config.data_dir={tmp_path / 'tfds'}",
             env={"IPGAN_DATA_DIR": str(tmp_path / "nodata"), "IPGAN_AUTO_FETCH": "0"})
    assert r.returncode == 2
    assert "python -m ipgan_jax.data.fetch mnist" in r.stderr and "Traceback" not in r.stderr


def test_resumes_a_checkpoint_of_the_old_flax_trainstate(tiny_config, tmp_path):
    """Train-state checkpoints written before the one-loop refactor held a flax ``TrainState``;
    the dict state has its field names, so such a checkpoint resumes to the same result."""
    import shutil

    from flax.training import train_state

    from ipgan_jax.training.checkpoint import Checkpointer, abstract_like
    from ipgan_jax.training.classifier import make_optimizer
    c = tiny_config
    train_classifier(c, max_steps=20)                      # dict-state checkpoint at step 20
    old = c.copy_and_resolve_references()
    old.workdir = str(tmp_path / "old")
    shutil.copytree(c.workdir, old.workdir)
    ckpt_dir = classifier_dir(old, "lenet") / "checkpoints"
    model, tx = get_classifier("lenet"), make_optimizer(c.classifier_train, 30)
    abstract = jax.eval_shape(ClassifierTrainer(model, tx, (28, 28, 1)).init_state, jax.random.PRNGKey(0))
    ck = Checkpointer(ckpt_dir)
    state, step = ck.restore(abstract_like(abstract, parallel.replicated(parallel.make_mesh())))
    ck.close()
    assert step == 20 and int(state["step"]) == 20
    ts = train_state.TrainState(step=state["step"], apply_fn=model.apply, params=state["params"], tx=tx,
                                opt_state=state["opt_state"])
    shutil.rmtree(ckpt_dir)
    ck = Checkpointer(ckpt_dir)
    ck.save(20, ts, force=True)
    ck.close()
    ra, rb = train_classifier(c), train_classifier(old)
    assert ra["steps"] == rb["steps"] == 30
    _, va = load_classifier(c, "lenet")
    _, vb = load_classifier(old, "lenet")
    for a, b in zip(jax.tree.leaves(va), jax.tree.leaves(vb)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_periodic_actions_fire_every_n_steps_and_at_the_end(tmp_path):
    from ipgan_jax.training.logging import MetricsWriter
    from ipgan_jax.training.loop import Periodic, itstime
    assert [s for s in range(1, 13) if itstime(s, 5, 12)] == [5, 10, 12]
    assert [s for s in range(1, 13) if itstime(s, 0, 12)] == [12]      # every <= 0: only the last step
    assert not any(itstime(s, 0) for s in range(1, 13))
    seen = []
    action = Periodic(4, lambda step, state: seen.append((step, state)) or {"m": step}, prefix="eval/")
    writer = MetricsWriter(tmp_path, tensorboard=False)
    for step in range(1, 11):
        action(step, 10, f"s{step}", writer)
    writer.close()
    assert seen == [(4, "s4"), (8, "s8"), (10, "s10")]
    assert [(r["step"], r["eval/m"]) for r in read_metrics(tmp_path / "metrics.jsonl")] == [(4, 4), (8, 8), (10, 10)]
