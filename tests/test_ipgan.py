"""IP-GAN: fusion, losses on known inputs, frozen target, train-step behaviour, resume, end to end."""
import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ipgan_jax.defenses import defense_dir, load_defense, losses, train_defense
from ipgan_jax.defenses.ipgan import IPGANTrainer
from ipgan_jax.models.discriminator import get_discriminator
from ipgan_jax.models.fusion import fuse
from ipgan_jax.models.generator import get_generator
from ipgan_jax.testing.suite import sharing_classifier
from ipgan_jax.training.classifier import load_classifier
from ipgan_jax.training.logging import read_metrics

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_fusion_bounds_and_identity():
    x = jax.random.uniform(jax.random.PRNGKey(0), (4, 28, 28, 1))
    g = 10 * jax.random.normal(jax.random.PRNGKey(1), x.shape)
    r = fuse(x, g, 0.3)
    assert float(jnp.max(jnp.abs(r - x))) <= 0.3 + 1e-6
    assert float(r.min()) >= 0 and float(r.max()) <= 1
    np.testing.assert_allclose(fuse(x, jnp.zeros_like(x), 0.3), x)


@pytest.mark.parametrize("size,ch", [(28, 1), pytest.param(64, 3, marks=pytest.mark.slow),
                                     pytest.param(75, 3, marks=pytest.mark.slow)])
def test_generator_and_discriminator_shapes(size, ch):
    g = get_generator("unet", ch, 8, size)
    x = jnp.zeros((2, size, size, ch))
    p = g.init(jax.random.PRNGKey(0), x)
    assert g.apply(p, x).shape == x.shape
    # zero-initialised head: a fresh G is the identity defense
    assert float(jnp.abs(g.apply(p, x)).max()) == 0.0
    d = get_discriminator("dcgan" if size == 28 else "patchgan", 8)
    assert d.apply(d.init(jax.random.PRNGKey(0), x), x).shape[0] == 2


def test_loss_terms_on_known_inputs():
    x = jnp.zeros((2, 4, 4, 1))
    assert float(losses.pixel_loss(x + 0.5, x)) == pytest.approx(0.25)
    assert float(losses.feature_loss(jnp.ones((2, 3)), jnp.zeros((2, 3)))) == pytest.approx(1.0)
    big = jnp.full((2,), 50.0)
    assert float(losses.gan_generator_loss(big)) == pytest.approx(0.0, abs=1e-6)
    assert float(losses.gan_generator_loss(jnp.zeros(2))) == pytest.approx(np.log(2), rel=1e-5)
    assert float(losses.gan_discriminator_loss(big, -big)) == pytest.approx(0.0, abs=1e-6)
    assert float(losses.gan_discriminator_loss(jnp.zeros(2), jnp.zeros(2))) == pytest.approx(2 * np.log(2), rel=1e-5)
    logits = jnp.array([[0.0, np.log(3.0)], [0.0, 0.0]])
    ce = losses.classification_loss(logits, jnp.array([1, 0]))
    assert float(ce) == pytest.approx((-np.log(0.75) + np.log(2)) / 2, rel=1e-5)


def _batch(config, n=32):
    from ipgan_jax.data.pipeline import make_loader
    b = make_loader("mnist", "train", n, seed=0, num_examples=512).batch(0)
    return {"image": jnp.asarray(b["image"]), "label": jnp.asarray(b["label"])}


@pytest.mark.slow
def test_train_steps_reduce_g_loss_and_keep_target_frozen(trained_tiny):
    c = trained_tiny.copy_and_resolve_references()
    module, variables = load_classifier(c)
    before = jax.tree.map(np.array, variables)
    trainer = IPGANTrainer(c, module, variables)
    state = trainer.init_state(jax.random.PRNGKey(0))
    batch = _batch(c)
    x_in = trainer.make_adversarial(batch["image"], batch["label"], jax.random.PRNGKey(3))
    loss0 = float(trainer.generator_loss(state["g"], state["d"], x_in, batch["image"], batch["label"])[0])
    step = jax.jit(trainer.train_step)
    for _ in range(8):
        state, m = step(state, batch, jax.random.PRNGKey(1))
    loss1 = float(trainer.generator_loss(state["g"], state["d"], x_in, batch["image"], batch["label"])[0])
    assert loss1 < loss0
    assert int(state["step"]) == 8
    # f's variables -- as the trainer holds them and as stored on disk -- equal the copy taken before training
    for held in (trainer.target_variables, load_classifier(c)[1]):
        assert jax.tree.structure(held) == jax.tree.structure(before)
        for a, b in zip(jax.tree.leaves(before), jax.tree.leaves(held)):
            np.testing.assert_array_equal(a, np.asarray(b))
    # the train step never differentiates w.r.t. f: its variables are not in the state, and the
    # generator loss has zero gradient with respect to them (f is wrapped in stop_gradient)
    assert set(state) == {"step", "g", "d", "g_opt", "d_opt"}

    def loss_wrt_f(v):
        t = IPGANTrainer(c, module, v)
        return t.generator_loss(state["g"], state["d"], x_in, batch["image"], batch["label"])[0]
    g_f = jax.grad(loss_wrt_f)(jax.tree.map(jnp.asarray, before))
    assert all(float(jnp.abs(g).max()) == 0.0 for g in jax.tree.leaves(g_f))


def test_training_attack_mix_respects_budget(trained_tiny):
    c = trained_tiny.copy_and_resolve_references()
    module, variables = load_classifier(c)
    trainer = IPGANTrainer(c, module, variables)
    batch = _batch(c)
    x_in = trainer.make_adversarial(batch["image"], batch["label"], jax.random.PRNGKey(5))
    delta = np.abs(np.asarray(x_in - batch["image"])).reshape(32, -1).max(1)
    n_clean = int(round(c.ipgan.clean_fraction * 32))
    assert (delta[:n_clean] == 0).all()          # clean part untouched
    assert (delta[n_clean:] > 0.05).all() and (delta <= 0.3 + 1e-6).all()


@pytest.mark.slow
def test_same_ipgan_step_on_1_and_8_devices(trained_tiny):
    from ipgan_jax.training import parallel
    c = trained_tiny.copy_and_resolve_references()
    module, variables = load_classifier(c)
    trainer = IPGANTrainer(c, module, variables)
    batch = _batch(c)
    outs = []
    for devices in (jax.devices()[:1], jax.devices()):
        mesh = parallel.make_mesh(devices)
        rep, dat = parallel.replicated(mesh), parallel.data_sharded(mesh)
        step = jax.jit(trainer.train_step, in_shardings=(rep, dat, rep), out_shardings=(rep, rep))
        state = parallel.replicate(trainer.init_state(jax.random.PRNGKey(0)), mesh)
        for _ in range(2):
            state, m = step(state, parallel.shard_batch(jax.device_get(batch), mesh), jax.random.PRNGKey(2))
        outs.append((jax.device_get(state["g"]), float(m["g_loss"])))
    assert abs(outs[0][1] - outs[1][1]) < 1e-4
    for a, b in zip(jax.tree.leaves(outs[0][0]), jax.tree.leaves(outs[1][0])):
        np.testing.assert_allclose(a, b, atol=1e-4, rtol=1e-3)


@pytest.mark.slow
def test_resume_after_kill_equals_uninterrupted(trained_tiny, tmp_path):
    full = sharing_classifier(trained_tiny, tmp_path / "full")
    c = sharing_classifier(trained_tiny, tmp_path / "killed")
    train_defense(full)
    train_defense(c, max_steps=4)       # killed after step 4; last checkpoint at step 3
    assert not (defense_dir(c) / "params").exists()
    train_defense(c)
    fa, _ = load_defense(full, "ipgan")
    fb, _ = load_defense(c, "ipgan")
    x = _batch(c, 8)["image"]
    np.testing.assert_array_equal(np.asarray(fa(x)), np.asarray(fb(x)))
    steps = [r["step"] for r in read_metrics(defense_dir(c) / "metrics.jsonl") if "g_loss" in r]
    assert steps == sorted(set(steps))


@pytest.mark.slow
def test_lr_decay_scales_the_updates_from_its_boundary_on(trained_tiny):
    """lr_decay_steps=(1,): the first update is the plain one, the second exactly lr_decay_factor
    times the plain second update (Adam's update is linear in lr; same grads, same Adam state)."""
    c = trained_tiny.copy_and_resolve_references()
    module, variables = load_classifier(c)
    batch = _batch(c)
    runs = {}
    for bounds in ((), (1,)):
        c.ipgan.lr_decay_steps, c.ipgan.lr_decay_factor = bounds, 0.25
        trainer = IPGANTrainer(c, module, variables)
        step = jax.jit(trainer.train_step)
        states = [trainer.init_state(jax.random.PRNGKey(0))]
        for _ in range(2):
            states.append(step(states[-1], batch, jax.random.PRNGKey(1))[0])
        runs[bounds] = [jax.device_get({k: s[k] for k in ("g", "d")}) for s in states]
    plain, decayed = runs[()], runs[(1,)]
    for a, b in zip(jax.tree.leaves(plain[1]), jax.tree.leaves(decayed[1])):
        np.testing.assert_array_equal(a, b)
    moved = 0
    for p0, p2, q2 in zip(jax.tree.leaves(plain[1]), jax.tree.leaves(plain[2]), jax.tree.leaves(decayed[2])):
        ulps = 4 * np.spacing(np.float32(np.abs(p0).max()))   # the differences are of float32 params
        np.testing.assert_allclose(q2 - p0, 0.25 * (p2 - p0), rtol=1e-3, atol=ulps)
        moved += int(np.abs(p2 - p0).max() > 1e-6)
    assert moved > 0
    for bad in (dict(lr_decay_steps=(0,)), dict(lr_decay_factor=0.0), dict(lr_decay_factor=1.5)):
        c2 = trained_tiny.copy_and_resolve_references()
        c2.ipgan.update(bad)
        with pytest.raises(ValueError, match="lr_decay"):
            IPGANTrainer(c2, module, variables)
    for bad in (("a", "b", "c"), (2.5,)):     # --config.ipgan.lr_decay_steps=abc parses as ('a', 'b', 'c')
        c2 = trained_tiny.copy_and_resolve_references()
        c2.ipgan.lr_decay_steps = bad
        with pytest.raises(ValueError, match=r"config.ipgan.lr_decay_steps=.* must be a tuple of step numbers"):
            IPGANTrainer(c2, module, variables)


@pytest.mark.slow
def test_resumed_with_a_decay_equals_trained_with_it(trained_tiny, tmp_path):
    """The use case: a finished run continued to more steps with a decay at its last step is the
    run trained with that schedule from the start."""
    def config(name, steps, bounds):
        c = sharing_classifier(trained_tiny, tmp_path / name)
        c.train.num_steps, c.ipgan.lr_decay_steps = steps, bounds
        return c
    train_defense(config("scheduled", 6, (3,)))
    train_defense(config("continued", 3, ()))
    train_defense(config("continued", 6, (3,)))
    x = _batch(trained_tiny, 8)["image"]
    outs = [np.asarray(load_defense(config(n, 6, (3,)), "ipgan")[0](x)) for n in ("scheduled", "continued")]
    np.testing.assert_array_equal(*outs)
    plain = config("plain", 6, ())
    train_defense(plain)
    assert np.abs(np.asarray(load_defense(plain, "ipgan")[0](x)) - outs[0]).max() > 0   # the decay did act


@pytest.mark.slow
def test_run_train_end_to_end(tmp_path):
    wd = tmp_path / "wd"
    r = subprocess.run([sys.executable, "run_train.py", "--config", "configs/mnist_tiny.py",
                        f"--config.workdir={wd}"], cwd=ROOT, capture_output=True, text=True,
                       env=dict(os.environ, IPGAN_PROGRESS="0"))
    assert r.returncode == 0, r.stderr[-3000:]
    d = wd / "defenses" / "ipgan" / "lenet"
    assert (d / "params").is_dir() and (d / "checkpoints").is_dir()
    rows = read_metrics(d / "metrics.jsonl")
    assert any("g_loss" in r for r in rows) and any("eval/pgd/dsr" in r for r in rows)
    assert (d / "samples" / "final.png").stat().st_size > 1000
    assert list((d / "tb").glob("events.out.tfevents.*"))
    meta = json.loads((d / "result.json").read_text())
    assert meta["defense"] == "ipgan" and meta["steps"] == 6


def test_monitor_transfer_sources(trained_tiny, monkeypatch):
    """config.train.monitor_sources: each training attack is also crafted on the named classifiers and
    judged on f. A copy of f as the source reproduces the deterministic FGSM numbers of f itself; a
    source with constant logits (zero gradient) crafts nothing, so nothing transfers; bad names fail."""
    from ipgan_jax.defenses import train as train_mod
    c = trained_tiny.copy_and_resolve_references()
    module, variables = load_classifier(c)
    zero = jax.tree_util.tree_map(jnp.zeros_like, variables)
    fake = {"lenet_copy": (module, variables), "lenet_flat": (module, zero)}
    monkeypatch.setattr(train_mod, "load_classifier", lambda cfg, name: fake[name])
    c.train.monitor_sources = "lenet_copy, lenet_flat"
    trainer = IPGANTrainer(c, module, variables)
    params = trainer.init_state(jax.random.PRNGKey(0))["g"]
    monitor, _ = train_mod.make_monitor(c, trainer)
    b = _batch(c)
    m = {k: float(v) for k, v in monitor(params, b["image"], b["label"], jax.random.PRNGKey(1)).items()}
    assert m["fgsm/asr"] > 0.3
    assert m["fgsm@lenet_copy/asr"] == m["fgsm/asr"] and m["fgsm@lenet_copy/dsr"] == m["fgsm/dsr"]
    assert m["fgsm@lenet_flat/asr"] == 0.0 and m["pgd@lenet_flat/asr"] < m["pgd/asr"]
    for name in [a["name"] for a in c.train_attacks]:
        assert f"{name}@lenet_copy/dsr" in m and 0.0 <= m[f"{name}@lenet_copy/dsr"] <= 1.0
    for bad in ("target", c.classifier, "lenet_copy,target"):
        c.train.monitor_sources = bad
        with pytest.raises(ValueError, match="monitor_sources"):
            train_mod.make_monitor(c, trainer)
    monkeypatch.undo()
    c.train.monitor_sources = "lenet_missing"
    with pytest.raises(FileNotFoundError, match="lenet_missing"):
        train_mod.make_monitor(c, trainer)
