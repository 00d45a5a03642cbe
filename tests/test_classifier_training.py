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


@pytest.mark.slow
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


@pytest.mark.slow
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


@pytest.mark.slow
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
    assert moved.is_dir()
    assert sorted(p.read_bytes() for p in moved.rglob("*") if p.is_file()) == [b"garbage"] * len(files)


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


# run_train.py with one library function replaced: ``registry.resolve_defense``, which main calls right
# after check_config, before anything is trained (issue 46: the CLI must not hide bugs)
_PATCHED_RUN_TRAIN = """
import runpy, sys
from ipgan_jax.defenses import registry
from ipgan_jax.errors import ConfigError

def resolve_defense(config):
{body}

registry.resolve_defense = resolve_defense
sys.argv[0] = "run_train.py"
runpy.run_path("run_train.py", run_name="__main__")
"""


def _run_patched(body, *args):
    code = _PATCHED_RUN_TRAIN.format(body="\n".join("    " + ln for ln in body.splitlines()))
    return _run("-c", code, "--config", "configs/mnist_tiny.py", *args)


def _assert_traceback(r, *needles):
    """Exit status 1, Python's traceback, and not the CLI's one-line error."""
    assert r.returncode == 1, r.stderr[-3000:]
    assert "Traceback (most recent call last)" in r.stderr, r.stderr[-3000:]
    assert not any(ln.startswith("error:") for ln in r.stderr.splitlines()), r.stderr[-3000:]
    for n in needles:
        assert n in r.stderr, r.stderr[-3000:]


def _assert_one_line(r, *needles):
    assert r.returncode == 2, r.stderr[-3000:]
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in r.stderr, r.stderr[-3000:]
    for n in needles:
        assert n in lines[0], lines[0]


def test_cli_shows_the_traceback_of_an_internal_value_error(tmp_path):
    """A ValueError of a bug in library code is not a user error: its traceback is shown."""
    r = _run_patched('raise ValueError("internal: shapes (3,) and (4,) do not match")', f"--config.workdir={tmp_path}")
    _assert_traceback(r, "ValueError: internal: shapes (3,) and (4,) do not match", "in resolve_defense")
    assert not any(tmp_path.iterdir())


def test_cli_shows_the_traceback_of_a_config_typo_in_library_code(tmp_path):
    """``config.train.num_stpes`` in library code raises AttributeError inside ml_collections: a bug,
    shown with its traceback, never reported as an unknown key of the user's overrides."""
    r = _run_patched("return config.train.num_stpes", f"--config.workdir={tmp_path}", "--config.train.num_steps=3")
    _assert_traceback(r, "AttributeError", "num_stpes", "in resolve_defense")
    assert "unknown config key" not in r.stderr


def test_cli_bad_config_key_on_the_command_line_is_one_line():
    r = _run("run_train.py", "--config", "configs/mnist_tiny.py", "--config.train.num_stpes=3")
    _assert_one_line(r, "unknown config key 'num_stpes'", "--config.train.num_stpes=3", 'Did you mean "num_steps"')


def test_cli_prints_a_user_error_raised_in_library_code_as_one_line(tmp_path):
    r = _run_patched('raise ConfigError("config.ipgan.eps_inv=7 must be in (0, 1]")', f"--config.workdir={tmp_path}")
    _assert_one_line(r, "error: config.ipgan.eps_inv=7 must be in (0, 1]")


def test_stage_defense_with_a_missing_classifier_names_the_command(tmp_path):
    """No hidden training: --config.stage=defense on a workdir without the target is one line that names
    the command training it, and nothing is trained or created."""
    wd = tmp_path / "wd"
    r = _run("run_train.py", "--config", "configs/mnist_tiny.py", f"--config.workdir={wd}", "--config.stage=defense")
    _assert_one_line(r, "lenet", f"python run_train.py --config configs/mnist.py --config.stage=classifier "
                              f"--config.classifier=lenet --config.workdir={wd}", "--config.stage=all")
    assert not wd.exists()


@pytest.mark.slow
def test_stage_all_trains_the_missing_classifiers_explicitly_before_the_defense(tmp_path):
    """The default stage on a fresh workdir trains, in the open, the target and the surrogate of
    config.ipgan.attack_sources, then the defense; a second run trains no classifier again."""
    wd = tmp_path / "wd"
    args = ("run_train.py", "--config", "configs/mnist_tiny.py", f"--config.workdir={wd}",
            "--config.ipgan.attack_sources=target,lenet_s1", "--config.classifier_train.num_steps=10",
            "--config.train.num_steps=2", "--config.train.eval_every=2", "--config.train.sample_every=2")
    r = _run(*args, env={"IPGAN_PROGRESS": "0"})
    assert r.returncode == 0, r.stderr[-3000:]
    lines = r.stdout.splitlines()
    trained = [ln.split()[2] for ln in lines if ln.startswith("training classifier ")]
    assert trained == ["lenet", "lenet_s1"], r.stdout
    assert lines[-1].startswith("defense ipgan on lenet:")
    for name in ("lenet", "lenet_s1"):
        assert (wd / "classifiers" / name / "params").is_dir()
    assert (wd / "defenses" / "ipgan" / "lenet" / "params").is_dir()
    r = _run(*args, "--config.train.num_steps=4", env={"IPGAN_PROGRESS": "0"})   # resumes the defense only
    assert r.returncode == 0, r.stderr[-3000:]
    assert not [ln for ln in r.stdout.splitlines() if ln.startswith(("training classifier", "classifier "))], r.stdout


def test_constructors_never_train_a_missing_surrogate(trained_tiny, tmp_path):
    """IP-GAN's constructor loads the surrogates of config.ipgan.attack_sources and train_defense checks
    every classifier it needs first; a missing one is a ClassifierNotFoundError naming its command, and
    no classifier is trained."""
    from ipgan_jax.defenses import train_defense
    from ipgan_jax.defenses.ipgan import IPGANTrainer
    from ipgan_jax.defenses.train import missing_classifiers, required_classifiers
    from ipgan_jax.errors import UserError
    from ipgan_jax.training.classifier import ClassifierNotFoundError
    c = trained_tiny.copy_and_resolve_references()
    c.workdir = str(tmp_path / "wd")
    assert missing_classifiers(c) == ["lenet"]
    with pytest.raises(ClassifierNotFoundError, match=r"lenet.*--config.stage=classifier --config.classifier=lenet"):
        train_defense(c)
    os.makedirs(classifier_dir(c, "lenet").parent)
    os.symlink(classifier_dir(trained_tiny, "lenet"), classifier_dir(c, "lenet"))
    c.ipgan.attack_sources = "target,lenet_s1,target"
    c.train.monitor_sources = "mcnn_s1"
    assert required_classifiers(c) == ["lenet", "lenet_s1", "mcnn_s1"]
    assert missing_classifiers(c) == ["lenet_s1", "mcnn_s1"]
    with pytest.raises(ClassifierNotFoundError, match="--config.classifier=lenet_s1") as e:
        IPGANTrainer(c, *load_classifier(c))
    assert isinstance(e.value, UserError) and isinstance(e.value, FileNotFoundError)
    with pytest.raises(ClassifierNotFoundError, match=r"lenet_s1, mcnn_s1.*classifier=lenet_s1.*classifier=mcnn_s1"):
        train_defense(c)
    assert sorted(p.name for p in classifier_dir(c, "lenet").parent.iterdir()) == ["lenet"]   # nothing trained
    assert not (tmp_path / "wd" / "defenses").exists()


def test_required_classifiers_follow_the_method_config(tiny_config):
    """The surrogates a defense needs are read as its trainer reads them: a variant's own section overrides
    config.ipgan.attack_sources; a defense without attack sources needs only the target (and the monitor's)."""
    from ipgan_jax.defenses.train import required_classifiers
    c = tiny_config
    c.ipgan.attack_sources = "target,target,lenet_s1,alexnet_s1"
    c.train.monitor_sources = "mcnn_s1,lenet_s1"
    assert required_classifiers(c) == ["lenet", "lenet_s1", "alexnet_s1", "mcnn_s1"]
    c.ipgan.adaptive = True                                           # trains ipgan_adaptive
    c.ipgan_adaptive.attack_sources = "target,mcnn"
    assert required_classifiers(c) == ["lenet", "mcnn", "mcnn_s1", "lenet_s1"]
    c.ipgan.adaptive, c.defense = False, "dae"
    assert required_classifiers(c) == ["lenet", "mcnn_s1", "lenet_s1"]


@pytest.mark.slow
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
