"""Building blocks of the gradient attacks: init, optimizer, projection, loss, and the loop.

An attack is composed of four independent pieces (in the spirit of DeepMind's
``adversarial_robustness`` JAX code):

* an **init** ``fn(key, x0, eps) -> x`` (:func:`zero_init`, :func:`uniform_linf_init`,
  :func:`uniform_l2_init`), always inside the eps ball and the [0, 1] box;
* an **optimizer**, an ``optax.GradientTransformation`` that receives the gradient of the
  *minimised* attack loss (``-objective``) and returns updates that are *added* to x, as for
  any optax optimizer: :func:`steepest_descent` (FGSM/BIM/PGD), :func:`momentum_steepest_descent`
  (MI-FGSM), or any optax optimizer (e.g. ``optax.adam(1e-2)``);
* a **projection** ``fn(x, x0, eps) -> x`` onto the eps ball intersected with the box
  (:func:`project_linf`, :func:`project_l2`);
* a **loss** (see :mod:`ipgan_jax.attacks.losses`; the attack maximises ``objective(loss)``).

:func:`projected_gradient_attack` runs them with ``lax.fori_loop``, with optional restarts and
per-example best-iterate tracking. Shapes: x float [B, ...] (NHWC images) in [0, 1]; labels
int [B]; logits_fn(x) -> logits float [B, K]. eps and step sizes are absolute pixel units.
"""
from __future__ import annotations

from typing import Callable, NamedTuple, Optional, Union

import jax
import jax.numpy as jnp
import optax

from ipgan_jax import contracts
from ipgan_jax.attacks import losses
from ipgan_jax.attacks.transforms import call_model, fix_key, is_randomized

NORMS = ("linf", "l2")
BOX = (0.0, 1.0)


# ----------------------------------------------------------------------------- norms

def _feature_axes(x):
    return tuple(range(1, x.ndim))


def expand_per_example(v, x):
    """Reshapes a per-example value so that it broadcasts against a batch.

    Args:
      v: a per-example array [B] (a norm, a step size, a mask, ...).
      x: the batch it applies to, [B, ...] (e.g. NHWC images [B, H, W, C]).

    Returns:
      ``v`` as [B, 1, ..., 1], with ``x.ndim`` axes: ``x * expand_per_example(s, x)`` scales each
      example by its own ``s``, ``jnp.where(expand_per_example(mask, x), a, b)`` picks per example.
    """
    return v.reshape(v.shape + (1,) * (x.ndim - 1))


def l2_norm(x):
    """Per-example L2 norm: float [B] for x [B, ...]."""
    return jnp.sqrt(jnp.sum(jnp.square(x), axis=_feature_axes(x)))


def l1_norm(x):
    """Per-example L1 norm: float [B]."""
    return jnp.sum(jnp.abs(x), axis=_feature_axes(x))


def linf_norm(x):
    """Per-example Linf norm: float [B]."""
    return jnp.max(jnp.abs(x), axis=_feature_axes(x))


def bucket_size(n: int, minimum: int = 8) -> int:
    """The batch size a host-level driver pads ``n`` examples to: the next power of two, at least
    ``minimum`` (so a shrinking set of examples compiles only a few shapes)."""
    return max(int(minimum), 1 << (max(int(n), 1) - 1).bit_length())


def check_norm(norm: str) -> str:
    if norm not in NORMS:
        raise ValueError(f"unknown norm {norm!r}; choose one of {list(NORMS)}")
    return norm


def normalize(g, norm: str):
    """Steepest-ascent direction of unit norm: sign(g) for 'linf', g / ||g||_2 for 'l2' (per example).

    Zero gradients stay zero (the L2 norm is floored at 1e-12, as in foolbox).
    """
    if check_norm(norm) == "linf":
        return jnp.sign(g)
    return g * expand_per_example(1.0 / jnp.maximum(l2_norm(g), 1e-12), g)


# ----------------------------------------------------------------------------- projections

def clip_box(x, box=BOX):
    """Clip to the valid pixel range [0, 1]."""
    return jnp.clip(x, box[0], box[1])


def linf_bounds(x0, eps, box=BOX):
    """Per-pixel [lo, hi] of the Linf ball around x0 intersected with the box.

    The ball's edges are nudged by one ulp where ``x0 +/- eps`` rounded outward, so that
    ``|x - x0| <= eps`` holds exactly in x0's float dtype for every x in [lo, hi].
    """
    eps = jnp.asarray(eps, x0.dtype)
    hi, lo = x0 + eps, x0 - eps
    hi = jnp.where(hi - x0 > eps, jnp.nextafter(hi, x0), hi)
    lo = jnp.where(x0 - lo > eps, jnp.nextafter(lo, x0), lo)
    return jnp.maximum(lo, box[0]), jnp.minimum(hi, box[1])


def project_linf(x, x0, eps, box=BOX):
    """Project x [B, ...] onto {|x - x0|_inf <= eps} intersected with the box (same dtype as x).

    Exact: the result satisfies ``|x_adv - x0| <= eps`` in floating point (see linf_bounds).
    """
    lo, hi = linf_bounds(x0, eps, box)
    return jnp.clip(x, lo, hi)


def project_l2(x, x0, eps, box=BOX):
    """Project x onto {||x - x0||_2 <= eps} (radial rescaling), then clip to the box.

    Clipping to the box never increases |x - x0| coordinate-wise (x0 is inside the box), so the
    result is in both sets.
    """
    d = x - x0
    factor = jnp.minimum(1.0, eps / jnp.maximum(l2_norm(d), 1e-12)).astype(x.dtype)
    return clip_box(x0 + d * expand_per_example(factor, d), box)


def get_projection(norm: str) -> Callable:
    return project_linf if check_norm(norm) == "linf" else project_l2


# ----------------------------------------------------------------------------- inits

def zero_init(key, x0, eps):
    """Start at the clean input."""
    del key, eps
    return x0


def uniform_linf_init(key, x0, eps, box=BOX):
    """x0 + U(-eps, eps) per pixel, clipped to the box."""
    noise = jax.random.uniform(key, x0.shape, x0.dtype, -1.0, 1.0) * eps
    return project_linf(x0 + noise, x0, eps, box)


def uniform_l2_init(key, x0, eps, box=BOX):
    """x0 + a point drawn uniformly from the L2 ball of radius eps, clipped to the box."""
    kdir, krad = jax.random.split(key)
    z = jax.random.normal(kdir, x0.shape, x0.dtype)
    n = 1
    for s in x0.shape[1:]:
        n *= s
    r = eps * jax.random.uniform(krad, (x0.shape[0],), x0.dtype) ** (1.0 / n)
    d = z * expand_per_example(r / jnp.maximum(l2_norm(z), 1e-12), z)
    return project_l2(x0 + d, x0, eps, box)


def corner_linf_init(key, x0, eps, box=BOX):
    """x0 + eps * s with s a random sign per pixel (a random corner of the Linf eps box), clipped to the box."""
    sign = jnp.where(jax.random.bernoulli(key, 0.5, x0.shape), 1.0, -1.0).astype(x0.dtype)
    return project_linf(x0 + sign * eps, x0, eps, box)


RANDOM_STARTS = ("uniform", "corner")   # random_start=True is "uniform"


def get_init(norm: str, random_start) -> Callable:
    """The start of a projected gradient attack.

    Args:
        norm: 'linf' or 'l2'.
        random_start: False (the clean input), True or 'uniform' (uniform in the eps ball), or 'corner' (a random
            corner of the Linf box: every pixel at +-eps, as far from x0 as the ball allows; Linf only).

    Returns:
        ``init(key, x0, eps) -> x_start``.

    Raises:
        ValueError: another ``random_start``, or 'corner' with the L2 norm.
    """
    if random_start is False or random_start is None:
        return zero_init
    if random_start is True or random_start == "uniform":
        return uniform_linf_init if check_norm(norm) == "linf" else uniform_l2_init
    if random_start == "corner":
        if check_norm(norm) != "linf":
            raise ValueError("random_start='corner' is a corner of the Linf box; use 'uniform' with norm='l2'")
        return corner_linf_init
    raise ValueError(f"random_start={random_start!r}: use False, True, or one of {RANDOM_STARTS}")


# ----------------------------------------------------------------------------- default step sizes

L2_STEP_FACTOR = 2.5  # L2 default: 2.5 * eps / steps (Madry et al. 2018; the `robustness` library rule)


def default_step_size(norm: str, eps, steps: int, linf_ratio: float):
    """The default step of an iterative attack when none is given (the rule of each norm):

    linf: ``linf_ratio * eps`` (the attack's MNIST default as a fraction of eps: pgd 1/30, bim 2/15,
    mifgsm 1/10, so eps 0.3 gives 0.01 / 0.04 / 0.03 whatever ``steps`` is);
    l2: ``2.5 * eps / steps`` (the total travel is 2.5 eps whatever eps and steps are).
    """
    if check_norm(norm) == "linf":
        return linf_ratio * eps
    return L2_STEP_FACTOR * eps / max(int(steps), 1)


# ----------------------------------------------------------------------------- optimizers

def steepest_descent(step_size, norm: str = "linf") -> optax.GradientTransformation:
    """Normalised gradient step: updates = -step_size * normalize(g, norm).

    Fed with the gradient of the minimised loss (-objective), this is FGSM / BIM / PGD ascent.
    """
    check_norm(norm)

    def update_fn(updates, state, params=None):
        del params
        return jax.tree_util.tree_map(lambda g: -step_size * normalize(g, norm), updates), state

    return optax.GradientTransformation(lambda params: optax.EmptyState(), update_fn)


class MomentumState(NamedTuple):
    velocity: optax.Updates


def momentum_steepest_descent(step_size, decay: float = 1.0, norm: str = "linf") -> optax.GradientTransformation:
    """MI-FGSM (Dong et al. 2018): v <- decay * v + g / ||g||_1 (per example); updates = -step_size * normalize(v)."""
    check_norm(norm)

    def init_fn(params):
        return MomentumState(jax.tree_util.tree_map(jnp.zeros_like, params))

    def update_fn(updates, state, params=None):
        del params
        v = jax.tree_util.tree_map(
            lambda v, g: decay * v + g * expand_per_example(1.0 / jnp.maximum(l1_norm(g), 1e-12), g),
            state.velocity, updates)
        return jax.tree_util.tree_map(lambda v: -step_size * normalize(v, norm), v), MomentumState(v)

    return optax.GradientTransformation(init_fn, update_fn)


# ----------------------------------------------------------------------------- the loop

class Best(NamedTuple):
    """Per-example best candidate: x [B, ...], objective [B], success bool [B]."""
    x: jax.Array
    objective: jax.Array
    success: jax.Array


def init_best(x0, objective_dtype=jnp.float32) -> Best:
    b = x0.shape[0]
    return Best(x0, jnp.full((b,), -jnp.inf, objective_dtype), jnp.zeros((b,), bool))


def update_best(best: Best, x, objective, success) -> Best:
    """Replace per example when the candidate succeeds and the best does not, or when both have
    the same success status and the candidate's objective is strictly higher."""
    objective = objective.astype(best.objective.dtype)
    better = (success & ~best.success) | ((success == best.success) & (objective > best.objective))
    return Best(jnp.where(expand_per_example(better, x), x, best.x),
                jnp.where(better, objective, best.objective),
                jnp.where(better, success, best.success))


class AttackInfo(NamedTuple):
    """Per-example result beside x_adv: success bool [B] (adversarial, resp. hits the target, by more than the
    attack's ``success_margin`` where it has one) and
    the attack objective float [B] (``losses.objective(loss, targeted)``, higher = stronger) at x_adv.

    For a randomised model both are measured on the draw the attack saw at that point.
    ``queries`` (score-based attacks only, else None): model evaluations spent per example, int32 [B].
    """
    success: jax.Array
    objective: jax.Array
    queries: Optional[jax.Array] = None


def empty_result(args, queries: bool = False):
    """An attack's result on an empty batch (B == 0), built without calling the model: x itself,
    or ``(x, AttackInfo)`` of empty arrays when ``args['return_info']`` (``queries``: the
    score-based attacks' int32 query counts). ``args``: the attack's bound arguments (the
    ``on_empty`` hook of ``contracts.attack_contract``)."""
    x = jnp.asarray(args["x"])
    if not args.get("return_info", False):
        return x
    return x, AttackInfo(jnp.zeros((0,), bool), jnp.zeros((0,), jnp.promote_types(x.dtype, jnp.float32)),
                         jnp.zeros((0,), jnp.int32) if queries else None)


def empty_result_with_queries(args):
    return empty_result(args, queries=True)


MODEL_KEY_TAG = 0x6D6F64  # fold_in tag separating the model's per-call keys from init keys


def model_key(key, *indices):
    """A fresh key for one call of a randomised model: fold_in(key, tag, *indices); None stays None."""
    if key is None:
        return None
    k = jax.random.fold_in(key, MODEL_KEY_TAG)
    for i in indices:
        k = jax.random.fold_in(k, i)
    return k


def deterministic_model(logits_fn, key):
    """logits_fn itself, or for a randomised model the fixed draw ``model_key(key)`` (key needed)."""
    if not is_randomized(logits_fn):
        return logits_fn
    if key is None:
        raise ValueError("a randomised model needs a PRNG key: pass key= to the attack")
    return fix_key(logits_fn, model_key(key))


def check_input(x, y):
    """x float [B, ...] and y int [B] -> (x, y int32); TypeError for an integer image."""
    x = jnp.asarray(x)
    if not jnp.issubdtype(x.dtype, jnp.floating):
        raise TypeError(f"x must be a float array in [0, 1], got dtype {x.dtype}")
    return x, jnp.asarray(y).astype(jnp.int32)


def projected_gradient_attack(
    logits_fn: Callable[[jax.Array], jax.Array],
    x: jax.Array,
    y: jax.Array,
    *,
    key: Optional[jax.Array],
    targeted: bool,
    eps,
    steps: int,
    optimizer: optax.GradientTransformation,
    loss: Union[str, Callable] = "ce",
    norm: str = "linf",
    random_start: Union[bool, str] = False,
    restarts: int = 1,
    keep_best: bool = True,
    return_info: bool = False,
    start: Optional[jax.Array] = None,
    success_margin: float = 0.0,
):
    """Generic projected first-order attack (the engine behind fgsm / bim / pgd / mifgsm).

    x: float [B, ...] in [0, 1]; y: int [B] (true labels, or targets when ``targeted``).
    Each run starts from ``get_init(norm, random_start)`` (False, True / 'uniform', 'corner') with key
    ``fold_in(key, r)`` (so the
    first r runs are the same whatever ``restarts`` is), takes ``steps`` optimizer steps on
    ``-objective(loss, targeted)`` and projects onto the eps ball and the box after each.
    The gradient is that of ``losses.gradient_objective`` (for CE the non-saturating
    logsumexp margin: same direction, exact in float32 for confident models); values use
    ``losses.objective``. The per-example best (successful first, then highest objective) is
    kept over the restarts and, with ``keep_best``, over all iterates of a run too; without
    ``keep_best`` the last iterate of each run competes. ``restarts > 1`` needs
    ``random_start`` (a deterministic run repeated is the same run): ValueError otherwise.
    A randomised model (``transforms.randomized`` / ``eot``) gets a fresh key per call.
    ``start`` (x's shape, optional): a warm start, e.g. an example found at a larger eps; every run starts from it
    projected onto the eps ball and the box (then moved by the random start, if any) instead of from x.
    ``success_margin`` (logit units, >= 0; default 0): an iterate counts as a success (for the best-iterate
    choice and ``AttackInfo.success``) only when it is adversarial by more than this, ``max_{j != y} z_j > z_y +
    success_margin`` (targeted: ``z_t > max_{j != t} z_j + success_margin``: ``losses.is_adversarial``'s
    ``confidence``), so a point that a recomputed forward pass could judge robust does not win as a success;
    0 is plain "argmax != y" (resp. "== t"). ValueError when negative or not finite.
    Returns x_adv with x's shape and dtype, or ``(x_adv, AttackInfo)`` with ``return_info``.
    """
    check_norm(norm)
    contracts.check_nonnegative(success_margin, "success_margin")
    steps, restarts = int(steps), int(restarts)
    if steps < 0 or restarts < 1:
        raise ValueError(f"need steps >= 0 and restarts >= 1, got steps={steps}, restarts={restarts}")
    if restarts > 1 and not random_start:
        raise ValueError(f"restarts={restarts} needs random_start=True (without a random start every "
                         f"restart is the same deterministic run)")
    if (random_start or is_randomized(logits_fn)) and key is None:
        raise ValueError("random_start=True or a randomised model needs a PRNG key")
    x, y = check_input(x, y)
    obj_fn = losses.objective(loss, targeted)
    grad_obj_fn = losses.gradient_objective(loss, targeted)
    init = get_init(norm, random_start)
    project = get_projection(norm)
    if start is not None and jnp.shape(start) != x.shape:
        raise ValueError(f"start has shape {jnp.shape(start)}, x {x.shape}: a warm start is one image per image")
    x0 = x if start is None else project(jnp.asarray(start, x.dtype), x, eps)
    runs = restarts
    track = keep_best or runs > 1 or return_info

    def evaluate(xc, mkey):
        logits = call_model(logits_fn, xc, mkey)
        return obj_fn(logits, y), losses.is_adversarial(logits, y, targeted, success_margin)

    def loss_and_grad(xc, mkey):
        def f(xc):
            logits = call_model(logits_fn, xc, mkey)
            return -jnp.sum(grad_obj_fn(logits, y)), logits
        (_, logits), g = jax.value_and_grad(f, has_aux=True)(xc)
        return obj_fn(logits, y), losses.is_adversarial(logits, y, targeted, success_margin), g.astype(xc.dtype)

    def one_run(r, best):
        run_key = jax.random.fold_in(base_key, r)
        xc = init(run_key, x0, eps) if start is None else project(init(run_key, x0, eps), x, eps)
        state = optimizer.init(xc)

        def body(i, carry):
            xc, state, best = carry
            o, succ, g = loss_and_grad(xc, model_key(key, r, i))
            if keep_best:
                best = update_best(best, xc, o, succ)
            updates, state = optimizer.update(g, state, xc)
            xn = project(xc + updates.astype(xc.dtype), x, eps)
            return xn, state, best

        xc, _, best = jax.lax.fori_loop(0, steps, body, (xc, state, best))
        if track:
            o, succ = evaluate(xc, model_key(key, r, steps))
            best = update_best(best, xc, o, succ)
        return xc, best

    base_key = key if key is not None else jax.random.key(0)  # unused when not random_start
    best = init_best(x, jnp.promote_types(x.dtype, jnp.float32))
    if runs == 1:
        x_last, best = one_run(0, best)
        x_adv = best.x if track else x_last
    else:
        best = jax.lax.fori_loop(0, runs, lambda r, b: one_run(r, b)[1], best)
        x_adv = best.x
    if return_info:
        return x_adv, AttackInfo(best.success, best.objective)
    return x_adv
