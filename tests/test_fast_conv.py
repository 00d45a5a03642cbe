"""fast_conv: the same values, gradients and parameter trees as flax/lax convolutions."""
import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ipgan_jax.models import classifiers, fast_conv


@pytest.mark.parametrize("kernel,padding,size", [(3, "SAME", 28), (5, "SAME", 7), (3, "VALID", 13),
                                                  (5, "VALID", 10), (4, "SAME", 9), (3, ((2, 0), (1, 1)), 8)])
def test_conv_general_dilated_matches_lax(kernel, padding, size):
    kx, kw, kg = jax.random.split(jax.random.key(0), 3)
    x = jax.random.normal(kx, (2, size, size, 3), jnp.float64 if jax.config.x64_enabled else jnp.float32)
    w = jax.random.normal(kw, (kernel, kernel, 3, 5), x.dtype)
    dn = ("NHWC", "HWIO", "NHWC")
    ref = functools.partial(jax.lax.conv_general_dilated, window_strides=(1, 1), padding=padding,
                            dimension_numbers=dn)
    new = functools.partial(fast_conv.conv_general_dilated, window_strides=(1, 1), padding=padding,
                            dimension_numbers=dn)
    y_ref, y_new = ref(x, w), new(x, w)
    np.testing.assert_allclose(y_new, y_ref, rtol=1e-5, atol=1e-5)
    g = jax.random.normal(kg, y_ref.shape, x.dtype)
    gx_ref, gw_ref = jax.vjp(ref, x, w)[1](g)
    gx_new, gw_new = jax.vjp(new, x, w)[1](g)
    assert gx_new.shape == x.shape
    np.testing.assert_allclose(gx_new, gx_ref, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(gw_new, gw_ref, rtol=1e-4, atol=1e-4)


def test_strided_convs_fall_back_to_lax():
    x = jax.random.normal(jax.random.key(1), (2, 9, 9, 2))
    w = jax.random.normal(jax.random.key(2), (3, 3, 2, 4))
    kw = dict(window_strides=(2, 2), padding="SAME", dimension_numbers=("NHWC", "HWIO", "NHWC"))
    np.testing.assert_array_equal(fast_conv.conv_general_dilated(x, w, **kw),
                                  jax.lax.conv_general_dilated(x, w, **kw))


@pytest.mark.parametrize("name", ["lenet", "mcnn", "alexnet"])
def test_classifiers_keep_flax_params_and_input_gradients(name, monkeypatch):
    """The classifiers' fast Conv has nn.Conv's parameter tree (checkpoints load) and the same
    input gradient as a model built on plain nn.Conv."""
    model = classifiers.get_classifier(name)
    x = jax.random.uniform(jax.random.key(3), (4, 28, 28, 1))
    params = model.init(jax.random.key(4), x)
    monkeypatch.setattr(classifiers, "Conv", nn.Conv)
    plain = classifiers.get_classifier(name)
    plain_params = plain.init(jax.random.key(4), x)
    assert jax.tree_util.tree_structure(params) == jax.tree_util.tree_structure(plain_params)
    jax.tree_util.tree_map(np.testing.assert_array_equal, params, plain_params)

    def loss(m, z):
        return jnp.sum(jax.nn.log_softmax(m.apply(params, z))[:, 3])

    np.testing.assert_allclose(loss(model, x), loss(plain, x), rtol=1e-6)
    np.testing.assert_allclose(jax.grad(functools.partial(loss, model))(x),
                               jax.grad(functools.partial(loss, plain))(x), rtol=1e-4, atol=1e-6)
