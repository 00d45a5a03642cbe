"""run_eval.py --compare: paired per-image comparison of two defenses (ipgan_jax/eval/paired.py)."""
import json

import numpy as np
import pytest
from scipy.stats import binomtest

from ipgan_jax.eval.paired import PairedError, compare, markdown, mcnemar_exact
from ipgan_jax.eval.resultset import ResultSet
from test_merge import N, _bits, _cli, _rec, _run


def compare_dicts(run_a, label_a, defense_a, run_b, label_b, defense_b, **kw):
    """``paired.compare`` of the parsed results.json dicts these tests build."""
    return compare(ResultSet.from_json(run_a), label_a, defense_a, ResultSet.from_json(run_b), label_b, defense_b, **kw)


@pytest.mark.parametrize("a,b", [(0, 0), (3, 3), (0, 1), (0, 5), (1, 9), (9, 1), (7, 61), (20, 180), (40, 41)])
def test_mcnemar_exact_is_the_two_sided_binomial_test_on_the_discordant_images(a, b):
    want = binomtest(a, a + b, 0.5).pvalue if a + b else 1.0
    assert mcnemar_exact(a, b) == pytest.approx(want, rel=1e-9, abs=1e-300)
    assert mcnemar_exact(a, b) == mcnemar_exact(b, a)


def test_mcnemar_exact_refuses_counts_that_are_not_counts():
    for bad in ((-1, 2), (1.5, 2), (True, 2)):
        with pytest.raises(ValueError, match="non-negative integers"):
            mcnemar_exact(*bad)


def _two_defenses(broken_a, broken_b, n=N, clean_b=None, attacks_b=("pgd_ce",)):
    """One run with defenses 'ga' and 'gb' on the same n images."""
    recs = [_rec("pgd_ce", broken_a, defense="ga", n=n)]
    recs += [_rec(a, broken_b if i == 0 else [], defense="gb", n=n, pipe_clean=clean_b)
             for i, a in enumerate(attacks_b)]
    ones = np.ones(n, bool)
    return _run(recs, clean={("lenet", "ga"): ones, ("lenet", "gb"): ones if clean_b is None else clean_b})


def test_compare_counts_the_discordant_images_of_the_per_image_worst_cases():
    run = _two_defenses([1, 2], [2, 3, 4], clean_b=_bits([5], value=False), attacks_b=("pgd_ce", "square"))
    c = compare_dicts(run, "r", "ga", run, "r", "gb")
    # A loses {1,2}; B loses {2,3,4} to attacks and image 5 on clean input: A-only {3,4,5}, B-only {1}
    assert (c.n, c.a_correct, c.b_correct, c.a_only, c.b_only) == (N, 6, 4, 3, 1)
    assert c.p_value == pytest.approx(0.625)
    assert c.b.attacks == ("pgd_ce", "square") and c.a.classifier == "lenet"
    text = markdown(c)
    assert "| r@ga | pgd_ce | 75.00 (" in text and "| r@gb | pgd_ce, square | 50.00 (" in text
    assert "under A only: 3; under B only: 1" in text and "different attack sets" in text
    first4 = compare_dicts(run, "r", "ga", run, "r", "gb", num_examples=4)
    assert (first4.n, first4.a_only, first4.b_only) == (4, 1, 1)


def test_compare_reads_the_common_images_of_two_runs_and_refuses_other_weights_or_eps():
    long_run = _two_defenses([1], [2], n=12)
    short_run = _two_defenses([1], [3], n=10)
    c = compare_dicts(long_run, "long", "ga", short_run, "short", "gb")
    assert (c.n, c.a_only, c.b_only) == (10, 1, 1)
    other_f = _run([_rec("pgd_ce", [2], defense="gb", f_clean=_bits([4], value=False))])
    with pytest.raises(PairedError, match="clean predictions differ .* on 1 of the first 8"):
        compare_dicts(_two_defenses([1], [2]), "a", "ga", other_f, "b", "gb")
    with pytest.raises(PairedError, match="differ in eps"):
        compare_dicts(_two_defenses([1], [2]), "a", "ga", _run([_rec("pgd_ce", [2], defense="gb")], eps=0.1), "b", "gb")
    sliced = _run([_rec("pgd_ce", [2], defense="gb")])
    sliced["meta"]["first_test_image"] = 5000          # test images 5000..: other images under the same indices
    with pytest.raises(PairedError, match="differ in first_test_image"):
        compare_dicts(_two_defenses([1], [2]), "a", "ga", sliced, "b", "gb")
    with pytest.raises(PairedError, match="no 'whitebox' records for defense 'gc'"):
        compare_dicts(long_run, "a", "ga", long_run, "a", "gc")
    with pytest.raises(PairedError, match="not on 'mcnn'"):
        compare_dicts(long_run, "a", "ga", long_run, "a", "gb", classifier="mcnn")
    with pytest.raises(PairedError, match="positive integer"):
        compare_dicts(long_run, "a", "ga", long_run, "a", "gb", num_examples=0)


@pytest.mark.slow
def test_run_eval_compare_cli_prints_the_paired_table_and_names_bad_input(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    for d, run in ((a, _two_defenses([1, 2], [])), (b, _two_defenses([], [2, 3, 4, 5]))):
        d.mkdir()
        (d / "results.json").write_text(json.dumps(run))
    r = _cli("--compare", f"{a}@ga,{b}@gb")
    assert r.returncode == 0, r.stderr[-3000:]
    assert "first 8 test images" in r.stdout and "under A only: 3; under B only: 1" in r.stdout   # {3,4,5} vs {1}
    assert f"| {b}@gb | pgd_ce | 50.00 (" in r.stdout
    for args, msg in (((f"{a}@ga",), "exactly two entries"), ((f"{a},{b}@gb",), "exactly two entries"),
                      ((f"{a}@ga,{b}@gb", "--attacks", "pgd"), "drop --attacks"),
                      ((f"{a}@ga,{tmp_path / 'none'}@gb",), "no evaluation results"),
                      ((f"{a}@ga,{b}@gb", "--blocks", "whitebox,oblivious"), "one block")):
        r = _cli("--compare", *args)
        assert r.returncode == 2 and msg in r.stderr, (args, r.stderr[-2000:])


def test_compare_refuses_other_classifier_weights_by_fingerprint_but_not_two_generators_of_one_name():
    from test_merge import _with_models
    a = _with_models(_two_defenses([1], [2]), classifiers__lenet="f1", defenses__ga__lenet="g1")
    b = _with_models(_two_defenses([1], [3]), classifiers__lenet="f2", defenses__ga__lenet="g1")
    with pytest.raises(PairedError, match="classifiers/lenet differs between a .f1. and b .f2."):
        compare_dicts(a, "a", "ga", b, "b", "gb")
    b["meta"]["models"]["classifiers/lenet"]["fingerprint"] = "f1"
    b["meta"]["models"]["defenses/ga/lenet"]["fingerprint"] = "g2"     # another G named ga: may be compared
    assert compare_dicts(a, "a", "ga", b, "b", "ga").n == N
