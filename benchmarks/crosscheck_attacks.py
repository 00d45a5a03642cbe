"""Robust accuracy of our attacks vs a reference implementation on identical weights.

    python benchmarks/crosscheck_attacks.py foolbox [--classifier mcnn] [--workdir /work/main/workdir/mnist]
                                            [--n 512] [--float64]

``foolbox``: FGSM and PGD-40 (eps 0.3, step 0.01, no random start) in float32 with foolbox
3.3.4's stock loss (JAX backend, same jitted model), beside ours in float32 and, with ``--float64``,
in float64 (the true value of the attack), on the first ``--n`` MNIST test images of a trained classifier loaded
read-only with ``load_classifier`` from ``--workdir`` (or ``--classifier fixture``: the cached
LeNet of ipgan_jax/testing/attack_fixtures.py).

The torchattacks comparison is tests/test_attacks_torchattacks.py; its timing is in bench_attacks.py.
"""
from __future__ import annotations

import argparse
import os
import time

import jax
import jax.numpy as jnp
import numpy as np

from ipgan_jax import attacks as A
from ipgan_jax.testing import attack_fixtures as af

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def load(name, workdir):
    """(module, params) of a trained MNIST classifier, or the test fixture."""
    if name == "fixture":
        clf = af.trained_lenet()
        return clf.module, clf.params
    from configs.mnist import get_config
    from ipgan_jax.training.classifier import load_classifier
    cfg = get_config()
    cfg.workdir = workdir
    module, variables = load_classifier(cfg, name)
    return module, variables["params"] if "params" in variables else variables


def acc(f, x, y):
    return float(jnp.mean(jnp.argmax(f(x), -1) == y))


def foolbox_check(args):
    import foolbox as fb
    module, params = load(args.classifier, args.workdir)
    x, y = af.mnist_test_batch(args.n)

    def make(p):
        return lambda x: module.apply({"params": p}, x, train=False)

    f = make(params)
    z = f(x)
    print(f"{args.classifier}: clean acc {acc(f, x, y):.4f} on {args.n} images; float32 softmax max == 1.0 on "
          f"{float(jnp.mean(jnp.max(jax.nn.softmax(z), -1) == 1.0)):.3f} of them")
    fmodel = fb.JAXModel(jax.jit(f), bounds=(0.0, 1.0))
    cases = {
        "FGSM": (lambda f, x, y: A.fgsm(f, x, y, eps=0.3), fb.attacks.LinfFastGradientAttack()),
        "PGD-40": (lambda f, x, y: A.pgd(f, x, y, eps=0.3, steps=40, step_size=0.01, random_start=False,
                                         keep_best=False),
                   fb.attacks.LinfPGD(abs_stepsize=0.01, steps=40, random_start=False)),
    }
    rows = []
    for name, (ours, theirs) in cases.items():
        t = time.perf_counter()
        a32 = acc(f, jax.jit(lambda x, y: ours(f, x, y))(x, y), y)
        b32 = acc(f, theirs(fmodel, x, y, epsilons=0.3)[0], y)
        a64 = float("nan")
        if args.float64:
            with jax.enable_x64(True):
                p64 = jax.tree_util.tree_map(lambda p: jnp.asarray(p, jnp.float64), params)
                f64 = make(p64)
                x64 = jnp.asarray(np.asarray(x), jnp.float64)
                a64 = acc(f64, jax.jit(lambda x, y: ours(f64, x, y))(x64, y), y)
        rows.append((name, a32, b32, a64))
        f64_txt = f"{a64:.4f}" if args.float64 else "not run (--float64)"
        print(f"{name}: ours float32 {a32:.4f}, foolbox float32 {b32:.4f}, ours float64 {f64_txt} "
              f"({time.perf_counter() - t:.0f} s)", flush=True)
    print(f"\n| {args.classifier}, eps 0.3, first {args.n} test images | ours float32 | foolbox 3.3.4 float32 "
          f"(stock loss) | ours float64 |\n|---|---|---|---|")
    for name, a32, b32, a64 in rows:
        c64 = f"{100 * a64:.1f}%" if args.float64 else "-"
        print(f"| {name} | {100 * a32:.1f}% | {100 * b32:.1f}% | {c64} |")
    return rows


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("reference", choices=["foolbox"])
    p.add_argument("--classifier", default="mcnn")
    p.add_argument("--workdir", default=os.path.join(ROOT, "workdir", "mnist"))
    p.add_argument("--n", type=int, default=512)
    p.add_argument("--float64", action="store_true", help="also run ours in float64 (slow on CPU: ~20+ min for M_CNN)")
    args = p.parse_args(argv)
    return foolbox_check(args)


if __name__ == "__main__":
    main()
