"""Throughput of the JAX attacks vs foolbox 3.3.4 (JAX backend) on an MNIST LeNet-5.

    python benchmarks/bench_attacks.py [--batch 256] [--pgd_steps 40] [--cw_steps 100]
                                       [--cw_bss 5] [--repeats 3] [--cw_repeats 1]
                                       [--cw_no_abort] [--no_foolbox]
    python benchmarks/bench_attacks.py --torchattacks [--batch 256] [--apgd_steps 100] [--square_queries 5000]
                                       [--eps 0.3]
    python benchmarks/bench_attacks.py --square_overhead [--batch 128] [--square_queries 500] [--repeats 2]

For each attack: compile time of our jitted attack (``jit(...).lower(...).compile()``), then the
best of ``--repeats`` (C&W: ``--cw_repeats``) timed runs after compilation -> images/s; foolbox
runs the same attack (same hyper-parameters) on the same jitted model after one warm-up call,
interleaved with ours run by run, and the ratio ours / foolbox is printed. Both C&W versions abort early
(ours per example, foolbox per batch), so their work is data-dependent; ``--cw_no_abort`` times a fixed
number of steps instead.
The classifier is the cached LeNet-5 of ``ipgan_jax/testing/attack_fixtures.py`` (trained on first use).

``--torchattacks``: APGD-CE (``--apgd_steps``) and Square (``--square_queries``) at Linf ``--eps`` (0.3)
against torchattacks 3.5.1 on the same weights (ported to torch, ipgan_jax/testing/torch_models.py) and the
same images, interleaved run by run, best of ``--repeats``; prints the time ratio and both robust
accuracies. Square stops early once every image is broken, on both sides.

``--square_overhead``: ms per iteration of our jitted Square (Linf eps 0.1, where most images stay
robust, so every iteration queries the whole batch) against a ``fori_loop`` over the forward pass
alone, alternated ``--repeats`` times; equal numbers mean the search costs nothing beside the model.
"""
from __future__ import annotations

import argparse
import os
import platform
import time

import jax
import jax.numpy as jnp

from ipgan_jax import attacks as A
from ipgan_jax.testing import attack_fixtures as af


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--pgd_steps", type=int, default=40)
    p.add_argument("--cw_steps", type=int, default=100)
    p.add_argument("--cw_bss", type=int, default=5, help="C&W binary search steps")
    p.add_argument("--cw_no_abort", action="store_true", help="disable abort-early in both C&W versions")
    p.add_argument("--repeats", type=int, default=3, help="timed PGD runs per implementation (best is reported)")
    p.add_argument("--cw_repeats", type=int, default=1, help="timed C&W runs per implementation")
    p.add_argument("--no_foolbox", action="store_true")
    p.add_argument("--torchattacks", action="store_true", help="APGD / Square vs torchattacks instead")
    p.add_argument("--apgd_steps", type=int, default=100)
    p.add_argument("--square_queries", type=int, default=5000)
    p.add_argument("--eps", type=float, default=0.3, help="Linf eps of the --torchattacks cases")
    p.add_argument("--square_overhead", action="store_true", help="Square vs the bare forward pass instead")
    args = p.parse_args(argv)
    print(f"load average before: {_load()}")
    if args.torchattacks:
        return bench_torchattacks(args)
    if args.square_overhead:
        return bench_square_overhead(args)

    clf = af.trained_lenet()
    f = clf.logits_fn()
    x, y = af.mnist_test_batch(args.batch)
    fb = None
    if not args.no_foolbox:
        try:
            import foolbox as fb
        except ImportError:
            print("foolbox is not installed: timing ours only (`pip install foolbox==3.3.4`)")
    abort = not args.cw_no_abort
    print(f"jax {jax.__version__} on {jax.devices()[0].platform} ({platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} cpus); LeNet-5 clean acc {clf.test_accuracy:.4f}; batch {args.batch}")

    cases = {
        f"PGD-{args.pgd_steps} Linf eps 0.3 (no random start)": (
            lambda x, y: A.pgd(f, x, y, eps=0.3, steps=args.pgd_steps, step_size=0.01, random_start=False,
                               keep_best=False),
            lambda fm: fb.attacks.LinfPGD(abs_stepsize=0.01, steps=args.pgd_steps, random_start=False),
            lambda fm: fb.attacks.LinfPGD(abs_stepsize=0.01, steps=1, random_start=False), 0.3, args.repeats),
        f"C&W-L2 {args.cw_bss}x{args.cw_steps} (lr 0.1, c0 0.1{', abort early' if abort else ''})": (
            lambda x, y: A.cw_l2(f, x, y, binary_search_steps=args.cw_bss, steps=args.cw_steps, lr=0.1,
                                 initial_const=0.1, abort_early=abort),
            lambda fm: fb.attacks.L2CarliniWagnerAttack(binary_search_steps=args.cw_bss, steps=args.cw_steps,
                                                        stepsize=0.1, initial_const=0.1, abort_early=abort),
            lambda fm: fb.attacks.L2CarliniWagnerAttack(binary_search_steps=1, steps=2, stepsize=0.1),
            None, args.cw_repeats),
    }
    rows = []
    for name, (ours, theirs, warmup, eps, repeats) in cases.items():
        t = time.perf_counter()
        compiled = jax.jit(ours).lower(x, y).compile()
        compile_s = time.perf_counter() - t
        fmodel = None
        if fb is not None:
            fmodel = fb.JAXModel(jax.jit(f), bounds=(0.0, 1.0))
            warmup(fmodel)(fmodel, x, y, epsilons=eps)  # compiles the model and foolbox's eager ops
        # interleave ours / foolbox so that load from other processes hits both alike; keep the best
        ours_t, fb_t = [], []
        for _ in range(repeats):
            t = time.perf_counter()
            x_adv = jax.block_until_ready(compiled(x, y))
            ours_t.append(time.perf_counter() - t)
            if fmodel is not None:
                t = time.perf_counter()
                fb_adv = jax.block_until_ready(theirs(fmodel)(fmodel, x, y, epsilons=eps)[0])
                fb_t.append(time.perf_counter() - t)
        acc = float(jnp.mean(jnp.argmax(f(x_adv), -1) == y))
        row = dict(name=name, compile_s=compile_s, run_s=min(ours_t), ips=args.batch / min(ours_t), acc=acc)
        if fb_t:
            # foolbox's C&W returns an all-zero image where it found nothing: count those as correct
            found = jnp.any(fb_adv.reshape(len(fb_adv), -1) != 0, axis=1) if eps is None else True
            row.update(fb_s=min(fb_t), fb_ips=args.batch / min(fb_t),
                       fb_acc=float(jnp.mean(~(found & (jnp.argmax(f(fb_adv), -1) != y)))))
        rows.append(row)
        print({k: (round(v, 4) if isinstance(v, float) else v) for k, v in row.items()}, flush=True)

    print("\n| attack | compile (s) | ours run (s) | ours img/s | foolbox run (s) | foolbox img/s | ours / foolbox "
          "| robust acc ours / foolbox |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        fbcols = (f"{r['fb_s']:.2f} | {r['fb_ips']:.0f} | {r['ips'] / r['fb_ips']:.2f}x | "
                  f"{r['acc']:.3f} / {r['fb_acc']:.3f}") if "fb_s" in r else f"- | - | - | {r['acc']:.3f} / -"
        print(f"| {r['name']} | {r['compile_s']:.2f} | {r['run_s']:.2f} | {r['ips']:.0f} | {fbcols} |")
    print(f"load average after: {_load()}")
    return rows


def _load() -> str:
    """The 1 / 5 / 15-minute load averages (this CPU is shared: quote them with any timing)."""
    return " / ".join(f"{v:.2f}" for v in os.getloadavg())


def bench_square_overhead(args):
    f = af.trained_lenet().logits_fn()
    x, y = af.mnist_test_batch(args.batch)
    key, n = jax.random.key(0), args.square_queries
    square = jax.jit(lambda x, y: A.square(f, x, y, key=key, eps=0.1, n_queries=n))
    forward = jax.jit(lambda x: jax.lax.fori_loop(0, n, lambda i, acc: acc + f(x + 1e-6 * i).sum(), 0.0))
    jax.block_until_ready(square(x, y))
    jax.block_until_ready(forward(x))
    rows = []
    for _ in range(args.repeats):
        t = time.perf_counter()
        jax.block_until_ready(square(x, y))
        a = time.perf_counter() - t
        t = time.perf_counter()
        jax.block_until_ready(forward(x))
        b = time.perf_counter() - t
        rows.append((a / n, b / n))
        print(f"square: {a / n * 1e3:.2f} ms/iteration; forward pass only: {b / n * 1e3:.2f} ms/iteration; "
              f"load {_load()}", flush=True)
    return rows


def bench_torchattacks(args):
    import numpy as np
    import torch
    import torchattacks

    from ipgan_jax.testing.torch_models import TorchLeNet

    torch.set_num_threads(os.cpu_count() or 1)
    clf = af.trained_lenet()
    f = clf.logits_fn()
    tm = TorchLeNet(clf.params).eval()
    x, y = af.mnist_test_batch(args.batch)
    xt = torch.tensor(np.asarray(x)).permute(0, 3, 1, 2).contiguous()
    yt = torch.tensor(np.asarray(y), dtype=torch.long)
    key = jax.random.key(0)
    print(f"jax {jax.__version__}, torch {torch.__version__}, torchattacks {torchattacks.__version__}; "
          f"{os.cpu_count()} cpus; batch {args.batch}")
    eps = float(args.eps)
    cases = {
        f"APGD-CE-{args.apgd_steps} Linf eps {eps:g}": (
            lambda x, y, k: A.apgd(f, x, y, key=k, eps=eps, steps=args.apgd_steps),
            torchattacks.APGD(tm, norm="Linf", eps=eps, steps=args.apgd_steps, loss="ce", seed=0)),
        f"Square-{args.square_queries} Linf eps {eps:g}": (
            lambda x, y, k: A.square(f, x, y, key=k, eps=eps, n_queries=args.square_queries),
            torchattacks.Square(tm, norm="Linf", eps=eps, n_queries=args.square_queries, resc_schedule=False,
                                seed=0)),
        # host-level driver (not jit-able): drops broken images every 250 queries, like torchattacks
        f"Square-{args.square_queries} Linf eps {eps:g}, square_compacting": (
            lambda x, y, k: A.square_compacting(f, x, y, key=k, eps=eps, n_queries=args.square_queries),
            torchattacks.Square(tm, norm="Linf", eps=eps, n_queries=args.square_queries, resc_schedule=False,
                                seed=0)),
    }
    rows = []
    for name, (ours, theirs) in cases.items():
        t = time.perf_counter()
        if "compacting" in name:   # compiles its chunk shapes on the first call
            compiled = ours
            jax.block_until_ready(ours(x, y, key))
        else:
            compiled = jax.jit(ours).lower(x, y, key).compile()
        compile_s = time.perf_counter() - t
        ours_t, ta_t = [], []
        for _ in range(args.repeats):
            t = time.perf_counter()
            xa = jax.block_until_ready(compiled(x, y, key))
            ours_t.append(time.perf_counter() - t)
            t = time.perf_counter()
            xb = theirs(xt, yt)
            ta_t.append(time.perf_counter() - t)
        acc = float(jnp.mean(jnp.argmax(f(xa), -1) == y))
        with torch.no_grad():
            acc_b = float((tm(xb).argmax(1) == yt).float().mean())
        rows.append((name, compile_s, min(ours_t), min(ta_t), acc, acc_b))
        print(rows[-1], flush=True)
    print("\n| attack | compile (s) | ours run (s) | torchattacks run (s) | ours / torchattacks time "
          "| robust acc ours / torchattacks |")
    print("|---|---|---|---|---|---|")
    for name, c, a, b, acc, acc_b in rows:
        print(f"| {name} | {c:.1f} | {a:.2f} | {b:.2f} | {a / b:.2f}x | {acc:.3f} / {acc_b:.3f} |")
    print(f"load average after: {_load()}")
    return rows


if __name__ == "__main__":
    main()
