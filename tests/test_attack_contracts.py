"""Issue 45: every public attack checks its inputs (``ipgan_jax.contracts.attack_contract``).

Each bad input ends in one ValueError line that names the attack and the argument, never a
Flax/JAX internal error (or silence): NCHW images, one-hot labels, a wrong channel count, labels
outside [0, K), pixels outside [0, 1] or NaN, eps < 0 or NaN, non-positive / fractional counts
and step sizes. Shape checks also run under jit; value checks only on concrete arrays. Plus
autoattack on an empty batch / with no attacks, bpda with a backward of the wrong shape, and eot
of a deterministic model. A tiny conv model (no training); every failing case raises before any
attack step runs, so the file takes seconds.
"""
from __future__ import annotations

import inspect

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ipgan_jax import attacks as A
from ipgan_jax import contracts

KERNEL = jax.random.normal(jax.random.key(0), (3, 3, 1, 4)) * 0.5          # HWIO: 1 input channel
DENSE = jax.random.normal(jax.random.key(1), (8 * 8 * 4, 10)) * 0.2


def conv_logits(x):
    """A tiny conv net on NHWC [B, 8, 8, 1] -> logits [B, 10] (reshape(B, -1): fails on B == 0)."""
    h = jax.lax.conv_general_dilated(x, KERNEL.astype(x.dtype), (1, 1), "SAME",
                                     dimension_numbers=("NHWC", "HWIO", "NHWC"))
    return jnp.tanh(h).reshape(x.shape[0], -1) @ DENSE.astype(x.dtype)


X = jax.random.uniform(jax.random.key(2), (4, 8, 8, 1))
Y = jnp.arange(4, dtype=jnp.int32)
KEY = jax.random.key(3)

# every public attack entry point, with the smallest budget: name -> (message prefix, call)
ATTACKS = {
    "fgsm": ("fgsm", lambda f, x, y, **kw: A.fgsm(f, x, y, **{"eps": 0.1, **kw})),
    "fgm": ("fgsm", lambda f, x, y, **kw: A.fgsm(f, x, y, **{"eps": 0.5, "norm": "l2", **kw})),
    "bim": ("bim", lambda f, x, y, **kw: A.bim(f, x, y, **{"eps": 0.1, "steps": 1, **kw})),
    "pgd": ("pgd", lambda f, x, y, **kw: A.pgd(f, x, y, **{"key": KEY, "eps": 0.1, "steps": 1, **kw})),
    "mifgsm": ("mifgsm", lambda f, x, y, **kw: A.mifgsm(f, x, y, **{"eps": 0.1, "steps": 1, **kw})),
    "cw_l2": ("cw_l2", lambda f, x, y, **kw: A.cw_l2(f, x, y, **{"binary_search_steps": 1, "steps": 1, **kw})),
    "deepfool": ("deepfool", lambda f, x, y, **kw: A.deepfool(f, x, y, **{"steps": 1, **kw})),
    "apgd": ("apgd", lambda f, x, y, **kw: A.apgd(f, x, y, **{"key": KEY, "eps": 0.1, "steps": 1, **kw})),
    "apgd_targeted": ("apgd_targeted", lambda f, x, y, **kw: A.apgd_targeted(
        f, x, y, **{"key": KEY, "eps": 0.1, "steps": 1, "n_target_classes": 1, **kw})),
    "square": ("square", lambda f, x, y, **kw: A.square(f, x, y, **{"key": KEY, "eps": 0.1, "n_queries": 2, **kw})),
    "square_compacting": ("square_compacting", lambda f, x, y, **kw: A.square_compacting(
        f, x, y, **{"key": KEY, "eps": 0.1, "n_queries": 2, **kw})),
    "autoattack": ("autoattack", lambda f, x, y, **kw: A.autoattack(
        f, x, y, **{"key": KEY, "eps": 0.1, "steps": 1, "n_queries": 2, "n_target_classes": 1, **kw})),
}
NAMES = list(ATTACKS)
EPS_KW = {"cw_l2": "eps", "deepfool": "eps"}   # optional eps (projection radius) of the minimum-norm attacks


def one_line_error(excinfo, prefix, *needles):
    """The error is one ValueError line starting with the attack's name and naming the argument."""
    msg = str(excinfo.value)
    assert excinfo.type is ValueError, msg
    assert "\n" not in msg, msg
    assert msg.startswith(f"{prefix}: "), msg
    for n in needles:
        assert n in msg, (n, msg)
    return msg


# ----------------------------------------------------------------------------- shapes and dtypes

BAD_SHAPES = {
    "nchw": (np.asarray(X).transpose(0, 3, 1, 2), np.asarray(Y), ("x (images)", "NCHW")),
    "two_channels": (np.concatenate([np.asarray(X)] * 2, -1), np.asarray(Y), ("x (images)", "channels", "C = 2")),
    "one_hot": (np.asarray(X), np.asarray(jax.nn.one_hot(Y, 10)), ("y (labels)", "shape [B] = (4,)", "one-hot")),
    "uint8": ((np.asarray(X) * 255).astype(np.uint8), np.asarray(Y), ("x (images)", "uint8")),
}


@pytest.mark.parametrize("case", list(BAD_SHAPES))
@pytest.mark.parametrize("name", NAMES)
def test_bad_shapes_and_dtypes_are_one_clear_error(name, case):
    """NCHW, a wrong channel count, one-hot labels, uint8 pixels: one ValueError line naming the
    argument (the old code fed them to the model: a conv/dot_general TypeError, or silence)."""
    prefix, call = ATTACKS[name]
    x, y, needles = BAD_SHAPES[case]
    with pytest.raises(ValueError) as e:
        call(conv_logits, x, y)
    one_line_error(e, prefix, *needles)


def test_shape_checks_run_under_jit_and_a_model_mismatch_is_named():
    """Under jit the shape checks still run (at trace time); an RGB batch for a grey model is
    named as a model/input mismatch instead of a conv error from inside the model; a model whose
    output is not [B, K] is refused."""
    pgd = jax.jit(lambda x, y: A.pgd(conv_logits, x, y, key=KEY, eps=0.1, steps=1))
    with pytest.raises(ValueError) as e:
        pgd(jnp.transpose(X, (0, 3, 1, 2)), Y)
    one_line_error(e, "pgd", "x (images)", "NCHW")
    with pytest.raises(ValueError) as e:
        pgd(X, jax.nn.one_hot(Y, 10).astype(jnp.int32))
    one_line_error(e, "pgd", "y (labels)", "one-hot")
    with pytest.raises(ValueError) as e:
        pgd(jnp.concatenate([X] * 3, -1), Y)                      # C = 3 is valid, but not for this model
    one_line_error(e, "pgd", "logits_fn cannot be applied to x of shape (4, 8, 8, 3)", "channel count")
    with pytest.raises(ValueError) as e:
        A.fgsm(lambda x: conv_logits(x)[:, None], X, Y)          # [B, 1, K]
    one_line_error(e, "fgsm", "logits_fn(x) must return logits [B, K]", "(4, 1, 10)")


def test_value_checks_are_skipped_under_jit_only():
    """Labels out of range and [0, 255] pixels are caught on concrete arrays; under jit (tracers)
    the value checks are skipped, as documented, and the attack runs."""
    bad_y = jnp.array([0, 1, 2, 10], jnp.int32)
    with pytest.raises(ValueError):
        A.fgsm(conv_logits, X, bad_y, eps=0.1)
    out = jax.jit(lambda x, y: A.fgsm(conv_logits, x, y, eps=0.1))(X * 255.0, bad_y)
    assert out.shape == X.shape
    assert "skipped for tracers" in A.fgsm.__doc__ and "Input contract" in A.autoattack.__doc__


# ----------------------------------------------------------------------------- values

BAD_VALUES = {
    "label_10": (np.asarray(X), np.array([0, 1, 2, 10], np.int32), ("y (labels)", "in [0, 10)", "[0, 10]")),
    "label_-1": (np.asarray(X), np.array([0, -1, 2, 3], np.int32), ("y (labels)", "in [0, 10)", "[-1, 3]")),
    "pixels_255": (np.asarray(X) * 255.0, np.asarray(Y), ("x (images)", "[0, 255] pixels")),
    "nan_pixel": (np.where(np.arange(4)[:, None, None, None] == 1, np.nan, np.asarray(X)).astype(np.float32),
                  np.asarray(Y), ("x (images)", "NaN")),
}


@pytest.mark.parametrize("case", list(BAD_VALUES))
@pytest.mark.parametrize("name", NAMES)
def test_bad_labels_and_pixels_are_caught_on_concrete_inputs(name, case):
    """Labels 10 or -1 (K = 10 from the model's abstract output), [0, 255] floats and NaN pixels
    raise before the attack runs (the old code attacked them silently)."""
    prefix, call = ATTACKS[name]
    x, y, needles = BAD_VALUES[case]
    with pytest.raises(ValueError) as e:
        call(conv_logits, x, y)
    one_line_error(e, prefix, *needles)


@pytest.mark.parametrize("eps", [-0.3, float("nan"), float("inf")], ids=["neg", "nan", "inf"])
@pytest.mark.parametrize("name", NAMES)
def test_bad_eps_is_refused(name, eps):
    prefix, call = ATTACKS[name]
    with pytest.raises(ValueError) as e:
        call(conv_logits, X, Y, **{EPS_KW.get(name, "eps"): eps})
    one_line_error(e, prefix, "eps must be finite and >= 0")


BAD_PARAMS = [   # each accepted (silently truncated, or run as a no-op) by the old code
    ("pgd", dict(steps=0), "steps must be an int >= 1"),
    ("bim", dict(steps=2.5), "steps must be an int >= 1"),
    ("deepfool", dict(steps=0), "steps must be an int >= 1"),
    ("pgd", dict(restarts=1.5), "restarts must be an int >= 1"),
    ("apgd", dict(restarts=True), "restarts must be an int >= 1"),
    ("square", dict(n_queries=2.5), "n_queries must be an int >= 1"),
    ("autoattack", dict(steps=1.5), "steps must be an int >= 1"),
    ("cw_l2", dict(binary_search_steps=1.5), "binary_search_steps must be an int >= 1"),
    ("bim", dict(step_size=-0.01), "step_size must be finite and > 0"),
    ("mifgsm", dict(step_size=float("nan")), "step_size must be finite and > 0"),
    ("pgd", dict(step_size=0.0), "step_size must be finite and > 0"),
    ("cw_l2", dict(lr=0.0), "lr must be finite and > 0"),
    ("square", dict(p_init=0.0), "p_init must be in (0, 1]"),
]


@pytest.mark.parametrize("name,over,message", BAD_PARAMS, ids=[f"{n}-{next(iter(o))}" for n, o, _ in BAD_PARAMS])
def test_bad_counts_and_step_sizes_are_refused(name, over, message):
    prefix, call = ATTACKS[name]
    with pytest.raises(ValueError) as e:
        call(conv_logits, X, Y, **over)
    one_line_error(e, prefix, message)


def test_make_attack_refuses_bad_counts_at_build_time():
    with pytest.raises(ValueError, match="pgd steps must be an int >= 1"):
        A.make_attack({"name": "pgd", "steps": 0})
    with pytest.raises(ValueError, match="square n_queries must be an int >= 1"):
        A.make_attack({"name": "square", "n_queries": 0.5})
    atk = A.make_attack({"name": "fgsm", "eps": 0.1})       # the wrapper's inputs are the attack's: named
    with pytest.raises(ValueError) as e:
        atk(conv_logits, np.asarray(X).transpose(0, 3, 1, 2), Y)
    one_line_error(e, "fgsm", "x (images)", "NCHW")


def test_randomised_model_labels_use_the_key_and_a_missing_key_is_still_named():
    noisy = A.randomized(lambda x, k: conv_logits(jnp.clip(x + 0.01 * jax.random.normal(k, x.shape), 0, 1)))
    with pytest.raises(ValueError) as e:
        A.pgd(noisy, X, jnp.array([0, 1, 2, 10]), key=KEY, eps=0.1, steps=1)
    one_line_error(e, "pgd", "y (labels)", "in [0, 10)")
    with pytest.raises(ValueError, match="key"):
        A.fgsm(noisy, X, Y, eps=0.1)


# ----------------------------------------------------------------------------- empty batches, autoattack

def test_autoattack_empty_batch_returns_an_empty_result():
    """The old code called the model on the empty batch: ZeroDivisionError in reshape(0, -1)."""
    x0, y0 = X[:0], Y[:0]
    xa, log = A.autoattack(conv_logits, x0, y0, key=KEY, eps=0.1, steps=1, n_queries=2)
    assert xa.shape == (0, 8, 8, 1) and xa.dtype == X.dtype
    assert log["n"] == 0 and log["clean"] == 0 and log["robust"] == 0 and log["robust_accuracy"] == 0.0
    assert log["broken"] == {"apgd-ce": 0, "apgd-t": 0, "square": 0} and log["robust_flags"].shape == (0,)
    assert log["attacks"] == ["apgd-ce", "apgd-t", "square"] and log["not_run"] == ["fab-t"]
    with pytest.raises(ValueError) as e:                      # the parameters are still checked
        A.autoattack(conv_logits, x0, y0, key=KEY, eps=-0.3)
    one_line_error(e, "autoattack", "eps")


def test_other_attacks_on_an_empty_batch_return_empty_results():
    x0, y0 = X[:0], Y[:0]
    xa, info = A.pgd(conv_logits, x0, y0, key=KEY, eps=0.1, steps=1, return_info=True)
    assert xa.shape == x0.shape and info.success.shape == (0,) and info.objective.shape == (0,)
    xs, info_s = A.square(conv_logits, x0, y0, key=KEY, eps=0.1, n_queries=2, return_info=True)
    assert xs.shape == x0.shape and info_s.queries.shape == (0,) and info_s.queries.dtype == jnp.int32
    assert A.cw_l2(conv_logits, x0, y0, steps=1, binary_search_steps=1).shape == x0.shape


def test_autoattack_with_no_attacks_is_an_error():
    for empty in ([], ()):
        with pytest.raises(ValueError) as e:
            A.autoattack(conv_logits, X, Y, key=KEY, eps=0.1, attacks=empty)
        one_line_error(e, "autoattack", "attacks=[] runs nothing")


def test_autoattack_refuses_bad_eps_and_labels():
    with pytest.raises(ValueError) as e:
        A.autoattack(conv_logits, X, Y, key=KEY, eps=-0.3)
    one_line_error(e, "autoattack", "eps must be finite and >= 0", "-0.3")
    with pytest.raises(ValueError) as e:
        A.autoattack(conv_logits, X, jnp.array([0, 1, 2, 10]), key=KEY, eps=0.3)
    one_line_error(e, "autoattack", "y (labels)", "in [0, 10)")


# ----------------------------------------------------------------------------- bpda, eot

def test_bpda_backward_of_the_wrong_shape_is_named():
    """backward must return fn's output shape; the old code failed only under grad, inside JAX's VJP
    ('unexpected JAX type ... for argument to VJP function')."""
    quantize = lambda x: jnp.round(x * 4.0) / 4.0  # noqa: E731
    bad = A.bpda(quantize, backward=lambda x: x.reshape(x.shape[0], -1))
    with pytest.raises(ValueError, match=r"^bpda: backward\(x\) must return fn's output shape \(4, 8, 8, 1\)"):
        bad(X)
    with pytest.raises(ValueError, match=r"^bpda: backward\(x\) must return"):
        jax.grad(lambda x: jnp.sum(conv_logits(bad(x))))(X)
    with pytest.raises(ValueError, match=r"^bpda: backward\(x\) must return"):
        jax.jit(jax.grad(lambda x: jnp.sum(conv_logits(bad(x)))))(X)
    # valid: fn and backward both x -> logits [B, 10] (the backward approximates the whole fn)
    good = A.bpda(lambda x: conv_logits(quantize(x)), backward=conv_logits)
    g = jax.grad(lambda x: jnp.sum(good(x)[:, 0]))(X)
    np.testing.assert_allclose(np.asarray(g), np.asarray(jax.grad(lambda x: jnp.sum(conv_logits(x)[:, 0]))(X)),
                               rtol=1e-5, atol=1e-7)
    assert float(jnp.max(jnp.abs(A.pgd(good, X, Y, key=KEY, eps=0.1, steps=1) - X))) > 0


def test_eot_of_a_deterministic_model_is_refused():
    """Decision: a function that cannot take a key is deterministic; EOT of it is itself at n times
    the cost, so eot() refuses it at construction (the old code failed later with a TypeError
    'takes 1 positional argument but 2 were given' inside the attack). A fn(x, key) that ignores
    its key is not detectable from the signature and is accepted (documented)."""
    with pytest.raises(ValueError, match=r"^eot needs a randomised model fn\(x, key\).*conv_logits takes no key"):
        A.eot(conv_logits, 4)
    with pytest.raises(ValueError, match="n >= 1"):
        A.eot(lambda x, k: conv_logits(x), 2.5)
    f = A.eot(lambda x, k: conv_logits(jnp.clip(x + 0.01 * jax.random.normal(k, x.shape), 0, 1)), 2)
    assert A.is_randomized(f) and f(X, KEY).shape == (4, 10)
    assert A.eot(A.randomized(lambda x, k: conv_logits(x)), 2)(X, KEY).shape == (4, 10)


# ----------------------------------------------------------------------------- contract plumbing

def test_contract_keeps_signatures_and_valid_inputs_pass():
    for fn in (A.fgsm, A.bim, A.pgd, A.mifgsm, A.cw_l2, A.deepfool, A.apgd, A.apgd_targeted, A.square,
               A.square_compacting, A.autoattack):
        assert getattr(fn, "contract", False), fn.__name__
        params = inspect.signature(fn).parameters
        assert list(params)[:3] == ["logits_fn", "x", "y"] and params["key"].kind is inspect.Parameter.KEYWORD_ONLY
    assert A.attack_params("pgd")["steps"] == 40
    # valid inputs of other dtypes pass: numpy float64 pixels, int64 labels, bfloat16 (values checked in float32)
    contracts.check_attack_inputs(conv_logits, np.asarray(X, np.float64), np.asarray(Y, np.int64))
    contracts.check_images(X.astype(jnp.bfloat16), "x")
    out = A.fgsm(conv_logits, np.asarray(X), np.asarray(Y, np.int64), eps=0.1)
    assert out.shape == X.shape and float(jnp.max(jnp.abs(out - X))) <= np.float32(0.1)
    assert contracts.check_int(5.0, "steps") is None        # an integral float is accepted (as int(5.0))


@pytest.mark.parametrize("name", ["fgsm", "pgd", "apgd", "square"])
def test_contract_costs_nothing_under_jit_the_compiled_program_is_the_same(name):
    """The checks run at trace time only: jitting an attack with its contract lowers to exactly the program of
    the attack without it (so its cost under jit is zero, not merely small)."""
    import ipgan_jax.attacks as A
    w = jax.random.normal(jax.random.PRNGKey(0), (28 * 28, 10)) * 0.05
    f = lambda z: z.reshape(z.shape[0], -1) @ w                       # noqa: E731
    x = jax.random.uniform(jax.random.PRNGKey(1), (4, 28, 28, 1))
    y = jnp.arange(4) % 10
    kw = {"square": dict(n_queries=20), "apgd": dict(steps=5), "pgd": dict(steps=5, step_size=0.05)}.get(name, {})
    fn = getattr(A, name)
    assert hasattr(fn, "__wrapped__")

    def lowered(g):
        return jax.jit(lambda x, y, k: g(f, x, y, key=k, eps=0.3, **kw)).lower(x, y, jax.random.PRNGKey(2)).as_text()
    assert lowered(fn) == lowered(fn.__wrapped__)
