"""Tables (Markdown / JSON / CSV) and figures of a :class:`~ipgan_jax.eval.outcome.RunOutcome` (a run or a merge
of runs; definitions: ``records``)."""
from __future__ import annotations

import csv
import math
import os
from pathlib import Path

import numpy as np

from ipgan_jax import files
from ipgan_jax.eval.formatting import classifier_name, defense_name, interval, pct
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


def _attacks(run, block, bounded):
    seen = []
    for (b, a, _, _), r in run.records.items():
        if b == block and r.bounded == bounded and a not in seen:
            seen.append(a)
    return seen


def _block_table(run, block, lines):
    """Block robust accuracy (worst case per image over bounded attacks) and per-image DSR."""
    attacks = _attacks(run, block, True)
    if not attacks:
        return
    n = max(r.n for (b, *_), r in run.records.items() if b == block)
    lines.append(f"\n**{BLOCK_TITLES[block]}** (bounded attacks, worst case per image: {', '.join(attacks)}; "
                 f"{n} images)\n")
    lines.append("| defense | " + " | ".join(f"{classifier_name(c)} DSR" for c in run.classifiers) + " | "
                 + " | ".join(f"{classifier_name(c)} rob. acc" for c in run.classifiers) + " |")
    lines.append("|---" * (1 + 2 * len(run.classifiers)) + "|")
    for d in run.defenses:
        dsr, rob = [], []
        for c in run.classifiers:
            bm = block_metrics(run.block_records(block, c, d))
            if bm is None:
                dsr.append("-")
                rob.append("-")
                continue
            paper = paper_dsr(block, defense_name(d), classifier_name(c))
            dsr.append(pct(bm.dsr) + (f" [{paper:.2f}]" if paper is not None else ""))
            rob.append(f"{pct(bm.robust_acc)} {interval(bm.robust_ci)}")
        lines.append(f"| {defense_name(d)} | " + " | ".join(dsr) + " | " + " | ".join(rob) + " |")


def _per_attack_table(run, block, lines):
    """One row per (classifier, attack): ACC and ASR of f, DSR and robust accuracy per defense."""
    defs = [d for d in run.defenses if any(k[3] == d for k in run.records)]
    for bounded in (True, False):
        attacks = _attacks(run, block, bounded)
        if not attacks:
            continue
        kind = ("bounded (Linf)" if bounded else
                "minimum-norm, unbounded (own rows; median L2 over clean-correct images, failures +inf)")
        lines.append(f"\n**Per attack, {block} block, {kind}: ACC / ASR of f; DSR and robust accuracy per defense; "
                     "SSIM(x, d(x_adv)) per defense [SSIM(x, x_adv)]**\n")
        extra = " median L2 |" if not bounded else ""
        lines.append("| classifier | attack | ACC | ASR |" + extra + "".join(f" {defense_name(d)} DSR |" for d in defs)
                     + "".join(f" {defense_name(d)} rob. acc |" for d in defs) + " SSIM rec | SSIM adv |")
        lines.append("|---" * (6 + 2 * len(defs) + (not bounded)) + "|")
        for c in run.classifiers:
            for a in attacks:
                ms = {d: attack_metrics(run.records[(block, a, c, d)]) for d in defs if (block, a, c, d) in run.records}
                if not ms:
                    continue
                m0 = next(iter(ms.values()))
                row = [classifier_name(c), a, pct(m0.acc), pct(m0.asr)] + ([_l2(m0.median_l2)] if not bounded else [])
                row += [pct(ms[d].dsr) if d in ms else "-" for d in defs]
                row += [pct(ms[d].robust_acc) if d in ms else "-" for d in defs]
                row += ["/".join(_ssim(m.ssim_rec) for m in ms.values()), _ssim(m0.ssim_adv)]
                lines.append("| " + " | ".join(row) + " |")


def _whitebox_table(run, lines):
    attacks = _attacks(run, "whitebox", True)
    if not attacks:
        return
    n = max(r.n for (b, *_), r in run.records.items() if b == "whitebox")
    lines.append(f"\n**{BLOCK_TITLES['whitebox']}** ({', '.join(attacks)}; {n} images; clean and adversarial "
                 "accuracy both through the pipeline: ACC = f(d(x)), ASR among those, robust accuracy = right on "
                 "f(d(x)) and on f(d(x_adv)) for every attack; SSIM(x, d(x_adv)) of the worst-case iterate)\n")
    lines.append("| classifier | defense | ACC f(d(x)) | ASR | rob. acc | "
                 + " | ".join(f"rob. acc {a}" for a in attacks) + " | SSIM |")
    lines.append("|---" * (6 + len(attacks)) + "|")
    for c in run.classifiers:
        for d in run.defenses:
            recs = run.block_records("whitebox", c, d)
            bm = block_metrics(recs)
            if bm is None:
                continue
            per = {r.attack: attack_metrics(r).robust_acc for r in recs}
            lines.append(f"| {classifier_name(c)} | {defense_name(d)} | {pct(attack_metrics(recs[0]).acc)} | "
                         f"{pct(bm.asr)} | {pct(bm.robust_acc)} {interval(bm.robust_ci)} | "
                         + " | ".join(pct(per.get(a)) for a in attacks) + f" | {_ssim(bm.ssim_rec)} |")


def _whitebox_transfer_table(run, lines):
    """Robust accuracy of each pipeline (rows) under the white-box suite crafted through each
    pipeline of the run (columns; worst case per image over the suite); the diagonal is Block 3."""
    cross = [k for k in run.records if k[0] == CROSS_BLOCK]
    if not cross:
        return
    sources = list(dict.fromkeys(cross_source(a) for _, a, _, _ in cross))
    sources = [d for d in run.defenses if d in sources] + [s for s in sources if s not in run.defenses]
    lines.append("\n**White-box transfer between pipelines**: robust accuracy (%) of the row's pipeline on the "
                 "examples the white-box suite crafted through the column's pipeline (worst case per image over the "
                 "suite; the diagonal is Block 3). A row that is lower off the diagonal than on it is masking its "
                 "own gradient.\n")
    lines.append("| classifier | judged (row) vs crafted through (column) | "
                 + " | ".join(defense_name(s) for s in sources) + " |")
    lines.append("|---" * (2 + len(sources)) + "|")
    for c in run.classifiers:
        for d in run.defenses:
            row, any_ = [], False
            crossed = run.cross_records(c, d)
            for s in sources:
                recs = run.block_records("whitebox", c, d) if s == d else crossed.get(s, [])
                bm = block_metrics(recs) if recs else None
                any_ |= bm is not None
                row.append("-" if bm is None else pct(bm.robust_acc))
            if any_:
                lines.append(f"| {classifier_name(c)} | {defense_name(d)} | " + " | ".join(row) + " |")


def _attack_log_table(run, lines):
    """AutoAttack's per-attack log (images each attack broke, in order), summed over batches."""
    if not run.attack_logs:
        return
    rows: dict = {}
    for log in run.attack_logs:
        k = (log["block"], log["classifier"], log["attacked"], log["eps"])
        r = rows.setdefault(k, {"n": 0, "clean": 0, "robust": 0, "broken": {}})
        for f in ("n", "clean", "robust"):
            r[f] += int(log[f])
        for a, v in log["broken"].items():
            r["broken"][a] = r["broken"].get(a, 0) + int(v)
    lines.append("\n**AutoAttack log** (images in the block / right on clean input / broken by each attack in turn, "
                 "each on the images still robust / robust at the end)\n")
    lines.append("| block | classifier | attacked | eps | images | clean right | broken by | robust |")
    lines.append("|---" * 8 + "|")
    for (b, c, d, e), r in rows.items():
        broken = ", ".join(f"{a} {v}" for a, v in r["broken"].items())
        lines.append(f"| {b} | {classifier_name(c)} | {defense_name(d)} | {e:g} | {r['n']} | {r['clean']} | {broken} "
                     f"| {r['robust']} |")


def _cw_table(run, lines):
    cells = {(c, d): attack_metrics(r) for (b, _, c, d), r in run.records.items() if b == "cw"}
    if not cells:
        return
    n = max(m.n for m in cells.values())
    lines.append(f"\n**C&W-L2 on the pipeline f(d(.)): median L2 over images f(d(x)) gets right, failures +inf "
                 f"(success rate) ({n} images)**\n")
    lines.append("| classifier | " + " | ".join(defense_name(d) for d in run.defenses) + " |")
    lines.append("|---" * (1 + len(run.defenses)) + "|")
    for c in run.classifiers:
        row = [f"{_l2(cells[(c, d)].median_l2)} ({pct(cells[(c, d)].asr)}%)" if (c, d) in cells else "-"
               for d in run.defenses]
        lines.append(f"| {classifier_name(c)} | " + " | ".join(row) + " |")


def _curve_table(run, lines):
    if not run.curves:
        return
    cur0 = next(iter(run.curves.values()))
    eps = cur0["eps"]
    lines.append(f"\n**Robust accuracy (%) vs eps, the white-box suite ({run.curve_suite}; step "
                 "2.5 eps / steps): oblivious (attack f, then d) / white-box (attack f(d(.))) "
                 f"({cur0['n']} images)**\n")
    lines.append("| classifier | defense | " + " | ".join(f"eps {e:g}" for e in eps) + " |")
    lines.append("|---" * (2 + len(eps)) + "|")
    for (c, d), cur in run.curves.items():
        row = [f"{pct(o)} / {pct(w)}" for o, w in zip(cur["oblivious"], cur["whitebox"])]
        lines.append(f"| {classifier_name(c)} | {defense_name(d)} | " + " | ".join(row) + " |")


def markdown(run) -> str:
    """All tables of the blocks that ran (no empty tables)."""
    # the curve block keeps no per-attack records: count its images too
    n = max([r.n for r in run.records.values()] + [int(c["n"]) for c in run.curves.values()], default=0)
    lines = [f"Evaluation on up to {n} test images; rates in %, 95% Wilson intervals with n = images; DSR: "
             "paper's value in brackets where it has one."]
    for block in ("oblivious", "transfer"):
        _block_table(run, block, lines)
        _per_attack_table(run, block, lines)
    _whitebox_table(run, lines)
    _whitebox_transfer_table(run, lines)
    _attack_log_table(run, lines)
    if run.pipe_clean:
        lines.append("\n**Clean accuracy f(d(x)) of each pipeline**\n")
        lines.append("| classifier | " + " | ".join(defense_name(d) for d in run.defenses) + " |")
        lines.append("|---" * (1 + len(run.defenses)) + "|")
        acc = run.clean_accuracy()
        for c in run.classifiers:
            lines.append(f"| {classifier_name(c)} | " + " | ".join(pct(acc.get((c, d))) for d in run.defenses) + " |")
    _cw_table(run, lines)
    _curve_table(run, lines)
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


def summaries(run) -> tuple[list, list]:
    """(per-attack rows, per-block rows) as dicts of the ``AttackMetrics`` / ``BlockMetrics`` fields."""
    attack_rows = [_row("attack", b, a, c, d, attack_metrics(r)) for (b, a, c, d), r in run.records.items()]
    block_rows = []
    for b, c, d in dict.fromkeys((b, c, d) for (b, _, c, d) in run.records):
        bm = block_metrics(run.block_records(b, c, d))
        if bm is not None:
            block_rows.append(_row("block", b, "+".join(bm.attacks), c, d, bm))
    return attack_rows, block_rows


def print_and_write(run, out_dir, meta) -> dict:
    """Print the tables and the sanity checks, *then* write the files (:func:`write_outputs`): a
    failing write raises :class:`~ipgan_jax.files.NotWritableError` after the results are shown."""
    print(markdown(run))
    print("\n**Sanity checks**\n")
    print(format_checks(run.checks), flush=True)
    try:
        return write_outputs(run, out_dir, meta)
    except OSError as e:
        raise files.NotWritableError(f"the tables above were printed, but writing them to {out_dir} failed "
                                     f"({type(e).__name__}: {e}); rerun with another --config.eval.out_dir") from e


def write_outputs(run, out_dir, meta) -> dict:
    """results.json (schema ``SCHEMA``), results.csv and PNG figures under ``out_dir``."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    attack_rows, block_rows = summaries(run)
    data = {"schema": SCHEMA, "meta": meta,
            "clean": [{"classifier": c, "defense": d, "n": int(v.size), "acc": float(np.mean(v)),
                       "correct": pack_bits(v)}
                      for (c, d), v in run.pipe_clean.items()],
            "records": [record_to_json(r) for r in run.records.values()],
            "attack_metrics": attack_rows, "block_metrics": block_rows,
            "curves": [{"classifier": c, "defense": d, **v} for (c, d), v in run.curves.items()],
            "sanity_checks": [ch._asdict() for ch in run.checks],
            "attack_logs": list(run.attack_logs),
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
    written.update(_figures(run, out_dir))
    return written


def _figures(run, out_dir) -> dict:
    out = {}
    for clf in run.classifiers:
        for d in run.defenses:
            rows_img, labels = [], []
            for a in run.attacks:
                s = run.samples.get((clf, a, d))
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
        for d in run.defenses:
            cur = run.curves.get((clf, d))
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
        if dsr_series:
            out[f"dsr_curve_{clf}"] = line_plot(eps, dsr_series, out_dir / f"dsr_curve_{clf}.png",
                                                  "eps (Linf, pixels)", "DSR (oblivious, per image)",
                                                  classifier_name(clf))
    return out

