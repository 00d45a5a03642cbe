"""Tests for ipgan_jax.attacks: constraints, closed forms, monotonicity, strength on a trained LeNet.

Fast on purpose (2 CPU cores): property tests use a tiny random MLP on 8x8 images; the strength
tests use a LeNet-5 trained once on real MNIST and cached under /tmp (ipgan_jax/testing/attack_fixtures.py)
and batches of 64-128 test images.
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

from ipgan_jax import attacks as A
from ipgan_jax.testing import attack_fixtures as af

L2_RTOL = 1e-6  # float32 rounding of the per-example L2 norm (Linf membership is exact)


# ----------------------------------------------------------------------------- fixtures

@pytest.fixture(scope="session")
def lenet():
    """LeNet-5 trained on MNIST (cached in /tmp); see ipgan_jax/testing/attack_fixtures.py."""
    return af.trained_lenet()


@pytest.fixture(scope="session")
def lenet_fn(lenet):
    return lenet.logits_fn()


@pytest.fixture(scope="session")
def mnist128():
    return af.mnist_test_batch(128)


def _images(n, shape=(8, 8, 1), seed=1):
    """Random images in [0, 1] with a quarter of the pixels exactly at 0 or 1 (box corners)."""
    k1, k2 = jax.random.split(jax.random.key(seed))
    x = jax.random.uniform(k1, (n,) + shape)
    corner = jax.random.uniform(k2, x.shape)
    return jnp.where(corner < 0.125, 0.0, jnp.where(corner > 0.875, 1.0, x)).astype(jnp.float32)


TINY = af.tiny_mlp(10, 64)
X_TINY = _images(32)
Y_TINY = jnp.argmax(TINY(X_TINY), -1).astype(jnp.int32)  # "clean-correct" labels for the tiny model


def _acc(logits_fn, x, y):
    return float(jnp.mean(jnp.argmax(logits_fn(x), -1) == y))


def _l2(d):
    return np.linalg.norm(np.asarray(d, np.float64).reshape(d.shape[0], -1), axis=1)


# ----------------------------------------------------------------------------- constraints

# (attack, fixed params, eps, ball norm); eps is traced so eps=0 reuses the compiled function.
CASES = [
    ("fgsm", dict(), 0.1, "linf"),
    ("fgsm", dict(norm="l2"), 0.8, "l2"),
    ("fgsm", dict(random_start=True), 0.1, "linf"),
    ("bim", dict(steps=5, step_size=0.03), 0.1, "linf"),
    ("bim", dict(steps=5, step_size=0.3, norm="l2"), 0.8, "l2"),
    ("pgd", dict(steps=5, step_size=0.03, restarts=2), 0.1, "linf"),
    ("pgd", dict(steps=5, step_size=0.3, norm="l2", restarts=2), 0.8, "l2"),
    ("pgd", dict(steps=5, step_size=0.03, loss="margin", targeted=True), 0.1, "linf"),
    ("pgd", dict(steps=5, step_size=0.03, loss="dlr", keep_best=False), 0.1, "linf"),
    ("mifgsm", dict(steps=5, step_size=0.02), 0.1, "linf"),
    ("mifgsm", dict(steps=5, step_size=0.2, norm="l2", targeted=True), 0.8, "l2"),
    ("cw_l2", dict(binary_search_steps=2, steps=20, lr=0.05, initial_const=1.0), 0.8, "l2"),
    ("deepfool", dict(steps=10), 0.8, "l2"),
    ("deepfool", dict(steps=10, norm="linf"), 0.1, "linf"),
]


@functools.lru_cache(maxsize=None)
def _jitted(name, frozen_params):
    params = dict(frozen_params)
    fn = A.ATTACKS[name]
    return jax.jit(lambda x, y, key, eps: fn(TINY, x, y, key=key, eps=eps, **params))


def _targets(y, num_classes=10, seed=0):
    shift = jax.random.randint(jax.random.key(seed), y.shape, 1, num_classes)
    return ((y + shift) % num_classes).astype(jnp.int32)


@pytest.mark.parametrize("name,params,eps,norm", CASES, ids=[f"{c[0]}-{i}" for i, c in enumerate(CASES)])
def test_inside_ball_and_box_and_eps0_is_identity(name, params, eps, norm):
    y = _targets(Y_TINY) if params.get("targeted") else Y_TINY
    fn = _jitted(name, tuple(sorted(params.items())))
    key = jax.random.key(3)
    x_adv = fn(X_TINY, y, key, jnp.float32(eps))
    assert x_adv.shape == X_TINY.shape and x_adv.dtype == X_TINY.dtype
    assert float(jnp.min(x_adv)) >= 0.0 and float(jnp.max(x_adv)) <= 1.0
    if norm == "linf":  # exact, in float32
        dist = np.abs(np.asarray(x_adv - X_TINY)).reshape(len(X_TINY), -1).max(axis=1)
        assert np.all(dist <= np.float32(eps)), (dist.max(), eps)
    else:
        dist = _l2(x_adv - X_TINY)
        assert np.all(dist <= eps * (1 + L2_RTOL)), (dist.max(), eps)
    assert np.any(dist > 0), "the attack did not move any example"
    x0 = fn(X_TINY, y, key, jnp.float32(0.0))
    np.testing.assert_array_equal(np.asarray(x0), np.asarray(X_TINY))


def test_minimum_norm_attacks_return_clean_or_adversarial():
    """Without eps, C&W / DeepFool return per example either x itself or an adversarial example."""
    for name, params in [("cw_l2", dict(binary_search_steps=3, steps=30, lr=0.05, initial_const=1.0)),
                         ("deepfool", dict(steps=20))]:
        x_adv = jax.jit(lambda x, y: A.ATTACKS[name](TINY, x, y, **params))(X_TINY, Y_TINY)
        assert float(jnp.min(x_adv)) >= 0.0 and float(jnp.max(x_adv)) <= 1.0
        unchanged = np.all(np.asarray(x_adv == X_TINY).reshape(32, -1), axis=1)
        adv = np.asarray(jnp.argmax(TINY(x_adv), -1) != Y_TINY)
        assert np.mean(unchanged | adv) >= 0.95, name
        assert np.mean(adv) >= 0.9, name


def test_random_start_is_reproducible_from_key():
    fn = _jitted("pgd", tuple(sorted(dict(steps=5, step_size=0.03, restarts=2).items())))
    a = fn(X_TINY, Y_TINY, jax.random.key(0), jnp.float32(0.1))
    b = fn(X_TINY, Y_TINY, jax.random.key(0), jnp.float32(0.1))
    c = fn(X_TINY, Y_TINY, jax.random.key(1), jnp.float32(0.1))
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert not np.array_equal(np.asarray(a), np.asarray(c))
    with pytest.raises(ValueError, match="key"):
        A.pgd(TINY, X_TINY, Y_TINY, key=None, random_start=True)


def test_corner_start_puts_every_pixel_at_the_box_corner():
    """``random_start='corner'`` starts PGD at x + eps * (random sign) per pixel, clipped to [0, 1]: every pixel not
    clipped sits exactly eps away, with both signs; a uniform start does not; PGD from a corner stays in the ball;
    L2 and unknown starts are refused."""
    from ipgan_jax.attacks import core
    x, eps = X_TINY, 0.1
    start = core.get_init("linf", "corner")(jax.random.key(0), x, eps)
    d = np.asarray(start - x)
    inside = np.asarray((x - eps >= 0) & (x + eps <= 1))          # pixels the box does not clip
    np.testing.assert_allclose(np.abs(d[inside]), eps, rtol=1e-6)
    assert 0.4 < np.mean(d[inside] > 0) < 0.6
    assert float(np.min(start)) >= 0.0 and float(np.max(start)) <= 1.0
    uniform = np.asarray(core.get_init("linf", "uniform")(jax.random.key(0), x, eps) - x)
    assert np.mean(np.isclose(np.abs(uniform[inside]), eps)) < 0.05
    adv = A.pgd(TINY, x, Y_TINY, key=jax.random.key(1), eps=eps, steps=3, step_size=0.03, random_start="corner",
                restarts=2)
    assert float(jnp.max(jnp.abs(adv - x))) <= eps + 1e-6
    with pytest.raises(ValueError, match="Linf box"):
        core.get_init("l2", "corner")
    with pytest.raises(ValueError, match="random_start='edge'"):
        A.pgd(TINY, x, Y_TINY, key=jax.random.key(1), random_start="edge")


def test_warm_start_begins_at_the_projected_start():
    """``start`` makes every run begin at the start projected onto the eps ball and the box: with no step and no
    random start PGD returns exactly that projection; ``warm_eps`` (PGD at a larger eps first, then from its
    result) stays in the eps ball, differs from a cold PGD, and a start of another shape is refused."""
    from ipgan_jax.attacks import core
    x, eps = X_TINY, 0.1
    far = jnp.clip(x + 0.3 * jnp.sign(jax.random.normal(jax.random.key(3), x.shape)), 0, 1)    # outside the ball
    out = core.projected_gradient_attack(TINY, x, Y_TINY, key=None, targeted=False, eps=eps, steps=0,
                                         optimizer=core.steepest_descent(0.01, "linf"), start=far, keep_best=False)
    np.testing.assert_array_equal(np.asarray(out), np.asarray(core.project_linf(far, x, eps)))
    kw = dict(key=jax.random.key(1), eps=eps, steps=5, step_size=0.03)
    warm = A.pgd(TINY, x, Y_TINY, warm_eps=1.25 * eps, **kw)
    assert float(jnp.max(jnp.abs(warm - x))) <= eps + 1e-6
    assert not np.array_equal(np.asarray(warm), np.asarray(A.pgd(TINY, x, Y_TINY, **kw)))
    with pytest.raises(ValueError, match="warm start"):
        core.projected_gradient_attack(TINY, x, Y_TINY, key=None, targeted=False, eps=eps, steps=1,
                                       optimizer=core.steepest_descent(0.01, "linf"), start=far[:2])
    with pytest.raises(ValueError, match="warm_eps"):
        A.pgd(TINY, x, Y_TINY, warm_eps=-0.1, **kw)


def test_low_precision_input_dtype_is_kept():
    x = X_TINY.astype(jnp.bfloat16)
    eps = 0.1
    fg = jax.jit(lambda x, y: A.fgsm(TINY, x, y, eps=eps))(x, Y_TINY)
    assert fg.dtype == jnp.bfloat16
    assert float(jnp.max(jnp.abs(fg - x))) <= float(jnp.asarray(eps, jnp.bfloat16))  # exact in bf16
    cw = jax.jit(lambda x, y: A.cw_l2(TINY, x, y, binary_search_steps=1, steps=10, lr=0.05,
                                      initial_const=1.0))(x, Y_TINY)
    assert cw.dtype == jnp.bfloat16 and bool(jnp.all(jnp.isfinite(cw.astype(jnp.float32))))
    assert float(cw.min()) >= 0.0 and float(cw.max()) <= 1.0


# ----------------------------------------------------------------------------- losses

def test_losses_values_and_negative_logits():
    logits = jnp.array([[-5.0, -1.0, -3.0, -4.0], [2.0, 1.0, 0.5, -7.0]])
    y = jnp.array([1, 2], jnp.int32)
    np.testing.assert_allclose(A.cross_entropy(logits, y),
                               optax.softmax_cross_entropy_with_integer_labels(logits, y), rtol=1e-6)
    # margin with all-negative logits: masking by a one-hot product would pick 0 as "best other".
    np.testing.assert_allclose(A.margin(logits, y), [-1.0 - (-3.0), 0.5 - 2.0])
    np.testing.assert_array_equal(A.losses.best_other_class(logits, y), [2, 0])
    np.testing.assert_array_equal(A.is_adversarial(logits, y), [False, True])
    np.testing.assert_array_equal(A.is_adversarial(logits, jnp.array([1, 0]), targeted=True), [True, True])
    # DLR: -(z_y - max_other) / (z_pi1 - z_pi3), invariant to a positive affine map of the logits
    np.testing.assert_allclose(A.dlr(logits, y), [-(2.0) / (-1.0 - (-4.0)), 1.5 / (2.0 - 0.5)], rtol=1e-6)
    np.testing.assert_allclose(A.dlr(3.0 * logits + 7.0, y), A.dlr(logits, y), rtol=1e-5)
    # objectives: the attack maximises; targeted CE objective is -CE(target)
    np.testing.assert_allclose(A.objective("ce", True)(logits, y), -A.cross_entropy(logits, y))
    np.testing.assert_allclose(A.objective("margin")(logits, y), -A.margin(logits, y))
    assert A.cross_entropy(logits.astype(jnp.bfloat16), y).dtype == jnp.float32
    with pytest.raises(ValueError, match="ce"):
        A.objective("hinge")


# ----------------------------------------------------------------------------- 1000 classes

def _linear(num_classes, in_dim, seed=0, scale=4.0):
    kw, kb = jax.random.split(jax.random.key(seed))
    w = jax.random.normal(kw, (in_dim, num_classes)) * scale / np.sqrt(in_dim)
    b = jax.random.normal(kb, (num_classes,))
    return lambda x: x.reshape(x.shape[0], -1) @ w + b


def test_1000_class_logits():
    f = _linear(1000, 8 * 8 * 3, seed=5)  # a random linear model on small RGB images
    x = _images(16, (8, 8, 3), seed=6)
    y = jnp.argmax(f(x), -1).astype(jnp.int32)
    key = jax.random.key(0)
    runs = {
        "pgd_dlr": (A.pgd, dict(eps=0.1, steps=10, step_size=0.02, loss="dlr"), "linf", 0.1),
        "cw": (A.cw_l2, dict(binary_search_steps=2, steps=20, lr=0.05, initial_const=1.0), "l2", None),
        "deepfool": (A.deepfool, dict(steps=10), "l2", None),
    }
    for name, (fn, params, norm, eps) in runs.items():
        x_adv = jax.jit(lambda x, y, k: fn(f, x, y, key=k, **params))(x, y, key)
        assert x_adv.shape == x.shape and float(x_adv.min()) >= 0.0 and float(x_adv.max()) <= 1.0
        if eps is not None:
            if norm == "linf":
                assert float(jnp.max(jnp.abs(x_adv - x))) <= np.float32(eps)
            else:
                assert np.all(_l2(x_adv - x) <= eps * (1 + L2_RTOL))
        assert _acc(f, x_adv, y) <= 0.2, name
    t = _targets(y, 1000)
    x_t = jax.jit(lambda x, t, k: A.pgd(f, x, t, key=k, targeted=True, eps=0.5, steps=20,
                                        step_size=0.05))(x, t, key)
    assert float(jnp.mean(jnp.argmax(f(x_t), -1) == t)) >= 0.8
    x_df = jax.jit(lambda x, t: A.deepfool(f, x, t, targeted=True, steps=20))(x, t)
    assert float(jnp.mean(jnp.argmax(f(x_df), -1) == t)) >= 0.9


# ----------------------------------------------------------------------------- make_attack

def test_make_attack_validation():
    with pytest.raises(ValueError, match="accepted names.*pgd"):
        A.make_attack({"name": "pgdd"})
    with pytest.raises(ValueError, match="accepted parameters.*step_size"):
        A.make_attack({"name": "pgd", "stepsize": 0.01})
    with pytest.raises(ValueError, match="unknown dataset"):
        A.make_attack({"name": "pgd"}, dataset="cifar")
    with pytest.raises(ValueError, match="name"):
        A.make_attack({"eps": 0.3})
    with pytest.raises(ValueError, match="norm"):
        A.make_attack({"name": "pgd", "norm": "l1"})
    with pytest.raises(ValueError, match="loss"):
        A.make_attack({"name": "pgd", "loss": "hinge"})


def test_make_attack_defaults():
    for name, fn in A.ATTACKS.items():
        sig = A.attack_params(name)
        resolved = A.make_attack({"name": name}).params  # signature defaults, step rule applied
        for k, v in A.DEFAULTS["mnist"][name].items():  # function defaults are the MNIST ones
            assert resolved[k] == pytest.approx(v), (name, k)
            assert sig[k] == v or (k == "step_size" and sig[k] is None), (name, k)
        for dataset in A.DEFAULTS:
            assert set(A.DEFAULTS[dataset][name]) <= set(sig), (dataset, name)
    assert A.DEFAULTS["mnist"]["pgd"]["eps"] == 0.3 and A.DEFAULTS["imagenet"]["pgd"]["eps"] == 4 / 255
    assert A.IMAGENET_EPS == (4 / 255, 16 / 255)
    cfg = ml_collections.ConfigDict({"name": "pgd", "eps": 0.3, "steps": 40, "step_size": 0.01,
                                     "random_start": True, "restarts": 1, "loss": "ce",
                                     "norm": "linf", "targeted": False})
    assert A.make_attack(cfg).params["step_size"] == 0.01
    im = A.make_attack({"name": "pgd"}, dataset="imagenet").params
    assert im["eps"] == 4 / 255 and im["step_size"] == 1 / 255
    im16 = A.make_attack({"name": "pgd", "eps": 16 / 255}, dataset="imagenet").params
    assert im16["step_size"] == pytest.approx(4 / 255)  # default step scales with an overridden eps
    assert A.make_attack({"name": "cw_l2"}).params["binary_search_steps"] == 9


def test_default_step_rule_per_norm():
    """L2 gets 2.5 * eps / steps (not the Linf default rescaled); Linf scales with eps; make_attack
    and a direct call with the same arguments run the same attack."""
    for dataset in (None, "mnist", "imagenet"):
        l2 = A.make_attack({"name": "pgd", "norm": "l2", "eps": 2.0}, dataset=dataset).params
        assert l2["step_size"] == pytest.approx(2.5 * 2.0 / l2["steps"]), dataset
    assert A.make_attack({"name": "bim", "norm": "l2", "eps": 1.0, "steps": 5}).params["step_size"] == 0.5
    assert A.make_attack({"name": "pgd", "eps": 0.1}).params["step_size"] == pytest.approx(0.1 / 30)
    assert A.make_attack({"name": "mifgsm", "eps": 0.2, "steps": 20}).params["step_size"] == pytest.approx(0.02)
    assert A.core.default_step_size("l2", 2.0, 40, 1.0) == pytest.approx(0.125)
    key = jax.random.key(2)
    for cfg in ({"name": "pgd", "norm": "l2", "eps": 0.8, "steps": 4},
                {"name": "pgd", "eps": 0.05, "steps": 4, "restarts": 2},
                {"name": "mifgsm", "norm": "l2", "eps": 0.8, "steps": 3}):
        atk = A.make_attack(cfg)
        direct = dict(cfg)
        fn = A.ATTACKS[direct.pop("name")]
        np.testing.assert_array_equal(np.asarray(atk(TINY, X_TINY, Y_TINY, key)),
                                      np.asarray(fn(TINY, X_TINY, Y_TINY, key=key, **direct)))
    # the old behaviour (Linf default rescaled for L2: 0.01 * 2.0 / 0.3) is a different attack
    old = A.pgd(TINY, X_TINY, Y_TINY, key=key, norm="l2", eps=0.8, steps=4, step_size=0.01 * 0.8 / 0.3)
    new = A.make_attack({"name": "pgd", "norm": "l2", "eps": 0.8, "steps": 4})(TINY, X_TINY, Y_TINY, key)
    assert not np.array_equal(np.asarray(old), np.asarray(new))


def test_restarts_need_random_start():
    with pytest.raises(ValueError, match="random_start"):
        A.pgd(TINY, X_TINY, Y_TINY, random_start=False, restarts=2)
    with pytest.raises(ValueError, match="random_start"):
        A.make_attack({"name": "pgd", "random_start": False, "restarts": 3})(TINY, X_TINY, Y_TINY)
    A.pgd(TINY, X_TINY, Y_TINY, random_start=False, restarts=1, steps=1)  # one run is fine


def test_return_info_matches_a_rerun_of_the_model():
    """return_info gives per-example success and the objective at x_adv, as a rerun would."""
    for loss, targeted in (("ce", False), ("dlr", False), ("margin", True)):
        y = _targets(Y_TINY) if targeted else Y_TINY
        x_adv, info = jax.jit(lambda x, y: A.pgd(TINY, x, y, key=jax.random.key(0), eps=0.05, steps=3,
                                                 loss=loss, targeted=targeted, return_info=True))(X_TINY, y)
        plain = A.pgd(TINY, X_TINY, y, key=jax.random.key(0), eps=0.05, steps=3, loss=loss, targeted=targeted)
        np.testing.assert_allclose(np.asarray(x_adv), np.asarray(plain), atol=1e-6)  # jit vs eager rounding
        z = TINY(x_adv)
        np.testing.assert_array_equal(np.asarray(info.success), np.asarray(A.is_adversarial(z, y, targeted)))
        np.testing.assert_allclose(np.asarray(info.objective), np.asarray(A.objective(loss, targeted)(z, y)),
                                   rtol=1e-5, atol=1e-6)
        assert 0 < float(jnp.mean(info.success)) < 1  # both outcomes occur, so the flags are checked
    x_adv, info = A.fgsm(TINY, X_TINY, Y_TINY, eps=0.05, return_info=True)
    np.testing.assert_array_equal(np.asarray(x_adv), np.asarray(A.fgsm(TINY, X_TINY, Y_TINY, eps=0.05)))
    np.testing.assert_array_equal(np.asarray(info.success), np.asarray(A.is_adversarial(TINY(x_adv), Y_TINY)))


def test_make_attack_is_jittable_and_matches_direct_call():
    atk = A.make_attack({"name": "pgd", "eps": 0.1, "steps": 5, "step_size": 0.03, "restarts": 2})
    key = jax.random.key(7)
    y64 = np.asarray(Y_TINY, np.int64)  # labels of another int dtype are accepted
    jitted = jax.jit(lambda x, y, k: atk(TINY, x, y, k))(X_TINY, y64, key)
    direct = _jitted("pgd", tuple(sorted(dict(steps=5, step_size=0.03, restarts=2).items())))(
        X_TINY, Y_TINY, key, jnp.float32(0.1))
    np.testing.assert_allclose(np.asarray(jitted), np.asarray(direct), atol=1e-6)
    det = A.make_attack({"name": "deepfool", "steps": 3})
    out = jax.jit(lambda x, y: det(TINY, x, y))(X_TINY, Y_TINY)  # key=None for deterministic attacks
    assert out.shape == X_TINY.shape and out.dtype == jnp.float32


# ----------------------------------------------------------------------------- trained LeNet

def test_fixture_classifier_is_accurate(lenet, lenet_fn, mnist128):
    assert lenet.test_accuracy >= 0.97
    assert _acc(lenet_fn, *mnist128) >= 0.95


def test_fgsm_equals_closed_form(lenet, lenet_fn, mnist128):
    """x_adv == clip(x + eps * sign(grad_x CE(x, y))) (untargeted) / clip(x - eps * sign(grad_x CE(x, t)))."""
    x, y = mnist128[0][:64], mnist128[1][:64]
    t = _targets(y)
    eps = 0.3

    adv_y, adv_t = jax.jit(lambda x, y, t: (A.fgsm(lenet_fn, x, y, eps=eps),
                                            A.fgsm(lenet_fn, x, t, eps=eps, targeted=True)))(x, y, t)
    adv_y, adv_t = np.asarray(adv_y), np.asarray(adv_t)
    # reference gradient: optax's textbook CE in float64 (in float32 its label term p_y - 1 is
    # rounding noise on confident examples, see tests/test_attacks_float32.py)
    with jax.enable_x64(True):
        p64 = jax.tree_util.tree_map(lambda p: jnp.asarray(p, jnp.float64), lenet.params)
        f64 = lambda x: lenet.module.apply({"params": p64}, x, train=False)  # noqa: E731
        ce = lambda x, labels: optax.softmax_cross_entropy_with_integer_labels(f64(x), labels).sum()  # noqa: E731
        x64 = jnp.asarray(np.asarray(x), jnp.float64)
        g_y, g_t = (np.asarray(jax.jit(jax.grad(ce))(x64, lab)) for lab in (y, t))
    for g, got, sign in [(g_y, adv_y, 1.0), (g_t, adv_t, -1.0)]:
        ref = np.clip(np.asarray(x) + sign * eps * np.sign(g), 0.0, 1.0)
        bad = np.abs(got - ref) > 1e-6
        # independent float32 gradients may only disagree in sign where they are numerically zero
        scale = np.broadcast_to(np.abs(g).reshape(len(g), -1).max(axis=1).reshape(-1, 1, 1, 1), g.shape)
        assert np.all(np.abs(g)[bad] <= 1e-6 * scale[bad])
        assert bad.mean() <= 1e-3
        assert np.abs(got - np.asarray(x)).max() == pytest.approx(eps, abs=1e-6)


def test_pgd_more_steps_and_restarts_never_lower_success():
    """On a fixed key, restart r and the first iterates are shared, and the per-example best is
    kept, so more steps / more restarts can only add successes. (Tiny MLP: cheap to compile.)"""
    x = _images(256, seed=11)
    y = jnp.argmax(TINY(x), -1).astype(jnp.int32)
    key = jax.random.key(0)

    def success(steps, restarts):
        f = jax.jit(lambda x, y, k: A.pgd(TINY, x, y, key=k, eps=0.03, steps=steps, step_size=0.01,
                                          restarts=restarts))
        return np.asarray(jnp.argmax(TINY(f(x, y, key)), -1) != y)

    s2, s10, s2x4 = success(2, 1), success(10, 1), success(2, 4)
    assert 0.05 < s2.mean() < 0.9  # the budget is not saturated, so the comparison means something
    assert s10.mean() >= s2.mean() and s2x4.mean() >= s2.mean()
    # per-example best: what a shorter run / fewer restarts broke stays broken
    assert np.mean(s2 & ~s10) <= 1 / 256 and np.mean(s2 & ~s2x4) <= 1 / 256
    assert s10.mean() > s2.mean() and s2x4.mean() > s2.mean()


@pytest.mark.slow
def test_targeted_attacks_hit_their_target(lenet_fn, mnist128):
    x, y = mnist128[0][:64], mnist128[1][:64]
    t = _targets(y, seed=1)
    def hit(xa, t):
        return float(jnp.mean(jnp.argmax(lenet_fn(xa), -1) == t))
    x_pgd = jax.jit(lambda x, t, k: A.pgd(lenet_fn, x, t, key=k, targeted=True, steps=20,
                                          step_size=0.02))(x, t, jax.random.key(0))
    assert hit(x_pgd, t) >= 0.9
    xs, ts = x[:16], t[:16]
    x_cw = jax.jit(lambda x, t: A.cw_l2(lenet_fn, x, t, targeted=True, binary_search_steps=4, steps=100,
                                        lr=0.1, initial_const=1.0))(xs, ts)
    assert hit(x_cw, ts) >= 0.95


@pytest.fixture(scope="module")
def cw_run(lenet_fn, mnist128):
    x, y = mnist128[0][:48], mnist128[1][:48]
    x_adv = jax.jit(lambda x, y: A.cw_l2(lenet_fn, x, y, binary_search_steps=5, steps=100, lr=0.1,
                                         initial_const=0.1))(x, y)
    return x, y, x_adv


@pytest.mark.slow
def test_cw_succeeds_with_small_perturbations(lenet_fn, cw_run):
    x, y, x_adv = cw_run
    adv = np.asarray(jnp.argmax(lenet_fn(x_adv), -1) != y)
    assert adv.mean() >= 0.98
    l2 = _l2(x_adv - x)
    assert 0.3 < l2[adv].mean() < 2.5  # C&W on an undefended MNIST LeNet: around 1-1.5


@pytest.mark.slow
def test_cw_finds_smaller_l2_than_fgm(lenet_fn, cw_run):
    """Per example, the smallest FGM-L2 step (over a grid of eps) that fools the model is larger
    than C&W's perturbation, on the examples both attacks fool."""
    x, y, x_cw = cw_run
    fgm = jax.jit(lambda x, y, eps: A.fgsm(lenet_fn, x, y, eps=eps, norm="l2"))
    best = np.full(len(x), np.inf)
    for eps in np.geomspace(0.25, 10.0, 24).astype(np.float32):
        xa = fgm(x, y, eps)
        adv = np.asarray(jnp.argmax(lenet_fn(xa), -1) != y)
        best = np.where(adv & np.isinf(best), _l2(xa - x), best)
    adv_cw = np.asarray(jnp.argmax(lenet_fn(x_cw), -1) != y)
    both = adv_cw & np.isfinite(best)
    assert both.mean() >= 0.5
    l2_cw = _l2(x_cw - x)
    assert l2_cw[both].mean() < 0.8 * best[both].mean(), (l2_cw[both].mean(), best[both].mean())


@pytest.mark.parametrize("cfg,max_acc", [
    ({"name": "fgsm"}, 0.3),                      # eps 0.3: substantially down from ~98%
    ({"name": "pgd"}, 0.05),                      # PGD-40, eps 0.3
    ({"name": "bim"}, 0.05),
    ({"name": "mifgsm"}, 0.05),
    ({"name": "deepfool", "steps": 30}, 0.05),
], ids=lambda v: v["name"] if isinstance(v, dict) else None)
def test_attacks_drive_accuracy_down(lenet_fn, mnist128, cfg, max_acc):
    x, y = mnist128
    if cfg["name"] == "deepfool":  # 10 backward passes per step: a smaller batch
        x, y = x[:64], y[:64]
    atk = A.make_attack(cfg, dataset="mnist")
    x_adv = jax.jit(lambda x, y, k: atk(lenet_fn, x, y, k))(x, y, jax.random.key(0))
    assert _acc(lenet_fn, x, y) >= 0.9
    assert _acc(lenet_fn, x_adv, y) <= max_acc
    if "eps" in atk.params and atk.params.get("norm") == "linf":
        assert float(jnp.max(jnp.abs(x_adv - x))) <= np.float32(atk.params["eps"])
