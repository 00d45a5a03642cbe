"""The evaluation refactor changed no number: the same ``run_eval.py`` command on the shipped LeNet models gives the
records that the harness before it gave (tests/data/eval_records_50d8a63.json, written by commit 50d8a63, the last
one before evaluation became data; see ``digest`` for what is kept). It is a regression test from then on: a change
that moves a number fails it. If a shipped model it reads (classifiers/lenet, classifiers/mcnn, defenses/ipgan/lenet)
is replaced, write the file again with the current harness (``digest`` of the command's results.json) and say so."""
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
GOLDEN = ROOT / "tests" / "data" / "eval_records_50d8a63.json"
# oblivious, transfer (through M_CNN) and white-box (with cross-pipeline records) blocks; 40 images in batches of 32,
# so the second batch is padded
COMMAND = ["--config", "configs/mnist.py", "--config.pretrained=True", "--classifiers", "lenet",
           "--defenses", "none,ipgan,binarize", "--attacks", "fgsm,pgd", "--num_examples", "40",
           "--blocks", "oblivious,transfer,whitebox", "--config.eval.batch_size=32",
           "--config.eval.whitebox_steps=10", "--config.eval.whitebox_restarts=1",
           "--config.eval.whitebox_suite=pgd_ce,apgd_ce"]


def digest(results: dict) -> dict:
    """What must not change: every record (in the run's order) with its packed per-image bits, n and flags; the
    clean bits of every pipeline; and each record's mean SSIM and median L2 (``attack_metrics``), to 5 decimals
    (compared within :data:`FLOAT_TOL`)."""
    def rounded(v):
        return round(float(v), 5) if isinstance(v, float) else v
    metrics = {(m["block"], m["attack"], m["classifier"], m["defense"]): m for m in results["attack_metrics"]}
    recs = []
    for r in results["records"]:
        m = metrics[(r["block"], r["attack"], r["classifier"], r["defense"])]
        recs.append({**r, **{k: rounded(m[k]) for k in ("ssim_rec", "ssim_adv", "median_l2")}})
    clean = [{k: c[k] for k in ("classifier", "defense", "n", "correct")} for c in results["clean"]]
    return {"records": recs, "clean": clean}


# SSIM / L2 means depend on the CPU's thread count (XLA's reduction order): PGD through IP-GAN's G flips the sign of
# near-zero gradients, so the same command on one core moved the pipeline's mean SSIM by 1.1e-3 from the two-core
# golden file, every bit unchanged. The bits are compared exactly; the means within this tolerance.
FLOAT_TOL = 5e-3


def same(key: str, got, want) -> bool:
    """Bits, counts and names exactly; the float means (SSIM, median L2) within :data:`FLOAT_TOL`."""
    if key in ("ssim_rec", "ssim_adv", "median_l2") and isinstance(want, float) and isinstance(got, float):
        return math.isclose(got, want, abs_tol=FLOAT_TOL) or (math.isnan(got) and math.isnan(want))
    return got == want


@pytest.mark.slow
def test_run_eval_gives_the_records_of_the_harness_before_the_refactor(tmp_path):
    out = tmp_path / "eval"
    # a user's environment: one CPU device (tests/conftest.py emulates 8, which changes how XLA splits the
    # reductions, and so SSIM in the 5th decimal)
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    r = subprocess.run([sys.executable, "run_eval.py", *COMMAND, f"--config.eval.out_dir={out}",
                        f"--config.workdir={tmp_path / 'wd'}"], cwd=ROOT, capture_output=True, text=True, env=env)
    assert r.returncode == 0, r.stderr[-3000:]
    got = digest(json.loads((out / "results.json").read_text()))
    want = json.loads(GOLDEN.read_text())
    assert [(x["block"], x["attack"], x["defense"]) for x in got["records"]] == \
        [(x["block"], x["attack"], x["defense"]) for x in want["records"]]
    changed = [f"{w['block']}/{w['attack']}/{w['defense']}: {k}" for g, w in zip(got["records"], want["records"])
               for k in w if not same(k, g.get(k), w[k])]
    assert not changed, "records differ from the harness before the refactor:\n" + "\n".join(changed)
    assert got["clean"] == want["clean"]
