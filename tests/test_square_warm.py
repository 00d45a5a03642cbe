"""Issue 44: Square started from a given point (``square(start=...)``) and from PGD's best iterate (``square_warm``,
the white-box suite member ``square_warm``).

Fast on purpose (2 CPU cores): a tiny random tanh MLP on 8x8 grey images, budgets of a few dozen queries and steps.
``start=None`` is checked against fingerprints of the pre-``start`` code's results (signs of x_adv - x, queries and
success per example, same key), so the default stays the old attack bit for bit.
"""
from __future__ import annotations

import zlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ipgan_jax import attacks as A
from ipgan_jax.attacks import core, losses
from ipgan_jax.attacks.square import restart_keys
from ipgan_jax.eval import suite
from ipgan_jax.testing.attack_fixtures import tiny_mlp
from ipgan_jax.testing.masked_defenses import half_masked

F = tiny_mlp(hidden=16)
X = jax.random.uniform(jax.random.key(1), (6, 8, 8, 1))
Y = jnp.argmax(F(X), -1).astype(jnp.int32)          # clean-correct labels for the tiny model
KEY = jax.random.key(7)
MARGIN = losses.objective("margin", False)
EPS = {"linf": 0.04, "l2": 0.25}
# the same MLP behind a zero gradient on rows 0, 2, 4, ...: PGD breaks only the other rows, Square any
MASKED = jax.jit(lambda x: F(half_masked(x)))
X16 = jax.random.uniform(jax.random.key(5), (16, 8, 8, 1))
Y16 = jnp.argmax(F(X16), -1).astype(jnp.int32)


def _fingerprint(x_adv, info):
    """(crc32 of the signs of x_adv - x, queries, success): robust to float rounding, exact on the search path."""
    d = np.asarray(x_adv, np.float64) - np.asarray(X, np.float64)
    s = np.where(np.abs(d) > 1e-6, np.sign(d), 0).astype(np.int8)
    return zlib.crc32(s.tobytes()), np.asarray(info.queries).tolist(), np.asarray(info.success).astype(int).tolist()


def _far_start(norm):
    """A start outside the eps ball (so its projection matters), in [0, 1]."""
    noise = jax.random.uniform(jax.random.key(11), X.shape, minval=-1.0, maxval=1.0)
    return jnp.clip(X + 3 * EPS[norm] * noise, 0.0, 1.0)


# fingerprints of the code before ``start`` existed: square / square_compacting, key 7, 30 queries, 2 restarts
OLD = {
    "linf": (772083880, [60, 4, 60, 60, 6, 1], [0, 1, 0, 0, 1, 1]),
    "l2": (1701455132, [60, 1, 60, 60, 3, 10], [0, 1, 0, 0, 1, 1]),
    "compacting": (2562444493, [60, 4, 60, 60, 6, 1], [0, 1, 0, 0, 1, 1]),
}


# ----------------------------------------------------------------------------- square(start=...)

@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_no_start_is_the_old_square_bit_for_bit(norm):
    out = A.square(F, X, Y, key=KEY, eps=EPS[norm], norm=norm, n_queries=30, restarts=2, return_info=True)
    assert _fingerprint(*out) == OLD[norm]
    explicit = A.square(F, X, Y, key=KEY, eps=EPS[norm], norm=norm, n_queries=30, restarts=2, return_info=True,
                        start=None)
    np.testing.assert_array_equal(np.asarray(explicit[0]), np.asarray(out[0]))
    if norm == "linf":   # the default start is Square's stripes: given as ``start``, the same search follows
        k_init = jax.random.split(jax.random.fold_in(KEY, 0))[0]
        stripes = jax.random.rademacher(k_init, (X.shape[0], 1, X.shape[2], X.shape[3]), X.dtype)
        given = A.square(F, X, Y, key=KEY, eps=EPS[norm], n_queries=30, restarts=2,
                         start=core.project_linf(X + EPS[norm] * stripes, X, EPS[norm]))
        np.testing.assert_array_equal(np.asarray(given), np.asarray(out[0]))


def test_no_start_is_the_old_square_compacting():
    out = A.square_compacting(F, X, Y, key=KEY, eps=EPS["linf"], n_queries=30, restarts=2, chunk=7, return_info=True)
    assert _fingerprint(*out) == OLD["compacting"]


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_the_first_query_is_at_the_projected_start(norm):
    """With one query the search is its start: ``start`` projected onto the eps ball and [0, 1], queried once."""
    eps, start = EPS[norm], _far_start(norm)
    want = core.get_projection(norm)(start, X, eps)
    assert not np.array_equal(np.asarray(want), np.asarray(start))   # the projection does something here
    run = jax.jit(lambda x, y, s: A.square(F, x, y, key=KEY, eps=eps, norm=norm, n_queries=1, start=s,
                                           return_info=True))
    for x_adv, info in (A.square(F, X, Y, key=KEY, eps=eps, norm=norm, n_queries=1, start=start, return_info=True),
                        run(X, Y, start),
                        A.square_compacting(F, X, Y, key=KEY, eps=eps, norm=norm, n_queries=1, start=start,
                                            return_info=True)):
        if norm == "linf":   # exact; L2's rescaling rounds differently under jit (1 ulp)
            np.testing.assert_array_equal(np.asarray(x_adv), np.asarray(want))
        np.testing.assert_allclose(np.asarray(x_adv), np.asarray(want), rtol=0, atol=1e-6)
        np.testing.assert_array_equal(np.asarray(info.queries), np.ones(X.shape[0], np.int32))
        np.testing.assert_allclose(np.asarray(info.objective), np.asarray(MARGIN(F(want), Y)), rtol=1e-6)


def test_start_is_the_first_restart_only():
    """Restart 2 starts as a plain Square with its own key; per example the first restart's (projected) start is
    kept when adversarial, else the better of the two by margin (two queries)."""
    eps, start = EPS["linf"], _far_start("linf")
    x_adv, info = A.square(F, X, Y, key=KEY, eps=eps, n_queries=1, restarts=2, start=start, return_info=True)
    a = core.project_linf(start, X, eps)
    b = A.square(F, X, Y, key=restart_keys(KEY, 2)[1], eps=eps, n_queries=1)
    za, zb = F(a), F(b)
    sa, sb = losses.is_adversarial(za, Y, False), losses.is_adversarial(zb, Y, False)
    take = ~sa & (sb | (MARGIN(zb, Y) > MARGIN(za, Y)))
    np.testing.assert_array_equal(np.asarray(x_adv), np.asarray(jnp.where(take[:, None, None, None], b, a)))
    np.testing.assert_array_equal(np.asarray(info.queries), np.where(np.asarray(sa), 1, 2))
    assert not np.array_equal(np.asarray(b), np.asarray(a))


def test_an_adversarial_start_is_kept_as_it_is():
    """Square's acceptance rule keeps a success: an example adversarial at its start is returned unchanged after
    the single start query, whatever the budget and restarts."""
    eps = 0.03
    x_pgd = A.pgd(F, X, Y, key=KEY, eps=eps, steps=5, step_size=0.015)
    broke = np.asarray(jnp.argmax(F(x_pgd), -1) != Y)
    assert broke.any() and not broke.all(), broke
    for call in (A.square, A.square_compacting):
        x_adv, info = call(F, X, Y, key=KEY, eps=eps, n_queries=40, restarts=2, start=x_pgd, return_info=True)
        np.testing.assert_array_equal(np.asarray(x_adv)[broke], np.asarray(x_pgd)[broke])
        assert np.all(np.asarray(info.queries)[broke] == 1) and np.all(np.asarray(info.success)[broke])


@pytest.mark.parametrize("bad,needle", [
    (np.zeros((5, 8, 8, 1), np.float32), "start has shape (5, 8, 8, 1), x (6, 8, 8, 1)"),
    (np.zeros((6, 8, 8, 3), np.float32), "start has shape (6, 8, 8, 3), x (6, 8, 8, 1)"),
    (np.zeros((6, 8, 8, 1), np.int32), "start must be float pixels"),
])
def test_a_wrong_start_is_refused_in_one_line(bad, needle):
    jitted = jax.jit(lambda x, y, s: A.square(F, x, y, key=KEY, n_queries=2, start=s))
    for name, call in (("square", lambda: A.square(F, X, Y, key=KEY, n_queries=2, start=bad)),
                       ("square_compacting", lambda: A.square_compacting(F, X, Y, key=KEY, n_queries=2, start=bad)),
                       ("square", lambda: jitted(X, Y, bad))):     # under jit the check runs at trace time
        with pytest.raises(ValueError) as e:
            call()
        msg = str(e.value)
        assert "\n" not in msg and msg.startswith(f"{name}: ") and needle in msg, msg


# ----------------------------------------------------------------------------- square_warm

@pytest.mark.parametrize("norm,eps", [("linf", 0.04), ("l2", 0.2)])
def test_square_warm_is_never_weaker_than_its_pgd_run(norm, eps):
    """Per image: PGD's example where PGD broke it (bit for bit), else a point at least as good by margin. On a
    model that masks the gradient of half the rows, PGD breaks only unmasked rows, Square alone misses some of
    those, and square_warm breaks all PGD does and masked ones too; inside the eps ball and [0, 1]; jit-able."""
    steps, n_queries = 5, 50
    kw = dict(eps=eps, norm=norm, n_queries=n_queries, steps=steps, step_size=2.5 * eps / steps)
    x_adv, info = A.square_warm(MASKED, X16, Y16, key=KEY, return_info=True, **kw)
    x_pgd = A.pgd(MASKED, X16, Y16, key=jax.random.split(KEY)[1], eps=eps, norm=norm, steps=steps,
                  step_size=kw["step_size"])
    x_sq = A.square(MASKED, X16, Y16, key=KEY, eps=eps, norm=norm, n_queries=n_queries)

    def broken(z):
        return np.asarray(jnp.argmax(F(z), -1) != Y16)

    pgd_broke, broke = broken(x_pgd), broken(x_adv)
    assert pgd_broke.any() and not np.all(broken(x_sq) >= pgd_broke)      # the toy: Square alone is weaker here
    np.testing.assert_array_equal(np.asarray(x_adv)[pgd_broke], np.asarray(x_pgd)[pgd_broke])
    assert np.all(broke >= pgd_broke) and broke.sum() > pgd_broke.sum(), (broke, pgd_broke)
    np.testing.assert_array_equal(np.asarray(info.success), broke)
    rest = ~broke
    assert np.all(np.asarray(MARGIN(F(x_adv), Y16))[rest] >= np.asarray(MARGIN(F(x_pgd), Y16))[rest])
    assert np.all(np.asarray(info.queries) <= n_queries) and np.all(np.asarray(info.queries)[pgd_broke] == 1)
    jitted = jax.jit(lambda x, y, k: A.square_warm(MASKED, x, y, key=k, **kw))(X16, Y16, KEY)
    np.testing.assert_array_equal(broken(jitted), broke)
    for z in (x_adv, jitted):
        assert float(jnp.min(z)) >= 0.0 and float(jnp.max(z)) <= 1.0 and z.dtype == X16.dtype
        if norm == "linf":
            assert np.abs(np.asarray(z - X16)).max() <= np.float32(eps)
        else:
            d = np.asarray(z, np.float64) - np.asarray(X16, np.float64)
            assert np.linalg.norm(d.reshape(len(d), -1), axis=1).max() <= eps * (1 + 1e-6)


def test_square_warm_is_registered_with_pgd_and_square_defaults():
    assert A.ATTACKS["square_warm"] is A.square_warm and getattr(A.square_warm, "contract", False)
    for dataset in A.DEFAULTS:
        d, sq, pgd = (A.DEFAULTS[dataset][n] for n in ("square_warm", "square", "pgd"))
        assert {k: d[k] for k in sq} == sq, dataset
        assert {k: d[k] for k in ("steps", "step_size", "loss", "random_start")} == \
               {k: pgd[k] for k in ("steps", "step_size", "loss", "random_start")}, dataset
    assert A.make_attack({"name": "square_warm"}).params["step_size"] == pytest.approx(0.01)   # pgd's rule
    assert A.make_attack({"name": "square_warm", "eps": 16 / 255}, dataset="imagenet").params["step_size"] == \
        pytest.approx(4 / 255)
    with pytest.raises(ValueError) as e:                                  # the input contract, named
        A.square_warm(F, jnp.transpose(X, (0, 3, 1, 2)), Y, key=KEY)
    assert str(e.value).startswith("square_warm: ") and "NCHW" in str(e.value)


def test_suite_member_follows_the_budget():
    assert suite.suite_members("square_warm") == ["square_warm"]
    member = suite.MEMBERS["square_warm"]
    assert member.attack == "square_warm" and member.driver is None
    s = member.settings(suite.Budget(eps=0.3, steps=20, restarts=3, square_queries=700))
    assert s == dict(eps=0.3, n_queries=700, restarts=3, steps=20, step_size=pytest.approx(2.5 * 0.3 / 20),
                     loss="ce", random_start="uniform")
    small = member.settings(suite.Budget(eps=0.06, steps=4, restarts=1, square_queries=8))
    atk = A.make_attack({"name": member.attack, **small}, dataset="mnist")   # as the harness builds it
    assert atk.params["n_queries"] == 8 and atk.params["steps"] == 4 and atk.params["restarts"] == 1
    x_adv = atk(F, X, Y, KEY)
    assert x_adv.shape == X.shape and np.abs(np.asarray(x_adv - X)).max() <= np.float32(0.06)
