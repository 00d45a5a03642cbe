"""Attack success decided with a margin (``success_margin``).

An attack decides per image whether an iterate "succeeded" (best-iterate choice, APGD's bookkeeping, Square's early
stop). With ``success_margin`` m > 0 an iterate counts only when adversarial by more than m logits, so the attack
does not stop on a point that a recomputed forward pass may judge robust.
m = 0 is the attack without a margin, bit for bit.

Fast on purpose (2 CPU cores): the tiny tanh MLP of the attack tests on 8x8 grey images, a linear two-class model
whose boundary is known, budgets of a few dozen steps and queries.
"""
from __future__ import annotations

import zlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ipgan_jax import attacks as A
from ipgan_jax.attacks import core, losses
from ipgan_jax.errors import ConfigError
from ipgan_jax.eval import suite
from ipgan_jax.testing.attack_fixtures import tiny_mlp

F = tiny_mlp(hidden=16)
X = jax.random.uniform(jax.random.key(1), (6, 8, 8, 1))
Y = jnp.argmax(F(X), -1).astype(jnp.int32)          # clean-correct labels for the tiny model
T = (Y + 1) % 10                                     # targets for the targeted runs
KEY = jax.random.key(7)
TOL = 1e-5   # the judge's forward pass outside the attack's loops may round differently


def _fingerprint(x_adv, info):
    """(crc32 of the signs of x_adv - x, success per example): robust to float rounding, exact on the search path."""
    d = np.asarray(x_adv, np.float64) - np.asarray(X, np.float64)
    s = np.where(np.abs(d) > 1e-6, np.sign(d), 0).astype(np.int8)
    return zlib.crc32(s.tobytes()), np.asarray(info.success).astype(int).tolist()


# name -> (call with **kw, fingerprint of the code before success_margin existed: same arguments, key 7)
CALLS = {
    "fgsm": (lambda **kw: A.fgsm(F, X, Y, eps=0.03, return_info=True, **kw), (3029470037, [1, 1, 0, 1, 1, 1])),
    "bim": (lambda **kw: A.bim(F, X, Y, eps=0.03, steps=5, step_size=0.01, return_info=True, **kw),
            (363022567, [1, 1, 0, 1, 1, 1])),
    "mifgsm": (lambda **kw: A.mifgsm(F, X, Y, eps=0.03, steps=5, return_info=True, **kw),
               (208916716, [0, 1, 0, 0, 1, 1])),
    "pgd": (lambda **kw: A.pgd(F, X, Y, key=KEY, eps=0.03, steps=10, step_size=0.005, restarts=2, return_info=True,
                               **kw), (1669562045, [1, 1, 0, 1, 1, 1])),
    "pgd_margin": (lambda **kw: A.pgd(F, X, Y, key=KEY, eps=0.03, steps=10, step_size=0.005, loss="margin",
                                      return_info=True, **kw), (3299745991, [1, 1, 0, 1, 1, 1])),
    "pgd_warm": (lambda **kw: A.pgd(F, X, Y, key=KEY, eps=0.03, steps=5, step_size=0.01, warm_eps=0.05,
                                    return_info=True, **kw), (1302221636, [1, 1, 0, 1, 1, 1])),
    "apgd": (lambda **kw: A.apgd(F, X, Y, key=KEY, eps=0.03, steps=10, return_info=True, **kw),
             (2296749988, [1, 1, 0, 1, 1, 1])),
    "apgd_dlr": (lambda **kw: A.apgd(F, X, Y, key=KEY, eps=0.03, steps=10, loss="dlr", return_info=True, **kw),
                 (862826008, [1, 1, 0, 1, 1, 1])),
    "apgd_l2": (lambda **kw: A.apgd(F, X, Y, key=KEY, eps=0.2, norm="l2", steps=10, return_info=True, **kw),
                (223835617, [1, 1, 0, 1, 1, 1])),
    "apgd_t": (lambda **kw: A.apgd_targeted(F, X, Y, key=KEY, eps=0.03, steps=10, n_target_classes=3,
                                            return_info=True, **kw), (2490476449, [1, 1, 0, 1, 1, 1])),
    "square": (lambda **kw: A.square(F, X, Y, key=KEY, eps=0.04, n_queries=30, restarts=2, return_info=True, **kw),
               (772083880, [0, 1, 0, 0, 1, 1])),
    "square_l2": (lambda **kw: A.square(F, X, Y, key=KEY, eps=0.25, norm="l2", n_queries=30, restarts=2,
                                        return_info=True, **kw), (1701455132, [0, 1, 0, 0, 1, 1])),
    "square_warm": (lambda **kw: A.square_warm(F, X, Y, key=KEY, eps=0.03, n_queries=30, restarts=2, steps=5,
                                               return_info=True, **kw), (3725208925, [0, 1, 0, 0, 1, 1])),
    "square_compacting": (lambda **kw: A.square_compacting(F, X, Y, key=KEY, eps=0.04, n_queries=30, restarts=2,
                                                           chunk=7, return_info=True, **kw),
                          (2562444493, [0, 1, 0, 0, 1, 1])),
}


# ----------------------------------------------------------------------------- (a) margin 0 is the attack without one

@pytest.mark.parametrize("name", sorted(CALLS))
def test_margin_zero_is_the_attack_without_a_margin(name):
    call, old = CALLS[name]
    x_adv, info = call()
    assert _fingerprint(x_adv, info) == old
    x0, info0 = call(success_margin=0.0)
    np.testing.assert_array_equal(np.asarray(x0), np.asarray(x_adv))
    np.testing.assert_array_equal(np.asarray(info0.success), np.asarray(info.success))
    np.testing.assert_array_equal(np.asarray(info0.objective), np.asarray(info.objective))


# ----------------------------------------------------------------------------- (b) a success clears the margin

# attacks that report successes at margin 0.3 here (square with a larger eps and budget than above)
MARGIN = {"apgd_t": 0.4}   # else 0.3: at margin 0 each attack reports a success between -m and 0 here
MARGIN_RUNS = {
    "pgd": lambda m: A.pgd(F, X, Y, key=KEY, eps=0.03, steps=10, step_size=0.005, restarts=2, return_info=True,
                           success_margin=m),
    "apgd": lambda m: A.apgd(F, X, Y, key=KEY, eps=0.03, steps=10, return_info=True, success_margin=m),
    "apgd_t": lambda m: A.apgd_targeted(F, X, Y, key=KEY, eps=0.03, steps=10, n_target_classes=3, return_info=True,
                                        success_margin=m),
    "square": lambda m: A.square(F, X, Y, key=KEY, eps=0.06, n_queries=60, restarts=2, return_info=True,
                                 success_margin=m),
    "square_compacting": lambda m: A.square_compacting(F, X, Y, key=KEY, eps=0.06, n_queries=60, restarts=2,
                                                       chunk=7, return_info=True, success_margin=m),
    "square_warm": lambda m: A.square_warm(F, X, Y, key=KEY, eps=0.05, n_queries=30, restarts=2, steps=5,
                                           return_info=True, success_margin=m),
}


@pytest.mark.parametrize("name", sorted(MARGIN_RUNS))
def test_a_reported_success_clears_the_margin_on_the_judge_side(name):
    """With m > 0, every image the attack reports as broken has margin z_y - max_{j != y} z_j < -m when the judge
    recomputes it from the returned x_adv, and every image it reports as robust is at >= -m (the returned point is
    one the attack judged unsuccessful)."""
    m = MARGIN.get(name, 0.3)
    x0, info0 = MARGIN_RUNS[name](0.0)
    z0 = np.asarray(losses.margin(F(x0), Y))
    assert np.any(np.asarray(info0.success) & (z0 > -m)), z0   # not vacuous: margin 0 calls such a point a success
    x_adv, info = MARGIN_RUNS[name](m)
    judged = np.asarray(losses.margin(F(x_adv), Y))
    success = np.asarray(info.success)
    assert success.any(), (name, judged)
    assert np.all(judged[success] < -m + TOL), (name, judged, success)
    assert np.all(judged[~success] >= -m - TOL), (name, judged, success)


@pytest.mark.parametrize("attack", ["pgd", "apgd"])
def test_a_targeted_success_clears_the_margin(attack):
    """Targeted: a success is z_t > max_{j != t} z_j + m, i.e. ``losses.margin(z, t) > m`` (m 0.45: one image ends
    between 0 and m, a success only without the margin)."""
    m = 0.45
    call = A.pgd if attack == "pgd" else A.apgd
    kw = dict(step_size=0.01) if attack == "pgd" else {}
    x0, info0 = call(F, X, T, key=KEY, targeted=True, eps=0.05, steps=10, return_info=True, **kw)
    assert np.any(np.asarray(info0.success) & (np.asarray(losses.margin(F(x0), T)) < m))   # not vacuous
    x_adv, info = call(F, X, T, key=KEY, targeted=True, eps=0.05, steps=10, return_info=True, success_margin=m, **kw)
    judged = np.asarray(losses.margin(F(x_adv), T))
    success = np.asarray(info.success)
    assert success.any() and not success.all(), judged
    assert np.all(judged[success] > m - TOL) and np.all(judged[~success] <= m + TOL), (judged, success)


# ----------------------------------------------------------------------------- (c) the margin keeps the search going

SCALE, EPS = 10.0, 0.1
X_LIN = jnp.full((4, 8, 8, 1), 0.5, jnp.float32)
Y_LIN = jnp.zeros((4,), jnp.int32)
STEP = SCALE * 2 * EPS / 64      # one pixel moved from -eps to +eps moves the margin by this (0.03125)


def linear(x):
    """Two classes: z = (0, SCALE * mean(x - 0.5)); class 0 wins (label margin > 0) while mean(x) < 0.5."""
    return jnp.stack([jnp.zeros(x.shape[0]), SCALE * jnp.mean(x - 0.5, axis=(1, 2, 3))], -1)


@pytest.mark.parametrize("driver", ["square", "square_compacting"])
def test_margin_zero_stops_barely_adversarial_and_a_margin_goes_deeper(driver):
    """From x - eps (label margin SCALE * eps = 1) one-pixel windows (p_init 0.01) flip one pixel at a time: margin 0
    stops at the first point past the boundary (within one pixel's STEP of it), margin m keeps flipping until the
    margin is below -m."""
    call = getattr(A, driver)
    m = 0.5
    out = {}
    for mm in (0.0, m):
        x_adv, info = call(linear, X_LIN, Y_LIN, key=KEY, eps=EPS, n_queries=400, p_init=0.01,
                           start=X_LIN - EPS, return_info=True, success_margin=mm)
        out[mm] = np.asarray(losses.margin(linear(x_adv), Y_LIN)), np.asarray(info.success), np.asarray(info.queries)
    (z0, s0, q0), (zm, sm, qm) = out[0.0], out[m]
    assert s0.all() and sm.all(), out
    assert np.all((z0 < 0) & (z0 > -STEP - TOL)), z0             # barely adversarial: stopped at the boundary
    assert np.all((zm < -m) & (zm > -m - STEP - TOL)), zm        # past the margin, and stopped there
    assert np.all(qm > q0), (q0, qm)                              # the margin kept it querying


# ----------------------------------------------------------------------------- (d) a negative margin is refused

REFUSE = {
    "fgsm": lambda m: A.fgsm(F, X, Y, eps=0.03, success_margin=m),
    "bim": lambda m: A.bim(F, X, Y, eps=0.03, steps=1, success_margin=m),
    "pgd": lambda m: A.pgd(F, X, Y, key=KEY, eps=0.03, steps=1, success_margin=m),
    "mifgsm": lambda m: A.mifgsm(F, X, Y, eps=0.03, steps=1, success_margin=m),
    "apgd": lambda m: A.apgd(F, X, Y, key=KEY, eps=0.03, steps=1, success_margin=m),
    "apgd_targeted": lambda m: A.apgd_targeted(F, X, Y, key=KEY, eps=0.03, steps=1, success_margin=m),
    "square": lambda m: A.square(F, X, Y, key=KEY, eps=0.03, n_queries=2, success_margin=m),
    "square_warm": lambda m: A.square_warm(F, X, Y, key=KEY, eps=0.03, n_queries=2, steps=1, success_margin=m),
    "square_compacting": lambda m: A.square_compacting(F, X, Y, key=KEY, eps=0.03, n_queries=2, success_margin=m),
    "projected_gradient_attack": lambda m: core.projected_gradient_attack(
        F, X, Y, key=None, targeted=False, eps=0.03, steps=1, optimizer=core.steepest_descent(0.01),
        success_margin=m),
}


@pytest.mark.parametrize("name", sorted(REFUSE))
@pytest.mark.parametrize("bad", [-0.1, float("nan")])
def test_a_negative_margin_is_refused_by_name(name, bad):
    with pytest.raises(ValueError, match="success_margin must be finite and >= 0") as e:
        REFUSE[name](bad)
    assert "\n" not in str(e.value)


def test_the_registry_takes_the_margin_as_a_spec_field():
    takes = {n for n in A.ATTACKS if "success_margin" in A.attack_params(n)}
    assert takes == {"fgsm", "bim", "pgd", "mifgsm", "apgd", "apgd_t", "square", "square_warm"}
    for name in sorted(takes):
        assert A.attack_params(name)["success_margin"] == 0.0
        assert A.make_attack({"name": name, "success_margin": 0.25}, dataset="mnist").params["success_margin"] == 0.25
        with pytest.raises(ConfigError, match="success_margin"):
            A.make_attack({"name": name, "success_margin": -1.0})
    atk = A.make_attack({"name": "square", "eps": 0.06, "n_queries": 60, "restarts": 2, "success_margin": 0.3})
    np.testing.assert_array_equal(np.asarray(atk(F, X, Y, KEY)), np.asarray(MARGIN_RUNS["square"](0.3)[0]))


# ----------------------------------------------------------------------------- (e) the eval config field

class _Module:
    """A stand-in classifier module for the harness: ``apply(variables, x, train=False)`` -> the tiny MLP's logits
    on 28x28 images (nothing to train or load)."""
    fn = staticmethod(tiny_mlp(in_dim=784, hidden=16))

    def apply(self, variables, x, train=False):
        return self.fn(x)


@pytest.fixture
def harness(tiny_config, monkeypatch):
    """An Evaluator with the stand-in classifier and the identity defense, eval.success_margin 0.25."""
    from ipgan_jax.eval import evaluate
    monkeypatch.setattr(evaluate, "load_classifier", lambda config, name: (_Module(), {}))
    tiny_config.eval.success_margin = 0.25
    return evaluate.Evaluator(tiny_config, ["stand_in"], ["none"], ["pgd"], 8)


def test_the_config_field_defaults_to_zero():
    from configs import base
    assert base.get_config().eval.success_margin == 0.0
    budget = suite.Budget(eps=0.1, steps=3, restarts=1, square_queries=5)
    for name, member in suite.MEMBERS.items():   # 0.0 is the attacks' own default: the same attack as before
        assert suite.member_settings(member, budget).get("success_margin", 0.0) == 0.0, name


def test_eval_success_margin_reaches_every_suite_attack_that_takes_it(harness, monkeypatch):
    ev = harness
    budget = suite.Budget(eps=0.1, steps=3, restarts=1, square_queries=5)
    for name, member in suite.MEMBERS.items():
        s = ev.member_settings(member, budget)
        if member.driver is not None:      # the autoattack cascade takes no success_margin
            assert "success_margin" not in s, name
            continue
        assert s["success_margin"] == 0.25, name
        assert {k: v for k, v in s.items() if k != "success_margin"} == member.settings(budget), name
        assert ev.member_attack(member, None)(0.1).params["success_margin"] == 0.25, name   # the whitebox blocks
    # the budget / min-eps blocks (attack_rows) build their attacks from the same settings
    seen, real = [], ev.attack
    monkeypatch.setattr(ev, "attack", lambda name, **kw: (seen.append(kw), real(name, **kw))[1])
    x = np.asarray(jax.random.uniform(jax.random.key(3), (4, 28, 28, 1)))
    y = np.asarray(jnp.argmax(_Module.fn(jnp.asarray(x)), -1))
    ev.attack_rows("stand_in", "none", suite.MEMBERS["apgd_ce"], budget, ev.logits("stand_in"), x, y,
                   np.arange(4), block="budget", name="apgd_ce")
    assert seen and all(kw["success_margin"] == 0.25 for kw in seen), seen


def test_a_negative_eval_success_margin_is_refused_before_any_model_loads(tiny_config):
    from ipgan_jax.eval.evaluate import Evaluator
    tiny_config.eval.success_margin = -0.5
    with pytest.raises(ConfigError, match="eval.success_margin"):
        Evaluator(tiny_config, ["no_such_classifier"], ["none"], ["fgsm"], 8)
