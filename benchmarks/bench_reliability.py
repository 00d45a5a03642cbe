"""What the reliability layer (issue 14) costs: attacks and the IP-GAN train loop, with and without it.

    python benchmarks/bench_reliability.py [--repeats 5] [--batch 256] [--train_steps 150]
                                           [--checkpoint_every 50] [--skip_train]

Everything runs in one process, the two variants of each item interleaved repetition by
repetition (order alternating), so load from other processes hits both alike; the median of each
variant and the ratio checked / bare are printed with the load average.

Attacks (LeNet-5, random weights, MNIST-shaped random inputs in [0, 1]):
  * ``jit``: ``jax.jit`` of ``make_attack(cfg)`` (contracts: static shape/dtype checks at trace
    time, in ``make_attack`` and in the attack's ``contracts.attack_contract``) vs ``jax.jit`` of the
    bare attack function (``attack.__wrapped__``, no contract) with the same parameters;
  * ``eager``: calling the ``make_attack`` wrapper around a jitted attack on concrete arrays, so
    the value checks (pixel range, finite, label bounds) run on the host each call, vs calling the
    jitted attack directly.

Train loop (IP-GAN on LeNet with random weights, config ``configs/mnist.py``, batch 64): the
project's ``TrainLoop`` as it is (finite check of the logged losses, finite check of the state and a
sha256 manifest written and read back at every checkpoint, synchronous save) vs the same loop with
those parts patched back to what they were before issue 14 (no finite checks, asynchronous orbax
save without manifest). ``--checkpoint_every`` is smaller than the config's 250 so that the saves
weigh more than in a real run. Each run trains ``--train_steps`` steps from scratch in a fresh
folder; the jitted step is shared, so compilation is paid once, in a warm-up run.
"""
from __future__ import annotations

import argparse
import functools
import os
import statistics
import tempfile
import time

import jax
import jax.numpy as jnp
import numpy as np

from ipgan_jax import contracts
from ipgan_jax.attacks import registry
from ipgan_jax.models.classifiers import get_classifier


def loadavg() -> str:
    try:
        return " ".join(f"{v:.2f}" for v in os.getloadavg())
    except OSError:
        return "n/a"


def interleave(variants: dict, repeats: int) -> dict:
    """Time each zero-argument callable ``repeats`` times, interleaved; {name: [seconds]}."""
    times = {k: [] for k in variants}
    names = list(variants)
    for r in range(repeats):
        for k in (names if r % 2 == 0 else names[::-1]):
            t = time.perf_counter()
            variants[k]()
            times[k].append(time.perf_counter() - t)
    return times


def report(title: str, times: dict, checked: str, bare: str, unit: str = "s") -> None:
    med = {k: statistics.median(v) for k, v in times.items()}
    spread = {k: (min(v), max(v)) for k, v in times.items()}
    print(f"{title}: {checked} {med[checked]:.4f} {unit} "
          f"(min {spread[checked][0]:.4f}, max {spread[checked][1]:.4f}) | "
          f"{bare} {med[bare]:.4f} {unit} (min {spread[bare][0]:.4f}, max {spread[bare][1]:.4f}) | "
          f"ratio {checked}/{bare} = {med[checked] / med[bare]:.3f}   [load {loadavg()}]", flush=True)


def bench_attacks(args) -> None:
    model = get_classifier("lenet")
    variables = model.init(jax.random.PRNGKey(0), jnp.zeros((1, 28, 28, 1)), train=False)

    def logits_fn(x):
        return model.apply(variables, x, train=False)

    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.uniform(0, 1, (args.batch, 28, 28, 1)).astype(np.float32))
    y = jnp.asarray(rng.integers(0, 10, (args.batch,)).astype(np.int32))
    key = jax.random.PRNGKey(1)
    for cfg in ({"name": "fgsm", "eps": 0.3}, {"name": "pgd", "eps": 0.3, "steps": 40}):
        wrapped = registry.make_attack(cfg, dataset="mnist")
        attack = registry.ATTACKS[cfg["name"]]
        bare_fn = functools.partial(getattr(attack, "__wrapped__", attack), **wrapped.params)   # no contract
        jit_wrapped = jax.jit(lambda x, y, k, a=wrapped: a(logits_fn, x, y, k))
        jit_bare = jax.jit(lambda x, y, k, f=bare_fn: f(logits_fn, x, y, key=k))
        for f in (jit_wrapped, jit_bare):
            f(x, y, key).block_until_ready()                      # compile
        same = bool(jnp.all(jit_wrapped(x, y, key) == jit_bare(x, y, key)))
        times = interleave({"make_attack": lambda: jit_wrapped(x, y, key).block_until_ready(),
                            "bare": lambda: jit_bare(x, y, key).block_until_ready()}, args.repeats)
        report(f"{cfg['name']:5s} jit   (batch {args.batch}, identical output: {same})", times, "make_attack", "bare")

        def eager_checked():   # what make_attack's wrapper adds on concrete arrays
            contracts.check_attack_inputs(logits_fn, x, y)
            return jit_bare(x, y, key).block_until_ready()

        times = interleave({"checked": eager_checked, "bare": lambda: jit_bare(x, y, key).block_until_ready()},
                           args.repeats)
        report(f"{cfg['name']:5s} eager (batch {args.batch}, value checks on the host)", times, "checked", "bare")


def bench_train(args) -> None:
    import orbax.checkpoint as ocp

    from configs import mnist
    from ipgan_jax.data.pipeline import config_loader
    from ipgan_jax.defenses.registry import make_trainer
    from ipgan_jax.training import checkpoint as ckpt_mod
    from ipgan_jax.training import loop as loop_mod

    config = mnist.get_config()
    config.train.checkpoint_every = args.checkpoint_every
    model = get_classifier("lenet")
    variables = model.init(jax.random.PRNGKey(0), jnp.zeros((1, 28, 28, 1)), train=False)
    trainer = make_trainer(config, model, variables)
    loader = config_loader(config, "train", config.train.batch_size, train=True,
                           num_examples=config.train.num_train_examples)

    cached = {}
    original_jit = loop_mod.jit_train_step

    def shared_jit(train_step, mesh):   # one compiled step for every run
        if "f" not in cached:
            cached["f"] = original_jit(train_step, mesh)
        return cached["f"]

    def old_save(self, step, state, force=False):   # Checkpointer.save before issue 14
        return self.manager.save(int(step), args=ocp.args.StandardSave(state), force=force)

    new_save, new_check = ckpt_mod.Checkpointer.save, loop_mod.check_finite_metrics

    def run(reliable: bool) -> None:
        ckpt_mod.Checkpointer.save = new_save if reliable else old_save
        loop_mod.check_finite_metrics = new_check if reliable else (lambda *a, **k: None)
        with tempfile.TemporaryDirectory() as d:
            with loop_mod.TrainLoop(d, trainer, loader=loader, total_steps=args.train_steps, cfg=config.train,
                                    init_rng=jax.random.PRNGKey(2), step_rng=jax.random.PRNGKey(3),
                                    desc="bench") as lp:
                lp.run([])
                jax.block_until_ready(lp.state)

    loop_mod.jit_train_step = shared_jit
    try:
        run(True)   # warm-up: compiles the step
        times = interleave({"reliable": lambda: run(True), "pre-14": lambda: run(False)}, args.repeats)
    finally:
        loop_mod.jit_train_step = original_jit
        ckpt_mod.Checkpointer.save, loop_mod.check_finite_metrics = new_save, new_check
    report(f"IP-GAN TrainLoop ({args.train_steps} steps, batch {config.train.batch_size}, save every "
           f"{args.checkpoint_every})", times, "reliable", "pre-14")


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--train_steps", type=int, default=150)
    p.add_argument("--checkpoint_every", type=int, default=50)
    p.add_argument("--skip_train", action="store_true")
    args = p.parse_args(argv)
    print(f"jax {jax.__version__}, {jax.devices()[0].platform}, {os.cpu_count()} cpus, load {loadavg()}", flush=True)
    t0 = time.time()
    bench_attacks(args)
    if not args.skip_train:
        bench_train(args)
    print(f"wall {time.time() - t0:.0f} s, load {loadavg()}")


if __name__ == "__main__":
    main()
