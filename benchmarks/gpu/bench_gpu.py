"""GPU benchmark: matmul peak, PGD-40 throughput per MNIST model, IP-GAN train-step throughput and
MFU at 28 px and 224 px, in float32 and bfloat16 (``config.train.compute_dtype``).

    python benchmarks/gpu/bench_gpu.py --out DIR     # full sizes: one H100/H200, ~4-5 min
    python benchmarks/gpu/bench_gpu.py --dry-run     # tiny sizes on any CPU, a few minutes

``--dry-run`` is a smoke test of every code path, not a measurement: tiny sizes, fast-compiling
XLA:CPU flags, PGD on LeNet only and each ImageNet target in one dtype (in turn).

Cases (random weights: neither FLOPs nor time depend on the values):

* ``matmul``: best of ``--repeats`` [N, N] @ [N, N] in bf16, f32 (XLA's default precision, which
  may use TF32 on GPUs) and f32 at ``Precision.HIGHEST``; the bf16 rate is the peak for MFU;
* ``pgd``: PGD-40 Linf eps 0.3 on LeNet / M_CNN / AlexNet (batch ``--attack_batch``);
* ``train_step``: one IP-GAN step (configs/mnist.py with LeNet at 28 px; configs/imagenet.py with
  EfficientNet-Lite0 and ResNet-50 as the target f at 224 px). The training attack is FGSM alone,
  so the step has no loop and no ``lax.switch`` and XLA's FLOP count is exact (the configs' mixes
  add PGD/BIM/MI-FGSM loops whose bodies XLA counts once).

FLOPs: XLA's ``cost_analysis`` of the compiled program (``bench_roofline.flops_of``; PGD: steps x
one iteration). MFU = FLOPs / best time / measured bf16 matmul peak, for both compute dtypes.
Each result is appended to ``<out>/bench_gpu.json`` as soon as it is measured; ``--budget_s``
skips the remaining cases once exceeded (recorded as skipped).
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import sys
import time
from pathlib import Path

if "--dry-run" in sys.argv[1:]:
    # a smoke run: at tiny sizes compiling is most of the time; these flags make XLA:CPU compile ~3x faster
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_backend_optimization_level=0"
                               " --xla_llvm_disable_expensive_passes=true").strip()

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402


def _load_benchmark(name):
    """benchmarks/<name>.py as a module, loaded from its file (benchmarks/ is scripts, not a package)."""
    spec = importlib.util.spec_from_file_location(name, Path(__file__).resolve().parents[1] / f"{name}.py")
    module = sys.modules[name] = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


roofline = _load_benchmark("bench_roofline")

DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}
FULL = dict(matmul_n=8192, attack_batch=1024, pgd_steps=40, mnist_batch=256, imagenet_batch=64,
            imagenet_size=224, gen_width=32, disc_width=64, repeats=5)
DRY = dict(matmul_n=512, attack_batch=16, pgd_steps=2, mnist_batch=8, imagenet_batch=1,
           imagenet_size=32, gen_width=4, disc_width=8, repeats=1)


def matmul_cases(n, repeats):
    """-> [(name, FLOP/s)] for bf16, f32 default precision and f32 HIGHEST."""
    high = jax.lax.Precision.HIGHEST
    return [(f"matmul bf16 {n}^3", roofline.peak_matmul(n, repeats, jnp.bfloat16)),
            (f"matmul f32 {n}^3 (default precision)", roofline.peak_matmul(n, repeats, jnp.float32)),
            (f"matmul f32 {n}^3 (HIGHEST)", roofline.peak_matmul(n, repeats, jnp.float32, high))]


def train_config(kind, s, dtype_name):
    """configs/mnist.py (kind 'mnist') or configs/imagenet.py:<kind>, FGSM-only, sized by ``s``."""
    from configs import imagenet, mnist
    c = mnist.get_config() if kind == "mnist" else imagenet.get_config(kind)
    c.train.compute_dtype = dtype_name
    c.train_attacks = [dict(name="fgsm", eps=c.train_attacks[0]["eps"], eps_min=c.train_attacks[0]["eps_min"])]
    if kind != "mnist":
        c.image_size = s["imagenet_size"]
        c.ipgan.update(gen_width=s["gen_width"], disc_width=s["disc_width"])
    return c


def train_case(kind, s, dtype_name):
    """A ``bench_roofline.train_step_case`` dict for IP-GAN against ``kind`` ('mnist': LeNet)."""
    from ipgan_jax.models.classifiers import get_classifier
    from ipgan_jax.models.imagenet import IMAGENET_CLASSIFIERS
    config = train_config(kind, s, dtype_name)
    if kind == "mnist":
        return roofline.train_step_case(s["mnist_batch"], config, get_classifier("lenet"))
    return roofline.train_step_case(s["imagenet_batch"], config,
                                    IMAGENET_CLASSIFIERS[kind](input_size=config.image_size))


def train_label(kind, s, dtype_name):
    if kind == "mnist":
        return f"IP-GAN step lenet 28px b{s['mnist_batch']} {dtype_name}"
    return f"IP-GAN step {kind} {s['imagenet_size']}px b{s['imagenet_batch']} {dtype_name}"


def measure(name, case, repeats, peak_bf16, setup_s):
    """Best time of ``repeats`` calls -> the JSON row (time in s, rates in TFLOP/s and items/s)."""
    t = roofline.best_time(case["compiled"], case["args"], repeats)
    rate = case["flops"] / t
    return dict(name=name, gflop=case["flops"] / 1e9, best_time_s=t, items_per_s=case["images"] / t,
                tflops=rate / 1e12, mfu=rate / peak_bf16, setup_s=setup_s)


def environment():
    d = jax.devices()[0]
    return dict(jax=jax.__version__, backend=jax.default_backend(), device=d.device_kind,
                num_devices=jax.device_count(), python=platform.python_version(), host=platform.node(),
                load_average=os.getloadavg()[0], time=time.strftime("%Y-%m-%d %H:%M:%S"))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default=os.environ.get("OUT", "benchmarks/gpu/out"), help="folder of bench_gpu.json")
    p.add_argument("--dry-run", action="store_true", help="tiny sizes (CPU smoke run of every case)")
    p.add_argument("--dtypes", default="float32,bfloat16")
    p.add_argument("--models", default=None, help="MNIST models attacked by PGD (default lenet,mcnn,alexnet; "
                   "lenet with --dry-run: the same code path)")
    p.add_argument("--imagenet", default="efficientnet_lite0,resnet50", help="targets of the 224-px step")
    p.add_argument("--budget_s", type=float, default=None,
                   help="skip the remaining cases after this many seconds (default 330; none with --dry-run)")
    for k, v in FULL.items():
        p.add_argument(f"--{k}", type=int, default=None, help=f"default {v} ({DRY[k]} with --dry-run)")
    a = p.parse_args(argv)
    s = {k: getattr(a, k) if getattr(a, k) is not None else (DRY if a.dry_run else FULL)[k] for k in FULL}
    dtypes = [d for d in a.dtypes.split(",") if d]
    models = a.models or ("lenet" if a.dry_run else "lenet,mcnn,alexnet")
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    report = dict(environment=environment(), sizes=s, dry_run=a.dry_run, results=[], skipped=[])
    budget = a.budget_s if a.budget_s is not None else (float("inf") if a.dry_run else 330.0)
    t0 = time.perf_counter()

    def save():
        report["wall_s"] = time.perf_counter() - t0
        (out / "bench_gpu.json").write_text(json.dumps(report, indent=1))

    print(json.dumps(report["environment"]), flush=True)
    peaks = matmul_cases(s["matmul_n"], s["repeats"])
    peak_bf16 = peaks[0][1]
    report["matmul_tflops"] = {name: r / 1e12 for name, r in peaks}
    for name, r in peaks:
        print(f"{name:40s} {r / 1e12:8.2f} TFLOP/s", flush=True)
    save()

    cases = [(f"PGD-{s['pgd_steps']} {m} b{s['attack_batch']} {d}",
              lambda m=m, d=d: roofline.attack_case(m, s["attack_batch"], s["pgd_steps"], DTYPES[d]))
             for m in models.split(",") if m for d in dtypes]
    targets = [m for m in a.imagenet.split(",") if m]
    # dry run: each ImageNet target in one dtype, in turn (every model and every dtype still runs)
    steps = [("mnist", d) for d in dtypes] + ([(m, dtypes[i % len(dtypes)]) for i, m in enumerate(targets)]
                                              if a.dry_run else [(m, d) for m in targets for d in dtypes])
    cases += [(train_label(k, s, d), lambda k=k, d=d: train_case(k, s, d)) for k, d in steps]
    print(f"\n{'case':52s} {'GFLOP':>9s} {'time s':>8s} {'items/s':>9s} {'TFLOP/s':>8s} {'MFU':>6s} "
          f"{'setup s':>7s}", flush=True)
    for label, build in cases:
        if time.perf_counter() - t0 > budget:
            report["skipped"].append(label)
            print(f"{label:52s} skipped (--budget_s {budget:.0f} s spent)", flush=True)
            continue
        ts = time.perf_counter()
        case = build()
        row = measure(label, case, s["repeats"], peak_bf16, time.perf_counter() - ts)
        report["results"].append(row)
        save()
        print(f"{row['name']:52s} {row['gflop']:9.2f} {row['best_time_s']:8.4f} {row['items_per_s']:9.0f} "
              f"{row['tflops']:8.2f} {100 * row['mfu']:5.1f}% {row['setup_s']:7.1f}", flush=True)
    save()
    print(f"\nwrote {out / 'bench_gpu.json'} ({report['wall_s']:.0f} s)")
    return report


if __name__ == "__main__":
    main()
