"""Tests for APGD / APGD-T / Square / the autoattack ensemble: invariants on a tiny MLP, the
paper's schedules, query counts, and strength on the trained LeNet fixture (ipgan_jax/testing/attack_fixtures.py).
"""
from __future__ import annotations

import functools
import importlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ipgan_jax import attacks as A
from ipgan_jax.testing import attack_fixtures as af

apgd_mod = importlib.import_module("ipgan_jax.attacks.apgd")      # the package exports functions
square_mod = importlib.import_module("ipgan_jax.attacks.square")  # of the same names


TINY = af.tiny_mlp()
X = jax.random.uniform(jax.random.key(1), (16, 8, 8, 1))
Y = jnp.argmax(TINY(X), -1).astype(jnp.int32)
L2_RTOL = 1e-6


def _acc(f, x, y):
    return float(jnp.mean(jnp.argmax(f(x), -1) == y))


# ----------------------------------------------------------------------------- invariants

CASES = [
    ("apgd", dict(steps=6)),
    ("apgd", dict(steps=6, norm="l2", loss="dlr")),
    ("apgd", dict(steps=6, loss="ce", targeted=True)),
    ("apgd_t", dict(steps=4, n_target_classes=2)),
    ("square", dict(n_queries=30)),
    ("square", dict(n_queries=30, norm="l2")),
]


@functools.lru_cache(maxsize=None)
def _jitted(name, frozen):
    fn = A.ATTACKS[name]
    return jax.jit(lambda x, y, k, eps: fn(TINY, x, y, key=k, eps=eps, **dict(frozen)))


@pytest.mark.parametrize("name,params", CASES, ids=[f"{c[0]}-{i}" for i, c in enumerate(CASES)])
def test_inside_ball_and_box_and_eps0_is_identity(name, params):
    norm = params.get("norm", "linf")
    eps = 0.1 if norm == "linf" else 0.8
    y = (Y + 1) % 10 if params.get("targeted") else Y
    fn = _jitted(name, tuple(sorted(params.items())))
    xa = fn(X, y, jax.random.key(0), jnp.float32(eps))
    assert xa.shape == X.shape and xa.dtype == X.dtype
    assert float(xa.min()) >= 0.0 and float(xa.max()) <= 1.0
    d = np.asarray(xa - X, np.float64).reshape(len(X), -1)
    dist = np.abs(d).max(1) if norm == "linf" else np.linalg.norm(d, axis=1)
    assert np.all(dist <= (np.float32(eps) if norm == "linf" else eps * (1 + L2_RTOL))), dist.max()
    assert np.any(dist > 0)
    np.testing.assert_array_equal(np.asarray(fn(X, y, jax.random.key(0), jnp.float32(0.0))), np.asarray(X))


def test_need_key_and_validate():
    for fn in (A.apgd, A.apgd_targeted, A.square):
        with pytest.raises(ValueError, match="key"):
            fn(TINY, X, Y)
    with pytest.raises(ValueError, match="norm"):
        A.apgd(TINY, X, Y, key=jax.random.key(0), norm="l1")
    with pytest.raises(ValueError, match="unknown attack"):
        A.autoattack(TINY, X, Y, key=jax.random.key(0), eps=0.1, attacks=("fab-t",))


# ----------------------------------------------------------------------------- APGD schedule

def test_checkpoints_follow_the_paper():
    """w_j = ceil(p_j * N) with p_0 = 0, p_1 = 0.22, p_{j+1} = p_j + max(p_j - p_{j-1} - 0.03, 0.06);
    the check after iteration w_j - 1 (0-based) uses a window of w_j - w_{j-1} iterations. For
    N = 100 the reference code's integer windows (int(0.22 N), shrinking by int(0.03 N), at least
    int(0.06 N)) give exactly these; for other N they are what we (and the reference) use."""
    is_check, window = apgd_mod.checkpoints(50)
    assert list(np.nonzero(is_check)[0]) == [10, 20, 29, 37, 44] and list(window[is_check]) == [11, 10, 9, 8, 7]
    for n in (100,):
        p = [0.0, 0.22]
        while p[-1] + max(p[-1] - p[-2] - 0.03, 0.06) <= 1.0:
            p.append(p[-1] + max(p[-1] - p[-2] - 0.03, 0.06))
        w = [int(np.ceil(round(q * n, 6))) for q in p]
        is_check, window = apgd_mod.checkpoints(n)
        assert list(np.nonzero(is_check)[0]) == [v - 1 for v in w[1:]], n
        assert list(window[is_check]) == list(np.diff(w)), n


def test_best_loss_is_monotone_and_step_halves_only_at_checkpoints():
    from ipgan_jax.attacks import losses as L
    steps = 30
    run = jax.jit(lambda k: apgd_mod.apgd_run(
        TINY, X, key=k, eps=0.05, norm="linf", steps=steps, value_fn=lambda z: L.cross_entropy(z, Y),
        grad_fn=lambda z: L.logsumexp_margin(z, Y), success_fn=lambda z: A.is_adversarial(z, Y), history=True))
    xa, succ, best, (best_h, step_h, loss_h) = run(jax.random.key(0))
    best_h, step_h, loss_h = map(np.asarray, (best_h, step_h, loss_h))
    assert _monotone(best_h)
    assert not _monotone(loss_h)  # the raw loss does go down sometimes: the check above can fail
    np.testing.assert_allclose(best_h, np.maximum.accumulate(loss_h, axis=0), rtol=1e-6)
    np.testing.assert_allclose(np.asarray(best), best_h[-1], rtol=1e-6)
    is_check, _ = apgd_mod.checkpoints(steps)
    ratio = step_h[1:] / step_h[:-1]
    assert np.all((ratio == 1.0) | (ratio == 0.5))
    assert np.all(ratio[~is_check] == 1.0)
    assert np.any(ratio == 0.5)  # some example did halve
    np.testing.assert_allclose(step_h[0], 2 * 0.05)


def _monotone(h):
    return bool(np.all(np.diff(h, axis=0) >= 0))


def test_monotone_check_rejects_a_decreasing_history():
    assert not _monotone(np.array([[1.0], [2.0], [1.5]]))
    assert _monotone(np.array([[1.0], [1.0], [3.0]]))


# ----------------------------------------------------------------------------- Square

def test_p_schedule_matches_the_paper():
    expect = {0: 0.8, 10: 0.8, 11: 0.4, 50: 0.4, 51: 0.2, 201: 0.1, 501: 0.05, 1001: 0.025, 2001: 0.0125,
              4001: 0.8 / 128, 6001: 0.8 / 256, 8001: 0.8 / 512, 20000: 0.8 / 512}
    for i, v in expect.items():
        assert float(square_mod.p_schedule(i)) == pytest.approx(v, rel=1e-6), i
    assert float(square_mod.p_schedule(60, n_queries=1000, rescale=True)) == pytest.approx(0.8 / 16)  # 60 -> 600


def test_eta_pattern_unit_norm_and_opposite_halves():
    pat = np.asarray(square_mod.eta_pattern(jnp.int32(5), jnp.array([1]), jnp.array([2]), 8, 8,
                                            jnp.array([False])))[0, :, :, 0]
    assert np.isclose(np.sum(pat ** 2), 1.0, atol=1e-6)
    win = pat[1:6, 2:7]
    assert np.all(pat[0] == 0) and np.all(pat[:, :2] == 0)
    assert np.all(win[:2] > 0) and np.all(win[2:] < 0)       # top 5 // 2 rows +, bottom rows -
    assert win[1, 2] == win[:2].max() and win[3, 2] == win[2:].min()  # peaks at the halves' centres
    t = np.asarray(square_mod.eta_pattern(jnp.int32(5), jnp.array([1]), jnp.array([2]), 8, 8,
                                          jnp.array([True])))[0, :, :, 0]
    np.testing.assert_allclose(t[1:6, 2:7], win.T, atol=1e-7)


def test_square_query_count():
    """queries <= n_queries; a failed example used all of them; an example broken after q queries
    is broken by a run with budget q (same key: same trajectory) and not with budget q - 1."""
    f = af.tiny_mlp(seed=3, scale=1.0)
    y = jnp.argmax(f(X), -1).astype(jnp.int32)
    run = jax.jit(lambda q: A.square(f, X, y, key=jax.random.key(0), eps=0.08, n_queries=q, return_info=True),
                  static_argnums=0)
    n = 60
    xa, info = run(n)
    q, succ = np.asarray(info.queries), np.asarray(info.success)
    np.testing.assert_array_equal(succ, np.asarray(A.is_adversarial(f(xa), y)))
    assert np.all(q <= n) and np.all(q >= 1) and np.all(q[~succ] == n)
    broken_late = np.nonzero(succ & (q > 1))[0]
    assert 0 < broken_late.size and (~succ).any(), (succ.mean(), q)
    i = int(broken_late[0])
    assert bool(run(int(q[i]))[1].success[i]) and not bool(run(int(q[i]) - 1)[1].success[i])


def test_square_never_spends_a_query_on_a_window_that_leaves_the_image_unchanged():
    """One pixel, one channel: the window is the whole image, and the model is fooled exactly when the pixel
    is below 0.5. An example whose start is x + eps must be broken by its first search query (the only sign
    that changes the image is -); drawing the sign without the reference's redraw rule wastes half the queries."""
    b = 256
    x = jnp.full((b, 1, 1, 1), 0.5, jnp.float32)
    def f(z):
        return jnp.concatenate([10.0 * (z.reshape(-1, 1) - 0.5), jnp.zeros((z.shape[0], 1))], -1)
    y = jnp.zeros((b,), jnp.int32)
    xa, info = A.square(f, x, y, key=jax.random.key(1), eps=0.3, n_queries=50, return_info=True)
    q = np.asarray(info.queries)
    assert np.asarray(info.success).all() and np.allclose(np.asarray(xa), 0.2)
    assert set(q.tolist()) == {1, 2} and 0.3 < np.mean(q == 2) < 0.7, np.bincount(q)   # start -, or start + then -


@pytest.mark.slow
def test_square_restarts_search_again_only_where_earlier_searches_failed():
    """restarts=1 is the single search; a second restart keeps every example the first broke (same point,
    no extra query) and can only add broken examples; the compacting driver keeps the same contract."""
    f = af.tiny_mlp(seed=3, scale=1.0)
    y = jnp.argmax(f(X), -1).astype(jnp.int32)
    kw = dict(key=jax.random.key(0), eps=0.06, n_queries=10, return_info=True)
    x1, i1 = A.square(f, X, y, **kw)
    x1b, i1b = A.square(f, X, y, restarts=1, **kw)
    np.testing.assert_array_equal(np.asarray(x1), np.asarray(x1b))
    x3, i3 = A.square(f, X, y, restarts=3, **kw)
    s1, s3 = np.asarray(i1.success), np.asarray(i3.success)
    assert s1.any() and (~s1).any() and s3.sum() > s1.sum() and np.all(s3[s1])
    np.testing.assert_array_equal(np.asarray(x3)[s1], np.asarray(x1)[s1])
    q1, q3 = np.asarray(i1.queries), np.asarray(i3.queries)
    np.testing.assert_array_equal(q3[s1], q1[s1])
    assert np.all(q3[~s1] > 10) and np.all(q3 <= 30)
    np.testing.assert_array_equal(s3, np.asarray(A.is_adversarial(f(x3), y)))
    assert np.all(np.abs(np.asarray(x3) - np.asarray(X)) <= 0.06 + 1e-6)
    xc, ic = A.square_compacting(f, X, y, restarts=3, chunk=4, **kw)
    sc = np.asarray(ic.success)
    np.testing.assert_array_equal(sc, np.asarray(A.is_adversarial(f(xc), y)))
    assert sc.sum() > s1.sum() and np.all(np.asarray(ic.queries) <= 30)
    with pytest.raises(ValueError, match="restarts must be an int >= 1"):
        A.square(f, X, y, restarts=0, **kw)


@pytest.mark.slow
def test_square_compacting_is_square_when_nothing_is_dropped():
    """With one chunk and no example broken by the start, the compacting driver runs exactly
    square's search (same batch, same draws): bit-identical output and query counts."""
    f = af.tiny_mlp(seed=3, scale=1.0)
    kw = dict(key=jax.random.key(0), eps=0.06, n_queries=60, return_info=True)
    y16 = jnp.argmax(f(X), -1).astype(jnp.int32)
    keep = ~np.asarray(A.square(f, X, y16, **{**kw, "n_queries": 1})[1].success)
    x, y = X[np.nonzero(keep)[0][:8]], y16[np.nonzero(keep)[0][:8]]
    _, start = A.square(f, x, y, **{**kw, "n_queries": 1})
    assert not np.asarray(start.success).any()    # precondition: the start breaks none of the 8
    xa, info = jax.jit(lambda x, y: A.square(f, x, y, **kw))(x, y)
    assert np.asarray(info.success).any()         # ... and the search breaks some
    xc, infoc = A.square_compacting(f, x, y, chunk=60, min_bucket=8, **kw)
    np.testing.assert_array_equal(np.asarray(xc), np.asarray(xa))
    np.testing.assert_array_equal(np.asarray(infoc.queries), np.asarray(info.queries))


def test_square_compacting_drops_broken_examples_and_keeps_the_contract():
    f = af.tiny_mlp(seed=3, scale=1.0)
    y = jnp.argmax(f(X), -1).astype(jnp.int32)
    seen = []

    def watched(x):
        seen.append(x.shape[0])    # trace time: one entry per compiled batch size
        return f(x)

    n = 60
    xc, info = A.square_compacting(watched, X, y, key=jax.random.key(0), eps=0.08, n_queries=n, chunk=10,
                                   min_bucket=2, return_info=True)
    q, succ = np.asarray(info.queries), np.asarray(info.success)
    np.testing.assert_array_equal(succ, np.asarray(A.is_adversarial(f(xc), y)))
    assert np.all(q <= n) and np.all(q >= 1) and np.all(q[~succ] == n)
    assert float(jnp.max(jnp.abs(xc - X))) <= np.float32(0.08) and float(xc.min()) >= 0 and float(xc.max()) <= 1
    assert 0 < succ.sum() < succ.size
    assert max(seen) == 16 and min(seen) < 16, seen          # later chunks ran on fewer examples
    _, info_s = A.square(f, X, y, key=jax.random.key(0), eps=0.08, n_queries=n, return_info=True)
    assert abs(float(np.mean(succ)) - float(np.mean(info_s.success))) <= 0.25
    with pytest.raises(ValueError, match="chunk"):
        A.square_compacting(f, X, y, key=jax.random.key(0), chunk=0)


def test_square_compacting_stops_on_a_chunk_that_makes_no_progress(monkeypatch):
    """A chunk runner that never advances the iteration counter (e.g. an off-by-one stop) is an
    error naming the iteration, not an endless host loop."""
    real = square_mod._search

    def stalled(*args):
        s = real(*args)
        return s._replace(run=lambda x, y, st, stop: st)   # returns its input: i never moves

    monkeypatch.setattr(square_mod, "_search", stalled)
    f = af.tiny_mlp(seed=3, scale=1.0)
    y = jnp.argmax(f(X), -1).astype(jnp.int32)
    with pytest.raises(RuntimeError, match="no progress"):
        A.square_compacting(f, X, y, key=jax.random.key(0), eps=0.01, n_queries=60, chunk=10)


# ----------------------------------------------------------------------------- trained LeNet

@pytest.fixture(scope="module")
def lenet_fn():
    return af.trained_lenet().logits_fn()


@pytest.fixture(scope="module")
def mnist64():
    return af.mnist_test_batch(64)


def test_apgd_ce_eps03_breaks_everything(lenet_fn, mnist64):
    x, y = mnist64
    xa = jax.jit(lambda x, y: A.apgd(lenet_fn, x, y, key=jax.random.key(0), eps=0.3, steps=50))(x, y)
    assert _acc(lenet_fn, x, y) >= 0.9
    assert _acc(lenet_fn, xa, y) == 0.0


@pytest.mark.slow
def test_apgd_at_least_as_strong_as_pgd40(lenet_fn, mnist64):
    x, y = mnist64
    eps = 0.1
    key = jax.random.key(0)
    pgd = jax.jit(lambda x, y: A.pgd(lenet_fn, x, y, key=key, eps=eps, steps=40, step_size=eps / 10))(x, y)
    ap_ce = jax.jit(lambda x, y: A.apgd(lenet_fn, x, y, key=key, eps=eps, steps=40))(x, y)
    ap_t = jax.jit(lambda x, y: A.apgd_targeted(lenet_fn, x, y, key=key, eps=eps, steps=20,
                                                n_target_classes=3))(x, y)
    acc_pgd, acc_ce, acc_t = _acc(lenet_fn, pgd, y), _acc(lenet_fn, ap_ce, y), _acc(lenet_fn, ap_t, y)
    print(f"eps {eps}: PGD-40 {acc_pgd:.3f}, APGD-CE-40 {acc_ce:.3f}, APGD-T (3 x 20) {acc_t:.3f}")
    assert 0.05 < acc_pgd < 0.9  # not saturated, so "at least as strong" means something
    assert acc_ce <= acc_pgd and acc_t <= acc_pgd


@pytest.mark.slow
def test_square_breaks_lenet_without_gradients(lenet_fn, mnist64):
    x, y = mnist64[0][:32], mnist64[1][:32]
    xa, info = jax.jit(lambda x, y: A.square(lenet_fn, x, y, key=jax.random.key(0), eps=0.3, n_queries=300,
                                             return_info=True))(x, y)
    assert _acc(lenet_fn, xa, y) <= 0.1
    assert float(jnp.max(jnp.abs(xa - x))) <= np.float32(0.3)
    xc = A.square_compacting(lenet_fn, x, y, key=jax.random.key(0), eps=0.3, n_queries=300, chunk=50)
    assert _acc(lenet_fn, xc, y) <= 0.1
    assert float(jnp.max(jnp.abs(xc - x))) <= np.float32(0.3)


def test_autoattack_log_and_worst_case():
    """Per-attack counts add up; the returned x_adv realises exactly the logged robust accuracy;
    the ensemble breaks every image its first attack breaks."""
    f = af.tiny_mlp(seed=3, scale=1.0)
    y = jnp.argmax(f(X), -1).astype(jnp.int32)
    y = y.at[0].set((y[0] + 1) % 10)   # one image misclassified clean: never attacked
    kw = dict(eps=0.05, steps=5, n_queries=40, n_target_classes=2)
    xa, log = A.autoattack(f, X, y, key=jax.random.key(0), **kw)
    assert log["attacks"] == ["apgd-ce", "apgd-t", "square"] and log["not_run"] == ["fab-t"]
    assert log["clean"] == 15 and log["clean"] - sum(log["broken"].values()) == log["robust"]
    assert 0 < log["robust"] < log["clean"]
    assert _acc(f, xa, y) == pytest.approx(log["robust_accuracy"])
    assert float(jnp.max(jnp.abs(xa - X))) <= np.float32(0.05)
    # APGD-CE alone (the same key and batch as the ensemble's first attack) breaks a subset
    _, one = A.autoattack(f, X, y, key=jax.random.key(0), attacks=("apgd-ce",), **kw)
    assert one["broken"]["apgd-ce"] == log["broken"]["apgd-ce"]
    assert np.all(log["robust_flags"] <= one["robust_flags"])
    # randomised model + 'rand' version (APGD-CE, APGD-DLR with EOT)
    noisy = A.randomized(lambda x, k: f(x + 0.02 * jax.random.normal(k, x.shape)))
    xr, logr = A.autoattack(noisy, X, y, key=jax.random.key(1), eps=0.05, steps=3, version="rand", eot_samples=2)
    assert logr["attacks"] == ["apgd-ce", "apgd-dlr"] and logr["not_run"] == []
    assert logr["clean"] - sum(logr["broken"].values()) == logr["robust"]
