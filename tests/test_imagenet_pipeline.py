"""The ImageNet path end to end on CPU: real EfficientNet-Lite0 weights (shipped in a package),
real labelled ImageNet photos (imagenet_sample), the ImageNet-size generator and PatchGAN,
a few training steps and one evaluation."""
import json
import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.slow

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _run(args):
    return subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True,
                          env=dict(os.environ, IPGAN_PROGRESS="0"))


def test_imagenet_tiny_train_and_eval(tmp_path):
    wd = tmp_path / "wd"
    cfg = "configs/imagenet.py:efficientnet_lite0,tiny"
    r = _run(["run_train.py", "--config", cfg, f"--config.workdir={wd}"])
    assert r.returncode == 0, r.stderr[-3000:]
    d = wd / "defenses" / "ipgan" / "efficientnet_lite0"
    assert (d / "params").is_dir() and (d / "samples" / "final.png").exists()
    assert json.loads((d / "result.json").read_text())["steps"] == 2
    r = _run(["run_eval.py", "--config", cfg, f"--config.workdir={wd}", "--blocks", "oblivious,whitebox"])
    assert r.returncode == 0, r.stderr[-3000:]
    assert "EffNet-Lite0" in r.stdout and "Block 3" in r.stdout
    data = json.loads((wd / "eval" / "results.json").read_text())
    none = next(c for c in data["attack_metrics"] if c["defense"] == "none" and c["block"] == "oblivious")
    assert none["n"] == 8 and none["acc"] >= 0.5   # real pretrained weights on real photos
    assert (wd / "eval" / "grid_efficientnet_lite0_ipgan.png").exists()
