"""Transforms of a model for adaptive attacks (not attacks themselves): BPDA and EOT.

* :func:`bpda` (Athalye et al. 2018, "Backward Pass Differentiable Approximation"): the forward
  pass is the exact (possibly non-differentiable) function, the backward pass is the VJP of a
  differentiable approximation (identity by default: the straight-through estimator).
* :func:`eot` (Expectation over Transformation, Athalye et al. 2018): a randomised model
  ``logits_fn(x, key) -> logits`` is replaced by the average over ``n`` independent draws; its
  gradient is the average of the per-draw gradients (JAX differentiates the mean term by term).

Randomised models. A model whose output depends on randomness is a function
``logits_fn(x, key) -> logits [B, K]`` marked with :func:`randomized` (``eot`` returns one that is
already marked). Every attack in this package accepts such a model: it calls it with a fresh key
at every forward pass (``fold_in`` of the attack's ``key``), so an attack on ``eot(f, n)`` sees
``n`` new draws per step. :func:`call_model` is that dispatch; :func:`fix_key` turns a randomised
model into a deterministic ``logits_fn(x)`` with one fixed draw.

All functions are pure and jit-able; x float [B, ...] in [0, 1].
"""
from __future__ import annotations

import inspect
from typing import Callable, Optional

import jax
import jax.numpy as jnp
import numpy as np

EOT_AVERAGES = ("logits", "log_probs")


def bpda(fn: Callable, backward: Optional[Callable] = None) -> Callable:
    """``g(x, *args) = fn(x, *args)`` whose VJP with respect to x is that of ``backward(x)``.

    fn: x float [B, ...] (plus optional non-differentiated extra arguments, e.g. a PRNG key or
    parameters) -> array. backward: differentiable ``x -> array`` of fn's output shape that
    approximates fn; ``None`` is the identity (fn must then return x's shape, e.g. a purifier
    [B,H,W,C] -> [B,H,W,C]), so the cotangent passes through unchanged. The extra arguments get
    zero cotangents. ``backward`` is only used for its VJP; its forward value is discarded.

    Checked at every call (trace time, shapes only, so also under jit): ``backward(x)`` must have
    the shape of ``fn(x, *args)`` (it stands in for fn in the backward pass; a backward of another
    shape would otherwise fail deep inside JAX's VJP), and with the identity backward fn must
    keep x's shape. ValueError naming ``backward``.
    """
    if not callable(fn) or (backward is not None and not callable(backward)):
        raise ValueError(f"bpda needs callables fn and backward; got fn={fn!r}, backward={backward!r}")

    def check(x, out):
        if not hasattr(out, "shape"):   # not one array (the documented case): nothing to compare
            return
        out_shape, x_shape = tuple(out.shape), tuple(jnp.shape(x))
        if backward is None:
            if out_shape != x_shape:
                raise ValueError(f"bpda: the identity backward needs fn to keep x's shape; got {x_shape} -> "
                                 f"{out_shape}: pass backward= (a differentiable x -> {out_shape} approximation)")
            return
        b_shape = tuple(jax.eval_shape(backward, jax.ShapeDtypeStruct(x_shape, jnp.result_type(x))).shape)
        if b_shape != out_shape:
            raise ValueError(f"bpda: backward(x) must return fn's output shape {out_shape} (it replaces fn in the "
                             f"backward pass); got {b_shape} for x of shape {x_shape}")

    @jax.custom_vjp
    def g(x, *args):
        out = fn(x, *args)
        check(x, out)
        return out

    def fwd(x, *args):
        out = fn(x, *args)
        check(x, out)
        return out, (x, args)

    def bwd(res, ct):
        x, args = res
        if backward is None:
            if ct.shape != x.shape:
                raise ValueError(f"bpda with the identity backward needs fn to keep x's shape; got "
                                 f"{x.shape} -> {ct.shape}: pass backward=")
            gx = ct.astype(x.dtype)
        else:
            _, vjp = jax.vjp(backward, x)
            gx = vjp(ct.astype(jax.eval_shape(backward, x).dtype))[0]
        zeros = jax.tree_util.tree_map(_zero_cotangent, args)
        return (gx,) + tuple(zeros)

    g.defvjp(fwd, bwd)
    return g


def _zero_cotangent(a):
    a = jnp.asarray(a) if not isinstance(a, jax.Array) else a
    if jnp.issubdtype(a.dtype, jnp.floating) or jnp.issubdtype(a.dtype, jnp.complexfloating):
        return jnp.zeros_like(a)
    return None  # integer / key arrays: no cotangent


def _name(fn) -> str:
    return getattr(fn, "__qualname__", None) or getattr(fn, "__name__", None) or type(fn).__name__


def takes_key(fn: Callable) -> bool:
    """Whether ``fn`` can be called as ``fn(x, key)``: marked :func:`randomized`, or its signature binds
    two positional arguments. True when the signature cannot be read (e.g. some builtins)."""
    if is_randomized(fn):
        return True
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):
        return True
    try:
        sig.bind(None, None)
    except TypeError:
        return False
    return True


def randomized(fn: Callable) -> Callable:
    """Mark ``fn(x, key) -> logits`` as a randomised model (attacks then pass a fresh key per call)."""

    def wrapped(x, key):
        return fn(x, key)

    wrapped.randomized = True
    wrapped.__doc__ = fn.__doc__
    return wrapped


def is_randomized(fn: Callable) -> bool:
    return bool(getattr(fn, "randomized", False))


def call_model(logits_fn: Callable, x, key):
    """``logits_fn(x, key)`` for a randomised model (key must not be None), else ``logits_fn(x)``."""
    if is_randomized(logits_fn):
        if key is None:
            raise ValueError("a randomised model (see ipgan_jax.attacks.transforms) needs a PRNG key: "
                             "pass key= to the attack")
        return logits_fn(x, key)
    return logits_fn(x)


def fix_key(logits_fn: Callable, key) -> Callable:
    """A randomised model with one fixed draw ``key``: a deterministic ``fn(x) -> logits``."""
    if not is_randomized(logits_fn):
        return logits_fn
    return lambda x: logits_fn(x, key)


def eot(logits_fn: Callable, n: int, *, average: str = "logits") -> Callable:
    """Expectation over Transformation: the mean of ``n`` draws of a randomised model.

    logits_fn: ``fn(x, key) -> logits [B, K]`` (marked with :func:`randomized` or not; a plain
    deterministic ``fn(x)`` is not accepted: EOT of it is itself). Returns a randomised model
    ``f(x, key) -> [B, K]``: draw i uses ``fold_in(key, i)`` and
    average='logits': mean_i logits_i (its input gradient is the mean of the per-draw logit
    gradients, so any loss's gradient is taken through the expected logits);
    average='log_probs': log(mean_i softmax(logits_i)), the log of the randomised classifier's
    expected prediction (a valid logit vector). The draws run under ``lax.map`` (memory of one
    draw at a time).

    A deterministic model is refused (ValueError): one that cannot take a key argument (its
    signature binds only ``fn(x)``, e.g. ``lambda x: ...``) is not randomised, and EOT of it would
    be the model itself at n times the cost. Detected from the signature at ``eot()`` time; a
    ``fn(x, key)`` that ignores its key cannot be told apart without running it and is accepted.
    """
    if isinstance(n, (bool, np.bool_)) or not float(n).is_integer():
        raise ValueError(f"eot needs an int n >= 1, got {n!r}")
    n = int(n)
    if n < 1:
        raise ValueError(f"eot needs n >= 1, got {n}")
    if not takes_key(logits_fn):
        raise ValueError(f"eot needs a randomised model fn(x, key) -> logits; {_name(logits_fn)} takes no key "
                         f"argument, so it is deterministic and its EOT is itself: attack it directly (or wrap "
                         f"a model with its randomness as fn(x, key))")
    if average not in EOT_AVERAGES:
        raise ValueError(f"unknown eot average {average!r}; choose one of {list(EOT_AVERAGES)}")

    def f(x, key):
        if key is None:
            raise ValueError("eot model needs a PRNG key")

        def one(i):
            z = logits_fn(x, jax.random.fold_in(key, i))
            z = z.astype(jnp.promote_types(z.dtype, jnp.float32))
            return jax.nn.log_softmax(z, axis=-1) if average == "log_probs" else z

        zs = jax.lax.map(one, jnp.arange(n))
        if average == "logits":
            return jnp.mean(zs, axis=0)
        return jax.nn.logsumexp(zs, axis=0) - jnp.log(jnp.asarray(n, zs.dtype))

    f = randomized(f)
    f.eot_samples = n
    return f
