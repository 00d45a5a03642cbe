"""Cross-check APGD-CE, APGD-T and Square against torchattacks 3.5.1 on identical LeNet weights
(optional: skips without torch / torchattacks).

    pip install --no-deps torchattacks==3.5.1      # beside a CPU torch
    python -m pytest -q -s tests/test_attacks_torchattacks.py

The trained LeNet fixture is ported to torch (NCHW; logits equal to ~1e-5), both sides attack the
same N test images with the same hyper-parameters, and the robust accuracies must agree: within
1 point for APGD-CE and APGD-T, within 2 points for Square (a random search: its result depends
on the random draws, which the two implementations make differently). torchattacks' Square is
run with ``resc_schedule=False``, the AutoAttack setting and our default.
"""
from __future__ import annotations

import os
import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="torch is not installed (optional cross-check)")
torchattacks = pytest.importorskip("torchattacks", reason="torchattacks==3.5.1 is not installed (optional)")

from ipgan_jax import attacks as A  # noqa: E402
from ipgan_jax.testing import attack_fixtures as af  # noqa: E402
from ipgan_jax.testing.torch_models import TorchLeNet, port  # noqa: E402

N = int(os.environ.get("IPGAN_TORCHATTACKS_N", "512"))
EPS = 0.1            # LeNet's robust accuracy is mid-range at this eps, so the comparison is informative
APGD_STEPS = 50
SQUARE_QUERIES = 1000


@pytest.fixture(scope="module")
def setup():
    torch.set_num_threads(2)
    net = af.trained_lenet()
    f = net.logits_fn()
    tm = TorchLeNet(net.params).eval()
    x, y = af.mnist_test_batch(N)
    xt = torch.tensor(np.asarray(x)).permute(0, 3, 1, 2).contiguous()
    yt = torch.tensor(np.asarray(y), dtype=torch.long)
    return f, tm, x, y, xt, yt


def test_torch_port_matches(setup):
    f, tm, x, y, xt, yt = setup
    with torch.no_grad():
        zt = tm(xt).numpy()
    np.testing.assert_allclose(zt, np.asarray(f(x)), atol=1e-4, rtol=1e-5)


@pytest.mark.parametrize("name", ["lenet", "mcnn", "alexnet"])
def test_every_mnist_port_matches(name):
    """The torch twins used by benchmarks/bench_roofline.py compute what the flax models compute."""
    from ipgan_jax.models.classifiers import get_classifier
    module = get_classifier(name)
    x = jax.random.uniform(jax.random.PRNGKey(0), (8, 28, 28, 1))
    params = module.init(jax.random.PRNGKey(1), x, train=False)["params"]
    with torch.no_grad():
        zt = port(name, params)(torch.tensor(np.asarray(x)).permute(0, 3, 1, 2).contiguous()).numpy()
    np.testing.assert_allclose(zt, np.asarray(module.apply({"params": params}, x, train=False)), atol=1e-4, rtol=1e-4)


def _torch_acc(tm, xadv, yt):
    with torch.no_grad():
        return float((tm(xadv).argmax(1) == yt).float().mean())


CASES = {
    # name: (ours, torchattacks, tolerance)
    "apgd-ce": (lambda f, x, y, k: A.apgd(f, x, y, key=k, eps=EPS, steps=APGD_STEPS, loss="ce"),
                lambda tm: torchattacks.APGD(tm, norm="Linf", eps=EPS, steps=APGD_STEPS, loss="ce", seed=0),
                0.01),
    "apgd-t": (lambda f, x, y, k: A.apgd_targeted(f, x, y, key=k, eps=EPS, steps=APGD_STEPS, n_target_classes=9),
               lambda tm: torchattacks.APGDT(tm, norm="Linf", eps=EPS, steps=APGD_STEPS, n_classes=10, seed=0),
               0.01),
    "square": (lambda f, x, y, k: A.square(f, x, y, key=k, eps=EPS, n_queries=SQUARE_QUERIES),
               lambda tm: torchattacks.Square(tm, norm="Linf", eps=EPS, n_queries=SQUARE_QUERIES,
                                              resc_schedule=False, seed=0),
               0.02),
}


@pytest.mark.parametrize("name", list(CASES))
def test_robust_accuracy_matches_torchattacks(setup, name):
    f, tm, x, y, xt, yt = setup
    ours, theirs, tol = CASES[name]
    t0 = time.perf_counter()
    xa = jax.jit(lambda x, y, k: ours(f, x, y, k))(x, y, jax.random.key(0))
    acc_ours = float(jnp.mean(jnp.argmax(f(xa), -1) == y))
    t1 = time.perf_counter()
    xb = theirs(tm)(xt, yt)
    acc_theirs = _torch_acc(tm, xb, yt)
    t2 = time.perf_counter()
    assert float((xb - xt).abs().max()) <= EPS + 1e-6
    print(f"[{name}] eps {EPS}, {N} images: robust acc ours {acc_ours:.4f} ({t1 - t0:.0f} s incl. compile), "
          f"torchattacks {acc_theirs:.4f} ({t2 - t1:.0f} s)")
    assert abs(acc_ours - acc_theirs) <= tol + 1e-9, (name, acc_ours, acc_theirs)
