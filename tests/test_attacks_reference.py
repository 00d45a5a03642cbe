"""Cross-check ipgan_jax.attacks against foolbox 3.3.4 (JAX backend) on identical LeNet weights.

foolbox runs in the same process on the same Flax model (wrapped in ``fb.JAXModel``), so the
only difference is the attack code.

* FGSM / FGM-L2 / PGD (Linf, L2, no random start) / DeepFool must agree element-wise. This is
  checked in float64: sign(grad) is discontinuous at 0, and for confidently classified images the
  float32 cross-entropy gradient is mostly rounding noise (softmax ~ one-hot), so two correct
  float32 implementations that round differently flip the sign of a few near-zero components and
  a PGD trajectory that sees one flip then diverges. In float64 they agree exactly.
* In float32 the same attacks agree on almost all examples and give the same robust accuracy,
  also on a model whose float32 softmax saturates (the LeNet's logits x 5, see
  tests/test_attacks_float32.py), with foolbox's stock loss: the check that the float32
  cross-entropy gradient of issue 18 (``logsumexp(z) - z_y``) cannot come back.
* C&W L2: same success rate and mean L2 within a few percent. foolbox's C&W returns an all-zero
  image when it finds nothing (and counts it as a success if the zero image is misclassified);
  such results are counted as failures here.

Run with ``-s`` to see the measured differences.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

fb = pytest.importorskip("foolbox", reason="foolbox (optional reference implementation) is not installed; "
                         "`pip install foolbox==3.3.4` to run the cross-check")

from ipgan_jax import attacks as A  # noqa: E402
from ipgan_jax.testing import attack_fixtures as af  # noqa: E402


@pytest.fixture(scope="session")
def lenet():
    return af.trained_lenet()


def _acc(logits_fn, x, y):
    return float(jnp.mean(jnp.argmax(logits_fn(x), -1) == y))


# (ours, foolbox attack, foolbox epsilon)
def _elementwise_cases(f):
    return {
        "fgsm": (lambda x, y: A.fgsm(f, x, y, eps=0.3),
                 fb.attacks.LinfFastGradientAttack(), 0.3),
        "fgm_l2": (lambda x, y: A.fgsm(f, x, y, eps=2.0, norm="l2"),
                   fb.attacks.L2FastGradientAttack(), 2.0),
        "pgd_linf": (lambda x, y: A.pgd(f, x, y, eps=0.3, steps=40, step_size=0.01, random_start=False,
                                        keep_best=False),
                     fb.attacks.LinfPGD(abs_stepsize=0.01, steps=40, random_start=False), 0.3),
        "pgd_l2": (lambda x, y: A.pgd(f, x, y, eps=1.5, norm="l2", steps=20, step_size=0.15,
                                      random_start=False, keep_best=False),
                   fb.attacks.L2PGD(abs_stepsize=0.15, steps=20, random_start=False), 1.5),
        "deepfool_l2": (lambda x, y: A.deepfool(f, x, y, steps=50, candidates=10, overshoot=0.02),
                        fb.attacks.L2DeepFoolAttack(steps=50, candidates=10, overshoot=0.02), None),
    }


def test_elementwise_match_float64(lenet):
    x32, y = af.mnist_test_batch(64)
    with jax.enable_x64(True):
        params = jax.tree_util.tree_map(lambda p: jnp.asarray(p, jnp.float64), lenet.params)
        def f(x):
            return lenet.module.apply({"params": params}, x, train=False)
        x = jnp.asarray(np.asarray(x32), jnp.float64)
        fmodel = fb.JAXModel(jax.jit(f), bounds=(0.0, 1.0))
        for name, (ours, theirs, eps) in _elementwise_cases(f).items():
            a = jax.jit(ours)(x, y)
            b = theirs(fmodel, x, y, epsilons=eps)[0]
            assert a.dtype == jnp.float64 and b.dtype == jnp.float64
            diff = np.abs(np.asarray(a) - np.asarray(b))
            print(f"[float64] {name}: max |ours - foolbox| = {diff.max():.3g}; robust acc ours "
                  f"{_acc(f, a, y):.4f} foolbox {_acc(f, b, y):.4f}")
            np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-5, rtol=0, err_msg=name)


def test_float32_agreement(lenet):
    x, y = af.mnist_test_batch(128)
    f = lenet.logits_fn()
    fmodel = fb.JAXModel(jax.jit(f), bounds=(0.0, 1.0))
    cases = _elementwise_cases(f)
    for name in ("fgsm", "pgd_linf", "deepfool_l2"):
        ours, theirs, eps = cases[name]
        a = np.asarray(jax.jit(ours)(x, y))
        b = np.asarray(theirs(fmodel, x, y, epsilons=eps)[0])
        same = np.abs(a - b).reshape(len(a), -1).max(axis=1) <= 1e-5
        acc_a, acc_b = _acc(f, a, y), _acc(f, b, y)
        print(f"[float32] {name}: {same.mean():.4f} of examples identical (atol 1e-5); robust acc ours "
              f"{acc_a:.4f} foolbox {acc_b:.4f}")
        assert same.mean() >= 0.85, name
        assert abs(acc_a - acc_b) <= 2 / len(y), name


def test_cw_l2_matches_foolbox(lenet):
    x, y = af.mnist_test_batch(48)
    f = lenet.logits_fn()
    fmodel = fb.JAXModel(jax.jit(f), bounds=(0.0, 1.0))
    kw = dict(binary_search_steps=5, steps=100, initial_const=0.1)
    ours = np.asarray(jax.jit(lambda x, y: A.cw_l2(f, x, y, lr=0.1, **kw))(x, y))
    theirs = np.asarray(fb.attacks.L2CarliniWagnerAttack(stepsize=0.1, **kw)(fmodel, x, y, epsilons=None)[0])

    def stats(xa):
        found = np.abs(xa).reshape(len(xa), -1).max(axis=1) > 0  # foolbox: all-zero image = not found
        adv = found & np.asarray(jnp.argmax(f(jnp.asarray(xa)), -1) != y)
        l2 = np.linalg.norm((xa - np.asarray(x)).reshape(len(xa), -1), axis=1)
        return adv, l2

    adv_a, l2_a = stats(ours)
    adv_b, l2_b = stats(theirs)
    both = adv_a & adv_b
    print(f"C&W L2: success ours {adv_a.mean():.4f} foolbox {adv_b.mean():.4f}; mean L2 ours "
          f"{l2_a[adv_a].mean():.4f} foolbox {l2_b[adv_b].mean():.4f}; on common successes "
          f"{l2_a[both].mean():.4f} vs {l2_b[both].mean():.4f}")
    assert adv_a.mean() >= 0.95 and abs(adv_a.mean() - adv_b.mean()) <= 0.03
    assert abs(l2_a[both].mean() - l2_b[both].mean()) <= 0.05 * l2_b[both].mean()
    assert abs(l2_a[adv_a].mean() - l2_b[adv_b].mean()) <= 0.05 * l2_b[adv_b].mean()


def test_float32_saturated_model_matches_foolbox_stock(lenet):
    """Float32, logits x 5 (softmax max == 1.0 on ~90% of images): robust accuracy of FGSM and
    PGD-40 within 0.5 points of foolbox's stock float32 attacks; the old loss is not."""
    x, y = af.mnist_test_batch(256)
    f = lambda x: 5.0 * lenet.module.apply({"params": lenet.params}, x, train=False)  # noqa: E731
    fmodel = fb.JAXModel(jax.jit(f), bounds=(0.0, 1.0))
    old_ce = lambda z, y: jax.nn.logsumexp(z, -1) - A.losses.label_logit(z, y)  # noqa: E731
    cases = {
        "fgsm eps 0.1": (lambda loss: lambda x, y: A.fgsm(f, x, y, eps=0.1, loss=loss),
                         fb.attacks.LinfFastGradientAttack(), 0.1),
        "pgd40 eps 0.1": (lambda loss: lambda x, y: A.pgd(f, x, y, eps=0.1, steps=40, step_size=0.01,
                                                          random_start=False, keep_best=False, loss=loss),
                          fb.attacks.LinfPGD(abs_stepsize=0.01, steps=40, random_start=False), 0.1),
    }
    gaps_old = []
    for name, (ours, theirs, eps) in cases.items():
        acc_a = _acc(f, jax.jit(ours("ce"))(x, y), y)
        acc_old = _acc(f, jax.jit(ours(old_ce))(x, y), y)
        acc_b = _acc(f, theirs(fmodel, x, y, epsilons=eps)[0], y)
        print(f"[float32, logits x5] {name}: robust acc ours {acc_a:.4f} foolbox {acc_b:.4f} "
              f"(old loss {acc_old:.4f})")
        assert abs(acc_a - acc_b) <= 0.005 + 1e-9, name
        gaps_old.append(abs(acc_old - acc_b))
    assert max(gaps_old) > 0.05  # the comparison can fail: the old loss is far from foolbox
