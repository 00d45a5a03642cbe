"""Tests for ipgan_jax.attacks.transforms (BPDA, EOT, randomised models) on tiny closed-form models."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ipgan_jax import attacks as A
from ipgan_jax.attacks import transforms as T

X = jax.random.uniform(jax.random.key(0), (4, 3, 3, 1))
W = jax.random.normal(jax.random.key(1), (9, 5))


def quantize(x):
    """A non-differentiable purifier [B,...] -> [B,...]: its true gradient is 0 almost everywhere."""
    return jnp.round(x * 4.0) / 4.0


def linear(x):
    return x.reshape(x.shape[0], -1) @ W


def test_bpda_identity_forward_exact_backward_straight_through():
    g = T.bpda(quantize)
    np.testing.assert_array_equal(np.asarray(g(X)), np.asarray(quantize(X)))
    loss = lambda d: lambda x: jnp.sum(linear(d(x))[:, 0])  # noqa: E731
    grad_bpda = jax.grad(loss(g))(X)
    grad_ref = jax.grad(loss(lambda x: x))(X)  # identity backward = gradient of the model at d(x) ~ x
    np.testing.assert_allclose(np.asarray(grad_bpda), np.asarray(grad_ref), rtol=1e-6)
    # the check above can fail: without BPDA the gradient through the quantiser is exactly 0
    assert float(jnp.max(jnp.abs(jax.grad(loss(quantize))(X)))) == 0.0
    assert float(jnp.max(jnp.abs(grad_bpda))) > 0.0


def test_bpda_custom_backward_and_extra_args():
    def noisy(x, key):  # e.g. a randomised purifier with a key argument
        return quantize(x + 0.01 * jax.random.normal(key, x.shape))

    g = T.bpda(noisy, backward=lambda x: 2.0 * x)
    key = jax.random.key(3)
    np.testing.assert_array_equal(np.asarray(g(X, key)), np.asarray(noisy(X, key)))
    ct = jax.random.normal(jax.random.key(4), X.shape)
    gx = jax.grad(lambda x: jnp.sum(g(x, key) * ct))(X)
    np.testing.assert_allclose(np.asarray(gx), 2.0 * np.asarray(ct), rtol=1e-6)
    # jit-able, and the identity backward refuses a shape-changing fn
    jax.jit(jax.grad(lambda x: jnp.sum(g(x, key))))(X)
    flat = T.bpda(lambda x: x.reshape(x.shape[0], -1))
    with pytest.raises(ValueError, match="backward="):
        jax.grad(lambda x: jnp.sum(flat(x)))(X)


def noisy_linear(x, key):
    """A randomised model: logits of x plus Gaussian input noise, float [B, 5]."""
    return linear(x + 0.3 * jax.random.normal(key, x.shape))


def test_eot_is_the_mean_of_draws_and_its_gradient_the_mean_gradient():
    n = 6
    f = T.eot(noisy_linear, n)
    key = jax.random.key(5)
    assert T.is_randomized(f) and f.eot_samples == n
    keys = [jax.random.fold_in(key, i) for i in range(n)]
    ref = np.mean([np.asarray(noisy_linear(X, k)) for k in keys], axis=0)
    np.testing.assert_allclose(np.asarray(f(X, key)), ref, rtol=1e-5, atol=1e-6)
    # gradient of a nonlinear function of the logits of each draw, averaged (logits are linear in x here,
    # so d/dx mean_i z_i = mean_i d/dx z_i); checked on a nonlinear model too
    sq = lambda x, k: jnp.tanh(noisy_linear(x, k))  # noqa: E731
    fs = T.eot(sq, n)
    g = jax.grad(lambda x: jnp.sum(fs(x, key)[:, 1]))(X)
    g_ref = np.mean([np.asarray(jax.grad(lambda x: jnp.sum(sq(x, k)[:, 1]))(X)) for k in keys], axis=0)
    np.testing.assert_allclose(np.asarray(g), g_ref, rtol=1e-5, atol=1e-6)
    # the expected prediction
    lp = T.eot(noisy_linear, n, average="log_probs")(X, key)
    probs = np.mean([np.asarray(jax.nn.softmax(noisy_linear(X, k))) for k in keys], axis=0)
    np.testing.assert_allclose(np.exp(np.asarray(lp)), probs, rtol=1e-5, atol=1e-7)
    with pytest.raises(ValueError, match="average"):
        T.eot(noisy_linear, 2, average="probs")
    with pytest.raises(ValueError, match="n >= 1"):
        T.eot(noisy_linear, 0)


def test_attacks_accept_randomised_models():
    """Attacks pass a fresh key per call to a randomised model; a key is required; results are
    reproducible from the key; a fixed draw (fix_key) is a different, deterministic attack."""
    f = T.eot(noisy_linear, 2)
    y = jnp.argmax(linear(X), -1).astype(jnp.int32)
    run = jax.jit(lambda k: A.pgd(f, X, y, key=k, eps=0.1, steps=4, step_size=0.03))
    a, b = run(jax.random.key(0)), run(jax.random.key(0))
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert float(jnp.max(jnp.abs(a - X))) <= np.float32(0.1) and float(jnp.max(jnp.abs(a - X))) > 0
    with pytest.raises(ValueError, match="key"):
        A.fgsm(f, X, y)
    with pytest.raises(ValueError, match="key"):
        A.deepfool(f, X, y, steps=2)
    fixed = T.fix_key(f, jax.random.key(9))
    c = A.pgd(fixed, X, y, key=jax.random.key(0), eps=0.1, steps=4, step_size=0.03)
    assert not np.array_equal(np.asarray(a), np.asarray(c))
    # call_model dispatch: a plain model ignores the key, a randomised one uses it
    np.testing.assert_array_equal(np.asarray(T.call_model(linear, X, None)), np.asarray(linear(X)))
    k = jax.random.key(1)
    np.testing.assert_array_equal(np.asarray(T.call_model(f, X, k)), np.asarray(f(X, k)))
    assert not np.allclose(np.asarray(T.call_model(f, X, k)), np.asarray(T.call_model(f, X, jax.random.key(2))))
