"""Input contracts at the public edges (attacks, ``defend``, the evaluation flags).

Every check raises ``ValueError`` with a one-line message that names the argument and says what
was expected. Shape and dtype checks are static, so they also run on tracers (inside
``jax.jit``) at no run-time cost; value checks (range, finiteness, label bounds) run only on
concrete arrays and are skipped on tracers, so a jitted hot path is exactly as fast as without
them.

Conventions: images float [B, H, W, C] (NHWC, C = 1 or 3) in [0, 1]; labels int [B] in [0, K)
with K the last dimension of the model's logits [B, K]; every eps in pixel units, finite and
>= 0 (eps 0 is the identity: the eps curves of the evaluation start there); step sizes finite
and > 0; iteration / query / restart counts static positive Python ints.

:func:`attack_contract` applies all of it at the entry of every public attack (one decorator,
one rule table :data:`PARAM_RULES` keyed by keyword name), and :func:`check_attack_params` the
same parameter rules to a config (``make_attack`` at build time).

The checks are plain comparisons rather than chex asserts (``chex.assert_rank`` / ``assert_shape`` /
``assert_type``): chex words every failure ``[Chex] <its check> [custom message]``, so a message could
neither start with the attack's name nor lead with its hint.
"""
from __future__ import annotations

import functools
import inspect
import math
from typing import Any, Callable, Dict, Mapping, Optional

import jax
import jax.numpy as jnp
import numpy as np

_TOL = 1e-5   # float rounding of an image computed in float32 (e.g. x + delta clipped)
CHANNELS = (1, 3)   # grey (MNIST) or RGB (ImageNet)


def is_concrete(x) -> bool:
    """True when ``x``'s values are known here (not a tracer inside jit/grad/vmap)."""
    return not isinstance(x, jax.core.Tracer)


def _dtype(x) -> np.dtype:
    return np.dtype(x.dtype) if hasattr(x, "dtype") else np.asarray(x).dtype


def _host(a) -> np.ndarray:
    """A concrete array as numpy, low-precision floats (bfloat16, ...) widened to float32."""
    a = np.asarray(a)
    if jnp.issubdtype(a.dtype, jnp.floating) and a.dtype not in (np.float32, np.float64):
        a = a.astype(np.float32)
    return a


# ----------------------------------------------------------------------------- arrays

def check_images(x, name: str = "images", channels=CHANNELS) -> None:
    """``x`` must be float [B, H, W, C] (NHWC, C in ``channels``) with values in [0, 1].

    Shape and dtype are checked always (also on tracers); NaN/Inf and the [0, 1] range only when
    ``x`` is concrete (skipped under jit)."""
    shape, dtype = tuple(np.shape(x)), _dtype(x)
    if len(shape) != 4:
        raise ValueError(f"{name} must be a batch [B, H, W, C] (NHWC) in [0, 1]; got shape {shape}")
    if shape[1] in channels and shape[3] not in channels:
        raise ValueError(f"{name} of shape {shape} looks like NCHW [B, C, H, W]; this library takes NHWC "
                         f"[B, H, W, C] in [0, 1]: transpose with x.transpose(0, 2, 3, 1)")
    if channels and shape[3] not in channels:
        raise ValueError(f"{name} must have {' or '.join(map(str, channels))} channels in the last axis "
                         f"(NHWC [B, H, W, C]); got shape {shape} with C = {shape[3]}")
    if not jnp.issubdtype(dtype, jnp.floating):
        raise ValueError(f"{name} must be float NHWC in [0, 1]; got dtype {dtype} (for uint8 pixels use "
                         f"x.astype('float32') / 255)")
    if not is_concrete(x) or 0 in shape:
        return
    a = _host(x)
    if not np.isfinite(a).all():
        raise ValueError(f"{name} hold NaN/Inf; expected float NHWC in [0, 1]")
    lo, hi = float(a.min()), float(a.max())
    if lo < -_TOL or hi > 1 + _TOL:
        hint = " (they look like [0, 255] pixels: divide by 255)" if hi > 1.5 and lo >= 0 else ""
        raise ValueError(f"{name} must be in [0, 1] (NHWC); got values in [{lo:.4g}, {hi:.4g}]{hint}")


def check_labels(y, batch: int, num_classes: Optional[int] = None, name: str = "labels",
                 values: bool = True) -> None:
    """``y`` must be int [batch] with values in [0, num_classes) (values checked when concrete and
    ``values``)."""
    shape, dtype = tuple(np.shape(y)), _dtype(y)
    if shape != (batch,):
        hint = ""
        if len(shape) == 2 and shape[0] == batch:
            hint = " (one-hot or per-class scores? pass class indices: y.argmax(-1))"
        raise ValueError(f"{name} must have shape [B] = ({batch},) to match the images; got shape {shape}{hint}")
    if not np.issubdtype(dtype, np.integer):
        raise ValueError(f"{name} must be integer class indices; got dtype {dtype}")
    if not values or not is_concrete(y) or batch == 0:
        return
    a = np.asarray(y)
    if a.min() < 0 or (num_classes is not None and a.max() >= num_classes):
        k = "K" if num_classes is None else str(num_classes)
        raise ValueError(f"{name} must be in [0, {k}); got values in [{a.min()}, {a.max()}]")


def _first_line(e: BaseException) -> str:
    s = str(e).strip().splitlines()
    return f"{type(e).__name__}: {s[0] if s else ''}"


def model_num_classes(logits_fn: Callable, x, key=None, name: str = "logits_fn") -> Optional[int]:
    """K of ``logits_fn(x) -> logits [B, K]`` from its abstract evaluation (``jax.eval_shape``: no
    FLOPs, also on tracers). A randomised model (``fn.randomized``) is evaluated as ``fn(x, key)``;
    without a key it is not evaluated (None; the attack then asks for the key). ValueError when
    the model cannot take ``x`` (e.g. another layout or channel count) or returns no [B, K] array."""
    randomized = bool(getattr(logits_fn, "randomized", False))
    if randomized and key is None:
        return None
    shape = tuple(np.shape(x))
    spec = jax.ShapeDtypeStruct(shape, _dtype(x))
    try:
        out = jax.eval_shape((lambda xs: logits_fn(xs, key)) if randomized else logits_fn, spec)
    except Exception as e:   # noqa: BLE001 -- the model's own error, reported in one line
        raise ValueError(f"{name} cannot be applied to x of shape {shape} ({_first_line(e)}); is x in the "
                         f"layout and channel count the model expects?") from e
    out_shape = getattr(out, "shape", None)
    if out_shape is None or len(out_shape) != 2 or out_shape[0] != shape[0]:
        got = out_shape if out_shape is not None else type(out).__name__
        raise ValueError(f"{name}(x) must return logits [B, K] = [{shape[0]}, K] for x of shape {shape}; got {got}")
    return int(out_shape[1])


def check_attack_inputs(logits_fn, x, y, key=None, prefix: str = "") -> Optional[int]:
    """Images NHWC in [0, 1], labels int [B] in [0, K) and the model's logits [B, K] (K from
    ``logits_fn``'s abstract output). Shapes/dtypes always; values only when concrete (skipped
    under jit). Returns K (None for an empty batch or a randomised model without a key)."""
    check_images(x, f"{prefix}x (images)" if prefix else "images")
    b = np.shape(x)[0]
    label_name = f"{prefix}y (labels)" if prefix else "labels"
    check_labels(y, b, None, label_name, values=False)   # shape and dtype first: a one-hot y is named as such
    k = None if b == 0 else model_num_classes(logits_fn, x, key, f"{prefix}logits_fn" if prefix else "logits_fn")
    check_labels(y, b, k, label_name)
    return k


# ----------------------------------------------------------------------------- scalars

def _scalar(v, what: str) -> Optional[float]:
    if v is None or not is_concrete(v):
        return None
    a = np.asarray(v)
    if a.size != 1:
        raise ValueError(f"{what} must be a scalar; got shape {a.shape}")
    try:
        return float(a.reshape(()))
    except (TypeError, ValueError):
        raise ValueError(f"{what} must be a real number; got {v!r}") from None


def check_eps(eps, name: str = "eps") -> None:
    """``eps`` (pixel units) must be finite and >= 0 (skipped for None and tracers)."""
    v = _scalar(eps, name)
    if v is not None and not (math.isfinite(v) and v >= 0):
        raise ValueError(f"{name} must be finite and >= 0 (pixel units, images in [0, 1]); got {v}")


def check_step_size(step_size, name: str = "step_size") -> None:
    """``step_size`` must be finite and > 0 (skipped for None and tracers)."""
    v = _scalar(step_size, name)
    if v is not None and not (math.isfinite(v) and v > 0):
        raise ValueError(f"{name} must be finite and > 0; got {v}")


def check_nonnegative(v, name: str) -> None:
    """``v`` must be finite and >= 0 (skipped for None and tracers)."""
    f = _scalar(v, name)
    if f is not None and not (math.isfinite(f) and f >= 0):
        raise ValueError(f"{name} must be finite and >= 0; got {f}")


def check_interval(v, name: str, lo: float, hi: float, lo_open: bool = False) -> None:
    """``v`` must lie in [lo, hi] ((lo, hi] with ``lo_open``); skipped for None and tracers."""
    f = _scalar(v, name)
    if f is None:
        return
    ok = math.isfinite(f) and (f > lo if lo_open else f >= lo) and f <= hi
    if not ok:
        raise ValueError(f"{name} must be in {'(' if lo_open else '['}{lo:g}, {hi:g}]; got {f}")


def check_int(v, name: str, minimum: int = 1) -> None:
    """``v`` must be a static Python / numpy integer >= ``minimum`` (an integral float is accepted,
    a bool, a fraction or a traced value is not: it sets a loop length). None is skipped."""
    if v is None:
        return
    if not is_concrete(v):
        raise ValueError(f"{name} must be a static Python int >= {minimum} (it sets a loop length or a "
                         f"shape); got a traced value: close over it instead of passing it through jit")
    a = np.asarray(v)
    ok = a.shape == () and not isinstance(v, (bool, np.bool_)) and a.dtype.kind in "iuf"
    if ok and a.dtype.kind == "f":
        ok = bool(np.isfinite(a)) and float(a) == int(a)
    if not ok:
        raise ValueError(f"{name} must be an int >= {minimum}; got {v!r}")
    if int(a) < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}; got {int(a)}")


_positive_int = functools.partial(check_int, minimum=1)

# keyword name -> check(value, name); values that are None or traced (floats) are skipped
PARAM_RULES: Dict[str, Callable[[Any, str], None]] = {
    "eps": check_eps,
    "warm_eps": lambda v, name: None if v is None else check_eps(v, name),
    "step_size": check_step_size,
    "lr": check_step_size,
    "initial_const": check_step_size,
    "steps": _positive_int,
    "restarts": _positive_int,
    "n_queries": _positive_int,
    "binary_search_steps": _positive_int,
    "n_target_classes": _positive_int,
    "eot_samples": _positive_int,
    "chunk": _positive_int,
    "min_bucket": _positive_int,
    "candidates": functools.partial(check_int, minimum=2),
    "overshoot": check_nonnegative,
    "confidence": check_nonnegative,
    "success_margin": check_nonnegative,
    "decay": check_nonnegative,
    "rho": functools.partial(check_interval, lo=0.0, hi=1.0),
    "p_init": functools.partial(check_interval, lo=0.0, hi=1.0, lo_open=True),
}


def check_attack_params(params: Mapping[str, Any], prefix: str = "") -> None:
    """Apply :data:`PARAM_RULES` to every known keyword of ``params`` (unknown names are left to
    the attack). Python-level values at call time; traced floats are skipped."""
    for k, v in params.items():
        rule = PARAM_RULES.get(k)
        if rule is not None:
            rule(v, f"{prefix}{k}")


# ----------------------------------------------------------------------------- the attack contract

CONTRACT_DOC = """
    Input contract (:func:`ipgan_jax.contracts.attack_contract`; ValueError naming the argument):
    x float [B, H, W, C] (NHWC, C = 1 or 3) in [0, 1]; y int [B] in [0, K) with K the last
    dimension of ``logits_fn(x)`` (which must be [B, K]); eps finite and >= 0, step sizes finite
    and > 0, counts (steps, restarts, n_queries, ...) static ints >= 1. Shapes and dtypes are
    checked at trace time (also under ``jax.jit``); the label and pixel ranges, NaN pixels and
    the scalar values only when they are concrete (skipped for tracers, i.e. under jit). An
    empty batch returns an empty result without calling the model.
"""


def attack_contract(fn: Optional[Callable] = None, *, on_empty: Optional[Callable[[dict], Any]] = None,
                    images: str = "x", labels: str = "y", model: str = "logits_fn", key: str = "key"):
    """Decorator: check an attack's inputs at entry, then call it unchanged.

    The attack's arguments are bound to its signature; every keyword in :data:`PARAM_RULES` is
    checked (call time, concrete values), then ``images`` / ``labels`` / the model's output shape
    (:func:`check_attack_inputs`, with the ``key`` argument for a randomised model). For an empty
    batch (B == 0) ``on_empty(arguments)`` is returned when given (the model is not called: many
    models cannot reshape an empty batch), else the attack runs. Messages start with the
    attack's name. The signature (``inspect.signature``) and the docstring are kept, with
    :data:`CONTRACT_DOC` appended."""
    if fn is None:
        return functools.partial(attack_contract, on_empty=on_empty, images=images, labels=labels,
                                 model=model, key=key)
    sig = inspect.signature(fn)
    attack = fn.__name__

    @functools.wraps(fn)
    def checked(*args, **kwargs):
        bound = sig.bind(*args, **kwargs)
        bound.apply_defaults()
        a = bound.arguments
        check_attack_params({k: v for k, v in a.items() if k not in (images, labels, model, key)}, f"{attack}: ")
        check_attack_inputs(a[model], a[images], a[labels], a.get(key), prefix=f"{attack}: ")
        if np.shape(a[images])[0] == 0 and on_empty is not None:
            return on_empty(a)
        return fn(*bound.args, **bound.kwargs)

    checked.__doc__ = (fn.__doc__ or "").rstrip() + "\n" + CONTRACT_DOC
    checked.contract = True
    return checked
