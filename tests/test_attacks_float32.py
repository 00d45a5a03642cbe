"""Float32 attacks on a confident model agree with float64 (issue 18).

The model is the trained LeNet fixture with its logits multiplied by 5: the float32 softmax
maximum rounds to exactly 1.0 on ~90% of test images while every label margin stays below ~80
(so the true cross-entropy gradient is still a normal float32 number). On such a model the
textbook ``logsumexp(z) - z_y`` has gradient ``p_y - 1 = 0`` at the label in float32; the
library's losses must not.

Checked for every attack loss (the functions attacks differentiate, ``gradient_objective``, and
the plain losses): the float32 input-gradient sign equals the float64 sign on >= 99.9% of pixels,
and FGSM / PGD-40 robust accuracy in float32 equals float64 within 0.5 points. The old form is
run through the same checks and must fail them (the checks can fail).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ipgan_jax import attacks as A
from ipgan_jax.attacks import losses as L
from ipgan_jax.testing import attack_fixtures as af

SCALE = 5.0
N_GRAD = 128   # images for the sign check (x 784 pixels)
N_ACC = 256    # images for the robust-accuracy check (0.5 points: 1 image)
SIGN_BAR = 0.999
ACC_BAR = 0.005


def old_cross_entropy(logits, labels):
    """The textbook form the project used before issue 18 (saturates in float32)."""
    return jax.nn.logsumexp(logits, axis=-1) - L.label_logit(logits, labels)


@pytest.fixture(scope="module")
def models():
    net = af.trained_lenet()

    def make(params):
        return lambda x: SCALE * net.module.apply({"params": params}, x, train=False)

    return net, make


@pytest.fixture(scope="module")
def data():
    return af.mnist_test_batch(N_ACC)


def _targets(y):
    return ((y + 1 + jnp.arange(y.shape[0]) % 9) % 10).astype(jnp.int32)


LOSS_CASES = {
    # name: (function differentiated, targeted, float64 reference: the same function, except for the
    # old form, which saturates in float64 too (margins above ~37) and is compared with the true CE)
    "grad_ce": (L.gradient_objective("ce"), False, None),
    "grad_ce_targeted": (L.gradient_objective("ce", True), True, None),
    "cross_entropy": (L.cross_entropy, False, None),
    "cross_entropy_targeted": (A.objective("ce", True), True, None),
    "margin": (A.objective("margin"), False, None),
    "margin_targeted": (A.objective("margin", True), True, None),
    "dlr": (A.objective("dlr"), False, None),
    "dlr_targeted": (A.objective("dlr", True), True, None),
    "old_ce": (old_cross_entropy, False, L.cross_entropy),
}


def _all_grads(net, make, x, y, t, precision):
    """{name: input gradient of sum(loss(logits, labels))} for every case, in one jit; float64 numpy."""
    f = make(net.params if precision == "f32" else
             jax.tree_util.tree_map(lambda p: jnp.asarray(p, jnp.float64), net.params))

    def run(x):
        out = {}
        for name, (fn, targeted, ref) in LOSS_CASES.items():
            fn = ref if (precision == "f64" and ref is not None) else fn
            labels = t if targeted else y
            out[name] = jax.grad(lambda x: jnp.sum(fn(f(x), labels)))(x)
        return out

    return {k: np.asarray(v, np.float64) for k, v in jax.jit(run)(x).items()}


@pytest.fixture(scope="module")
def grads(models, data):
    net, make = models
    x, y = data[0][:N_GRAD], data[1][:N_GRAD]
    t = _targets(y)
    g32 = _all_grads(net, make, x, y, t, "f32")
    with jax.enable_x64(True):
        g64 = _all_grads(net, make, jnp.asarray(np.asarray(x), jnp.float64), y, t, "f64")
    return g32, g64


def _sign_agreement(g32, g64, keep=None):
    same = (np.sign(g32) == np.sign(g64)).reshape(len(g32), -1)
    return float(np.mean(same if keep is None else same[keep]))


def _dlr_nonconstant(models, data):
    """bool [N_GRAD]: images where DLR is not locally constant. When the label is the third-largest
    logit, DLR = (z_1 - z_y) / (z_1 - z_3) = 1 and its true gradient is 0: both precisions return
    rounding noise there, whose sign means nothing."""
    net, make = models
    z = make(net.params)(data[0][:N_GRAD])
    rank = jnp.sum(z > L.label_logit(z, data[1][:N_GRAD])[:, None], axis=-1)
    return np.asarray(rank != 2)


def test_fixture_saturates_float32_softmax(models, data):
    net, make = models
    z = make(net.params)(data[0][:N_GRAD])
    saturated = jnp.max(jax.nn.softmax(z), -1) == 1.0
    assert float(jnp.mean(saturated)) >= 0.8
    assert float(jnp.max(A.margin(z, data[1][:N_GRAD]))) < 85.0  # true CE gradient is not yet 0


@pytest.mark.parametrize("name", sorted(set(LOSS_CASES) - {"old_ce"}))
def test_float32_gradient_sign_matches_float64(models, data, grads, name):
    keep = _dlr_nonconstant(models, data) if name == "dlr" else None
    agree = _sign_agreement(grads[0][name], grads[1][name], keep)
    print(f"{name}: float32/float64 sign agreement {agree:.5f}")
    assert agree >= SIGN_BAR, (name, agree)


def test_dlr_degenerate_images_are_few_and_really_noise(models, data, grads):
    """The DLR exclusion above is a handful of images, and on them the float64 gradient is noise."""
    keep = _dlr_nonconstant(models, data)
    assert keep.mean() >= 0.95
    g64 = grads[1]["dlr"]
    assert np.all(np.abs(g64[~keep]) <= 1e-9 * np.abs(g64[keep]).max())


def test_old_cross_entropy_fails_the_sign_check(grads):
    agree = _sign_agreement(grads[0]["old_ce"], grads[1]["old_ce"])
    print(f"old logsumexp(z) - z_y: float32 sign agreement with the float64 CE gradient {agree:.5f}")
    assert agree < SIGN_BAR


ATTACK_CASES = {
    "fgsm_eps0.1": lambda f, x, y, loss: A.fgsm(f, x, y, eps=0.1, loss=loss),
    "fgsm_eps0.3": lambda f, x, y, loss: A.fgsm(f, x, y, eps=0.3, loss=loss),
    "pgd40_eps0.1": lambda f, x, y, loss: A.pgd(f, x, y, eps=0.1, steps=40, step_size=0.01,
                                                random_start=False, loss=loss),
}


def _robust_accs(models, data, precision, loss):
    """{attack: robust accuracy} on the N_ACC images, one jit."""
    net, make = models
    x, y = data
    f = make(net.params if precision == "f32" else
             jax.tree_util.tree_map(lambda p: jnp.asarray(p, jnp.float64), net.params))
    if precision == "f64":
        x = jnp.asarray(np.asarray(x), jnp.float64)

    def run(x):
        return {k: jnp.mean(jnp.argmax(f(atk(f, x, y, loss)), -1) == y) for k, atk in ATTACK_CASES.items()}

    return {k: float(v) for k, v in jax.jit(run)(x).items()}


@pytest.fixture(scope="module")
def accs(models, data):
    out = {"f32": _robust_accs(models, data, "f32", "ce"),
           "old_f32": _robust_accs(models, data, "f32", old_cross_entropy)}
    with jax.enable_x64(True):
        out["f64"] = _robust_accs(models, data, "f64", "ce")
    return out


@pytest.mark.parametrize("name", sorted(ATTACK_CASES))
@pytest.mark.slow
def test_float32_robust_accuracy_matches_float64(accs, name):
    a32, a64 = accs["f32"][name], accs["f64"][name]
    print(f"{name}: robust accuracy float32 {a32:.4f} float64 {a64:.4f} (old CE in float32 "
          f"{accs['old_f32'][name]:.4f})")
    assert abs(a32 - a64) <= ACC_BAR + 1e-9, (name, a32, a64)


@pytest.mark.slow
def test_old_cross_entropy_fails_the_accuracy_check(accs):
    gaps = {k: accs["old_f32"][k] - accs["f64"][k] for k in ATTACK_CASES}
    print(f"old CE in float32 minus float64 robust accuracy: {gaps}")
    assert max(gaps.values()) > 10 * ACC_BAR  # the old form is far weaker on a saturated model
