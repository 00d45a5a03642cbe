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
    pairs = [(x, np.clip(x + rng.normal(0, 0.1, x.shape), 0, 1)), (x, x),
             (x, np.clip(x + 0.3 * np.sign(rng.normal(size=x.shape)), 0, 1))]
    for a, b in pairs:
        ours = np.asarray(M.ssim(a, b))
        ref = np.array([_ssim_reference(a[i], b[i]) for i in range(len(a))])
        np.testing.assert_allclose(ours, ref, atol=1e-4)
    assert np.allclose(np.asarray(M.ssim(x, x)), 1.0, atol=1e-6)


def _rec(f_clean, pipe_clean, f_adv, pipe_adv, attack="a", through=False, bounded=True, l2=None):
    from ipgan_jax.eval.records import AttackRecord
    n = len(f_clean)
    return AttackRecord(block="b", attack=attack, classifier="c", defense="d", bounded=bounded, through=through,
                        f_clean=f_clean, pipe_clean=pipe_clean, f_adv=f_adv, pipe_adv=pipe_adv,
                        ssim_rec=np.arange(n) / n, ssim_adv=np.ones(n), l2=np.ones(n) if l2 is None else l2)


def test_block_robust_accuracy_is_worst_case_per_image_with_n_images():
    """Attack A breaks images 0, 1; attack B breaks 2: robust = {3} only (1/4), not the mean over
    attacks (2/4 + 3/4) / 2; the Wilson interval has n = 4 images; unbounded attacks stay out."""
    from ipgan_jax.eval.records import attack_metrics, block_metrics
    t, f = True, False
    ok = np.array([t, t, t, t])
    a = _rec(ok, ok, np.array([f, f, t, t]), np.array([f, f, t, t]), "A")
    b = _rec(ok, ok, np.array([t, t, f, t]), np.array([t, t, f, t]), "B")
    cw = _rec(ok, ok, ~ok, ~ok, "cw", bounded=False)
    bm = block_metrics([a, b, cw])
    assert bm.attacks == ("A", "B") and bm.n == 4 and bm.robust_correct == 1
    assert bm.robust_ci == M.wilson_interval(1, 4)
    assert attack_metrics(a).robust_acc == 0.5 and attack_metrics(b).robust_acc == 0.75
    # SSIM of the worst-case iterate: image 0/1 from A, 2 from B, 3 (unbroken) from the last (B)
    assert bm.ssim_rec == pytest.approx(np.mean(np.arange(4) / 4))


def test_robust_needs_clean_correct_through_pipeline_and_block_dsr_per_image():
    from ipgan_jax.eval.records import attack_metrics, block_metrics
    t, f = True, False
    # image 0: f wrong on clean, the defense 'fixes' it -> never robust; image 1: fooled by A and B,
    # restored for A only -> not defended; image 2: fooled by A, restored -> defended; image 3: never fooled
    f_clean, pipe_clean = np.array([f, t, t, t]), np.array([t, t, t, t])
    a = _rec(f_clean, pipe_clean, np.array([f, f, f, t]), np.array([t, t, t, t]), "A")
    b = _rec(f_clean, pipe_clean, np.array([f, f, t, t]), np.array([t, f, t, t]), "B")
    ma = attack_metrics(a)
    assert ma.acc == 0.75 and ma.asr == pytest.approx(2 / 3) and ma.dsr == 1.0 and ma.robust_acc == 1.0
    bm = block_metrics([a, b])
    assert bm.dsr_n == 2 and bm.dsr == 0.5               # images 1 and 2 were fooled; only 2 defended
    assert bm.robust_correct == 3                        # image 1 falls to B
    a_bad = _rec(f_clean, np.array([f, t, t, t]), a.f_adv, a.pipe_adv, "A")
    assert attack_metrics(a_bad).robust_acc == 0.75      # wrong on clean input through d: not robust


def test_whitebox_denominators_are_the_pipeline_and_min_norm_medians_count_failures():
    from ipgan_jax.eval.records import attack_metrics, median_l2
    t, f = True, False
    # through the pipeline: f(d(x)) right on 3 of 4, the attack breaks 1 of them; f alone is irrelevant
    r = _rec(np.array([f, f, f, f]), np.array([t, t, t, f]), np.array([f, f, f, f]), np.array([f, t, t, f]),
             through=True)
    m = attack_metrics(r)
    assert m.acc == 0.75 and m.asr == pytest.approx(1 / 3) and np.isnan(m.dsr) and m.robust_acc == 0.5
    # C&W: clean-correct images 0..2, success on 0 only (L2 0.5): median over {0.5, inf, inf} = inf;
    # image 3 (wrong on clean input, L2 0) is left out instead of counting as a free success
    cw = _rec(np.array([t, t, t, f]), np.array([t, t, t, f]), np.array([f, t, t, f]), np.array([f, t, t, f]),
              bounded=False, through=True, l2=np.array([0.5, 0.0, 0.0, 0.0]))
    assert median_l2(cw) == np.inf and attack_metrics(cw).asr == pytest.approx(1 / 3)
    cw2 = _rec(cw.f_clean, cw.pipe_clean, np.array([f, f, t, f]), np.array([f, f, t, f]), bounded=False,
               through=True, l2=np.array([0.5, 0.7, 0.0, 0.0]))
    assert median_l2(cw2) == pytest.approx(0.7)


def test_records_round_trip_through_json():
    from ipgan_jax.eval.records import pack_bits, record_from_json, record_to_json, unpack_bits
    rng = np.random.default_rng(0)
    bits = rng.random(37) > 0.5
    assert np.array_equal(unpack_bits(pack_bits(bits), 37), bits)
    r = _rec(bits, ~bits, bits, bits, bounded=False, l2=rng.random(37))
    back = record_from_json(json.loads(json.dumps(record_to_json(r))))
    for k in ("f_clean", "pipe_clean", "f_adv", "pipe_adv"):
        assert np.array_equal(getattr(back, k), getattr(r, k))
    np.testing.assert_allclose(back.l2, r.l2, atol=1e-4)


def test_check_decisions_fail_on_broken_measurements():
    """Each decision rule flags the pattern it exists for (and passes the healthy one)."""
    from ipgan_jax.eval import checks as C
    assert C.decide_steps(0.10, 0.05, (10, 100), 0.02)[0] and not C.decide_steps(0.10, 0.30, (10, 100), 0.02)[0]
    assert C.decide_fgsm_vs_pgd(0.4, 0.0, 100, 0.02)[0] and not C.decide_fgsm_vs_pgd(0.1, 0.5, 100, 0.02)[0]
    assert C.decide_large_eps({0.5: 0.0, 1.0: 0.01}, 0.05)[0] and not C.decide_large_eps({0.5: 0.6, 1.0: 0.0}, 0.05)[0]
    assert C.decide_gradient(np.array([0.5, 1.0, 2.0]), 0.01)[0] and not C.decide_gradient(np.zeros(3), 0.01)[0]
    assert C.decide_bpda(0.0, 0.0, 0.05)[0] and not C.decide_bpda(0.8, 0.1, 0.05)[0]
    assert C.decide_transfer(0.0, {"oblivious pgd": 0.1}, 0.02)[0]
    assert not C.decide_transfer(0.7, {"oblivious pgd": 0.1, "oblivious fgsm": 0.3}, 0.02)[0]
    assert C.tolerance(40, 0.01) == pytest.approx(0.05) and C.tolerance(10000, 0.01) == 0.01


def test_block_keys_are_deterministic_and_distinct():
    from ipgan_jax.eval.evaluate import block_key
    k = jax.random.PRNGKey(0)
    same = [np.asarray(jax.random.key_data(block_key(k, "whitebox", 3, "pgd_ce"))) for _ in range(2)]
    assert np.array_equal(*same)
    others = [block_key(k, "whitebox", 4, "pgd_ce"), block_key(k, "curve", 3, "pgd_ce"),
              block_key(k, "whitebox", 3, "pgd_margin")]
    for o in others:
        assert not np.array_equal(np.asarray(jax.random.key_data(o)), same[0])


@pytest.fixture(scope="module")
def trained_workdir(tmp_path_factory):
    wd = tmp_path_factory.mktemp("evalwd") / "wd"
    r = subprocess.run([sys.executable, "run_train.py", "--config", "configs/mnist_tiny.py", f"--config.workdir={wd}"],
                       cwd=ROOT, capture_output=True, text=True, env=dict(os.environ, IPGAN_PROGRESS="0"))
    assert r.returncode == 0, r.stderr[-3000:]
    return wd


@pytest.mark.slow
def test_run_eval_end_to_end(trained_workdir):
    """The tiny trained LeNet + IP-GAN: tables, per-image records, and every sanity check passes
    for the identity and for IP-GAN."""
    from ipgan_jax.eval.records import block_metrics, record_from_json
    r = subprocess.run([sys.executable, "run_eval.py", "--config", "configs/mnist_tiny.py",
                        f"--config.workdir={trained_workdir}", "--classifiers", "lenet",
                        "--blocks", "oblivious,whitebox,cw,curve,checks", "--config.eval.whitebox_num_examples=24",
                        "--config.eval.eps_curve=(0.1,0.3)",
                        # Square in the white-box suite: the blackbox_vs_whitebox check compares it with the others
                        "--config.eval.whitebox_suite=pgd_ce,pgd_margin,square", "--config.eval.square_queries=50"],
                       cwd=ROOT, capture_output=True, text=True, env=dict(os.environ, IPGAN_PROGRESS="0"))
    assert r.returncode == 0, r.stderr[-3000:]
    out = r.stdout
    assert "Block 1" in out and "Block 3" in out and "IP-GAN" in out and "[98.04]" in out  # paper value beside ours
    assert "Sanity checks" in out and "C&W-L2" in out and "FAIL" not in out and "SKIPPED" not in out
    # tables are printed before the files are written
    assert out.index("Sanity checks") < out.index("wrote:")
    ev = trained_workdir / "eval"
    data = json.loads((ev / "results.json").read_text())
    assert data["schema"] == "ipgan-eval/2"
    checks = data["sanity_checks"]
    from ipgan_jax.eval.checks import CHECKS
    assert {(c["name"], c["defense"]) for c in checks} == {(n, d) for n in CHECKS for d in ("none", "ipgan")}
    assert all(c["ok"] is True for c in checks), [c for c in checks if c["ok"] is not True]
    recs = [record_from_json(x) for x in data["records"]]
    assert {x.block for x in recs} == {"oblivious", "whitebox", "whitebox_transfer", "cw"}
    obl = [x for x in recs if x.block == "oblivious" and x.defense == "ipgan"]
    assert {x.attack for x in obl} == {"fgsm", "pgd"} and all(x.n == 64 for x in obl)
    wb = [x for x in recs if x.block == "whitebox" and x.defense == "ipgan"]
    assert {x.attack for x in wb} == {"pgd_ce", "pgd_margin", "square"} and all(x.n == 24 and x.through for x in wb)
    # the stored block row is the per-image worst case recomputed from the stored records
    row = next(b for b in data["block_metrics"] if b["block"] == "whitebox" and b["defense"] == "ipgan")
    assert row["robust_acc"] == pytest.approx(block_metrics(wb).robust_acc) and row["n"] == 24
    none_pgd = next(x for x in recs if x.block == "oblivious" and x.defense == "none" and x.attack == "pgd")
    assert np.array_equal(none_pgd.pipe_adv, none_pgd.f_adv)          # 'none' is the identity
    assert (ev / "results.csv").read_text().startswith("kind,block,attack,classifier,defense")
    assert (ev / "grid_lenet_ipgan.png").stat().st_size > 1000
    assert (ev / "curve_lenet.png").stat().st_size > 1000
    assert (ev / "dsr_curve_lenet.png").stat().st_size > 1000
    assert data["meta"]["whitebox_num_examples"] == 24


def test_markdown_leaves_out_blocks_that_did_not_run():
    """A white-box-only run prints Block 3 but no empty Block 1 or per-attack table."""
    from ipgan_jax.eval.outcome import RunOutcome
    from ipgan_jax.eval.report import markdown
    from ipgan_jax.eval.resultset import ResultSet
    t, f = True, False
    ok = np.array([t, t, t, t])
    r = _rec(ok, ok, ok, np.array([f, t, t, f]), "pgd_ce", through=True)
    r.block, r.classifier, r.defense = "whitebox", "lenet", "ipgan"
    run = RunOutcome(["lenet"], ["none", "ipgan"], pipe_clean={("lenet", "none"): ok, ("lenet", "ipgan"): ok})
    run.add(r)
    out = markdown(ResultSet.from_outcome(run, {}))
    assert "Block 3" in out and "Block 1" not in out and "Per attack" not in out
    assert "up to 4 test images" in out
    # through the pipeline: 4 clean-correct, 2 broken: ASR 50, robust accuracy 2/4
    assert "| LeNet | IP-GAN | 100.00 | 50.00 | 50.00 (" in out


def test_markdown_header_counts_the_images_of_a_curve_only_run():
    """A run of only the curve block (no per-attack records) still says how many images it used."""
    from ipgan_jax.eval.outcome import Curve, RunOutcome
    from ipgan_jax.eval.report import markdown
    from ipgan_jax.eval.resultset import ResultSet
    run = RunOutcome(["lenet"], ["none"])
    run.add(Curve("lenet", "none", dict(n=7, eps=[0.0, 0.1], oblivious=[1.0, 0.5], whitebox=[1.0, 0.25])))
    out = markdown(ResultSet.from_outcome(run, {"whitebox_suite": "pgd_ce"}))
    assert "up to 7 test images" in out and "| LeNet | No defense | 100.00 / 100.00 | 50.00 / 25.00 |" in out


def test_image_grid_tile_scale_follows_image_size(tmp_path):
    from PIL import Image

    from ipgan_jax.images import image_grid
    small, large = np.random.rand(8, 28, 28, 1), np.random.rand(8, 224, 224, 3)
    w_small = Image.open(image_grid([small, small], ["clean", "x_rec"], tmp_path / "s.png")).size[0]
    w_large = Image.open(image_grid([large], ["clean"], tmp_path / "l.png")).size[0]
    assert w_small > 8 * 28 * 3 and w_large < 8 * 224 * 1.2    # MNIST tiles enlarged 3x, ImageNet tiles not


def test_a_misspelt_whitebox_entry_is_refused_before_any_model_loads(tmp_path):
    """``eval.whitebox_per_defense.<d>`` takes suite / steps / restarts / eot_samples / bpda / views; a typo
    (``eot_sample``) is a ConfigError naming the entry and the key, raised by the Evaluator before it loads a
    model (the classifier named here does not exist), not ignored."""
    from configs import mnist
    from ipgan_jax.errors import ConfigError
    from ipgan_jax.eval.evaluate import ENTRY_KEYS, Evaluator, check_whitebox_entries
    check_whitebox_entries({"defense_gan": {"eot_samples": 4}, "x": dict.fromkeys(ENTRY_KEYS)})
    c = mnist.get_config()
    c.workdir = str(tmp_path)
    c.eval.whitebox_per_defense.defense_gan = dict(eot_sample=4)
    with pytest.raises(ConfigError, match=r"whitebox_per_defense\.defense_gan: unknown eot_sample; an entry takes"):
        Evaluator(c, ["no_such_classifier"], ["none"], ["fgsm"], 8)
