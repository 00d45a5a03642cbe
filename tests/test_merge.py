"""run_eval.py --merge: one per-image worst case over several evaluation runs (ipgan_jax/eval/merge.py)."""
import json
import os
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest

from ipgan_jax.eval.merge import MergeError, merge_results
from ipgan_jax.eval.outcome import cross_source
from ipgan_jax.eval.records import AttackRecord, block_metrics, pack_bits, record_to_json
from ipgan_jax.eval.resultset import ResultsError, ResultSet

ROOT = Path(__file__).resolve().parents[1]


def merge_dicts(runs, labels, **kw):
    """``merge_results`` of the parsed results.json dicts these tests build."""
    return merge_results([ResultSet.from_json(r) for r in runs], labels, **kw)
N = 8


def _bits(idx, n=N, value=True):
    a = np.full(n, not value)
    a[list(idx)] = value
    return a


def _rec(attack, broken, block="whitebox", defense="ipgan", n=N, f_clean=None, pipe_clean=None):
    """A through-the-pipeline record on n images; ``broken``: images f(d(x_adv)) gets wrong."""
    ok = np.ones(n, bool)
    nan = np.full(n, np.nan, np.float32)
    return AttackRecord(block=block, attack=attack, classifier="lenet", defense=defense, bounded=True, through=True,
                        f_clean=ok if f_clean is None else f_clean, pipe_clean=ok if pipe_clean is None else pipe_clean,
                        f_adv=np.zeros(n, bool), pipe_adv=_bits(broken, n, value=False),
                        ssim_rec=nan, ssim_adv=nan, l2=nan)


def _run(records, eps=0.3, clean=None, seconds=1.0, **meta):
    clean = clean or {("lenet", "ipgan"): np.ones(max(r.n for r in records), bool)}
    return {"schema": "ipgan-eval/2",
            "meta": {"dataset": "mnist", "eps": eps, "classifiers": ["lenet"], "defenses": ["none", "ipgan"],
                     "seconds": seconds, **meta},
            "clean": [{"classifier": c, "defense": d, "n": len(v), "acc": float(v.mean()), "correct": pack_bits(v)}
                      for (c, d), v in clean.items()],
            "records": [record_to_json(r) for r in records], "sanity_checks": [], "attack_logs": []}


def test_merge_is_the_per_image_worst_case_over_runs_not_the_minimum_of_their_numbers():
    not_clean = _bits([7], value=False)                         # image 7 wrong on clean input through d
    a = _run([_rec("pgd_ce", [1, 2], pipe_clean=not_clean)])
    b = _run([_rec("square", [2, 5], pipe_clean=not_clean), _rec("pgd_ce", [3])])
    alone = [block_metrics([r for r in merge_dicts([run, run], ["x", "y"]).records.values()]).robust_correct
             for run in (a, b)]
    assert alone == [5, 4]                                      # {1,2,7} and {2,3,5,7} lost in each run
    mr = merge_dicts([a, b], ["a", "b"])
    # the second run's pgd_ce is kept under its own name and counts too
    assert sorted(a for (_, a, _, _) in mr.records) == ["pgd_ce", "pgd_ce#2", "square"]
    bm = block_metrics(mr.block_records("whitebox", "lenet", "ipgan"))
    assert bm.robust_correct == 3 and bm.n == N                # {1,2,3,5,7} lost: worse than either run
    assert any("pgd_ce of b kept as pgd_ce#2" in x for x in mr.notes)


def test_merge_cuts_a_group_to_its_common_images_and_keeps_cross_pipeline_names_parseable():
    a = _run([_rec("pgd_ce", [0], n=12), _rec("pgd_ce@none", [1], block="whitebox_transfer", n=12)])
    b = _run([_rec("square", [9], n=10), _rec("pgd_ce@none", [2], block="whitebox_transfer", n=10)])
    mr = merge_dicts([a, b], ["a", "b"])
    recs = mr.block_records("whitebox", "lenet", "ipgan")
    assert {r.n for r in recs} == {10}                          # image 9 (square) counts, images 10-11 are cut
    assert block_metrics(recs).robust_correct == 8
    assert any("cut to the first 10 images" in x for x in mr.notes)
    cross = mr.cross_records("lenet", "ipgan")
    assert list(cross) == ["none"] and sorted(r.attack for r in cross["none"]) == ["pgd_ce#2@none", "pgd_ce@none"]
    assert cross_source("pgd_ce#2@none") == "none"


def test_merge_refuses_runs_of_other_weights_dataset_or_eps():
    a = _run([_rec("pgd_ce", [1])])
    other_f = _run([_rec("square", [2], f_clean=_bits([4], value=False))])   # f wrong on image 4 in one run only
    with pytest.raises(MergeError, match="different classifier weights"):
        merge_dicts([a, other_f], ["a", "b"])
    with pytest.raises(MergeError, match="differ in eps"):
        merge_dicts([a, _run([_rec("square", [2])], eps=0.1)], ["a", "b"])
    # records are per image index: a run on test images 5000.. never pools with one on the first images
    with pytest.raises(MergeError, match="differ in first_test_image"):
        merge_dicts([a, _run([_rec("square", [2])], first_test_image=5000)], ["a", "b"])
    merge_dicts([a, _run([_rec("square", [2])], first_test_image=0)], ["a", "b"])   # unrecorded = 0
    with pytest.raises(MergeError, match="at least two runs"):
        merge_dicts([a], ["a"])
    for bad in (0, -3, 2.5, True):
        with pytest.raises(MergeError, match="positive integer"):
            merge_dicts([a], ["a"], num_examples=bad)


def test_merge_num_examples_reads_the_runs_on_their_first_n_images_and_accepts_one_run():
    not_clean = _bits([6], value=False)                        # image 6 wrong on clean input through d
    a = _run([_rec("pgd_ce", [1, 5], n=N, pipe_clean=not_clean)], clean={("lenet", "ipgan"): not_clean})
    b = _run([_rec("square", [2, 7], n=N, pipe_clean=not_clean)], clean={("lenet", "ipgan"): not_clean})
    mr = merge_dicts([a, b], ["a", "b"], num_examples=4)
    recs = mr.block_records("whitebox", "lenet", "ipgan")
    assert {r.n for r in recs} == {4}                          # images 5, 6, 7 (and their losses) are cut
    assert block_metrics(recs).robust_correct == 2             # {1, 2} lost among the first 4
    assert np.mean(mr.pipe_clean[("lenet", "ipgan")]) == 1.0      # the clean bits are cut too (image 6 gone)
    assert any("cut to the first 4 of 8 images (--num_examples)" in x for x in mr.notes)
    one = merge_dicts([a], ["a"], num_examples=6)            # one run: its own worst case on its first 6
    assert block_metrics(one.block_records("whitebox", "lenet", "ipgan")).robust_correct == 4   # {1, 5} lost
    big = merge_dicts([a, b], ["a", "b"], num_examples=50)   # more than the runs hold: nothing more is cut
    assert {r.n for r in big.block_records("whitebox", "lenet", "ipgan")} == {N}
    assert not any("--num_examples" in x for x in big.notes)


def test_merge_counts_an_image_clean_correct_only_if_every_run_does():
    """Defense-GAN's z-search depends on the evaluation's seed and budget, so its clean bits may differ between
    runs: combined conservatively. A deterministic defense whose clean bits differ is another model (issue 45)."""
    ones, flip = np.ones(N, bool), _bits([6], value=False)
    a = _run([_rec("pgd_ce", [], defense="defense_gan")], clean={("lenet", "defense_gan"): ones})
    b = _run([_rec("square", [], pipe_clean=flip, defense="defense_gan")], clean={("lenet", "defense_gan"): flip})
    mr = merge_dicts([a, b], ["a", "b"])
    assert block_metrics(mr.block_records("whitebox", "lenet", "defense_gan")).robust_correct == N - 1
    assert np.mean(mr.pipe_clean[("lenet", "defense_gan")]) == (N - 1) / N
    assert any("clean f(d(x)) differs" in x for x in mr.notes)
    a = _run([_rec("pgd_ce", [])])
    b = _run([_rec("square", [], pipe_clean=flip)], clean={("lenet", "ipgan"): flip})
    with pytest.raises(MergeError, match="ipgan on lenet: clean f\\(d\\(x\\)\\) differs between a and b on 1 image.*"
                                         "deterministic"):
        merge_dicts([a, b], ["a", "b"])
    assert np.mean(merge_dicts([a, b], ["a", "b"], num_examples=6).pipe_clean[("lenet", "ipgan")]) == 1.0  # cut first


def test_resultset_load_names_what_is_wrong(tmp_path):
    with pytest.raises(ResultsError, match="no evaluation results"):
        ResultSet.load(tmp_path / "nowhere")
    (tmp_path / "results.json").write_text('{"schema": "ipgan-eval/2", "meta": {')
    with pytest.raises(ResultsError, match="not valid JSON"):
        ResultSet.load(tmp_path)
    (tmp_path / "results.json").write_text(json.dumps({"schema": "ipgan-eval/1", "meta": {}}))
    with pytest.raises(ResultsError, match="schema 'ipgan-eval/1'"):
        ResultSet.load(tmp_path)
    # issue 45, CONFUSING: a record without 'attack' was a KeyError traceback, hand-edited bits a line naming
    # neither file nor record, and 'records: {}' was accepted as a run
    good = _run([_rec("pgd_ce", [1]), _rec("square", [2])])
    for edit, needle in ((lambda r: r["records"][1].pop("attack"), r"record 1 \(whitebox/\?/lenet/ipgan\) is damaged "
                                                                   r"\(no 'attack' field\)"),
                         (lambda r: r["records"][0].update(pipe_adv="zz"), r"record 0 \(whitebox/pgd_ce/lenet/ipgan\)"),
                         (lambda r: r["records"][0].update(pipe_adv=""), "hold 0 bits, not the 8 the record says"),
                         (lambda r: r.update(records={}), "'records' must be a list of per-image"),
                         (lambda r: r.update(records=[], curves=[]), "non-empty unless the run has 'curves'"),
                         (lambda r: r["clean"][0].update(correct="0"), "clean entry 0 is damaged")):
        run = json.loads(json.dumps(good))
        edit(run)
        (tmp_path / "results.json").write_text(json.dumps(run))
        with pytest.raises(ResultsError, match=needle) as e:
            ResultSet.load(tmp_path)
        assert str(tmp_path / "results.json") in str(e.value)


def _cli(*args):
    return subprocess.run([sys.executable, "run_eval.py", "--config", "configs/mnist_tiny.py", *args], cwd=ROOT,
                          capture_output=True, text=True, env=dict(os.environ, IPGAN_PROGRESS="0"))


@pytest.mark.slow
def test_run_eval_merge_cli_writes_the_merged_table_and_never_overwrites_a_source(tmp_path):
    a, b, out = tmp_path / "a", tmp_path / "b", tmp_path / "ab"
    for d, run in ((a, _run([_rec("pgd_ce", [1, 2])])), (b, _run([_rec("square", [2, 5])]))):
        d.mkdir()
        (d / "results.json").write_text(json.dumps(run))
    r = _cli("--merge", f"{a},{b}", f"--config.eval.out_dir={out}")
    assert r.returncode == 0, r.stderr[-3000:]
    assert "| LeNet | IP-GAN | 100.00 | 37.50 | 62.50 (" in r.stdout        # {1,2,5} broken of 8
    data = json.loads((out / "results.json").read_text())
    row = next(x for x in data["block_metrics"] if x["block"] == "whitebox")
    assert row["robust_correct"] == 5 and row["attacks"] == ["pgd_ce", "square"]
    assert [m["path"] for m in data["meta"]["merged_from"]] == [str(a), str(b)]
    before = (a / "results.json").read_text()
    r = _cli("--merge", f"{a},{b}", f"--config.eval.out_dir={a}")
    assert r.returncode == 2 and "would be overwritten" in r.stderr and (a / "results.json").read_text() == before
    r = _cli("--merge", f"{a},{b}", "--attacks", "pgd", f"--config.eval.out_dir={out}")
    assert r.returncode == 2 and "drop --attacks" in r.stderr
    r = _cli("--merge", str(a), "--num_examples", "2", f"--config.eval.out_dir={tmp_path / 'first2'}")
    assert r.returncode == 0, r.stderr[-3000:]
    assert "| LeNet | IP-GAN | 100.00 | 50.00 | 50.00 (" in r.stdout        # image 1 broken of the first 2
    assert json.loads((tmp_path / "first2" / "results.json").read_text())["meta"]["num_examples"] == 2
    r = _cli("--merge", str(a), "--num_examples", "0", f"--config.eval.out_dir={tmp_path / 'zero'}")
    assert r.returncode == 2 and "must be positive" in r.stderr and not (tmp_path / "zero").exists()
    r = _cli("--num_examples", "0", f"--config.eval.out_dir={tmp_path / 'eval0'}")   # not merging: same refusal
    assert r.returncode == 2 and "must be positive, got 0" in r.stderr and not (tmp_path / "eval0").exists()
    r = _cli("--merge", str(a), f"--config.eval.out_dir={tmp_path / 'single'}")
    assert r.returncode == 2 and "at least two runs" in r.stderr and not (tmp_path / "single").exists()
    (b / "results.json").write_text("{")
    r = _cli("--merge", f"{a},{b}", f"--config.eval.out_dir={tmp_path / 'refused'}")
    assert r.returncode == 2 and "not valid JSON" in r.stderr
    assert not (tmp_path / "refused").exists()                           # a refused merge creates nothing


def _with_models(run, **fingerprints):
    """``run`` with meta.models recording these fingerprints (key with '__' for '/')."""
    run["meta"]["models"] = {k.replace("__", "/"): {"source": "workdir", "path": "p", "sha256": None, "fingerprint": v}
                             for k, v in fingerprints.items()}
    return run


def test_merge_refuses_two_generators_under_one_name_by_their_fingerprints():
    """Same clean predictions, another generator: only the recorded fingerprints tell them apart."""
    a = _with_models(_run([_rec("pgd_ce", [1])]), classifiers__lenet="f1", defenses__ipgan__lenet="g1")
    b = _with_models(_run([_rec("square", [2])]), classifiers__lenet="f1", defenses__ipgan__lenet="g2")
    with pytest.raises(MergeError, match="defenses/ipgan/lenet differs between a .g1. and b .g2."):
        merge_dicts([a, b], ["a", "b"])
    same = _with_models(_run([_rec("square", [2])]), classifiers__lenet="f1", defenses__ipgan__lenet="g1")
    mr = merge_dicts([a, same], ["a", "b"])
    assert not any("fingerprints" in x for x in mr.notes)
    other_f = _with_models(_run([_rec("square", [2])]), classifiers__lenet="f2")
    with pytest.raises(MergeError, match="classifiers/lenet differs"):
        merge_dicts([a, other_f], ["a", "b"])
    assert merge_dicts([b, _run([_rec("square", [3])])], ["b", "old"], defenses=["ipgan"]).notes[0].startswith(
        "old records no model fingerprints")
    # a defense left out of the merge is not checked
    c = _with_models(_run([_rec("square", [2], defense="dae")]), classifiers__lenet="f1", defenses__ipgan__lenet="g9")
    merge_dicts([a, c], ["a", "c"], defenses=["dae"])


def test_merge_says_when_a_repeated_member_repeats_its_random_starts():
    """Issue 44: a member rerun in another run with the same seed and no run nonce draws the same starts."""
    a, b = _run([_rec("pgd_ce", [1])]), _run([_rec("pgd_ce", [2])])
    assert any("repeats the same random starts" in x for x in merge_dicts([a, b], ["a", "b"]).notes)
    b["meta"]["run_nonce"] = 1
    assert not any("repeats" in x for x in merge_dicts([a, b], ["a", "b"]).notes)


@pytest.mark.slow
def test_run_nonce_changes_every_attack_key_and_zero_keeps_the_old_ones(trained_tiny):
    from ipgan_jax.eval.evaluate import Evaluator, block_key
    keys = {}
    for nonce in (0, 1, 2):
        c = trained_tiny.copy_and_resolve_references()
        c.eval.run_nonce = nonce
        ev = Evaluator(c, ["lenet"], ["none"], ["pgd"], 8)
        keys[nonce] = np.asarray(jax.random.key_data(block_key(ev.key, "whitebox", 0, "pgd_ce")))
    old = np.asarray(jax.random.key_data(block_key(jax.random.PRNGKey(trained_tiny.seed), "whitebox", 0, "pgd_ce")))
    np.testing.assert_array_equal(keys[0], old)
    assert not np.array_equal(keys[0], keys[1]) and not np.array_equal(keys[1], keys[2])
