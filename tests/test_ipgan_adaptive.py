"""Adaptive IP-GAN (ipgan_adaptive): straight-through fusion, rows crafted through the current
pipeline, frozen G inside the attack, the white-box monitor, training end to end, the binarisation
control."""
import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from ipgan_jax.defenses import defense_dir, load_defense, train_defense
from ipgan_jax.defenses.ipgan_adaptive import AdaptiveIPGANTrainer
from ipgan_jax.defenses.registry import binarize, resolve_defense
from ipgan_jax.models.fusion import FUSION_VIEWS, HYBRID_MIN_GRAD, fuse, fuse_straight_through
from ipgan_jax.testing.suite import sharing_classifier
from ipgan_jax.training.classifier import load_classifier
from ipgan_jax.training.logging import read_metrics


def _batch(n=32):
    from ipgan_jax.data.pipeline import make_loader
    b = make_loader("mnist", "train", n, seed=0, num_examples=512).batch(0)
    return {"image": jnp.asarray(b["image"]), "label": jnp.asarray(b["label"])}


class _Binariser(nn.Module):
    """A 'generator' that learned to binarise: raw = scale * (x - 0.5), so x_rec = clip(x + eps_inv
    * tanh(raw)) is ~{0, 1} and the exact gradient vanishes almost everywhere (tanh and clip saturate)."""

    @nn.compact
    def __call__(self, x):
        return self.param("scale", lambda k: jnp.asarray(50.0)) * (x - 0.5)


def _trainer(config, **over):
    c = config.copy_and_resolve_references()
    c.ipgan_adaptive.update(over)
    return AdaptiveIPGANTrainer(c, *load_classifier(c))


def test_straight_through_fusion_same_forward_nonzero_gradient():
    x = jax.random.uniform(jax.random.PRNGKey(0), (4, 28, 28, 1))
    raw = 50.0 * (x - 0.5)
    np.testing.assert_array_equal(np.asarray(fuse_straight_through(x, raw, 0.5)), np.asarray(fuse(x, raw, 0.5)))

    def grad(fn):
        return jax.grad(lambda z: jnp.sum(fn(z, 50.0 * (z - 0.5), 0.5)))(x)
    g_exact, g_st = np.asarray(grad(fuse)), np.asarray(grad(fuse_straight_through))
    away = np.abs(np.asarray(x) - 0.5) > 0.1          # tanh and the clip saturate here
    assert np.all(g_exact[away] == 0.0)
    np.testing.assert_allclose(g_st, 1.0 + 0.5 * 50.0, rtol=1e-6)   # d/dz (z + 0.5 * 50 (z - 0.5))


def test_every_fusion_view_has_fuse_value_and_its_own_backward_pass():
    """exact: zero where tanh or the clip saturates; straight_through: the identity for both; hybrid: tanh's
    exact derivative where it is usable, 1 where saturated, the clip passed; smooth: tanh exact and a
    clip derivative that decays over the softplus temperature outside [0, 1] instead of dropping to 0."""
    x = jax.random.uniform(jax.random.PRNGKey(0), (4, 28, 28, 1))
    raw = jax.random.normal(jax.random.PRNGKey(1), x.shape) * 4.0        # some tanh saturated, some not
    for name, fn in FUSION_VIEWS.items():
        np.testing.assert_array_equal(np.asarray(fn(x, raw, 0.5)), np.asarray(fuse(x, raw, 0.5)), err_msg=name)

    def grads(fn):   # d x_rec / d raw, per pixel
        return np.asarray(jax.grad(lambda r: jnp.sum(fn(x, r, 0.5)))(raw))
    pre = np.asarray(x + 0.5 * jnp.tanh(raw))
    inside = (pre > 0) & (pre < 1)
    dtanh = 1.0 - np.tanh(np.asarray(raw)) ** 2
    g = {name: grads(fn) for name, fn in FUSION_VIEWS.items()}
    np.testing.assert_allclose(g["exact"], np.where(inside, 0.5 * dtanh, 0.0), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(g["straight_through"], 0.5, rtol=1e-6)
    usable = dtanh >= HYBRID_MIN_GRAD
    assert (~usable).any() and usable.any() and (~inside).any()
    np.testing.assert_allclose(g["hybrid"], np.where(usable, 0.5 * dtanh, 0.5), rtol=1e-4, atol=1e-6)
    sm = g["smooth"][usable] / (0.5 * dtanh[usable])                      # the smooth clip's derivative
    pre, inside = pre[usable], inside[usable]
    assert np.all(sm[inside & (np.minimum(pre, 1 - pre) > 0.3)] > 0.99)
    out = ~inside & (np.maximum(-pre, pre - 1) < 0.05)                    # just outside: not zero
    assert out.any() and np.all(sm[out] > 0.2) and np.all(sm <= 1.0 + 1e-4)


@pytest.mark.slow
def test_adaptive_rows_are_crafted_through_the_frozen_pipeline(trained_tiny, monkeypatch):
    t = _trainer(trained_tiny, fraction=0.5)
    state = t.init_state(jax.random.PRNGKey(0))
    leaves, tree = jax.tree.flatten(state["g"])          # a G that is not the identity (zero head)
    keys = jax.random.split(jax.random.PRNGKey(9), len(leaves))
    state["g"] = jax.tree.unflatten(tree, [p + 0.2 * jax.random.normal(k, p.shape) for p, k in zip(leaves, keys)])
    b = _batch()
    lo, hi = t.adaptive_rows(32)
    assert (lo, hi) == (8, 20)           # clean_fraction 0.25: 8 clean rows, half of the other 24
    seen = {}

    def spy(logits_fn, x, y, key):
        seen["fn"], seen["n"] = logits_fn, x.shape[0]
        return jnp.clip(x + 0.3, 0.0, 1.0)
    monkeypatch.setattr(t, "pipeline_attack", spy)
    x_in = t.training_inputs(state, b["image"], b["label"], jax.random.PRNGKey(1))
    oblivious = t.make_adversarial(b["image"], b["label"], jax.random.PRNGKey(1))
    np.testing.assert_array_equal(np.asarray(x_in[:lo]), np.asarray(b["image"][:lo]))          # clean
    np.testing.assert_array_equal(np.asarray(x_in[lo:hi]), np.asarray(jnp.clip(b["image"][lo:hi] + 0.3, 0, 1)))
    np.testing.assert_array_equal(np.asarray(x_in[hi:]), np.asarray(oblivious[hi:]))           # oblivious mix
    assert seen["n"] == hi - lo
    # the attacked model is f(defend(g, .)) with G's params frozen (no gradient reaches them)
    z = b["image"][:4]
    assert float(jnp.abs(t.defend(state["g"], z) - z).max()) > 0.05
    np.testing.assert_allclose(np.asarray(seen["fn"](z)), np.asarray(t.target_logits(t.defend(state["g"], z))),
                               rtol=1e-6, atol=1e-6)
    g_grad = jax.grad(lambda g: jnp.sum(t.pipeline_logits(g)(z)))(state["g"])
    assert all(float(jnp.abs(leaf).max()) == 0.0 for leaf in jax.tree.leaves(g_grad))


def test_real_pipeline_attack_stays_in_budget_and_beats_the_oblivious_rows(trained_tiny):
    t = _trainer(trained_tiny, fraction=1.0)
    state = t.init_state(jax.random.PRNGKey(0))     # fresh G: the identity defense, so the pipeline is f
    b = _batch()
    x_in = jax.jit(t.training_inputs)(state, b["image"], b["label"], jax.random.PRNGKey(2))
    lo, hi = t.adaptive_rows(32)
    assert hi == 32
    delta = np.abs(np.asarray(x_in - b["image"])).reshape(32, -1).max(1)
    assert (delta[:lo] == 0).all() and (delta[lo:] <= 0.3 + 1e-6).all() and (delta[lo:] > 0.1).all()
    wrong = np.asarray(jnp.argmax(t.target_logits(x_in[lo:]), -1) != b["label"][lo:])
    assert wrong.mean() > 0.8             # PGD-3 (tiny config) at eps 0.3 breaks the tiny LeNet


@pytest.mark.parametrize("monitor_attack", ["pgd", "apgd"])
@pytest.mark.slow
def test_monitor_catches_a_binarising_generator(trained_tiny, monitor_attack):
    """The exact white-box attack (PGD or APGD-CE) is stuck on a masking (binarising) G; the
    straight-through one is not, and the monitor's minimum takes the stronger."""
    t = _trainer(trained_tiny, monitor_steps=10, monitor_attack=monitor_attack)
    t.generator = _Binariser()
    params = {"scale": jnp.asarray(50.0)}
    b = _batch(64)
    x, y = b["image"], b["label"]
    g_exact = jax.grad(lambda z: jnp.sum(jax.nn.log_softmax(t.pipeline_logits(params)(z))[:, 0]))(x)
    g_st = jax.grad(lambda z: jnp.sum(jax.nn.log_softmax(
        t.pipeline_logits(params, straight_through=True)(z))[:, 0]))(x)
    zero_exact, zero_st = float(jnp.mean(g_exact == 0)), float(jnp.mean(g_st == 0))
    assert zero_exact > 0.9 and zero_st < 0.1, (zero_exact, zero_st)   # masked only through tanh/clip
    m = jax.device_get(jax.jit(t.monitor_metrics)(params, x, y, jax.random.PRNGKey(0)))
    assert float(m["whitebox_st/acc"]) < float(m["whitebox/acc"])
    assert float(m["whitebox_min/acc"]) <= min(float(m["whitebox/acc"]), float(m["whitebox_st/acc"]))


@pytest.mark.slow
def test_adaptive_flag_trains_ipgan_adaptive_end_to_end(trained_tiny, tmp_path):
    c = sharing_classifier(trained_tiny, tmp_path / "wd")
    c.ipgan.adaptive = True
    assert resolve_defense(c).defense == "ipgan_adaptive" and c.defense == "ipgan"
    out = train_defense(c)
    d = defense_dir(c, "ipgan_adaptive")
    assert (d / "params").is_dir() and not (defense_dir(c, "ipgan") / "params").exists()
    rows = read_metrics(d / "metrics.jsonl")
    assert any("train_adaptive_acc" in r for r in rows)
    assert {"whitebox/acc", "whitebox_st/acc", "whitebox_min/acc"} <= set(out)
    defend, trainer = load_defense(c, "ipgan_adaptive")
    assert isinstance(trainer, AdaptiveIPGANTrainer)
    x = _batch(8)["image"]
    assert defend(x).shape == x.shape


def test_unknown_adaptive_field_and_bad_fraction(trained_tiny):
    with pytest.raises(ValueError, match="unknown field"):
        c = trained_tiny.copy_and_resolve_references()
        c.ipgan_adaptive.unlock()
        c.ipgan_adaptive.fractoin = 0.5
        AdaptiveIPGANTrainer(c, *load_classifier(c))
    with pytest.raises(ValueError, match="fraction"):
        _trainer(trained_tiny, fraction=1.5)
    with pytest.raises(ValueError, match="monitor_attack"):
        _trainer(trained_tiny, monitor_attack="square")
    with pytest.raises(ValueError, match="monitor_steps"):   # at construction, not at the first monitor
        _trainer(trained_tiny, monitor_steps=0)


def test_binarisation_control_needs_no_training(tiny_config):
    defend, trainer = load_defense(tiny_config, "binarize", target=(None, None))
    x = jnp.asarray([[[[0.2], [0.5], [0.51], [1.0]]]])
    assert trainer is None
    np.testing.assert_array_equal(np.asarray(defend(x)).ravel(), [0.0, 0.0, 1.0, 1.0])
    assert defend is binarize
    assert tiny_config.eval.whitebox_per_defense.binarize.bpda     # attacked with BPDA by default


@pytest.mark.slow
def test_attack_phases_switch_the_pipeline_attack_at_their_start(trained_tiny):
    """attack_phases ((2, 6, 0.05),): updates 0 and 1 craft with the configured attack (tiny: PGD-3,
    step 0.15), updates from 2 on with PGD-6 of step 0.05, the same key; the two differ."""
    phased = _trainer(trained_tiny, fraction=1.0, attack_phases=((2, 6, 0.05),))
    early = _trainer(trained_tiny, fraction=1.0)
    late_spec = {**dict(trained_tiny.ipgan_adaptive.attack), "steps": 6, "step_size": 0.05}
    late = _trainer(trained_tiny, fraction=1.0, attack=late_spec)
    state = phased.init_state(jax.random.PRNGKey(0))
    b = _batch()
    key = jax.random.PRNGKey(4)

    def inputs(t, step):
        return np.asarray(jax.jit(t.training_inputs)({**state, "step": jnp.asarray(step, jnp.int32)},
                                                     b["image"], b["label"], key))
    want_early, want_late = inputs(early, 0), inputs(late, 0)
    assert np.abs(want_early - want_late).max() > 0.05
    for step, want in ((0, want_early), (1, want_early), (2, want_late), (7, want_late)):
        np.testing.assert_allclose(inputs(phased, step), want, atol=1e-6)


def test_bad_attack_phases_are_clear_errors(trained_tiny):
    for bad in ((0, 20, 0.04), (10, 0, 0.04), (10, 20, 0.0), (10, 2.5, 0.04), (10, 20)):
        with pytest.raises(ValueError, match="attack_phases"):
            _trainer(trained_tiny, attack_phases=(bad,))
    with pytest.raises(ValueError, match="attack_phases"):          # the outer tuple forgotten
        _trainer(trained_tiny, attack_phases=(10, 20, 0.04))
    with pytest.raises(ValueError, match="same step"):
        _trainer(trained_tiny, attack_phases=((10, 20, 0.04), (10, 30, 0.03)))
    c = trained_tiny.copy_and_resolve_references()
    c.ipgan_adaptive.attack = ml_collections.ConfigDict(dict(name="fgsm", eps=0.3))
    AdaptiveIPGANTrainer(c, *load_classifier(c))                   # FGSM alone is fine
    c.ipgan_adaptive.attack_phases = ((10, 20, 0.04),)
    with pytest.raises(ValueError, match="attack_phases.*fgsm"):    # but it has no steps to set
        AdaptiveIPGANTrainer(c, *load_classifier(c))
    t = _trainer(trained_tiny, attack_phases=((30, 20, 0.04), (10, 10, 0.05)))
    assert t.attack_phases == ((10, 10, 0.05), (30, 20, 0.04))      # sorted by start


@pytest.mark.slow
def test_continued_with_a_phase_equals_trained_with_it(trained_tiny, tmp_path):
    """The curriculum's use case: a finished run continued with a phase starting at its last step
    is the run trained with that phase from the start."""
    def config(name, steps, phases):
        c = sharing_classifier(trained_tiny, tmp_path / name)
        c.ipgan.adaptive = True
        c.train.num_steps = steps
        c.ipgan_adaptive.attack_phases = phases
        return c
    phases = ((3, 6, 0.05),)
    train_defense(config("scheduled", 6, phases))
    train_defense(config("continued", 3, ()))
    train_defense(config("continued", 6, phases))
    train_defense(config("plain", 6, ()))
    x = _batch(8)["image"]
    out = {n: np.asarray(load_defense(config(n, 6, phases), "ipgan_adaptive")[0](x))
           for n in ("scheduled", "continued", "plain")}
    np.testing.assert_array_equal(out["scheduled"], out["continued"])
    assert np.abs(out["plain"] - out["scheduled"]).max() > 0      # the phase did act
