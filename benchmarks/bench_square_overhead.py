"""Square's per-query cost against the bare forward pass of the same model (LeNet-5 of
``tests/attack_fixtures.py``), alternated in one process:

    python benchmarks/bench_square_overhead.py [--batch 128] [--iters 500] [--repeats 2]

Prints ms per iteration of the jitted ``square`` (Linf eps 0.1, where most images stay robust, so
every iteration queries the whole batch) and of a ``fori_loop`` over the forward pass alone, with
the 1-minute load average. Equal numbers mean the search itself costs nothing beside the model.
"""
from __future__ import annotations

import argparse
import os
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "tests"))

import jax  # noqa: E402

import attack_fixtures as af  # noqa: E402
from ipgan_jax import attacks as A  # noqa: E402


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--iters", type=int, default=500)
    p.add_argument("--repeats", type=int, default=2)
    args = p.parse_args(argv)
    f = af.trained_lenet().logits_fn()
    x, y = af.mnist_test_batch(args.batch)
    key, n = jax.random.key(0), args.iters
    square = jax.jit(lambda x, y: A.square(f, x, y, key=key, eps=0.1, n_queries=n))
    forward = jax.jit(lambda x: jax.lax.fori_loop(0, n, lambda i, acc: acc + f(x + 1e-6 * i).sum(), 0.0))
    jax.block_until_ready(square(x, y))
    jax.block_until_ready(forward(x))
    for _ in range(args.repeats):
        t = time.perf_counter()
        jax.block_until_ready(square(x, y))
        a = time.perf_counter() - t
        t = time.perf_counter()
        jax.block_until_ready(forward(x))
        b = time.perf_counter() - t
        print(f"square: {a / n * 1e3:.2f} ms/iteration; forward pass only: {b / n * 1e3:.2f} ms/iteration; "
              f"load {os.getloadavg()[0]:.2f}", flush=True)


if __name__ == "__main__":
    main()
