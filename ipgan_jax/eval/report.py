"""Tables (Markdown / JSON / CSV) and figures: pure functions of a :class:`~ipgan_jax.eval.resultset.ResultSet`
(a run or a merge of runs, ``ResultSet.from_outcome``, or one read back with ``ResultSet.load``); definitions:
``records``."""
from __future__ import annotations

import csv
import math
import os
from pathlib import Path

import numpy as np

from ipgan_jax import files
from ipgan_jax.eval.formatting import classifier_name, defense_name, interval, pct, table_lines
from ipgan_jax.eval.ladder import BLOCK as BUDGET_BLOCK
from ipgan_jax.eval.ladder import converged_at, ladder_rows
from ipgan_jax.eval.min_eps import BLOCK as MIN_EPS_BLOCK
from ipgan_jax.eval.min_eps import summarize as summarize_min_eps
from ipgan_jax.eval.outcome import CROSS_BLOCK, cross_source
from ipgan_jax.eval.paper import PAPER_DSR, paper_dsr
from ipgan_jax.eval.plots import line_plot
from ipgan_jax.eval.records import attack_metrics, block_metrics, pack_bits, record_to_json
from ipgan_jax.images import amplify, image_grid

BLOCK_TITLES = {
    "oblivious": "Block 1 - white-box on the classifier only (oblivious): attack f, then defend",
    "transfer": "Block 2 - black-box transfer: attacks crafted on a surrogate classifier",
    "whitebox": "Block 3 - full white-box through the defense: the white-box suite on f(d(x)), worst case per image",
}
SCHEMA = "ipgan-eval/2"


def _l2(v):
    return "-" if math.isnan(v) else ("inf" if math.isinf(v) else f"{v:.3f}")


def _ssim(v):
    """SSIM to 3 decimals; '-' where it is unknown (records read back from results.json keep none)."""
    return "-" if math.isnan(v) else f"{v:.3f}"


def _block_table(rs, block, lines):
    """Block robust accuracy (worst case per image over bounded attacks) and per-image DSR."""
    attacks = rs.attacks(block, True)
    if not attacks:
        return
    n = max(r.n for (b, *_), r in rs.records.items() if b == block)
    lines.append(f"\n**{BLOCK_TITLES[block]}** (bounded attacks, worst case per image: {', '.join(attacks)}; "
                 f"{n} images)\n")
    lines.append("| defense | " + " | ".join(f"{classifier_name(c)} DSR" for c in rs.classifiers) + " | "
                 + " | ".join(f"{classifier_name(c)} rob. acc" for c in rs.classifiers) + " |")
    lines.append("|---" * (1 + 2 * len(rs.classifiers)) + "|")
    for d in rs.defenses:
        dsr, rob = [], []
        for c in rs.classifiers:
            bm = block_metrics(rs.block_records(block, c, d))
            if bm is None:
                dsr.append("-")
                rob.append("-")
                continue
            paper = paper_dsr(block, defense_name(d), classifier_name(c))
            dsr.append(pct(bm.dsr) + (f" [{paper:.2f}]" if paper is not None else ""))
            rob.append(f"{pct(bm.robust_acc)} {interval(bm.robust_ci)}")
        lines.append(f"| {defense_name(d)} | " + " | ".join(dsr) + " | " + " | ".join(rob) + " |")


def recorded_defenses(rs) -> list:
    """The defenses with at least one record, in the run's order (the per-attack tables' columns)."""
    return [d for d in rs.defenses if any(k[3] == d for k in rs.records)]


def per_attack_rows(rs, block, bounded, classifiers, defenses) -> tuple[list, list]:
    """(header, rows): one row per (classifier of ``classifiers``, attack of ``block``, bounded or minimum-norm):
    ACC and ASR of f (and the median L2 of a minimum-norm attack), DSR and robust accuracy per defense of
    ``defenses``, SSIM(x, d(x_adv)) per defense and SSIM(x, x_adv); no rows when the block has no such attack."""
    header = (["classifier", "attack", "ACC", "ASR"] + ([] if bounded else ["median L2"])
              + [f"{defense_name(d)} DSR" for d in defenses] + [f"{defense_name(d)} rob. acc" for d in defenses]
              + ["SSIM rec", "SSIM adv"])
    rows, attacks = [], rs.attacks(block, bounded)
    for c in classifiers:
        for a in attacks:
            ms = {d: attack_metrics(rs.records[(block, a, c, d)]) for d in defenses if (block, a, c, d) in rs.records}
            if not ms:
                continue
            m0 = next(iter(ms.values()))
            row = [classifier_name(c), a, pct(m0.acc), pct(m0.asr)] + ([_l2(m0.median_l2)] if not bounded else [])
            row += [pct(ms[d].dsr) if d in ms else "-" for d in defenses]
            row += [pct(ms[d].robust_acc) if d in ms else "-" for d in defenses]
            row += ["/".join(_ssim(m.ssim_rec) for m in ms.values()), _ssim(m0.ssim_adv)]
            rows.append(row)
    return header, rows


def _per_attack_table(rs, block, lines):
    """One row per (classifier, attack): ACC and ASR of f, DSR and robust accuracy per defense
    (:func:`per_attack_rows`), bounded and minimum-norm attacks in tables of their own, with their titles."""
    for bounded in (True, False):
        if not rs.attacks(block, bounded):
            continue
        kind = ("bounded (Linf)" if bounded else
                "minimum-norm, unbounded (own rows; median L2 over clean-correct images, failures +inf)")
        lines.append(f"\n**Per attack, {block} block, {kind}: ACC / ASR of f; DSR and robust accuracy per defense; "
                     "SSIM(x, d(x_adv)) per defense [SSIM(x, x_adv)]**\n")
        lines += table_lines(*per_attack_rows(rs, block, bounded, rs.classifiers, recorded_defenses(rs)))


def _whitebox_table(rs, lines):
    attacks = rs.attacks("whitebox", True)
    if not attacks:
        return
    n = max(r.n for (b, *_), r in rs.records.items() if b == "whitebox")
    lines.append(f"\n**{BLOCK_TITLES['whitebox']}** ({', '.join(attacks)}; {n} images; clean and adversarial "
                 "accuracy both through the pipeline: ACC = f(d(x)), ASR among those, robust accuracy = right on "
                 "f(d(x)) and on f(d(x_adv)) for every attack; SSIM(x, d(x_adv)) of the worst-case iterate)\n")
    lines.append("| classifier | defense | ACC f(d(x)) | ASR | rob. acc | "
                 + " | ".join(f"rob. acc {a}" for a in attacks) + " | SSIM |")
    lines.append("|---" * (6 + len(attacks)) + "|")
    for c in rs.classifiers:
        for d in rs.defenses:
            recs = rs.block_records("whitebox", c, d)
            bm = block_metrics(recs)
            if bm is None:
                continue
            per = {r.attack: attack_metrics(r).robust_acc for r in recs}
            lines.append(f"| {classifier_name(c)} | {defense_name(d)} | {pct(attack_metrics(recs[0]).acc)} | "
                         f"{pct(bm.asr)} | {pct(bm.robust_acc)} {interval(bm.robust_ci)} | "
                         + " | ".join(pct(per.get(a)) for a in attacks) + f" | {_ssim(bm.ssim_rec)} |")


def budget_rows(rs, cells) -> tuple[list, list]:
    """(header, rows) of the budget ladder of each (classifier, defense) in ``cells``: robust accuracy after each
    rung (cumulative worst case) and, when the run recorded its tolerance, the stop rule's verdict
    (``ipgan_jax.eval.ladder``)."""
    tol = rs.meta.get("budget", {}).get("tolerance")   # None: not recorded (a merge), no verdict
    header = ["classifier", "defense", "restarts x iterations", "members (images each broke)", "attacked", "rob. acc",
              "change"]
    out = []
    for c, d in cells:
        rows = ladder_rows(rs.block_records(BUDGET_BLOCK, c, d))
        for i, r in enumerate(rows):
            change = "-" if i == 0 else f"{100 * (r.robust_acc - rows[i - 1].robust_acc):+.1f}"
            out.append([classifier_name(c), defense_name(d), f"{r.restarts} x {r.steps}",
                        ", ".join(f"{m} ({k})" for m, k in zip(r.members, r.broke)),
                        str(r.attacked), f"{pct(r.robust_acc)} {interval(r.robust_ci)}", change])
        if tol is None:
            continue
        at = converged_at([r.robust_acc for r in rows], float(tol))
        last = rows[-1]
        verdict = (f"converged at {rows[at].restarts} x {rows[at].steps}: {pct(rows[at].robust_acc)}" if at is not None
                   else f"not converged: {pct(last.robust_acc)} at {last.restarts} x {last.steps} is an upper bound "
                        "that a larger budget may still lower")
        out.append([classifier_name(c), defense_name(d), f"**{verdict}**", "", "", "", ""])
    return header, out


def budget_table(rs, lines) -> None:
    """The budget ladder per (classifier, defense) (:func:`budget_rows`), with its title."""
    cells = [(c, d) for c in rs.classifiers for d in rs.defenses if rs.block_records(BUDGET_BLOCK, c, d)]
    if not cells:
        return
    tol = rs.meta.get("budget", {}).get("tolerance")
    rule = ("" if tol is None else f"; converged at the first rung that moves the robust accuracy by less than "
            f"{100 * float(tol):g} points")
    lines.append(f"\n**Budget ladder: the white-box suite at growing budgets, each rung only on the images every "
                 f"earlier one left robust; robust accuracy is an upper bound under that suite and budget{rule}**\n")
    lines += table_lines(*budget_rows(rs, cells))


def _eps(v: float) -> str:
    return "0" if v == 0 else ("> max" if math.isinf(v) else f"{v:g}")


MIN_EPS_AROUND = (0.28, 0.29, 0.3, 0.31, 0.32)   # the fine curve's columns, where the search has those levels


def min_eps_rows(rs, cells, around=MIN_EPS_AROUND) -> tuple[list, list]:
    """(header, rows): per (classifier, defense) of ``cells``, the quartiles of the minimal eps per image
    (``min_eps`` block) and the robust accuracy at the levels ``around``."""
    sums = {k: summarize_min_eps(rs.block_records(MIN_EPS_BLOCK, *k)) for k in cells}
    cols = [e for e in around if any(any(abs(e - lv) < 1e-9 for lv in s.curve) for s in sums.values())]
    header = ["classifier", "defense", "images", "minimal eps: median [25%-75%]"] + [f"rob. acc eps {e:g}"
                                                                                       for e in cols]
    rows = []
    for (c, d), s in sums.items():
        at = {round(k, 6): v for k, v in s.curve.items()}
        rows.append([classifier_name(c), defense_name(d), str(s.n), f"{_eps(s.median)} [{_eps(s.q25)}-{_eps(s.q75)}]"]
                    + [pct(at.get(round(e, 6))) for e in cols])
    return header, rows


def min_eps_table(rs, lines) -> None:
    """Minimal eps per image (:func:`min_eps_rows`), with its title."""
    cells = [(c, d) for c in rs.classifiers for d in rs.defenses if rs.block_records(MIN_EPS_BLOCK, c, d)]
    if not cells:
        return
    lines.append("\n**Minimal eps per image (bisection with the white-box suite; each an upper bound under it): "
                 "quartiles over the images (0: wrong on the clean image, > max: never broken), and robust accuracy "
                 "at fine eps**\n")
    lines += table_lines(*min_eps_rows(rs, cells))


def transfer_matrix_rows(rs, classifiers, defenses) -> tuple[list, list]:
    """(header, rows) of the white-box transfer matrix: robust accuracy of each pipeline (rows: classifier of
    ``classifiers``, defense of ``defenses``) under the white-box suite crafted through each pipeline (columns:
    the sources among ``defenses``, then any source that is not a defense of the run; worst case per image over the
    suite); the diagonal is Block 3. A pipeline with no cell is left out; no rows without ``whitebox_transfer``
    records."""
    found = list(dict.fromkeys(cross_source(a) for b, a, _, _ in rs.records if b == CROSS_BLOCK))
    sources = [d for d in defenses if d in found] + [s for s in found if s not in rs.defenses]
    header = ["classifier", "judged (row) vs crafted through (column)"] + [defense_name(s) for s in sources]
    rows = []
    if not found:
        return header, rows
    for c in classifiers:
        for d in defenses:
            row, any_ = [], False
            crossed = rs.cross_records(c, d)
            for s in sources:
                recs = rs.block_records("whitebox", c, d) if s == d else crossed.get(s, [])
                bm = block_metrics(recs) if recs else None
                any_ |= bm is not None
                row.append("-" if bm is None else pct(bm.robust_acc))
            if any_:
                rows.append([classifier_name(c), defense_name(d)] + row)
    return header, rows


def _whitebox_transfer_table(rs, lines):
    """The white-box transfer matrix between the run's pipelines (:func:`transfer_matrix_rows`), with its title."""
    if not any(k[0] == CROSS_BLOCK for k in rs.records):
        return
    lines.append("\n**White-box transfer between pipelines**: robust accuracy (%) of the row's pipeline on the "
                 "examples the white-box suite crafted through the column's pipeline (worst case per image over the "
                 "suite; the diagonal is Block 3). A row that is lower off the diagonal than on it is masking its "
                 "own gradient.\n")
    lines += table_lines(*transfer_matrix_rows(rs, rs.classifiers, rs.defenses))


def attack_log_rows(rs, cells=None, block=None) -> tuple[list, list]:
    """(header, rows) of AutoAttack's per-attack log: per (block, classifier, attacked defense, eps), the images,
    those right on clean input, the images each attack broke in turn (each on the images still robust) and those
    robust at the end, summed over batches. Rows in the order of ``cells`` ((classifier, attacked defense) pairs;
    None: every logged pair, in the run's order), only of ``block`` when given; no rows without attack logs."""
    agg: dict = {}
    for log in rs.attack_logs:
        k = (log["block"], log["classifier"], log["attacked"], log["eps"])
        r = agg.setdefault(k, {"n": 0, "clean": 0, "robust": 0, "broken": {}})
        for f in ("n", "clean", "robust"):
            r[f] += int(log[f])
        for a, v in log["broken"].items():
            r["broken"][a] = r["broken"].get(a, 0) + int(v)
    keys = [k for k in agg if block is None or k[0] == block]
    if cells is not None:
        order = {cd: i for i, cd in enumerate(cells)}
        keys = sorted((k for k in keys if (k[1], k[2]) in order), key=lambda k: order[(k[1], k[2])])
    rows = []
    for b, c, d, e in keys:
        r = agg[(b, c, d, e)]
        rows.append([b, classifier_name(c), defense_name(d), f"{e:g}", str(r["n"]), str(r["clean"]),
                     ", ".join(f"{a} {v}" for a, v in r["broken"].items()), str(r["robust"])])
    return ["block", "classifier", "attacked", "eps", "images", "clean right", "broken by", "robust"], rows


def _attack_log_table(rs, lines):
    """AutoAttack's per-attack log (images each attack broke, in order), summed over batches
    (:func:`attack_log_rows`), with its title."""
    if not rs.attack_logs:
        return
    lines.append("\n**AutoAttack log** (images in the block / right on clean input / broken by each attack in turn, "
                 "each on the images still robust / robust at the end)\n")
    lines += table_lines(*attack_log_rows(rs))


def cw_rows(rs, classifiers, defenses) -> tuple[list, list]:
    """(header, rows) of C&W-L2 on the pipeline f(d(.)) (block ``cw``): per classifier of ``classifiers`` (rows)
    and defense of ``defenses`` (columns), the median L2 over the images f(d(x)) gets right (failures +inf) and
    the success rate; '-' where the block did not run; no rows without ``cw`` records."""
    cells = {(c, d): attack_metrics(r) for (b, _, c, d), r in rs.records.items() if b == "cw"}
    rows = [[classifier_name(c)] + [f"{_l2(cells[(c, d)].median_l2)} ({pct(cells[(c, d)].asr)}%)"
                                    if (c, d) in cells else "-" for d in defenses]
            for c in classifiers] if cells else []
    return ["classifier"] + [defense_name(d) for d in defenses], rows


def _cw_table(rs, lines):
    """C&W-L2's median L2 through the pipeline (:func:`cw_rows`), with its title."""
    ns = [r.n for (b, *_), r in rs.records.items() if b == "cw"]
    if not ns:
        return
    lines.append(f"\n**C&W-L2 on the pipeline f(d(.)): median L2 over images f(d(x)) gets right, failures +inf "
                 f"(success rate) ({max(ns)} images)**\n")
    lines += table_lines(*cw_rows(rs, rs.classifiers, rs.defenses))


def curve_rows(rs, cells) -> tuple[list, list]:
    """(header, rows) of robust accuracy vs eps (block ``curve``) of each (classifier, defense) in ``cells`` (keys of
    ``rs.curves``): oblivious (attack f, then d) / white-box (attack f(d(.))) per eps; the eps columns are those of
    the first cell's curve."""
    eps = rs.curves[cells[0]]["eps"] if cells else []
    rows = [[classifier_name(c), defense_name(d)]
            + [f"{pct(o)} / {pct(w)}" for o, w in zip(rs.curves[(c, d)]["oblivious"], rs.curves[(c, d)]["whitebox"])]
            for c, d in cells]
    return ["classifier", "defense"] + [f"eps {e:g}" for e in eps], rows


def _curve_table(rs, lines):
    """Robust accuracy vs eps, oblivious / white-box (:func:`curve_rows`), with its title."""
    if not rs.curves:
        return
    cur0 = next(iter(rs.curves.values()))
    lines.append(f"\n**Robust accuracy (%) vs eps, the white-box suite ({rs.meta.get('whitebox_suite', '?')}; step "
                 "2.5 eps / steps): oblivious (attack f, then d) / white-box (attack f(d(.))) "
                 f"({cur0['n']} images)**\n")
    lines += table_lines(*curve_rows(rs, list(rs.curves)))


def markdown(rs) -> str:
    """All tables of the blocks that ran (no empty tables)."""
    # the curve block keeps no per-attack records: count its images too
    n = max([r.n for r in rs.records.values()] + [int(c["n"]) for c in rs.curves.values()], default=0)
    lines = [f"Evaluation on up to {n} test images; rates in %, 95% Wilson intervals with n = images; DSR: "
             "paper's value in brackets where it has one."]
    for block in ("oblivious", "transfer"):
        _block_table(rs, block, lines)
        _per_attack_table(rs, block, lines)
    _whitebox_table(rs, lines)
    budget_table(rs, lines)
    min_eps_table(rs, lines)
    _whitebox_transfer_table(rs, lines)
    _attack_log_table(rs, lines)
    if rs.clean:
        lines.append("\n**Clean accuracy f(d(x)) of each pipeline**\n")
        lines.append("| classifier | " + " | ".join(defense_name(d) for d in rs.defenses) + " |")
        lines.append("|---" * (1 + len(rs.defenses)) + "|")
        for c in rs.classifiers:
            lines.append(f"| {classifier_name(c)} | " + " | ".join(pct(rs.clean_accuracy(c, d)) for d in rs.defenses)
                         + " |")
    _cw_table(rs, lines)
    _curve_table(rs, lines)
    return "\n".join(lines)


def format_checks(checks) -> str:
    """One line per check: PASS / FAIL / SKIPPED, name, classifier, defense, detail."""
    if not checks:
        return "(none run: add `checks` to --blocks)"
    word = {True: "PASS", False: "FAIL", None: "SKIPPED"}
    return "\n".join(f"- {word[ch.ok]}: {ch.name} ({ch.classifier}, {ch.defense}): {ch.detail}" for ch in checks)


def _row(kind, block, attack, clf, d, m) -> dict:
    out = {"kind": kind, "block": block, "attack": attack, "classifier": clf, "defense": d}
    for k, v in m._asdict().items():
        out[k] = list(v) if isinstance(v, tuple) else v
    return out


def summaries(rs) -> tuple[list, list]:
    """(per-attack rows, per-block rows) as dicts of the ``AttackMetrics`` / ``BlockMetrics`` fields."""
    attack_rows = [_row("attack", b, a, c, d, attack_metrics(r)) for (b, a, c, d), r in rs.records.items()]
    block_rows = []
    for b, c, d in dict.fromkeys((b, c, d) for (b, _, c, d) in rs.records):
        bm = block_metrics(rs.block_records(b, c, d))
        if bm is not None:
            block_rows.append(_row("block", b, "+".join(bm.attacks), c, d, bm))
    return attack_rows, block_rows


def print_and_write(rs, out_dir, samples=None) -> dict:
    """Print the tables and the sanity checks, *then* write the files (:func:`write_outputs`): a
    failing write raises :class:`~ipgan_jax.files.NotWritableError` after the results are shown."""
    print(markdown(rs))
    print("\n**Sanity checks**\n")
    print(format_checks(rs.checks), flush=True)
    try:
        return write_outputs(rs, out_dir, samples)
    except OSError as e:
        raise files.NotWritableError(f"the tables above were printed, but writing them to {out_dir} failed "
                                     f"({type(e).__name__}: {e}); rerun with another --config.eval.out_dir") from e


def write_outputs(rs, out_dir, samples=None) -> dict:
    """Write a run's files under ``out_dir``.

    Args:
        rs: the run's :class:`~ipgan_jax.eval.resultset.ResultSet` (its meta goes into results.json as given).
        out_dir: the folder (created).
        samples: (classifier, attack, defense) -> (x, x_adv, d(x_adv)) for the image grids (``RunOutcome.samples``;
            None: no grids).

    Returns:
        {name: path} of results.json (schema ``SCHEMA``, :meth:`ResultSet.load` reads it back), results.csv and the
        PNG figures.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    attack_rows, block_rows = summaries(rs)
    data = {"schema": SCHEMA, "meta": dict(rs.meta),
            "clean": [{"classifier": c, "defense": d, "n": int(v.size), "acc": float(np.mean(v)),
                       "correct": pack_bits(v)}
                      for (c, d), v in rs.clean.items()],
            "records": [record_to_json(r) for r in rs.records.values()],
            "attack_metrics": attack_rows, "block_metrics": block_rows,
            "curves": [{"classifier": c, "defense": d, **v} for (c, d), v in rs.curves.items()],
            "sanity_checks": [ch._asdict() for ch in rs.checks],
            "attack_logs": list(rs.attack_logs),
            "paper_dsr": {str(k): v for k, v in PAPER_DSR.items()}}
    files.write_json(out_dir / "results.json", data)
    fields = ["kind", "block", "attack", "classifier", "defense", "n", "acc", "asr", "dsr", "robust_acc",
              "robust_ci", "ssim_rec", "ssim_adv", "median_l2", "dsr_n"]
    tmp = out_dir / "results.csv.tmp"
    with open(tmp, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=fields, extrasaction="ignore")
        w.writeheader()
        for r in attack_rows + block_rows:
            w.writerow(r)
    os.replace(tmp, out_dir / "results.csv")
    written = {"json": out_dir / "results.json", "csv": out_dir / "results.csv"}
    written.update(_figures(rs, samples or {}, out_dir))
    return written


def _figures(rs, samples: dict, out_dir) -> dict:
    out = {}
    for clf in rs.classifiers:
        for d in rs.defenses:
            rows_img, labels = [], []
            for a in dict.fromkeys(a for (_, a, _) in samples):
                s = samples.get((clf, a, d))
                if s is None or d == "none":   # the identity's x_rec is x_adv: nothing to show
                    continue
                x, x_adv, x_rec = s
                if not rows_img:
                    rows_img.append(x)
                    labels.append("clean")
                rows_img += [x_adv, amplify(x_rec - x_adv), x_rec]
                labels += [f"{a} adv", f"{a} inv.pert.", f"{a} rec"]
            if rows_img:
                out[f"grid_{clf}_{d}"] = image_grid(rows_img, labels, out_dir / f"grid_{clf}_{d}.png")
        series, dsr_series, eps = {}, {}, None
        for d in rs.defenses:
            cur = rs.curves.get((clf, d))
            if cur is None:
                continue
            eps = cur["eps"]
            series[f"{defense_name(d)} (oblivious)"] = cur["oblivious"]
            series[f"{defense_name(d)} (white-box)"] = cur["whitebox"]
            if d != "none":   # DSR of the identity is 0 by definition
                dsr_series[f"{defense_name(d)} (oblivious)"] = cur["oblivious_dsr"]
        if series:
            out[f"curve_{clf}"] = line_plot(eps, series, out_dir / f"curve_{clf}.png", "eps (Linf, pixels)",
                                              "robust accuracy (white-box suite)", classifier_name(clf))
        fine = {d: summarize_min_eps(rs.block_records(MIN_EPS_BLOCK, clf, d)).curve for d in rs.defenses
                if rs.block_records(MIN_EPS_BLOCK, clf, d)}
        if fine:
            xs = sorted(next(iter(fine.values())))
            out[f"min_eps_{clf}"] = line_plot(xs, {defense_name(d): [c.get(x) for x in xs] for d, c in fine.items()},
                                              out_dir / f"min_eps_{clf}.png", "eps (Linf, pixels)",
                                              "robust accuracy (min-eps search, upper bound)", classifier_name(clf))
        if dsr_series:
            out[f"dsr_curve_{clf}"] = line_plot(eps, dsr_series, out_dir / f"dsr_curve_{clf}.png",
                                                  "eps (Linf, pixels)", "DSR (oblivious, per image)",
                                                  classifier_name(clf))
    return out

