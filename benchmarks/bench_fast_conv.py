"""PGD-40 on the MNIST classifiers with flax's plain ``nn.Conv`` vs ``fast_conv`` (same params).

    python benchmarks/bench_fast_conv.py [--batch 250] [--steps 40] [--repeats 3]

Random weights (speed does not depend on them), random [0,1] inputs; one jitted PGD per model
(a ``lax.fori_loop``), compile time reported apart, run time = best of ``--repeats``. The
plain-conv model is built by swapping ``classifiers.Conv`` for ``nn.Conv``; the outputs of both
attacks are compared (they must agree up to float rounding of the gradient).
"""
from __future__ import annotations

import argparse
import time

import flax.linen as nn
import jax
import jax.numpy as jnp

from ipgan_jax.attacks import pgd
from ipgan_jax.models import classifiers


def time_pgd(model, params, x, y, steps, repeats):
    fn = jax.jit(lambda p, x, y: pgd(lambda z: model.apply(p, z), x, y, random_start=False, steps=steps,
                                     keep_best=False))
    t = time.perf_counter()
    compiled = fn.lower(params, x, y).compile()
    compile_s = time.perf_counter() - t
    runs = []
    for _ in range(repeats):
        t = time.perf_counter()
        out = compiled(params, x, y).block_until_ready()
        runs.append(time.perf_counter() - t)
    return compile_s, min(runs), out


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--batch", type=int, default=250)
    p.add_argument("--steps", type=int, default=40)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--models", default="lenet,mcnn,alexnet")
    a = p.parse_args()
    x = jax.random.uniform(jax.random.key(0), (a.batch, 28, 28, 1))
    y = jax.random.randint(jax.random.key(1), (a.batch,), 0, 10)
    print(f"jax {jax.__version__}, {jax.devices()[0].platform}, batch {a.batch}, PGD-{a.steps}\n")
    print("| model | conv | compile (s) | run (s) | img/s | speed-up |")
    print("|---|---|---|---|---|---|")
    fast_conv = classifiers.Conv
    for name in a.models.split(","):
        res = {}
        for kind, conv in (("nn.Conv", nn.Conv), ("fast_conv", fast_conv)):
            classifiers.Conv = conv
            model = classifiers.get_classifier(name)
            params = model.init(jax.random.key(2), x[:2])
            res[kind] = time_pgd(model, params, x, y, a.steps, a.repeats)
        classifiers.Conv = fast_conv
        diff = float(jnp.mean(res["nn.Conv"][2] != res["fast_conv"][2]))
        for kind, (c, r, _) in res.items():
            speed = res["nn.Conv"][1] / r
            print(f"| {name} | {kind} | {c:.1f} | {r:.2f} | {a.batch / r:.0f} | {speed:.2f}x |")
        print(f"<!-- {name}: fraction of pixels where the two x_adv differ: {diff:.2e} -->")


if __name__ == "__main__":
    main()
