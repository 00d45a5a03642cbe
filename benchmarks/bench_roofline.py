"""Roofline on this machine: achieved FLOP/s of the attack loops and an IP-GAN train step, as a
fraction of the peak float32 matmul rate measured in the same process, and (``--compare``) the
same attacks in foolbox-JAX 3.3.4 and torchattacks 3.5.1 (PyTorch) on the same weights.

    python benchmarks/bench_roofline.py [--batch 256] [--steps 40] [--cw_steps 100] [--repeats 3]
                                        [--models lenet,mcnn,alexnet] [--skip_train_step] [--compare]

FLOPs come from XLA's own cost analysis (``jit(f).lower(...).compile().cost_analysis()``) of
*one* iteration (one forward + input-gradient pass for an attack step, one whole train step),
because XLA counts the body of a ``while`` loop once, not once per trip. An attack of ``steps``
iterations therefore does ``steps x flops(one step)``. The train step draws one attack of the
config's mix per step (``lax.switch``, whose branches XLA would all count): its FLOPs are the mean
over the mix of (cost of the step with that attack alone) + (its steps - 1) x (one gradient pass
of f), the loop correction again. Time is the best of ``--repeats`` runs of the whole jitted
program, interleaved across cases and libraries so that load from other processes hits all alike;
the 1-minute load average is printed before and after (this CPU is shared).

Peak: the best rate of a float32 ``[N,N] @ [N,N]`` matmul (N = 2048, XLA:CPU -> Eigen/oneDNN)
over the same repeats. Models use random weights (the torch twins of ipgan_jax/testing/torch_models.py get the
same ones): the FLOPs and the time do not depend on the values (no data-dependent control flow in
PGD, C&W without abort-early, or the train step).

Same work on every side: PGD Linf eps 0.3, step 0.01, no random start, last iterate (ours
``keep_best=False``; foolbox ``LinfPGD(abs_stepsize=0.01, random_start=False)``; torchattacks
``PGD(alpha=0.01, random_start=False)``); C&W L2 one binary-search step of ``--cw_steps`` Adam
steps, lr 0.01, c 1, no abort-early (foolbox ``L2CarliniWagnerAttack(binary_search_steps=1,
abort_early=False)``; torchattacks ``CW(c=1, kappa=0, lr=0.01)``, which has no binary search).
torch uses all cores (``torch.set_num_threads(os.cpu_count())``).
"""
from __future__ import annotations

import argparse
import os
import platform
import time

import jax
import jax.numpy as jnp
import numpy as np


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


def peak_matmul(n=2048, repeats=3, dtype=jnp.float32, precision=None):
    """Best FLOP/s of a ``dtype`` [n, n] @ [n, n] matmul (``precision``: lax.Precision or None)."""
    a = jnp.ones((n, n), dtype)
    b = jnp.ones((n, n), dtype) * 0.5
    mm = jax.jit(lambda a, b: jnp.matmul(a, b, precision=precision)).lower(a, b).compile()
    mm(a, b).block_until_ready()
    return 2.0 * n ** 3 / best_time(mm, (a, b), repeats)


def _model(name, batch, dtype=jnp.float32):
    """A random-init MNIST classifier ``name`` computing in ``dtype``: (f, params, x, y)."""
    from ipgan_jax.models.classifiers import get_classifier
    module = get_classifier(name, dtype=dtype)
    x = jax.random.uniform(jax.random.PRNGKey(0), (batch, 28, 28, 1))
    y = jnp.arange(batch) % 10
    params = module.init(jax.random.PRNGKey(1), x[:1], train=False)["params"]
    f = lambda z: module.apply({"params": params}, z, train=False)  # noqa: E731
    return f, params, x, y


def attack_case(name, batch, steps, dtype=jnp.float32):
    """PGD-``steps`` Linf eps 0.3 (no random start, last iterate) on MNIST model ``name`` computing in
    ``dtype``: a dict with the compiled program, its args, FLOPs per call and images (benchmarks/gpu)."""
    from ipgan_jax.attacks import pgd
    f, _, x, y = _model(name, batch, dtype)
    key = jax.random.PRNGKey(2)
    attack = jax.jit(lambda x, y, k: pgd(f, x, y, key=k, eps=0.3, steps=steps, step_size=0.01,
                                         random_start=False, keep_best=False))
    compiled = attack.lower(x, y, key).compile()
    jax.block_until_ready(compiled(x, y, key))
    return dict(name=f"PGD-{steps} {name}", flops=steps * grad_pass_flops(f, x, y), compiled=compiled,
                args=(x, y, key), images=batch)


def grad_pass_flops(f, x, y) -> float:
    """XLA FLOPs of one attack iteration's model work: forward + input gradient of the CE sum."""
    from ipgan_jax.attacks import cross_entropy
    return flops_of(jax.grad(lambda z: jnp.sum(cross_entropy(f(z), y))), x)


def attack_cases(name, batch, steps, cw_steps, compare):
    """PGD-``steps`` and C&W 1 x ``cw_steps`` on MNIST model ``name``: ours compiled, and the
    foolbox / torchattacks runners when ``compare``."""
    from ipgan_jax.attacks import cw_l2, pgd
    f, params, x, y = _model(name, batch)
    step_flops = grad_pass_flops(f, x, y)
    key = jax.random.PRNGKey(2)
    ours = {
        f"PGD-{steps}": (lambda x, y, k: pgd(f, x, y, key=k, eps=0.3, steps=steps, step_size=0.01,
                                              random_start=False, keep_best=False), steps),
        f"C&W-L2 1x{cw_steps}": (lambda x, y, k: cw_l2(f, x, y, key=k, binary_search_steps=1, steps=cw_steps,
                                                        lr=0.01, initial_const=1.0, abort_early=False), cw_steps),
    }
    cases = []
    for label, (fn, n) in ours.items():
        compiled = jax.jit(fn).lower(x, y, key).compile()
        jax.block_until_ready(compiled(x, y, key))
        case = dict(name=f"{label} {name}", flops=n * step_flops, images=batch,
                    run=lambda c=compiled: jax.block_until_ready(c(x, y, key)), others={})
        if compare:
            case["others"] = _reference_runners(name, label, f, params, x, y, steps, cw_steps)
        print(f"ready: {case['name']} (+ {', '.join(case['others']) or 'no other library'}); "
              f"load average {os.getloadavg()[0]:.2f}", flush=True)
        cases.append(case)
    return cases


def _reference_runners(name, label, f, params, x, y, steps, cw_steps):
    """{library: zero-argument runner} for foolbox-JAX and torchattacks, each warmed up once; a
    library that is not installed is left out (and said so)."""
    runners = {}
    try:
        import foolbox as fb
        fmodel = fb.JAXModel(f, bounds=(0, 1))
        att = fb.attacks.LinfPGD(abs_stepsize=0.01, steps=steps, random_start=False) if label.startswith("PGD") \
            else fb.attacks.L2CarliniWagnerAttack(binary_search_steps=1, steps=cw_steps, stepsize=0.01,
                                                  initial_const=1.0, abort_early=False)
        eps = 0.3 if label.startswith("PGD") else None
        run = lambda att=att: jax.block_until_ready(att(fmodel, x, y, epsilons=eps)[0])  # noqa: E731
        run()
        runners["foolbox-JAX"] = run
    except ImportError:
        print("foolbox not installed: pip install foolbox==3.3.4", flush=True)
    try:
        import torch
        import torchattacks

        from ipgan_jax.testing.torch_models import port
        torch.set_num_threads(os.cpu_count() or 1)
        tm = port(name, params)
        xt = torch.tensor(np.asarray(x)).permute(0, 3, 1, 2).contiguous()
        yt = torch.tensor(np.asarray(y), dtype=torch.long)
        with torch.no_grad():
            gap = float(np.max(np.abs(tm(xt).numpy() - np.asarray(f(x)))))
        if gap > 1e-3:
            raise AssertionError(f"torch twin of {name} differs from the flax model by {gap}")
        att = torchattacks.PGD(tm, eps=0.3, alpha=0.01, steps=steps, random_start=False) \
            if label.startswith("PGD") else torchattacks.CW(tm, c=1.0, kappa=0, steps=cw_steps, lr=0.01)
        run = lambda att=att: att(xt, yt)  # noqa: E731
        run()
        runners["torchattacks"] = run
    except ImportError:
        print("torch / torchattacks not installed (see benchmarks/README.md)", flush=True)
    return runners


def train_step_case(batch, config=None, module=None):
    """One jitted IP-GAN train step under ``config`` (default configs/mnist.py) against ``module``
    (random init; default LeNet), on random images of the config's size."""
    from configs import mnist
    from ipgan_jax.defenses.ipgan import IPGANTrainer
    from ipgan_jax.models.classifiers import get_classifier
    config = config or mnist.get_config()
    module = module or get_classifier("lenet")
    shape = (config.image_size, config.image_size, config.channels)
    variables = jax.jit(lambda k: module.init(k, jnp.zeros((1, *shape)), train=False))(jax.random.PRNGKey(1))
    batch_ = {"image": jax.random.uniform(jax.random.PRNGKey(3), (batch, *shape)),
              "label": jnp.arange(batch) % config.num_classes}
    f = lambda z: module.apply(variables, z, train=False)  # noqa: E731
    f_pass = grad_pass_flops(f, batch_["image"], batch_["label"])

    def compiled_step(cfg):
        trainer = IPGANTrainer(cfg, module, variables)
        state = jax.jit(trainer.init_state)(jax.random.PRNGKey(0))
        return jax.jit(trainer.train_step).lower(state, batch_, jax.random.PRNGKey(4)).compile(), state

    per_attack = []
    for spec in config.train_attacks:   # FLOPs of the step with each attack of the mix alone
        one = config.copy_and_resolve_references()
        one.train_attacks = [dict(spec)]
        cost = compiled_step(one)[0].cost_analysis()
        cost = cost[0] if isinstance(cost, (list, tuple)) else cost
        per_attack.append(float(cost["flops"]) + (int(spec.get("steps", 1)) - 1) * f_pass)
    compiled, state = compiled_step(config)
    args = (state, batch_, jax.random.PRNGKey(4))
    jax.block_until_ready(compiled(*args))
    return dict(name=f"IP-GAN train step {type(module).__name__} ({shape[0]} px, batch {batch}, the config's "
                     f"attack mix)", flops=float(np.mean(per_attack)), images=batch, compiled=compiled, args=args,
                run=lambda: jax.block_until_ready(compiled(*args)), others={})


def timed(run) -> float:
    t = time.perf_counter()
    run()
    return time.perf_counter() - t


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--steps", type=int, default=40)
    p.add_argument("--cw_steps", type=int, default=100)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--models", default="lenet,mcnn,alexnet")
    p.add_argument("--skip_train_step", action="store_true")
    p.add_argument("--compare", action="store_true", help="also time foolbox-JAX and torchattacks")
    args = p.parse_args(argv)
    print(f"jax {jax.__version__} on {jax.devices()[0].platform} ({platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} cpus); load average before: {os.getloadavg()[0]:.2f}", flush=True)
    cases = [c for m in args.models.split(",") if m
             for c in attack_cases(m, args.batch, args.steps, args.cw_steps, args.compare)]
    if not args.skip_train_step:
        cases.append(train_step_case(64))
    times = {c["name"]: {"ours": [], **{lib: [] for lib in c["others"]}} for c in cases}
    peaks = []
    for r in range(args.repeats):  # interleaved: peak, then every case and library, each round
        peaks.append(peak_matmul(repeats=1))
        for c in cases:
            times[c["name"]]["ours"].append(timed(c["run"]))
            for lib, run in c["others"].items():
                times[c["name"]][lib].append(timed(run))
        print(f"round {r + 1}/{args.repeats} done; load average {os.getloadavg()[0]:.2f}", flush=True)
    peak = max(peaks)
    print(f"load average after: {os.getloadavg()[0]:.2f}")
    print(f"\npeak float32 matmul (2048^3): {peak / 1e9:.1f} GFLOP/s (best of {args.repeats})\n")
    print("| case (batch) | GFLOP per call | best time (s) | img/s | GFLOP/s | % of peak | foolbox-JAX (s) | "
          "speed vs foolbox | torchattacks (s) | speed vs torch |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    rows = []
    for c in cases:
        ts = {lib: min(v) for lib, v in times[c["name"]].items()}
        t = ts["ours"]
        rate = c["flops"] / t
        row = dict(name=c["name"], gflop=c["flops"] / 1e9, time=t, ips=c["images"] / t,
                   gflops=rate / 1e9, frac=rate / peak, **{f"{lib}_s": v for lib, v in ts.items() if lib != "ours"})
        rows.append(row)
        ref = "".join(f" {ts[lib]:.2f} | {ts[lib] / t:.2f}x |" if lib in ts else " - | - |"
                      for lib in ("foolbox-JAX", "torchattacks"))
        print(f"| {c['name']} ({c['images']}) | {c['flops'] / 1e9:.2f} | {t:.3f} | {c['images'] / t:.0f} | "
              f"{rate / 1e9:.1f} | {100 * rate / peak:.1f}% |{ref}")
    return rows, peak


if __name__ == "__main__":
    main()
