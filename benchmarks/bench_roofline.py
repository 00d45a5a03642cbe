"""Roofline on this machine: achieved FLOP/s of the attack loops and an IP-GAN train step, as a
fraction of the peak float32 matmul rate measured in the same process.

    python benchmarks/bench_roofline.py [--batch 256] [--steps 40] [--repeats 3]
                                        [--models lenet,mcnn,alexnet] [--skip_train_step]

FLOPs come from XLA's own cost analysis (``jit(f).lower(...).compile().cost_analysis()``) of
*one* iteration (one forward + input-gradient pass for an attack step, one whole train step),
because XLA counts the body of a ``while`` loop once, not once per trip. An attack of ``steps``
iterations therefore does ``steps x flops(one step)``. Time is the best of ``--repeats`` runs of
the whole jitted attack, interleaved across models so that load from other processes hits all
alike; the 1-minute load average is printed before and after (this CPU is shared).

Peak: the best rate of a float32 ``[N,N] @ [N,N]`` matmul (N = 2048, XLA:CPU -> Eigen/oneDNN)
over the same repeats. Models use random weights: the FLOPs and the time do not depend on the
values (no data-dependent control flow in PGD / the train step).
"""
from __future__ import annotations

import argparse
import os
import platform
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402


def flops_of(fn, *args) -> float:
    """XLA's FLOP count of one call of ``jit(fn)(*args)``."""
    cost = jax.jit(fn).lower(*args).compile().cost_analysis()
    if isinstance(cost, (list, tuple)):
        cost = cost[0]
    return float(cost.get("flops", float("nan")))


def best_time(compiled, args, repeats) -> float:
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        jax.block_until_ready(compiled(*args))
        times.append(time.perf_counter() - t)
    return min(times)


def peak_matmul(n=2048, repeats=3):
    a = jnp.ones((n, n), jnp.float32)
    b = jnp.ones((n, n), jnp.float32) * 0.5
    mm = jax.jit(lambda a, b: a @ b).lower(a, b).compile()
    mm(a, b).block_until_ready()
    return 2.0 * n ** 3 / best_time(mm, (a, b), repeats)


def attack_case(name, batch, steps):
    from ipgan_jax.attacks import cross_entropy, pgd
    from ipgan_jax.models.classifiers import get_classifier
    module = get_classifier(name)
    x = jax.random.uniform(jax.random.PRNGKey(0), (batch, 28, 28, 1))
    y = jnp.arange(batch) % 10
    params = module.init(jax.random.PRNGKey(1), x[:1], train=False)
    f = lambda z: module.apply(params, z, train=False)  # noqa: E731

    def one_step(z):  # what one PGD iteration computes: forward + input gradient
        return jax.grad(lambda z: jnp.sum(cross_entropy(f(z), y)))(z)

    step_flops = flops_of(one_step, x)
    attack = jax.jit(lambda x, y, k: pgd(f, x, y, key=k, eps=0.3, steps=steps, step_size=0.01))
    compiled = attack.lower(x, y, jax.random.PRNGKey(2)).compile()
    jax.block_until_ready(compiled(x, y, jax.random.PRNGKey(2)))
    return dict(name=f"PGD-{steps} {name}", flops=steps * step_flops, compiled=compiled,
                args=(x, y, jax.random.PRNGKey(2)), images=batch)


def train_step_case(batch):
    from configs import mnist
    from ipgan_jax.defenses.ipgan import IPGANTrainer
    from ipgan_jax.models.classifiers import get_classifier
    config = mnist.get_config()
    module = get_classifier("lenet")
    variables = module.init(jax.random.PRNGKey(1), jnp.zeros((1, 28, 28, 1)), train=False)
    trainer = IPGANTrainer(config, module, variables)
    state = jax.jit(trainer.init_state)(jax.random.PRNGKey(0))
    batch_ = {"image": jax.random.uniform(jax.random.PRNGKey(3), (batch, 28, 28, 1)),
              "label": jnp.arange(batch) % 10}
    step = jax.jit(trainer.train_step)
    compiled = step.lower(state, batch_, jax.random.PRNGKey(4)).compile()
    cost = compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, (list, tuple)) else cost
    # the attack mix is a lax.switch: XLA counts every branch; report that as an upper bound
    jax.block_until_ready(compiled(state, batch_, jax.random.PRNGKey(4)))
    return dict(name=f"IP-GAN train step LeNet (batch {batch}; FLOPs: all switch branches)",
                flops=float(cost.get("flops", float("nan"))), compiled=compiled,
                args=(state, batch_, jax.random.PRNGKey(4)), images=batch)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--steps", type=int, default=40)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--models", default="lenet,mcnn,alexnet")
    p.add_argument("--skip_train_step", action="store_true")
    args = p.parse_args(argv)
    print(f"jax {jax.__version__} on {jax.devices()[0].platform} ({platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} cpus); load average before: {os.getloadavg()[0]:.2f}", flush=True)
    cases = [attack_case(m, args.batch, args.steps) for m in args.models.split(",") if m]
    if not args.skip_train_step:
        cases.append(train_step_case(64))
    times = {c["name"]: [] for c in cases}
    peaks = []
    for _ in range(args.repeats):  # interleaved: peak, then every case, each round
        peaks.append(peak_matmul(repeats=1))
        for c in cases:
            times[c["name"]].append(best_time(c["compiled"], c["args"], 1))
    peak = max(peaks)
    print(f"load average after: {os.getloadavg()[0]:.2f}")
    print(f"\npeak float32 matmul (2048^3): {peak / 1e9:.1f} GFLOP/s (best of {args.repeats})\n")
    print("| case | GFLOP per call | best time (s) | img/s | GFLOP/s | % of peak |")
    print("|---|---|---|---|---|---|")
    rows = []
    for c in cases:
        t = min(times[c["name"]])
        rate = c["flops"] / t
        rows.append(dict(name=c["name"], gflop=c["flops"] / 1e9, time=t, ips=c["images"] / t,
                         gflops=rate / 1e9, frac=rate / peak))
        print(f"| {c['name']} | {c['flops'] / 1e9:.2f} | {t:.3f} | {c['images'] / t:.0f} | {rate / 1e9:.1f} | "
              f"{100 * rate / peak:.1f}% |")
    return rows, peak


if __name__ == "__main__":
    main()
