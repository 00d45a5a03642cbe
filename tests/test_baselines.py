"""The five Table-1 baselines: layers, training signal, frozen target, harness plug-in, specifics."""
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from ipgan_jax.defenses import DEFENSES, defense_dir, load_defense, train_defense
from ipgan_jax.models.fast_conv import Conv, ConvTranspose, StridedConv
from ipgan_jax.training.classifier import load_classifier

BASELINES = ("ape_gan", "defense_gan", "dae", "uipd", "grip_gan")


@pytest.fixture(scope="module")
def stepper(trained_tiny):
    """name -> (trainer, jitted train_step), built once per module (compiles once)."""
    cache = {}

    def get(name):
        if name not in cache:
            # GRIP-GAN starts as the identity on clean data (zero-init head), and APE-GAN's pixel loss moves by
            # less than its GAN term's noise in six steps at lr 2e-4 on some batches (on MNIST's canonical first
            # 32 training images it rose by 0.1%): a larger lr shows their signal within a few steps
            trainer = _trainer(trained_tiny, name, **({"lr_g": 2e-3} if name in ("grip_gan", "ape_gan") else {}))
            cache[name] = (trainer, jax.jit(trainer.train_step))
        return cache[name]

    return get


def _batch(n=32):
    from ipgan_jax.data.pipeline import make_loader
    b = make_loader("mnist", "train", n, seed=0, num_examples=512).batch(0)
    return {"image": jnp.asarray(b["image"]), "label": jnp.asarray(b["label"])}


def _trainer(config, name, **overrides):
    c = config.copy_and_resolve_references()
    c.defense = name
    c[name].update(overrides)
    module, variables = load_classifier(c)
    return DEFENSES[name](c, module, variables)


def _own_loss(trainer, name, batch):
    """A fixed-input evaluation of the defense's own training objective: state -> scalar."""
    x, y = batch["image"], batch["label"]
    key = jax.random.PRNGKey(3)
    if name == "ape_gan":
        x_adv = trainer.make_adversarial(x, y, key)
        return lambda s: trainer.generator_loss(s["g"], s["g_stats"], s["d"], s["d_stats"], x_adv, x)[1][0]["pix"]
    if name == "defense_gan":
        z, alpha = trainer._noise(key, x.shape[0])
        return lambda s: trainer.critic_loss(s["d"], s["g"], x, z, alpha)[0]
    if name == "dae":
        x_in = trainer.make_inputs(x, y, key)
        return lambda s: trainer.loss(s["params"], x_in, x)
    if name == "uipd":
        return lambda s: trainer.loss(s["w"], x, y)[0]
    if name == "grip_gan":   # the target-guided part (on clean x the GAN term starts at its optimum)
        x_in = trainer.make_adversarial(x, y, key)

        def guided(s):
            total, (terms, _, _) = trainer.generator_loss(s["g"], s["d"], x_in, x, y)
            return total - trainer.cfg.l_adv * terms["adv"]
        return guided
    raise ValueError(name)


# -- fast layers: same functions (and gradients) as the flax layers they replace -----------
@pytest.mark.parametrize("layer,ref,size", [
    (ConvTranspose(3, 5, 2), nn.ConvTranspose(3, (5, 5), strides=(2, 2), padding="SAME"), 4),
    (StridedConv(3, 5, 2), nn.Conv(3, (5, 5), strides=2, padding="SAME"), 7),
    (Conv(3, 4), nn.Conv(3, (4, 4), padding="SAME"), 9),
])
def test_fast_layers_match_flax(layer, ref, size):
    x = jax.random.normal(jax.random.PRNGKey(0), (2, size, size, 5))
    p = ref.init(jax.random.PRNGKey(1), x)
    p = jax.tree.map(lambda a: a + 0.1 * jax.random.normal(jax.random.PRNGKey(2), a.shape), p)
    assert jax.tree.map(jnp.shape, layer.init(jax.random.PRNGKey(1), x)) == jax.tree.map(jnp.shape, p)
    np.testing.assert_allclose(layer.apply(p, x), ref.apply(p, x), atol=1e-4, rtol=1e-4)
    loss = lambda m: lambda p, x: jnp.sum(jnp.sin(m.apply(p, x)))  # noqa: E731
    ga = jax.grad(loss(ref), argnums=(0, 1))(p, x)
    gb = jax.grad(loss(layer), argnums=(0, 1))(p, x)
    for a, b in zip(jax.tree.leaves(ga), jax.tree.leaves(gb)):
        np.testing.assert_allclose(b, a, atol=1e-3, rtol=1e-3)


# -- training signal and frozen target ------------------------------------------------------
@pytest.mark.parametrize("name", BASELINES)
@pytest.mark.slow
def test_train_steps_reduce_own_loss_and_keep_target_frozen(stepper, name):
    trainer, step = stepper(name)
    before = jax.tree.map(np.array, trainer.target_variables)
    batch = _batch()
    state = trainer.init_state(jax.random.PRNGKey(0))
    loss_fn = jax.jit(_own_loss(trainer, name, batch))
    loss0 = float(loss_fn(state))
    for i in range(6):
        state, metrics = step(state, batch, jax.random.PRNGKey(i))
    loss1 = float(loss_fn(state))
    assert np.isfinite(loss1) and loss1 < loss0, (name, loss0, loss1)
    assert int(state["step"]) == 6
    assert all(np.isfinite(float(v)) for v in metrics.values())
    for a, b in zip(jax.tree.leaves(before), jax.tree.leaves(trainer.target_variables)):
        np.testing.assert_array_equal(a, np.asarray(b))
    # f is closed over as a constant: no state leaf has the shape tree of its params
    assert "target" not in state and all(k in state for k in ("step",))


# -- the evaluation harness: train_defense -> load_defense -> defend_fn with gradients -------
@pytest.mark.parametrize("name", BASELINES)
@pytest.mark.slow
def test_trains_and_plugs_into_harness(trained_tiny, name):
    c = trained_tiny.copy_and_resolve_references()
    c.defense = name
    # the shortest full run: 2 steps, one monitor / sample grid / checkpoint (at the end)
    c.train.update(num_steps=2, log_every=1, eval_every=100, sample_every=100, checkpoint_every=100,
                   eval_batch_size=32)
    clf_before = jax.tree.map(np.array, load_classifier(c)[1])
    res = train_defense(c)
    assert res["steps"] == DEFENSES[name](c, *load_classifier(c)).num_steps() == c.train.num_steps
    assert (defense_dir(c) / "params").is_dir() and (defense_dir(c) / "samples" / "final.png").exists()
    module, variables = load_classifier(c)
    for a, b in zip(jax.tree.leaves(clf_before), jax.tree.leaves(variables)):
        np.testing.assert_array_equal(a, np.asarray(b))
    defend, trainer = load_defense(c, name)
    assert trainer.name == name
    x, y = _batch(8)["image"], _batch(8)["label"]
    out = jax.jit(defend)(x)
    assert out.shape == x.shape and out.dtype == jnp.float32
    assert float(out.min()) >= 0.0 and float(out.max()) <= 1.0

    def loss(x):
        return jnp.mean(optax.softmax_cross_entropy_with_integer_labels(module.apply(variables, defend(x)), y))

    g = jax.jit(jax.grad(loss))(x)
    assert g.shape == x.shape and bool(jnp.all(jnp.isfinite(g))) and float(jnp.abs(g).sum()) > 0


# -- Defense-GAN specifics ------------------------------------------------------------------
@pytest.mark.slow
def test_defense_gan_zsearch_more_steps_lower_error_and_pure(stepper, trained_tiny):
    trainer, _ = stepper("defense_gan")
    # an untrained G is almost constant in z; scaled weights make a G whose range is [0, 1]
    g = jax.tree.map(lambda a: 3.0 * a, trainer.init_state(jax.random.PRNGKey(0))["g"])
    x = trainer.generate(g, jax.random.normal(jax.random.PRNGKey(7), (8, trainer.latent_dim)))
    z0 = trainer.initial_z(x, 3)
    assert z0.shape == (3, 8, trainer.latent_dim)
    search = jax.jit(lambda g, x, z0, steps: trainer.z_search(g, x, steps=steps, restarts=3, z0=z0),
                     static_argnums=3)
    r1, r50 = search(g, x, z0, 1), search(g, x, z0, 50)
    assert float(r50["loss"].mean()) < 0.5 * float(r1["loss"].mean())
    # the best restart is picked, and x_rec is G(z*)
    np.testing.assert_allclose(r50["loss"], r50["losses"].min(0), rtol=1e-6)
    np.testing.assert_allclose(r50["x_rec"], trainer.generate(g, r50["z"]), atol=1e-5)
    # defend is pure: deterministic, and example i's result depends on x_i only
    d = jax.jit(trainer.defend)
    full = np.asarray(d(g, x))
    np.testing.assert_array_equal(full, np.asarray(d(g, x)))
    np.testing.assert_allclose(np.asarray(d(g, x[::-1]))[::-1], full, atol=1e-5)
    cfg = trained_tiny.defense_gan
    assert trainer.search_settings() == (cfg.eval_steps, cfg.eval_restarts)


@pytest.mark.slow
def test_defense_gan_bpda_gradient_is_identity(stepper):
    trainer, _ = stepper("defense_gan")
    g = trainer.init_state(jax.random.PRNGKey(0))["g"]
    x, y = _batch(4)["image"], _batch(4)["label"]

    def ce(x_):
        return jnp.mean(optax.softmax_cross_entropy_with_integer_labels(trainer.target_logits(x_), y))

    grad_through = jax.jit(jax.grad(lambda x_: ce(trainer.defend(g, x_))))(x)
    grad_at_rec = jax.grad(ce)(trainer.defend(g, x))
    np.testing.assert_allclose(grad_through, grad_at_rec, rtol=1e-5, atol=1e-7)
    assert float(jnp.abs(grad_through).sum()) > 0


# -- UIPD / APE-GAN / GRIP-GAN specifics ----------------------------------------------------
@pytest.mark.parametrize("parametrization", ["project", "tanh"])
def test_uipd_delta_respects_bound(trained_tiny, parametrization):
    c = trained_tiny.copy_and_resolve_references()
    c.uipd.update(eps=0.1, lr=1.0, parametrization=parametrization)   # big steps: hits the bound
    trainer = _trainer(c, "uipd")
    state = trainer.init_state(jax.random.PRNGKey(0))
    step = jax.jit(trainer.train_step)
    for i in range(5):
        state, m = step(state, _batch(), jax.random.PRNGKey(i))
    delta = trainer.defense_params(state)["delta"]
    assert delta.shape == trainer.image_shape
    assert float(jnp.max(jnp.abs(delta))) <= 0.1 + 1e-6
    assert float(jnp.max(jnp.abs(delta))) > 0.05
    x = _batch(4)["image"]
    np.testing.assert_allclose(trainer.defend({"delta": delta}, x), jnp.clip(x + delta, 0, 1))


@pytest.mark.slow
def test_ape_gan_uses_running_batch_stats_at_test_time(stepper):
    trainer, step = stepper("ape_gan")
    state = trainer.init_state(jax.random.PRNGKey(0))
    stats0 = jax.tree.map(np.array, state["g_stats"])
    state, _ = step(state, _batch(), jax.random.PRNGKey(0))
    params = trainer.defense_params(state)
    assert set(params) == {"params", "batch_stats"}
    assert any(not np.allclose(a, b) for a, b in zip(jax.tree.leaves(stats0), jax.tree.leaves(params["batch_stats"])))
    x = _batch(8)["image"]
    # eval-mode BN: an example's output does not depend on the rest of the batch
    np.testing.assert_allclose(trainer.defend(params, x)[:2], trainer.defend(params, x[:2]), atol=1e-5)


def test_grip_gan_is_attack_free_ipgan_with_overrides(trained_tiny):
    c = trained_tiny.copy_and_resolve_references()
    c.grip_gan.update(eps_inv=0.2, input_noise=0.0)
    trainer = _trainer(c, "grip_gan")
    x, y = _batch(8)["image"], _batch(8)["label"]
    np.testing.assert_array_equal(trainer.make_adversarial(x, y, jax.random.PRNGKey(0)), x)
    assert trainer.cfg.eps_inv == 0.2 and c.ipgan.eps_inv != 0.2
    # with input noise: random (label-independent, bounded), still no attack
    noisy = _trainer(trained_tiny, "grip_gan").make_adversarial
    a, b = noisy(x, y, jax.random.PRNGKey(0)), noisy(x, (y + 1) % 10, jax.random.PRNGKey(0))
    np.testing.assert_array_equal(a, b)
    assert 0 < float(jnp.abs(a - x).max()) <= trained_tiny.grip_gan.input_noise + 1e-6
    c.grip_gan.not_a_field = 1
    with pytest.raises(ValueError, match="not_a_field"):
        _trainer(c, "grip_gan")


# -- tagged copies: <defense>:<tag> is an independently trained twin in its own folder ------------
@pytest.mark.slow
def test_tagged_defense_is_an_independent_copy(trained_tiny, tmp_path):
    """``dae:s1`` trains into ``defenses/dae:s1/<clf>`` from its own initialisation (params differ from
    ``dae``'s), loads and evaluates as one more defense with its own label; bad tags and unknown
    methods fail before anything trains."""
    import os

    from ipgan_jax.cli import check_config
    from ipgan_jax.defenses.registry import resolve_defense, split_tag
    from ipgan_jax.eval.evaluate import Evaluator
    from ipgan_jax.eval.formatting import defense_name
    c = trained_tiny.copy_and_resolve_references()
    os.makedirs(tmp_path / "classifiers")
    os.symlink(f"{trained_tiny.workdir}/classifiers/lenet", tmp_path / "classifiers" / "lenet")
    c.workdir = str(tmp_path)
    c.train.update(num_steps=2, log_every=1, eval_every=100, sample_every=100, checkpoint_every=100,
                   eval_batch_size=32)
    outputs = {}
    for name in ("dae", "dae:s1"):
        c.defense = name
        check_config(c)
        train_defense(c)
        assert (tmp_path / "defenses" / name / "lenet" / "params").is_dir()
        assert json_defense(defense_dir(c)) == name
        defend, trainer = load_defense(c, name)
        assert trainer.name == "dae"
        outputs[name] = defend(_batch(8)["image"])
    assert float(jnp.abs(outputs["dae"] - outputs["dae:s1"]).max()) > 1e-3    # not the same network
    ev = Evaluator(c, ["lenet"], ["dae", "dae:s1"], ["fgsm"], 8)
    assert ev.defenses == ["dae", "dae:s1"] and defense_name("dae:s1") == "DAE, copy s1"
    c.eval.whitebox_per_defense.dae = dict(steps=3, restarts=1)       # a copy inherits its method's settings
    assert ev.whitebox_settings("dae:s1").steps == 3 and ev.whitebox_settings("none").steps == c.eval.whitebox_steps
    # ipgan with the adaptive flag keeps the tag; malformed tags / methods / tagged parameter-free fail
    c.ipgan.adaptive = True
    c.defense = "ipgan:g2"
    assert resolve_defense(c).defense == "ipgan_adaptive:g2"
    assert split_tag("ipgan_adaptive") == ("ipgan_adaptive", "")
    for bad in ("dae:", "dae:a/b", "none:s1", "daee:s1"):
        c.defense = bad
        with pytest.raises(ValueError, match="tag|choose one of|no parameters"):
            check_config(c)
    with pytest.raises(ValueError, match="no parameters"):
        load_defense(c, "binarize:s1")


def json_defense(folder):
    import json
    return json.loads((folder / "result.json").read_text())["defense"]
