"""Evaluation: metric definitions, the end-to-end run_eval.py outputs, and masking detection."""
import json
import os
import subprocess
import sys

import jax
import numpy as np
import pytest

from ipgan_jax import metrics as M

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_rates_on_hand_made_cases():
    y = np.array([0, 1, 2, 3, 4])
    clean = np.array([0, 1, 2, 3, 0])        # 4 correct
    adv = np.array([9, 9, 9, 3, 0])          # fools 3 of the 4
    perfect = y.copy()
    r = M.rates(M.counts(clean, adv, perfect, y))
    assert r["acc"] == pytest.approx(0.8) and r["asr"] == pytest.approx(0.75)
    assert r["dsr"] == 1.0                   # a perfect defense
    assert M.rates(M.counts(clean, adv, adv, y))["dsr"] == 0.0   # no defense
    half = np.array([0, 9, 2, 3, 0])
    assert M.rates(M.counts(clean, adv, half, y))["dsr"] == pytest.approx(2 / 3)
    # masked-out padding does not count
    mask = np.array([True, True, True, True, False])
    assert M.rates(M.counts(clean, adv, adv, y, mask))["acc"] == 1.0
    # no successful attack: DSR undefined
    assert np.isnan(M.rates(M.counts(clean, clean, clean, y))["dsr"])


def test_wilson_interval():
    lo, hi = M.wilson_interval(50, 100)
    assert lo < 0.5 < hi and hi - lo == pytest.approx(0.19, abs=0.01)
    assert M.wilson_interval(0, 0) != M.wilson_interval(0, 0)  # nan pair
    lo, hi = M.wilson_interval(100, 100)
    assert hi == pytest.approx(1.0) and lo > 0.95


def _ssim_reference(a, b):
    """Independent SSIM (Wang et al. 2004): Gaussian 11x11 sigma 1.5, 'valid' filtering, numpy/scipy-free."""
    k = np.exp(-0.5 * ((np.arange(11) - 5) / 1.5) ** 2)
    k /= k.sum()

    def filt(img):  # separable valid convolution on [H, W]
        h = np.stack([np.convolve(r, k, mode="valid") for r in img])
        return np.stack([np.convolve(c, k, mode="valid") for c in h.T]).T

    c1, c2 = 0.01 ** 2, 0.03 ** 2
    out = []
    for ch in range(a.shape[-1]):
        x, y = a[..., ch].astype(np.float64), b[..., ch].astype(np.float64)
        mx, my = filt(x), filt(y)
        sxx, syy, sxy = filt(x * x) - mx ** 2, filt(y * y) - my ** 2, filt(x * y) - mx * my
        s = ((2 * mx * my + c1) * (2 * sxy + c2)) / ((mx ** 2 + my ** 2 + c1) * (sxx + syy + c2))
        out.append(s.mean())
    return float(np.mean(out))


def test_ssim_matches_independent_implementation():
    rng = np.random.default_rng(0)
    from ipgan_jax.data.pipeline import make_loader
    x = make_loader("mnist", "test", 4, train=False, num_examples=4).batch(0)["image"]
    pairs = [(x, np.clip(x + rng.normal(0, 0.1, x.shape), 0, 1)), (x, x), (x, np.clip(x + 0.3 * np.sign(rng.normal(size=x.shape)), 0, 1))]
    for a, b in pairs:
        ours = np.asarray(M.ssim(a, b))
        ref = np.array([_ssim_reference(a[i], b[i]) for i in range(len(a))])
        np.testing.assert_allclose(ours, ref, atol=1e-4)
    assert np.allclose(np.asarray(M.ssim(x, x)), 1.0, atol=1e-6)


@pytest.fixture(scope="module")
def trained_workdir(tmp_path_factory):
    wd = tmp_path_factory.mktemp("evalwd") / "wd"
    r = subprocess.run([sys.executable, "run_train.py", "--config", "configs/mnist_tiny.py", f"--config.workdir={wd}"],
                       cwd=ROOT, capture_output=True, text=True, env=dict(os.environ, IPGAN_PROGRESS="0"))
    assert r.returncode == 0, r.stderr[-3000:]
    return wd


def test_run_eval_end_to_end(trained_workdir):
    r = subprocess.run([sys.executable, "run_eval.py", "--config", "configs/mnist_tiny.py",
                        f"--config.workdir={trained_workdir}", "--classifiers", "lenet",
                        "--blocks", "oblivious,whitebox,cw,curve,checks", "--config.eval.whitebox_num_examples=40"],
                       cwd=ROOT, capture_output=True, text=True, env=dict(os.environ, IPGAN_PROGRESS="0"))
    assert r.returncode == 0, r.stderr[-3000:]
    out = r.stdout
    assert "Block 1" in out and "Block 3" in out and "IP-GAN" in out and "[98.04]" in out  # paper value beside ours
    assert "Sanity checks" in out and "C&W-L2" in out
    ev = trained_workdir / "eval"
    data = json.loads((ev / "results.json").read_text())
    blocks = {c["block"] for c in data["cells"]}
    assert {"oblivious", "whitebox", "cw_distortion"} <= blocks
    cell = next(c for c in data["cells"] if c["block"] == "oblivious" and c["defense"] == "none" and c["attack"] == "pgd")
    assert cell["n"] == 64 and cell["dsr"] == 0.0          # no defense never defends
    wb = next(c for c in data["cells"] if c["block"] == "whitebox" and c["defense"] == "ipgan")
    assert wb["n"] == 40                                    # costly blocks: the first 40 examples only
    assert data["meta"]["whitebox_num_examples"] == 40
    assert (ev / "results.csv").read_text().startswith("block,attack,classifier,defense")
    assert (ev / "grid_lenet_ipgan.png").stat().st_size > 1000
    assert (ev / "curve_lenet.png").stat().st_size > 1000
    assert (ev / "dsr_curve_lenet.png").stat().st_size > 1000
    assert data["sanity_checks"]
    paired = next(ch for ch in data["sanity_checks"] if ch["name"].startswith("full white-box PGD at least"))
    assert "(40 / 40 images)" in paired["detail"]          # compared with oblivious PGD on the same 40 images


def test_sanity_checks_fire_on_masked_defense(trained_workdir):
    """A stop_gradient 'defense' (identity forward, zero gradient) must be flagged."""
    from configs import mnist_tiny
    from ipgan_jax.eval.evaluate import Evaluator
    from ipgan_jax.eval.report import sanity_checks
    c = mnist_tiny.get_config()
    c.workdir = str(trained_workdir)
    ev = Evaluator(c, ["lenet"], ["none"], ["pgd"], 64)
    ev.defenses.append("masked")
    ev.defend_fns[("lenet", "masked")] = jax.lax.stop_gradient
    ev.run_clean()
    ev.run_oblivious()
    ev.run_whitebox()
    ev.run_eps_curve()
    ev.gradient_check()
    ev.steps_check("lenet", "masked")
    checks = {ch["name"]: ch for ch in sanity_checks(ev)}
    grad = checks["non-zero gradients through the defense (lenet, masked)"]
    assert not grad["ok"]
    wb = checks["full white-box PGD at least as strong as oblivious PGD (lenet, masked)"]
    assert not wb["ok"]
    # the same checks pass for the real (differentiable) IP-GAN generator
    ev2 = Evaluator(c, ["lenet"], ["none", "ipgan"], ["pgd"], 64)
    ev2.gradient_check()
    assert all(ch["ok"] for ch in sanity_checks(ev2) if "gradients" in ch["name"])


def test_markdown_leaves_out_blocks_that_did_not_run():
    """A white-box-only run prints Block 3 but no empty Block 1 or per-attack table."""
    from types import SimpleNamespace
    from ipgan_jax.eval.evaluate import Cell
    from ipgan_jax.eval.report import markdown
    y = np.array([0, 1, 2, 3])
    cell = Cell()
    cell.add(M.counts(y, np.array([1, 1, 2, 0]), np.array([0, 2, 2, 0]), y), ssim_rec=np.ones(4))
    ev = SimpleNamespace(classifiers=["lenet"], defenses=["none", "ipgan"], cells={("whitebox", "pgd", "lenet", "ipgan"): cell},
                         clean_acc={("lenet", "none"): 1.0, ("lenet", "ipgan"): 1.0}, curves={})
    out = markdown(ev)
    assert "Block 3" in out and "Block 1" not in out and "Per attack" not in out
    assert "up to 4 test images" in out
    # the attack fools f on images 0 and 3, the defense restores image 0: DSR 1/2; robust accuracy 2/4
    assert "| IP-GAN | 50.00 | 50.00 (" in out


def test_image_grid_tile_scale_follows_image_size(tmp_path):
    from PIL import Image
    from ipgan_jax.images import image_grid
    small, large = np.random.rand(8, 28, 28, 1), np.random.rand(8, 224, 224, 3)
    w_small = Image.open(image_grid([small, small], ["clean", "x_rec"], tmp_path / "s.png")).size[0]
    w_large = Image.open(image_grid([large], ["clean"], tmp_path / "l.png")).size[0]
    assert w_small > 8 * 28 * 3 and w_large < 8 * 224 * 1.2    # MNIST tiles enlarged 3x, ImageNet tiles not
