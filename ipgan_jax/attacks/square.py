"""Square attack (Andriushchenko, Croce, Flammarion & Hein 2020), Linf and L2: score-based and
gradient-free, so it is unaffected by masked or obfuscated gradients.

Per example, a random search over perturbations at the corners of the eps ball: each iteration
changes one random s x s square window (Linf: set it to x +/- eps with one random sign per
channel; L2: move mass into the window with the paper's "eta" pattern of nested rectangles of
two opposite halves, taken from a second random window, keeping ||delta||_2 = eps), and keeps the
candidate if the margin loss z_y - max_{j != y} z_j decreased or the example became adversarial.
As in the reference code, a Linf window whose new signs would leave the image unchanged (the signs it
already has there) is redrawn before it is queried, so no query is spent on an unchanged image.
An example stops once it is adversarial (with ``success_margin`` > 0: adversarial by more than that margin in
logits, ``losses.is_adversarial``'s ``confidence``, so a barely adversarial point keeps being searched and a
recomputed forward pass still calls the returned one adversarial). The window side is s = round(sqrt(p * H * W))
with the paper's schedule for p (p_init = 0.8 halved at iterations 10, 50, 200, 500, 1000, 2000, 4000,
6000 and 8000; ``rescale_schedule`` maps it onto ``n_queries`` instead of 10000), at least 1 for
Linf and 3 (odd) for L2. Starts: Linf vertical stripes x +/- eps (one sign per column and
channel); L2 a grid of eta windows of side H // 5 with random signs, scaled to norm eps. With ``start``
(e.g. a gradient attack's example) the first restart starts there instead, projected onto the eps ball and
[0, 1]; :func:`square_warm` runs PGD and then Square from PGD's best iterate.

``n_queries`` (default 5000) counts every model evaluation of an example, the start included, so
an example never costs more than ``n_queries`` forward passes; the loop ends early once every
example is adversarial. Windows and signs are drawn per example (the reference code draws one
window position per iteration for the whole batch). A randomised model gets a fresh key per query.
Images: NHWC, square or not (the window is at most min(H, W)).
"""
from __future__ import annotations

from typing import Callable, NamedTuple, Optional, Union

import jax
import jax.numpy as jnp
import numpy as np

from ipgan_jax import contracts
from ipgan_jax.attacks import core, losses
from ipgan_jax.attacks.gradient import pgd
from ipgan_jax.attacks.transforms import call_model

P_BOUNDS = (10, 50, 200, 500, 1000, 2000, 4000, 6000, 8000)
UNCHANGED_TOL = 1e-7   # Linf: a candidate within this of x_best on every pixel changes nothing ...
MAX_REDRAWS = 16       # ... and its window's signs are redrawn, at most this many times (one channel: at most once)
RESTART_SALT = 0x5A17  # folded into the key for restarts 2, 3, ...


def p_schedule(i, p_init: float = 0.8, n_queries: int = 5000, rescale: bool = False):
    """The paper's fraction p of pixels changed at iteration i (int or traced): p_init / 2^m where
    m counts the bounds (10, 50, ..., 8000) strictly below i (after rescaling i by 10000 / n_queries)."""
    it = jnp.asarray(i)
    if rescale:
        it = (it * 10000) // int(n_queries)
    m = sum((it > b).astype(jnp.int32) for b in P_BOUNDS)
    return p_init / (2.0 ** m.astype(jnp.float32))


def _window_side(p, h, w, c_min, odd):
    s = jnp.round(jnp.sqrt(p * h * w)).astype(jnp.int32)
    s = jnp.maximum(s, c_min)
    if odd:
        s = s + (s % 2 == 0)
    return jnp.minimum(s, min(h, w))


def _window(key, b, h, w, s):
    """bool [B, H, W, 1] square window of side s at a uniform random position per example, and
    the top-left corners ([B], [B])."""
    kh, kw = jax.random.split(key)
    vh = jnp.floor(jax.random.uniform(kh, (b,)) * (h - s + 1).astype(jnp.float32)).astype(jnp.int32)
    vw = jnp.floor(jax.random.uniform(kw, (b,)) * (w - s + 1).astype(jnp.float32)).astype(jnp.int32)
    r = jnp.arange(h)[None, :, None] - vh[:, None, None]
    q = jnp.arange(w)[None, None, :] - vw[:, None, None]
    m = (r >= 0) & (r < s) & (q >= 0) & (q < s)
    return m[..., None], vh, vw


def _inv_sq_cumsum(n):
    """H(k) = sum_{m=1}^{k} 1/m^2 for k = 0..n: float32 [n+1]."""
    return jnp.asarray(np.concatenate([[0.0], np.cumsum(1.0 / np.arange(1, n + 1) ** 2)]), jnp.float32)


def eta_pattern(s, vh, vw, h, w, transpose):
    """The L2 window pattern of side s (traced int) at corners (vh, vw) [B] on an H x W canvas:
    float32 [B, H, W, 1], zero outside the window, unit L2 norm. The top half (s // 2 rows) holds
    nested centred rectangles with weights 1 / (k+1)^2 (element value sum_{k >= d} 1/(k+1)^2 with
    d its Chebyshev distance to the half's centre), normalised; the bottom half the same, negated.
    ``transpose`` bool [B] swaps rows and columns (the reference code does so with prob. 1/2)."""
    r = jnp.arange(h)[None, :, None] - vh[:, None, None]
    q = jnp.arange(w)[None, None, :] - vw[:, None, None]
    t = transpose[:, None, None]
    r, q = jnp.where(t, q, r), jnp.where(t, r, q)
    inside = (r >= 0) & (r < s) & (q >= 0) & (q < s)
    half = s // 2
    top = r < half
    i = jnp.where(top, r, r - half)
    rows = jnp.where(top, half, s - half)
    d = jnp.maximum(jnp.abs(i - rows // 2), jnp.abs(q - s // 2))
    table = _inv_sq_cumsum(max(h, w) + 1)
    kmax = s // 2 + 1
    val = jnp.where(inside, table[jnp.clip(kmax, 0, table.shape[0] - 1)] - table[jnp.clip(d, 0, table.shape[0] - 1)],
                    0.0)
    ax = (1, 2)
    top_v = jnp.where(top & inside, val, 0.0)
    bot_v = jnp.where(~top & inside, val, 0.0)
    top_v = top_v / jnp.sqrt(jnp.sum(top_v ** 2, ax, keepdims=True) + 1e-24)
    bot_v = bot_v / jnp.sqrt(jnp.sum(bot_v ** 2, ax, keepdims=True) + 1e-24)
    e = top_v - bot_v
    e = e / jnp.sqrt(jnp.sum(e ** 2, ax, keepdims=True) + 1e-24)
    return e[..., None]


def _l2_init(key, x, eps):
    """A grid of eta windows of side H // 5 with random signs per (example, channel, window) and a
    random orientation per (example, window), scaled to L2 norm eps."""
    b, h, w, c = x.shape
    s = max(h // 5, 1)
    sp = (h - 5 * s) // 2
    starts_h = [sp + a * s for a in range(h // s) if sp + a * s + s <= h]
    starts_w = [sp + a * s for a in range(w // s) if sp + a * s + s <= w]
    vh = jnp.asarray([a for a in starts_h for _ in starts_w], jnp.int32)
    vw = jnp.asarray([v for _ in starts_h for v in starts_w], jnp.int32)
    n = vh.shape[0]
    pats = [eta_pattern(jnp.int32(s), vh, vw, h, w, jnp.full((n,), t)) for t in (False, True)]  # [n, H, W, 1]
    ks, kt = jax.random.split(key)
    signs = jax.random.rademacher(ks, (n, b, 1, 1, c), jnp.float32)
    flips = jax.random.bernoulli(kt, 0.5, (n, b))
    chosen = jnp.where(flips[:, :, None, None, None], pats[1][:, None], pats[0][:, None])  # [n, B, H, W, 1]
    delta = jnp.sum(chosen * signs, axis=0)
    delta = delta / core.expand_per_example(core.l2_norm(delta) + 1e-12, delta)
    return core.project_l2(x + eps * delta.astype(x.dtype), x, eps)


class _State(NamedTuple):
    i: jax.Array
    x_best: jax.Array
    obj_best: jax.Array    # [B], maximised (untargeted: -margin)
    success: jax.Array     # [B]
    queries: jax.Array     # [B] int32


class _Search(NamedTuple):
    init: Callable      # (x, y, start=None) -> _State after the start query (1 query per example)
    run: Callable       # (x, y, st, stop) -> _State after the iterations st.i .. stop - 1


def _search(logits_fn, key, targeted, eps, norm, n_queries, p_init, rescale_schedule,
            success_margin=0.0) -> _Search:
    """Square's start and loop as functions of the batch (x, y) and the loop state, so the loop can
    run in one piece (``square``) or in chunks on shrinking batches (``square_compacting``). Every
    random draw is keyed by (key, iteration) and drawn per example for the current batch; a query
    succeeds when adversarial by more than ``success_margin`` (logit units)."""
    obj = losses.objective("margin", targeted)
    k_init, k_loop = jax.random.split(jax.random.fold_in(key, 0))

    def query(xc, y, i):
        z = call_model(logits_fn, xc, core.model_key(key, i))
        return obj(z, y), losses.is_adversarial(z, y, targeted, success_margin)

    def init(x, y, start=None):
        b, h, w, c = x.shape
        if start is not None:   # a given start (x's shape and dtype), projected onto the eps ball and [0, 1]
            x0 = core.get_projection(norm)(start, x, eps)
        elif norm == "linf":
            stripes = jax.random.rademacher(k_init, (b, 1, w, c), x.dtype)
            x0 = core.project_linf(x + eps * stripes, x, eps)
        else:
            x0 = _l2_init(k_init, x, eps)
        o0, s0 = query(x0, y, 0)
        return _State(jnp.zeros((), jnp.int32), x0, o0, s0, jnp.ones((b,), jnp.int32))

    def candidate_linf(kk, x, st, s):
        b, h, w, c = x.shape
        kw_, ks = jax.random.split(kk)
        m, _, _ = _window(kw_, b, h, w, s)

        def draw(k):
            sign = jax.random.rademacher(k, (b, 1, 1, c), x.dtype)
            return core.project_linf(jnp.where(m, st.x_best + 2.0 * eps * sign, st.x_best), x, eps)

        def unchanged(xn):     # [B]: the window would leave the image as it is (same signs as x_best there)
            return jnp.all(jnp.abs(xn - st.x_best) < UNCHANGED_TOL, axis=(1, 2, 3))

        def redraw(carry):     # the reference code redraws the signs of such a window instead of spending a query
            t, xn = carry
            return t + 1, jnp.where(core.expand_per_example(unchanged(xn), x), draw(jax.random.fold_in(ks, t + 1)), xn)

        _, xn = jax.lax.while_loop(lambda c_: (c_[0] < MAX_REDRAWS) & jnp.any(unchanged(c_[1])), redraw,
                                   (jnp.zeros((), jnp.int32), draw(ks)))
        return xn

    def candidate_l2(kk, x, st, s):
        b, h, w, c = x.shape
        k1, k2, ks, kt = jax.random.split(kk, 4)
        delta = (st.x_best - x).astype(jnp.float32)
        m1, vh, vw = _window(k1, b, h, w, s)
        m2, _, _ = _window(k2, b, h, w, s)
        ax = (1, 2)
        nw1 = jnp.sqrt(jnp.sum(jnp.where(m1, delta, 0.0) ** 2, ax, keepdims=True))
        n_img = core.expand_per_example(core.l2_norm(delta), delta)
        nwin = jnp.sqrt(jnp.sum(jnp.where(m1 | m2, delta, 0.0) ** 2, ax, keepdims=True))
        sign = jax.random.rademacher(ks, (b, 1, 1, c), jnp.float32)
        new = eta_pattern(s, vh, vw, h, w, jax.random.bernoulli(kt, 0.5, (b,))) * sign
        new = new + jnp.where(m1, delta, 0.0) / (1e-12 + nw1)
        new_norm = jnp.sqrt(jnp.sum(jnp.where(m1, new, 0.0) ** 2, ax, keepdims=True))
        budget = jnp.sqrt(jnp.maximum(eps ** 2 - n_img ** 2, 0.0) / c + nwin ** 2)
        new = new / (1e-12 + new_norm) * budget
        delta = jnp.where(m2, 0.0, delta)
        delta = jnp.where(m1, new, delta)
        delta = delta / core.expand_per_example(core.l2_norm(delta) + 1e-12, delta)
        return core.project_l2(x + (eps * delta).astype(x.dtype), x, eps)

    candidate = candidate_linf if norm == "linf" else candidate_l2

    def run(x, y, st, stop):
        _, h, w, _ = x.shape

        def body(st: _State):
            p = p_schedule(st.i, p_init, n_queries, rescale_schedule)
            s = _window_side(p, h, w, 1 if norm == "linf" else 3, odd=(norm == "l2"))
            xn = candidate(jax.random.fold_in(k_loop, st.i), x, st, s)
            o, succ = query(xn, y, st.i + 1)
            active = ~st.success
            accept = active & ((o > st.obj_best) | succ)
            return _State(st.i + 1,
                          jnp.where(core.expand_per_example(accept, x), xn, st.x_best),
                          jnp.where(accept, o, st.obj_best),
                          st.success | (active & succ),
                          st.queries + active.astype(jnp.int32))

        return jax.lax.while_loop(lambda st: (st.i < stop) & ~jnp.all(st.success), body, st)

    return _Search(init, run)


def _checked(x, y, key, norm, n_queries, restarts, start=None, attack="square"):
    """The arguments of a Square run, checked: (x, y int32, n_queries, restarts, start in x's dtype or None).
    ValueError in one line, starting with ``attack``, for a ``start`` that is not a float array of x's shape."""
    core.check_norm(norm)
    n_queries, restarts = int(n_queries), int(restarts)
    if n_queries < 1:
        raise ValueError(f"square needs n_queries >= 1, got {n_queries}")
    if restarts < 1:
        raise ValueError(f"square needs restarts >= 1, got {restarts}")
    if key is None:
        raise ValueError("square is a random search: pass a PRNG key")
    x, y = core.check_input(x, y)
    if x.ndim != 4:
        raise ValueError(f"square needs NHWC images, got shape {x.shape}")
    if start is not None:
        if tuple(np.shape(start)) != x.shape:
            raise ValueError(f"{attack}: start has shape {tuple(np.shape(start))}, x {x.shape}: a start is one "
                             f"image per image, float [B, H, W, C] of x's shape")
        dtype = jnp.result_type(start)
        if not jnp.issubdtype(dtype, jnp.floating):
            raise ValueError(f"{attack}: start must be float pixels in [0, 1] like x; got dtype {dtype}")
        start = jnp.asarray(start, x.dtype)
    return x, y, n_queries, restarts, start


def restart_keys(key, restarts: int) -> list:
    """The key of each restart: ``key`` itself for the first (so ``restarts=1`` is the single run), then
    independent keys; restart r's draws do not depend on how many restarts follow."""
    base = jax.random.fold_in(key, RESTART_SALT)
    return [key] + [jax.random.fold_in(base, r) for r in range(1, int(restarts))]


def _better(best: _State, st: _State) -> _State:
    """Per example: keep ``best`` if it is adversarial, else take ``st`` if it is or has a higher objective;
    queries add up."""
    take = ~best.success & (st.success | (st.obj_best > best.obj_best))
    return _State(st.i, jnp.where(core.expand_per_example(take, st.x_best), st.x_best, best.x_best),
                  jnp.where(take, st.obj_best, best.obj_best), best.success | st.success, best.queries + st.queries)


@contracts.attack_contract(on_empty=core.empty_result_with_queries)
def square(logits_fn: Callable, x: jax.Array, y: jax.Array, *, key: Optional[jax.Array] = None,
           targeted: bool = False, eps: float = 0.3, norm: str = "linf", n_queries: int = 5000,
           p_init: float = 0.8, rescale_schedule: bool = False, restarts: int = 1, return_info: bool = False,
           start: Optional[jax.Array] = None, success_margin: float = 0.0):
    """Square attack. x float [B, H, W, C] in [0, 1]; y int [B] (targets when ``targeted``: the
    margin is then z_t - max_{j != t} z_j, maximised). Needs ``key``. Returns x_adv inside the eps
    ball and [0, 1] (x's dtype), or ``(x_adv, AttackInfo)`` with ``return_info`` (its ``queries``
    field: forward passes spent per example, <= restarts * n_queries). ``restarts`` independent searches
    (the reference's ``n_restarts``), each with the full ``n_queries``, on the examples no earlier search
    broke; per example the first adversarial point wins, else the best objective. Pure and jit-able; the
    whole batch is queried until every example is adversarial (``square_compacting`` drops the finished ones).
    ``start`` (optional, float [B, H, W, C] of x's shape, e.g. a gradient attack's example): the first restart
    starts from it projected onto the eps ball (eps in pixel units) and [0, 1] instead of the stripes / L2 grid;
    its query is still spent, and an example adversarial there is kept as it is. Later restarts start as usual;
    None (the default) is the plain attack, bit for bit. ValueError for a ``start`` of another shape.
    ``success_margin`` (logit units, >= 0, default 0): an example counts as broken, stops querying and is skipped
    by later restarts only once ``max_{j != y} z_j > z_y + success_margin`` (targeted: ``z_t > max_{j != t} z_j
    + success_margin``); until then the search keeps lowering the margin. 0 is the plain argmax test, bit for
    bit; ValueError when negative."""
    x, y, n_queries, restarts, start = _checked(x, y, key, norm, n_queries, restarts, start)
    best = _square_run(logits_fn, x, y, key, targeted, eps, norm, n_queries, p_init, rescale_schedule, restarts,
                       start, success_margin)
    if return_info:
        return best.x_best, core.AttackInfo(best.success, best.obj_best, best.queries)
    return best.x_best


@contracts.attack_contract(on_empty=core.empty_result_with_queries)
def square_warm(logits_fn: Callable, x: jax.Array, y: jax.Array, *, key: Optional[jax.Array] = None,
                targeted: bool = False, eps: float = 0.3, norm: str = "linf", n_queries: int = 5000,
                p_init: float = 0.8, rescale_schedule: bool = False, restarts: int = 1, steps: int = 40,
                step_size: Optional[float] = None, loss: Union[str, Callable] = "ce",
                random_start: Union[bool, str] = True, return_info: bool = False, success_margin: float = 0.0):
    """Square started from PGD's best iterate: one PGD run, then ``square`` with ``start`` at its example.

    The gradient run finds a point near the decision boundary that the random search then refines without
    gradients (so masked gradients near it do not stop it). Per image the result is never weaker than the PGD
    run alone: an image PGD broke keeps PGD's example (Square's acceptance rule keeps an adversarial start
    anyway); else Square's point, adversarial or with a margin at least that of Square's start (PGD's example
    projected once more: equal up to float rounding). The key is split in two (Square, PGD), as
    ``pgd(warm_eps=...)`` splits its two runs. Pure and jit-able.

    Args:
        logits_fn: fn(x) -> logits [B, K] (a randomised model gets a fresh key per call).
        x: float [B, H, W, C] images in [0, 1].
        y: int [B] true labels (targets when ``targeted``).
        key: PRNG key (required: both runs are random).
        targeted: move towards y instead of away from it.
        eps: the radius of the ball, in pixel units; ``norm`` 'linf' or 'l2'.
        n_queries: Square's forward passes per example and restart, its start query included.
        p_init: Square's initial fraction of pixels per window (``p_schedule``).
        rescale_schedule: Square's ``p_schedule`` mapped onto ``n_queries`` instead of 10000.
        restarts: Square's restarts (the first from PGD's example, later ones from Square's usual start, each
            only on the images no earlier one broke); PGD runs once.
        steps: PGD iterations.
        step_size: PGD's step; None is pgd's default rule (Linf eps / 30, L2 2.5 * eps / steps).
        loss: PGD's loss ('ce', 'margin', 'dlr' or a callable); Square maximises the margin.
        random_start: PGD's start (True / 'uniform', 'corner', or False: from x); its best iterate is kept.
        return_info: also return the per-example result.
        success_margin: logit units, >= 0 (default 0, the plain argmax test): PGD's iterates and Square's queries
            count as successes only when adversarial by more than this (``max_{j != y} z_j > z_y +
            success_margin``; targeted ``z_t > max_{j != t} z_j + success_margin``), so an image PGD broke only
            barely is handed to Square, which keeps searching it. ValueError when negative.

    Returns:
        x_adv float [B, H, W, C] (x's dtype) inside the eps ball and [0, 1]; with ``return_info`` the pair
        ``(x_adv, AttackInfo)``: success bool [B] (PGD's or Square's), Square's margin objective [B] (for an
        image PGD broke, that of Square's start, i.e. PGD's example) and Square's queries int32 [B] (PGD's
        gradient steps are not counted).
    """
    x, y, n_queries, restarts, _ = _checked(x, y, key, norm, n_queries, restarts, attack="square_warm")
    k_square, k_pgd = jax.random.split(key)
    x_pgd, pgd_info = pgd(logits_fn, x, y, key=k_pgd, targeted=targeted, eps=eps, steps=steps,
                          step_size=step_size, norm=norm, loss=loss, random_start=random_start, restarts=1,
                          keep_best=True, return_info=True, success_margin=success_margin)
    best = _square_run(logits_fn, x, y, k_square, targeted, eps, norm, n_queries, p_init, rescale_schedule,
                       restarts, x_pgd, success_margin)
    keep = pgd_info.success
    x_adv = jnp.where(core.expand_per_example(keep, x), x_pgd, best.x_best)
    if return_info:
        return x_adv, core.AttackInfo(keep | best.success, best.obj_best, best.queries)
    return x_adv


def _square_run(logits_fn, x, y, key, targeted, eps, norm, n_queries, p_init, rescale_schedule, restarts,
                start, success_margin=0.0) -> _State:
    """``square``'s restarts on checked arguments: the per-example best _State (``start`` for the first only;
    success: adversarial by more than ``success_margin``)."""
    best = None
    for r, k in enumerate(restart_keys(key, restarts)):
        search = _search(logits_fn, k, targeted, eps, norm, n_queries, p_init, rescale_schedule, success_margin)
        st = search.init(x, y, start if r == 0 else None)
        if best is not None:   # examples an earlier restart broke are done: they spend the start query only
            st = st._replace(success=st.success | best.success)
        st = search.run(x, y, st, n_queries - 1)
        if best is not None:
            st = st._replace(success=st.success & ~best.success, queries=jnp.where(best.success, 0, st.queries))
        best = st if best is None else _better(best, st)
    return best


@contracts.attack_contract(on_empty=core.empty_result_with_queries)
def square_compacting(logits_fn: Callable, x, y, *, key, targeted: bool = False, eps: float = 0.3,
                      norm: str = "linf", n_queries: int = 5000, p_init: float = 0.8,
                      rescale_schedule: bool = False, restarts: int = 1, chunk: int = 250, min_bucket: int = 8,
                      return_info: bool = False, start: Optional[jax.Array] = None, success_margin: float = 0.0):
    """Square with the finished examples dropped: the same search, run ``chunk`` iterations at a
    time; between chunks (on the host) the examples still not adversarial are gathered into a batch
    padded to the next power of two (at least ``min_bucket``; few shapes compile), so late
    iterations query only the hard examples, as the reference implementation does. A restart runs
    on the examples no earlier restart broke. Same arguments, budget and result contract as
    ``square``; the draws depend on the batch layout, so the result is a different (equally valid)
    sample of the search than ``square``'s. Not jit-able itself (it calls jitted chunks). ``start``: as
    ``square``'s (the first restart's start). ``success_margin`` (logit units, >= 0, default 0): as ``square``'s
    (an example is dropped, and skipped by later restarts, only once adversarial by more than it).
    Returns x_adv (numpy-backed jax array), or (x_adv, AttackInfo)."""
    x, y, n_queries, restarts, start = _checked(x, y, key, norm, n_queries, restarts, start, "square_compacting")
    if int(chunk) < 1:
        raise ValueError(f"square_compacting needs chunk >= 1, got {chunk}")
    x_np, y_np = np.asarray(x), np.asarray(y)
    out = None
    for k in restart_keys(key, restarts):
        todo = np.arange(x_np.shape[0]) if out is None else np.nonzero(~out["success"])[0]
        if todo.size == 0:
            break
        search = _search(logits_fn, k, targeted, eps, norm, n_queries, p_init, rescale_schedule, success_margin)
        run = _compacting_run(search, x_np[todo], y_np[todo], n_queries, int(chunk), min_bucket,
                              None if out is not None or start is None else np.asarray(start)[todo])
        if out is None:
            out = run
            continue
        take = run["success"] | (run["obj_best"] > out["obj_best"][todo])
        for f in ("x_best", "obj_best", "success"):
            out[f][todo[take]] = run[f][take]
        out["queries"][todo] += run["queries"]
    x_adv = jnp.asarray(out["x_best"])
    if return_info:
        return x_adv, core.AttackInfo(jnp.asarray(out["success"]), jnp.asarray(out["obj_best"]),
                                      jnp.asarray(out["queries"]))
    return x_adv


def _compacting_run(search: _Search, x_np, y_np, n_queries: int, chunk: int, min_bucket: int,
                    start_np=None) -> dict:
    """One search over (x_np, y_np) in chunks on the examples still live, from ``start_np`` when given:
    {field: numpy array [B]}."""
    init, run = jax.jit(search.init), jax.jit(search.run)
    st = jax.device_get(init(jnp.asarray(x_np), jnp.asarray(y_np),
                             None if start_np is None else jnp.asarray(start_np)))
    fields = ("x_best", "obj_best", "success", "queries")
    out = {f: np.array(getattr(st, f)) for f in fields}
    idx = np.arange(x_np.shape[0])               # example of each real row of ``st``
    i = int(st.i)
    while i < n_queries - 1:
        live = ~np.asarray(st.success)[: idx.size]
        idx, rows = idx[live], np.nonzero(live)[0]
        if idx.size == 0:
            break
        pad = core.bucket_size(idx.size, min_bucket) - idx.size
        sel = np.concatenate([np.arange(idx.size), np.zeros(pad, int)])   # padding repeats the first
        st = _State(jnp.int32(i), *(jnp.asarray(np.asarray(getattr(st, f))[rows[sel]]) for f in fields))
        stop = min(i + chunk, n_queries - 1)
        st = jax.device_get(run(jnp.asarray(x_np[idx[sel]]), jnp.asarray(y_np[idx[sel]]), st, jnp.int32(stop)))
        for f in fields:
            out[f][idx] = np.asarray(getattr(st, f))[: idx.size]
        if int(st.i) <= i:   # a chunk that does not advance would make this loop spin forever
            raise RuntimeError(f"square_compacting: the chunk from iteration {i} to {stop} made no "
                               f"progress (now at {int(st.i)} of {n_queries - 1})")
        i = int(st.i)
    return out
