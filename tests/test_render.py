"""Docs tables rendered from committed results files (ipgan_jax/eval/render.py, ipgan_jax/eval/resultset.py)."""
import dataclasses
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from ipgan_jax.eval import render
from ipgan_jax.eval.paper import PAPER_DSR
from ipgan_jax.eval.records import AttackRecord, pack_bits, record_to_json
from ipgan_jax.eval.resultset import ResultsError, ResultSet

ROOT = Path(__file__).resolve().parents[1]


def _rec(block, attack, defense, f_adv, pipe_adv, classifier="lenet", n=10):
    nan = np.full(n, np.nan, np.float32)
    return AttackRecord(block=block, attack=attack, classifier=classifier, defense=defense, bounded=True,
                        through=block == "whitebox", f_clean=np.ones(n, bool), pipe_clean=np.ones(n, bool),
                        f_adv=np.asarray(f_adv, bool), pipe_adv=np.asarray(pipe_adv, bool), ssim_rec=nan,
                        ssim_adv=nan, l2=nan)


def _write_run(folder: Path, records, defenses=("none", "ipgan")) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    n = records[0].n
    data = {"schema": "ipgan-eval/2",
            "meta": {"dataset": "mnist", "eps": 0.3, "classifiers": ["lenet"], "defenses": list(defenses)},
            "clean": [{"classifier": "lenet", "defense": d, "n": n, "acc": 1.0, "correct": pack_bits(np.ones(n, bool))}
                      for d in defenses],
            "records": [record_to_json(r) for r in records]}
    (folder / "results.json").write_text(json.dumps(data))
    return folder


def _table1_run(tmp_path, ipgan_restored: int):
    """10 images, every attack fools f; IP-GAN restores the first ``ipgan_restored`` of them in both blocks."""
    fooled = np.zeros(10, bool)
    restored = np.arange(10) < ipgan_restored
    recs = []
    for block in ("oblivious", "transfer"):
        recs += [_rec(block, "pgd", "none", fooled, fooled), _rec(block, "pgd", "ipgan", fooled, restored)]
    return _write_run(tmp_path / "run", recs)


def test_table1_is_the_per_image_dsr_beside_the_paper_and_bold_only_at_or_above_it(tmp_path):
    paper1, paper2 = PAPER_DSR[1]["IP-GAN"]["LeNet"], PAPER_DSR[2]["IP-GAN"]["LeNet"]   # 98.04, 94.57
    out = render.render("table1", str(_table1_run(tmp_path, 9)), tmp_path)
    # 9 of 10 restored: 90.00, below both paper cells, so no bold; 'none' is not a row of Table 1
    assert out.splitlines()[2] == f"| IP-GAN | 90.00 [{paper1:.2f}] | 90.00 [{paper2:.2f}] |"
    assert "No defense" not in out
    out = render.render("table1", str(_table1_run(tmp_path / "b", 10)), tmp_path)
    assert out.splitlines()[2] == f"| IP-GAN | **100.00** [{paper1:.2f}] | **100.00** [{paper2:.2f}] |"


def test_block_and_whitebox_tables_read_the_worst_case_per_image(tmp_path):
    ok = np.ones(10, bool)
    a = np.arange(10) >= 2       # images 0-1 broken by a
    b = np.arange(10) % 5 != 4   # images 4 and 9 broken by b
    src = _write_run(tmp_path / "wb", [_rec("whitebox", "pgd_ce", "ipgan", ok, a),
                                       _rec("whitebox", "square", "ipgan", ok, b)])
    out = render.render("whitebox", str(src), tmp_path).splitlines()
    assert out[0] == ("| classifier | defense | images | clean f(d(x)) | robust acc. (upper bound) | under pgd_ce "
                      "| under square |")
    # worst case: 0, 1, 4, 9 lost -> 60%, not min(80, 80)
    assert out[2].startswith("| LeNet | IP-GAN | 10 | 100.00 | 60.00 (")
    assert out[2].endswith("| 80.00 | 80.00 |")


def test_render_names_what_is_wrong(tmp_path):
    src = str(_table1_run(tmp_path, 9))
    for call, needle in ((lambda: render.render("tabel1", src, tmp_path), "unknown table 'tabel1'"),
                         (lambda: render.render("table1", "nowhere", tmp_path), "no evaluation results"),
                         (lambda: render.render("table1", src, tmp_path, classifiers="mcnn"),
                          r"classifiers \['mcnn'\] not in the results"),
                         (lambda: render.render("clean", src, tmp_path, block="x"),
                          r"takes options classifiers=, defenses=; got \['block'\]"),
                         (lambda: render.parse_spec("table1"), "needs '<table> <results path>"),
                         (lambda: render.parse_spec("table1 r classifiers"), "is not key=value")):
        with pytest.raises(render.RenderError, match=needle):
            call()


def _copy_docs(tmp_path) -> Path:
    root = tmp_path / "repo"
    (root / "docs").mkdir(parents=True)
    for f in render.doc_files(ROOT):
        shutil.copy(f, root / f.relative_to(ROOT))
    shutil.copytree(ROOT / "results", root / "results")
    return root


def test_every_docs_table_matches_its_committed_results():
    """README.md and docs/*.md: every marked table equals its rendering from results/ (the reported numbers)."""
    assert render.count_markers(ROOT) >= 3, "README and docs/results.md render Table 1 from results/"
    assert "<!-- results table1 " in (ROOT / "README.md").read_text()
    stale = render.stale(ROOT)
    assert stale == [], f"docs disagree with results/: {stale}; run `python -m ipgan_jax.eval.render --write`"


def test_an_edited_number_in_the_docs_is_caught_and_write_restores_it(tmp_path):
    root = _copy_docs(tmp_path)
    readme = root / "README.md"
    text = readme.read_text()
    start = text.index("<!-- results table1 ")
    body_start = text.index("\n", start) + 1
    row = text.index("| IP-GAN |", body_start)
    cell = next(i for i in range(row + len("| IP-GAN | "), len(text)) if text[i].isdigit())   # its setting-1 DSR
    edited = text[:cell] + ("1" if text[cell] != "1" else "2") + text[cell + 1:]
    readme.write_text(edited)
    stale = render.stale(root)
    line = text.count("\n", 0, start) + 1
    assert stale == [f"README.md:{line}: {text[start + len('<!-- results '):text.index(' -->', start)]}"]
    r = subprocess.run([sys.executable, "-m", "ipgan_jax.eval.render"], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr     # the repository's own docs are untouched
    assert render.stale(root, write=True) == stale
    assert readme.read_text() == text and render.stale(root) == []


def test_results_set_rates_equal_the_summaries_the_run_wrote():
    """The reader recomputes from the per-image bits what run_eval.py wrote as block_metrics rows."""
    # (a curve-only or C&W-only run writes no block rows: no bounded block ran)
    paths = [p for p in sorted(ROOT.glob("results/**/results.json")) if json.loads(p.read_text())["block_metrics"]]
    assert ROOT / "results/mnist/table1/results.json" in paths
    for p in paths:
        rs = ResultSet.load(p)
        rows = json.loads(p.read_text())["block_metrics"]
        for row in rows:
            bm = rs.block_metrics(row["block"], row["classifier"], row["defense"])
            assert bm.robust_correct == row["robust_correct"] and bm.n == row["n"], (p, row)
            assert (np.isnan(bm.dsr) and row["dsr"] is None) or bm.dsr == pytest.approx(row["dsr"]), (p, row)


def test_results_set_is_read_only_and_load_errors_name_the_file(tmp_path):
    rs = ResultSet.load(_table1_run(tmp_path, 9))
    with pytest.raises(TypeError):
        rs.records[("x", "y", "z", "w")] = None
    with pytest.raises(AttributeError):
        rs.meta = {}
    assert rs.classifiers == ["lenet"] and rs.defenses == ["none", "ipgan"]
    assert rs.attacks("oblivious") == ["pgd"] and rs.clean_accuracy("lenet", "ipgan") == 1.0
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "results.json").write_text("{")
    with pytest.raises(ResultsError, match="bad/results.json is not valid JSON"):
        ResultSet.load(tmp_path / "bad")


def test_a_marker_inside_a_code_block_is_an_example_not_a_table(tmp_path):
    root = tmp_path / "repo"
    (root / "docs").mkdir(parents=True)
    src = _table1_run(root, 9)
    live = f"<!-- results table1 {src} -->\n<!-- /results -->\n"
    example = f"```\n<!-- results table1 {src} -->\n...rendered Markdown...\n<!-- /results -->\n```\n"
    (root / "README.md").write_text(example + live)
    assert render.count_markers(root) == 1
    assert render.stale(root, write=True) == ["README.md:6: table1 " + str(src)]    # the line of the live marker
    text = (root / "README.md").read_text()
    assert text.startswith(example) and "| IP-GAN | 90.00" in text and render.stale(root) == []


def test_checks_table_lists_every_check_with_its_verdict(tmp_path):
    """The ``checks`` kind: one row per sanity check of the picked pipelines, FAIL in bold, skipped named, and a
    '|' of a measured value escaped so the row keeps its columns; results without checks are an error."""
    ok = np.ones(10, bool)
    src = _write_run(tmp_path / "ch", [_rec("whitebox", "pgd_ce", "ipgan", ok, ok)])
    data = json.loads((src / "results.json").read_text())
    data["sanity_checks"] = [
        dict(name="gradient", classifier="lenet", defense="ipgan", ok=True, detail="median |grad| 0.3", values={}),
        dict(name="bpda", classifier="lenet", defense="ipgan", ok=False, detail="exact 0.9, BPDA 0.1", values={}),
        dict(name="steps", classifier="lenet", defense="none", ok=None, detail="skipped: no block", values={})]
    (src / "results.json").write_text(json.dumps(data))
    rows = render.render("checks", str(src), tmp_path).splitlines()
    assert rows[2] == "| LeNet | No defense | steps | skipped | skipped: no block |"
    assert rows[3] == "| LeNet | IP-GAN | gradient | pass | median \\|grad\\| 0.3 |"
    assert rows[4] == "| LeNet | IP-GAN | bpda | **FAIL** | exact 0.9, BPDA 0.1 |"
    assert len(render.render("checks", str(src), tmp_path, defenses="ipgan").splitlines()) == 4
    with pytest.raises(render.RenderError, match="no sanity checks"):
        render.render("checks", str(_table1_run(tmp_path, 9)), tmp_path)


def test_budget_and_min_eps_tables_and_joined_runs(tmp_path):
    """The ``budget`` and ``min_eps`` kinds read the ladder and the per-level records; ``a+b`` merges two runs."""
    ok = np.ones(10, bool)
    first, second = np.arange(10) >= 2, np.arange(10) >= 3      # rung 1 breaks 2 images, rung 2 one more
    src = _write_run(tmp_path / "ladder", [_rec("budget", "apgd_ce/1x100", "ipgan", ok, first),
                                           _rec("budget", "apgd_ce/2x100", "ipgan", ok, second)])
    data = json.loads((src / "results.json").read_text())
    data["meta"]["budget"] = {"tolerance": 0.2}                   # 10 points moved: below 20, converged
    (src / "results.json").write_text(json.dumps(data))
    out = render.render("budget", str(src), tmp_path).splitlines()
    assert out[2].startswith("| LeNet | IP-GAN | 1 x 100 | apgd_ce (2) | 10 | 80.00 (")   # (images it broke)
    assert out[3].startswith("| LeNet | IP-GAN | 2 x 100 | apgd_ce (1) | 8 | 70.00 (") and out[3].endswith("| -10.0 |")
    assert out[4].startswith("| LeNet | IP-GAN | **converged at 2 x 100: 70.00**")
    levels = {0.29: np.arange(10) >= 1, 0.3: np.arange(10) >= 4, 0.31: np.arange(10) >= 6}
    src2 = _write_run(tmp_path / "eps", [_rec("min_eps", f"eps={e:g}", "ipgan", ok, r) for e, r in levels.items()])
    out = render.render("min_eps", str(src2), tmp_path).splitlines()
    assert out[0].endswith("| rob. acc eps 0.29 | rob. acc eps 0.3 | rob. acc eps 0.31 |")
    # minimal eps per image: 0.29 (image 0), 0.3 (1-3), 0.31 (4-5), > max (6-9): median (lower) 0.31
    assert out[2] == "| LeNet | IP-GAN | 10 | 0.31 [0.3-> max] | 90.00 | 60.00 | 40.00 |"
    joined = render.render("whitebox", f"{src}+{_table1_run(tmp_path, 9)}", tmp_path, block="budget")
    assert "| LeNet | IP-GAN | 10 |" in joined
    with pytest.raises(render.RenderError, match="no budget-ladder records"):
        render.render("budget", str(src2), tmp_path)


def test_pooled_is_the_worst_case_per_image_over_the_blocks_of_joined_runs(tmp_path):
    ok = np.ones(10, bool)
    wb = _write_run(tmp_path / "wb", [_rec("whitebox", "pgd_ce", "ipgan", ok, np.arange(10) >= 2),
                                      _rec("whitebox", "pgd_margin", "ipgan", ok, np.arange(10) != 5)])
    ladder = [_rec("budget", "apgd_ce/1x100", "ipgan", ok, np.arange(10) != 9)]
    for r in ladder:
        r.through = True
    lb = _write_run(tmp_path / "lb", ladder)
    out = render.render("pooled", f"{wb}+{lb}", tmp_path).splitlines()
    # whitebox breaks images 0, 1 and 5 (70%), the ladder image 9 (90%): pooled, 6 of 10 stay robust
    assert out[2].startswith("| LeNet | IP-GAN | 10 | 100.00 | 60.00 (") and out[2].endswith("| 70.00 | 90.00 |"), out
    assert render.render("pooled", str(wb), tmp_path, blocks="whitebox").splitlines()[2].endswith("| 70.00 |")
    assert "| 90.00 |" in render.render("pooled", str(lb), tmp_path, blocks="whitebox,budget").splitlines()[2]
    with pytest.raises(render.RenderError, match="no bounded records"):
        render.render("pooled", str(wb), tmp_path, blocks="budget")


def _report_run(folder: Path, bump: str | None = None) -> Path:
    """A run of LeNet with the defenses zero and IP-GAN on 10 images, written by ``report.write_outputs``, holding
    what the report's own tables read: oblivious bounded (pgd) and minimum-norm (deepfool) records, the white-box
    block and its transfer records, C&W, curves and an AutoAttack log. ``bump`` changes one number of the source of
    one table kind: 'attacks' (one image of pgd on IP-GAN), 'min_norm' (one L2 of deepfool), 'transfer_matrix' (one
    image of pgd_ce crafted through 'zero', judged on IP-GAN), 'cw' (one L2 on IP-GAN), 'curve' (one white-box
    rate), 'attack_log' (one count)."""
    from ipgan_jax.eval.outcome import AttackLog, Curve, RunOutcome
    from ipgan_jax.eval.report import write_outputs

    def bumped(a, kind):
        a = np.array(a)
        if bump == kind:
            a[0] = 1.3 if a.dtype.kind == "f" else not a[0]
        return a

    idx, zero, l2 = np.arange(10), np.zeros(10, bool), np.linspace(0.1, 1.0, 10, dtype=np.float32)
    l2[4] = 0.52 if bump == "min_norm" else l2[4]
    run = RunOutcome(["lenet"], ["none", "ipgan"], pipe_clean={("lenet", "none"): ~zero, ("lenet", "ipgan"): ~zero})
    items = [_rec("oblivious", "pgd", "none", zero, zero), _rec("oblivious", "pgd", "ipgan", zero,
                                                                 bumped(idx >= 3, "attacks")),
             dataclasses.replace(_rec("oblivious", "deepfool", "none", zero, zero), bounded=False, l2=l2),
             dataclasses.replace(_rec("oblivious", "deepfool", "ipgan", zero, ~zero), bounded=False, l2=l2),
             _rec("whitebox", "pgd_ce", "none", zero, zero), _rec("whitebox", "pgd_ce", "ipgan", zero, idx >= 5),
             dataclasses.replace(_rec("whitebox_transfer", "pgd_ce@ipgan", "none", zero, idx >= 6), through=True),
             dataclasses.replace(_rec("whitebox_transfer", "pgd_ce@none", "ipgan", zero,
                                      bumped(idx >= 1, "transfer_matrix")), through=True),
             dataclasses.replace(_rec("cw", "cw_l2", "none", zero, zero), bounded=False, through=True, l2=l2),
             dataclasses.replace(_rec("cw", "cw_l2", "ipgan", zero, idx >= 8), bounded=False, through=True,
                                 l2=bumped(2 * np.linspace(0.1, 1.0, 10), "cw")),
             Curve("lenet", "none", dict(n=10, eps=[0.1, 0.3], oblivious=[0.5, 0.0], whitebox=[0.5, 0.0],
                                         oblivious_dsr=[0.0, 0.0])),
             Curve("lenet", "ipgan", dict(n=10, eps=[0.1, 0.3], oblivious=[0.9, 0.7],
                                          whitebox=[0.6, 0.2 if bump == "curve" else 0.1], oblivious_dsr=[0.9, 0.7]))]
    batches = (("ipgan", 5, 5, 2, 0, 3), ("ipgan", 5, 4, 1, 2 if bump == "attack_log" else 1, 2),
               ("none", 10, 10, 10, 0, 0))     # (attacked, images, clean, broken by apgd-ce, by apgd-t, robust)
    items += [AttackLog(dict(block="whitebox", classifier="lenet", attacked=d, eps=0.3, n=n, clean=c, robust=r,
                             broken={"apgd-ce": ce, "apgd-t": t})) for d, n, c, ce, t, r in batches]
    for item in items:
        run.add(item)
    meta = {"classifiers": ["lenet"], "defenses": ["none", "ipgan"], "whitebox_suite": "pgd_ce"}
    write_outputs(ResultSet.from_outcome(run, meta), folder)
    return folder


# kind, options, the 'bump' of _report_run that changes its source, the rows it renders from the unchanged run
REPORT_KINDS = [
    ("attacks", {}, "attacks",
     ["| classifier | attack | ACC | ASR | No defense DSR | IP-GAN DSR | No defense rob. acc | IP-GAN rob. acc |",
      "| LeNet | pgd | 100.00 | 100.00 | 0.00 | 70.00 | 0.00 | 70.00 |"]),
    ("attacks", {"bounded": "false"}, "min_norm",
     ["| classifier | attack | ACC | ASR | median L2 | No defense DSR | IP-GAN DSR | No defense rob. acc "
      "| IP-GAN rob. acc |",
      "| LeNet | deepfool | 100.00 | 100.00 | 0.550 | 0.00 | 100.00 | 0.00 | 100.00 |"]),
    ("transfer_matrix", {}, "transfer_matrix",
     ["| classifier | judged (row) vs crafted through (column) | No defense | IP-GAN |",
      "| LeNet | No defense | 0.00 | 40.00 |", "| LeNet | IP-GAN | 90.00 | 50.00 |"]),
    ("cw", {}, "cw", ["| classifier | No defense | IP-GAN |", "| LeNet | 0.550 (100.00%) | 1.100 (80.00%) |"]),
    ("curve", {}, "curve",
     ["| classifier | defense | eps 0.1 | eps 0.3 |", "| LeNet | No defense | 50.00 / 50.00 | 0.00 / 0.00 |",
      "| LeNet | IP-GAN | 90.00 / 60.00 | 70.00 / 10.00 |"]),
    ("attack_log", {}, "attack_log",
     ["| block | classifier | attacked | eps | images | clean right | broken by | robust |",
      "| whitebox | LeNet | IP-GAN | 0.3 | 10 | 9 | apgd-ce 3, apgd-t 1 | 5 |",
      "| whitebox | LeNet | No defense | 0.3 | 10 | 10 | apgd-ce 10, apgd-t 0 | 0 |"]),
]


@pytest.fixture(scope="module")
def report_run(tmp_path_factory) -> Path:
    return _report_run(tmp_path_factory.mktemp("report") / "run")


@pytest.mark.parametrize("kind, options, bump, rows", REPORT_KINDS, ids=[f"{k}-{b}" for k, _, b, _ in REPORT_KINDS])
def test_report_tables_render_from_a_results_file_as_the_report_prints_them(report_run, kind, options, bump, rows):
    """``attacks``, ``transfer_matrix``, ``cw``, ``curve``, ``attack_log``: rendered from a written results.json,
    the rows computed from its records (the worst case, the median L2 with failures +inf, the log summed over its
    batches), and the lines ``report.markdown`` prints for that table (``attacks`` leaves out the SSIM columns, which
    records read back from results.json do not carry)."""
    from ipgan_jax.eval.report import markdown
    out = render.render(kind, str(report_run), ROOT, **options).splitlines()
    assert [out[0]] + out[2:] == rows
    printed = markdown(ResultSet.load(report_run)).splitlines()
    for line in out:
        assert any(p.startswith(line[:-1]) for p in printed), line


@pytest.mark.parametrize("kind, options, bump, rows", REPORT_KINDS, ids=[f"{k}-{b}" for k, _, b, _ in REPORT_KINDS])
def test_one_changed_number_in_the_source_changes_its_row(report_run, tmp_path, kind, options, bump, rows):
    """The table follows its results file: one number changed there changes exactly one row of the table."""
    before = render.render(kind, str(report_run), ROOT, **options).splitlines()
    after = render.render(kind, str(_report_run(tmp_path / "bumped", bump)), ROOT, **options).splitlines()
    assert len(after) == len(before) and after[0] == before[0]
    assert sum(a != b for a, b in zip(before, after)) == 1, (before, after)


def test_report_kinds_pick_and_order_and_take_block_and_bounded(report_run):
    src = str(report_run)
    assert render.render("attacks", src, ROOT, defenses="ipgan").splitlines()[2] == \
        "| LeNet | pgd | 100.00 | 100.00 | 70.00 | 70.00 |"
    assert render.render("attacks", src, ROOT, block="whitebox").splitlines()[2] == \
        "| LeNet | pgd_ce | 100.00 | 100.00 | - | - | 0.00 | 50.00 |"
    assert render.render("transfer_matrix", src, ROOT, defenses="ipgan,none").splitlines()[2:] == \
        ["| LeNet | IP-GAN | 50.00 | 90.00 |", "| LeNet | No defense | 40.00 | 0.00 |"]
    assert render.render("cw", src, ROOT, defenses="ipgan").splitlines()[2] == "| LeNet | 1.100 (80.00%) |"
    assert render.render("curve", src, ROOT, defenses="ipgan").splitlines()[2:] == [REPORT_KINDS[4][3][2]]
    log = REPORT_KINDS[5][3]
    assert render.render("attack_log", src, ROOT, defenses="none,ipgan").splitlines()[2:] == [log[2], log[1]]
    assert render.render("attack_log", src, ROOT, block="whitebox").splitlines()[2:] == log[1:]
    for options, needle in (({"block": "budget"}, r"takes block=oblivious\|transfer\|whitebox, got 'budget'"),
                            ({"bounded": "yes"}, "option bounded= takes true or false, got 'yes'"),
                            ({"defenses": "dae"}, r"defenses \['dae'\] not in the results")):
        with pytest.raises(render.RenderError, match=needle):
            render.render("attacks", src, ROOT, **options)


@pytest.mark.parametrize("spec", ["attacks results/mnist/table1 block=oblivious",
                                  "attacks results/mnist/table1 block=transfer classifiers=lenet",
                                  "transfer_matrix results/mnist/whitebox_lenet",
                                  "transfer_matrix results/mnist/adaptive_mcnn/checks"])
def test_report_kinds_render_from_the_committed_results(spec):
    """The committed runs hold per-attack and white-box transfer records: their tables render, with a row per
    (classifier, attack) / judged pipeline, and equal the report's table where no option picks."""
    from ipgan_jax.eval.report import markdown
    kind, src, opts = render.parse_spec(spec)
    out = render.render(kind, src, ROOT, **opts)
    rs = ResultSet.load(ROOT / src)
    if kind == "attacks":
        clfs = [c for c in rs.classifiers if c in opts.get("classifiers", c)]
        assert len(out.splitlines()) == 2 + len(clfs) * len(rs.attacks(opts["block"]))
    else:
        assert len(out.splitlines()) == 2 + len(rs.classifiers) * len(rs.defenses)
    if "classifiers" not in opts:   # the report's table (render's ``attacks`` without the SSIM columns it cannot fill)
        printed = markdown(rs).splitlines()
        assert all(any(p.startswith(line[:-1]) for p in printed) for line in out.splitlines())


@pytest.mark.parametrize("kind, options, needle", [
    ("attacks", {"block": "whitebox"}, "no bounded whitebox attack records .* --blocks whitebox"),
    ("attacks", {"bounded": "false"}, "no minimum-norm oblivious attack records .* --blocks oblivious and a min"),
    ("transfer_matrix", {}, "no white-box transfer records .* --blocks whitebox, eval.whitebox_cross"),
    ("cw", {}, "no C&W records .*--blocks cw"),
    ("curve", {}, "no robust-accuracy-vs-eps curves .*--blocks curve"),
    ("attack_log", {}, "no attack logs .*--blocks whitebox and autoattack")])
def test_report_kinds_without_their_records_name_the_blocks_that_make_them(tmp_path, kind, options, needle):
    with pytest.raises(render.RenderError, match=needle):
        render.render(kind, str(_table1_run(tmp_path, 9)), tmp_path, **options)


def test_a_curve_only_run_renders_and_a_run_with_nothing_is_refused(tmp_path):
    """``--blocks curve`` keeps no per-image records, only its per-eps rates: its results.json loads and renders
    (the committed results/mnist/curve_lenet); one with neither records nor curves is still refused."""
    src = "results/mnist/curve_lenet"
    data = json.loads((ROOT / src / "results.json").read_text())
    assert data["records"] == [] and data["curves"]
    lines = render.render("curve", src, ROOT).splitlines()
    assert len(lines) == 2 + len(data["curves"]) and lines[0].startswith("| classifier | defense | eps 0 |")
    (tmp_path / "results.json").write_text(json.dumps({**data, "curves": []}))
    with pytest.raises(render.RenderError, match="nothing to combine"):
        render.render("curve", str(tmp_path), ROOT)


def _slug(heading: str) -> str:
    """GitHub's anchor of a Markdown heading: lower case, punctuation but '-' and '_' dropped, spaces to '-'."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def broken_links(root: Path) -> list:
    """Relative links of README.md, docs/*.md and benchmarks/README.md whose file is missing, or whose #anchor names
    no heading of a Markdown target: ['docs/a.md: [x](b.md#nope)']."""
    files = [root / "README.md", *sorted((root / "docs").glob("*.md")), root / "benchmarks" / "README.md"]
    headings = {}
    bad = []
    for f in files:
        text = f.read_text()
        fenced = re.sub(r"```.*?```", "", text, flags=re.S)
        for m in re.finditer(r"\[[^\]]*\]\((?!https?:|mailto:)([^)\s#]*)(?:#([^)\s]+))?\)", fenced):
            target = (f.parent / m.group(1)).resolve() if m.group(1) else f.resolve()
            if not target.exists():
                bad.append(f"{f.relative_to(root)}: {m.group(0)} (no such file)")
                continue
            if m.group(2) and target.suffix == ".md":
                if target not in headings:
                    body = re.sub(r"```.*?```", "", target.read_text(), flags=re.S)
                    headings[target] = {_slug(h) for h in re.findall(r"^#+ (.*)$", body, re.M)}
                if m.group(2) not in headings[target]:
                    bad.append(f"{f.relative_to(root)}: {m.group(0)} (no such heading)")
    return bad


def test_every_relative_link_of_the_docs_reaches_its_file_and_heading(tmp_path):
    assert broken_links(ROOT) == []
    root = _copy_docs(tmp_path)    # the check itself: a renamed heading and a missing file are both caught
    (root / "benchmarks").mkdir(exist_ok=True)
    shutil.copy(ROOT / "benchmarks" / "README.md", root / "benchmarks" / "README.md")
    assert broken_links(root) == [] or all("no such file" in b for b in broken_links(root))
    results = root / "docs" / "results.md"
    results.write_text(results.read_text().replace("## Which images and models", "## Which images"))
    (root / "docs" / "design.md").write_text("see [x](nowhere.md) and [y](results.md#which-images-and-models)\n")
    bad = broken_links(root)
    assert "docs/design.md: [x](nowhere.md) (no such file)" in bad
    assert "docs/design.md: [y](results.md#which-images-and-models) (no such heading)" in bad
