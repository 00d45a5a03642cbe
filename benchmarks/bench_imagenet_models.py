"""Forward (and input-gradient) throughput of the ImageNet classifiers, random weights.

    python benchmarks/bench_imagenet_models.py --models resnet50,inception_v3 --batch 32 --steps 10

Reports compile time and steady-state images/s for ``logits`` and for the input gradient of
the cross-entropy (what gradient attacks and the IP-GAN generator loss cost per step).
"""
from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp
import optax

from ipgan_jax.models.imagenet import INPUT_SIZE, get_imagenet_classifier


def bench(name, batch, steps):
    module = get_imagenet_classifier(name)
    s = INPUT_SIZE[name]
    x = jax.random.uniform(jax.random.PRNGKey(0), (batch, s, s, 3))
    y = jnp.zeros((batch,), jnp.int32)
    variables = jax.jit(module.init)(jax.random.PRNGKey(1), x[:1])
    fwd = jax.jit(lambda v, x: module.apply(v, x))
    grad = jax.jit(jax.grad(lambda x, v: optax.softmax_cross_entropy_with_integer_labels(
        module.apply(v, x), y).mean()))
    out = {}
    for tag, fn in (("forward", lambda: fwd(variables, x)), ("input_grad", lambda: grad(x, variables))):
        t = time.perf_counter()
        jax.block_until_ready(fn())
        compile_s = time.perf_counter() - t
        t = time.perf_counter()
        for _ in range(steps):
            r = fn()
        jax.block_until_ready(r)
        out[tag] = (compile_s, batch * steps / (time.perf_counter() - t))
    return out


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", default=",".join(INPUT_SIZE))
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--steps", type=int, default=3)
    a = p.parse_args()
    print(f"device: {jax.devices()[0].device_kind} ({jax.default_backend()}), batch {a.batch}")
    for name in a.models.split(","):
        for tag, (c, ips) in bench(name, a.batch, a.steps).items():
            print(f"{name:20s} {tag:10s} compile {c:6.1f} s   {ips:8.1f} images/s")


if __name__ == "__main__":
    main()
