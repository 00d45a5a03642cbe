"""Mixed precision (``config.train.compute_dtype``): bf16 compute with float32 params, optimizer
state, norm statistics and outputs; the float32 default has no bf16 anywhere; bad values fail clearly.

Random-init models and random images: no dataset or trained classifier needed.
"""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ipgan_jax.defenses.ipgan import IPGANTrainer
from ipgan_jax.models import precision
from ipgan_jax.models.classifiers import get_classifier
from ipgan_jax.models.discriminator import get_discriminator
from ipgan_jax.models.generator import get_generator
from ipgan_jax.models.imagenet import IMAGENET_CLASSIFIERS


def _dtypes(tree):
    return {np.dtype(a.dtype) for a in jax.tree.leaves(tree)}


def _close(a, b, frac=0.05):
    """|a - b| within ``frac`` of b's scale (bf16 keeps ~3 significant digits per op)."""
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=frac * float(np.abs(b).max()) + 1e-6)


def _trainer(config, dtype_name=None):
    """IP-GAN against a random-init LeNet; ``dtype_name`` (when given) sets config.train.compute_dtype."""
    if dtype_name is not None:
        config.train.compute_dtype = dtype_name
    config.train_attacks = [dict(name="fgsm", eps=0.3, eps_min=0.1)]   # one attack: a quicker compile
    module = get_classifier("lenet")
    variables = module.init(jax.random.PRNGKey(1), jnp.zeros((1, 28, 28, 1)), train=False)
    return IPGANTrainer(config, module, variables)


def _batch(n=16):
    return {"image": jax.random.uniform(jax.random.PRNGKey(3), (n, 28, 28, 1)), "label": jnp.arange(n) % 10}


def _two_steps(trainer):
    state = trainer.init_state(jax.random.PRNGKey(0))
    step = jax.jit(trainer.train_step)
    for _ in range(2):
        state, m = step(state, _batch(), jax.random.PRNGKey(4))
    return state, m


@pytest.mark.parametrize("bad", ["float16x", "fp16", "bf16"])
def test_bad_compute_dtype_names_the_key(tiny_config, bad):
    with pytest.raises(ValueError, match=r"config\.train\.compute_dtype=.*choose one of \['bfloat16', 'float32'\]"):
        _trainer(tiny_config, bad)


def test_configs_default_to_float32():
    from configs import imagenet, mnist, mnist_tiny
    for c in (mnist.get_config(), mnist_tiny.get_config(), imagenet.get_config("efficientnet_lite0,tiny")):
        assert c.train.compute_dtype == "float32" and precision.compute_dtype(c) == jnp.float32


@pytest.mark.parametrize("name", ["lenet", "mcnn", pytest.param("alexnet", marks=pytest.mark.slow),
                                  pytest.param("unet", marks=pytest.mark.slow), "dcgan"])
def test_mnist_size_models_in_bf16(name):
    x = jax.random.uniform(jax.random.PRNGKey(0), (8, 28, 28, 1))
    make = {"unet": lambda dt: get_generator("unet", 1, 8, 28, dtype=dt),
            "dcgan": lambda dt: get_discriminator("dcgan", 8, dtype=dt)}.get(
        name, lambda dt: get_classifier(name, dtype=dt))
    m32, m16 = make(jnp.float32), make(jnp.bfloat16)
    variables = jax.jit(m16.init)(jax.random.PRNGKey(1), x)
    assert _dtypes(variables) == {np.dtype("float32")}
    # a non-zero generator head (it is zero-initialised: the identity defense)
    variables = jax.tree.map(lambda a: a + 0.05, variables) if name == "unet" else variables
    y32, y16 = jax.jit(m32.apply)(variables, x), jax.jit(m16.apply)(variables, x)
    assert y16.dtype == jnp.float32 and bool(jnp.all(jnp.isfinite(y16)))
    _close(y16, y32)


@pytest.mark.parametrize("name", ["efficientnet_lite0", "resnet50"])
@pytest.mark.slow
def test_imagenet_models_in_bf16_keep_float32_batch_stats(name):
    x = jax.random.uniform(jax.random.PRNGKey(0), (4, 32, 32, 3))
    m32 = IMAGENET_CLASSIFIERS[name](input_size=32)
    m16 = precision.with_dtype(m32, jnp.bfloat16)
    variables = jax.jit(m16.init)(jax.random.PRNGKey(1), x)
    assert _dtypes(variables) == {np.dtype("float32")}
    (l32, f32), (l16, f16) = (jax.jit(lambda v, x, m=m: m.apply(v, x, features=True))(variables, x)
                              for m in (m32, m16))
    assert l16.dtype == f16.dtype == jnp.float32
    _close(l16, l32, 0.1)
    _close(f16, f32, 0.1)
    _, upd = jax.jit(lambda v, x: m16.apply(v, x, train=True, mutable=["batch_stats"],
                                            rngs={"dropout": jax.random.PRNGKey(2)}))(variables, x)
    assert _dtypes(upd["batch_stats"]) == {np.dtype("float32")}


@pytest.mark.slow
def test_bf16_ipgan_step_keeps_float32_state_and_tracks_float32(tiny_config):
    t16 = _trainer(tiny_config, "bfloat16")
    assert t16.generator.dtype == t16.discriminator.dtype == t16.target_module.dtype == jnp.bfloat16
    s16, m16 = _two_steps(t16)
    s32, m32 = _two_steps(_trainer(tiny_config.copy_and_resolve_references(), "float32"))
    for part in ("g", "d", "g_opt", "d_opt"):
        assert _dtypes(s16[part]) <= {np.dtype("float32"), np.dtype("int32")}, part
        assert all(bool(jnp.all(jnp.isfinite(a))) for a in jax.tree.leaves(s16[part])), part
    assert int(s16["step"]) == 2
    for k in ("g_loss", "d_loss", "loss_pix", "loss_cls"):
        assert m16[k].dtype == jnp.float32 and np.isfinite(float(m16[k]))
        assert float(m16[k]) == pytest.approx(float(m32[k]), rel=0.05, abs=1e-3), k
    x = _batch()["image"]
    x_rec = jax.jit(t16.defend)(s16["g"], x)
    assert x_rec.dtype == jnp.float32 and float(x_rec.min()) >= 0 and float(x_rec.max()) <= 1
    _close(x_rec, jax.jit(t16.defend)(s32["g"], x))


def test_float32_path_unchanged(tiny_config):
    """The float32 default (``train.compute_dtype``, in every config's schema): no bf16 anywhere in the traced
    step, and a model asked for float32 is returned unchanged."""
    assert tiny_config.train.compute_dtype == "float32"
    t = _trainer(tiny_config)
    state = jax.eval_shape(t.init_state, jax.random.PRNGKey(0))
    assert "bf16" not in str(jax.make_jaxpr(t.train_step)(state, _batch(), jax.random.PRNGKey(4)))
    m = get_classifier("lenet")
    assert precision.with_dtype(m, jnp.float32) is m


@pytest.mark.parametrize("name", ["lenet", "unet"])
@pytest.mark.slow
def test_float32_request_keeps_float64_under_x64(name):
    """compute_dtype float32 adds no casts: under ``jax.enable_x64`` a model asked for float32 still
    computes and returns float64 with float64 params (the float64 reference gradients of
    tests/test_attacks.py rely on it; a model that forced float32 broke test_fgsm_equals_closed_form)."""
    build = {"lenet": lambda: get_classifier("lenet", dtype=jnp.float32),
             "unet": lambda: get_generator("unet", 1, 8, 28, dtype=jnp.float32)}[name]
    with jax.enable_x64(True):
        m = build()
        x = jax.random.uniform(jax.random.PRNGKey(0), (2, 28, 28, 1), jnp.float64)
        v = jax.tree.map(lambda p: jnp.asarray(p, jnp.float64), m.init(jax.random.PRNGKey(1), x))
        assert _dtypes(m.apply(v, x)) == {np.dtype(np.float64)}
