"""The docs' results tables, rendered from committed ``results.json`` files.

A Markdown file (README.md, docs/*.md) holds each rendered table between two markers that name the table kind,
the results it is read from and its options::

    <!-- results table1 results/mnist/table1 -->
    | defense | 1: AlexNet | ... |
    <!-- /results -->

Everything between the markers is output of :func:`render`; nothing in it is typed by hand. Commands::

    python -m ipgan_jax.eval.render                      # check: every marked table against its results (exit 1)
    python -m ipgan_jax.eval.render --write              # rewrite every marked table from its results
    python -m ipgan_jax.eval.render table1 results/mnist/table1 classifiers=lenet   # print one table

Table kinds (:data:`TABLES`; options ``classifiers=a,b`` and ``defenses=a,b`` pick and order columns / rows):

* ``table1``: the paper's Table 1, both settings: block DSR (per image, worst case over the block's bounded attacks)
  of the oblivious block (setting 1) and the transfer block (setting 2), the paper's value in brackets, in bold
  where at or above it;
* ``block`` (option ``block=oblivious|transfer``): one block's DSR [paper] and robust accuracy with its 95% Wilson
  interval, per classifier;
* ``whitebox`` (option ``block=whitebox`` by default): through-the-pipeline clean accuracy f(d(x)), robust accuracy
  (worst case per image over the suite; an upper bound under that suite) with its interval, and per attack;
* ``pooled`` (option ``blocks=``, default ``whitebox,budget``): the worst case per image over the bounded records of
  several through-the-pipeline blocks (runs joined with ``+``), beside each block's own worst case;
* ``clean``: clean accuracy f(d(x)) of every pipeline;
* ``checks``: the sanity checks, each with its verdict and the rates it compared (``Check.detail``);
* ``budget``: the budget ladder (``--blocks budget``): robust accuracy per rung and the stop rule's verdict;
* ``min_eps``: the minimal eps per image (``--blocks min_eps``): its quartiles and robust accuracy at eps 0.28-0.32;
* ``attacks`` (options ``block=oblivious|transfer|whitebox``, ``bounded=true|false``, default ``true``): per
  attack of one block, ACC / ASR of f, DSR and robust accuracy per defense, SSIM; ``bounded=false`` lists the
  minimum-norm attacks, with their median L2;
* ``curve``: robust accuracy vs eps, oblivious / white-box (``--blocks curve``);
* ``cw``: C&W-L2's median L2 through the pipeline, with its success rate (``--blocks cw``);
* ``attack_log`` (option ``block=``: only that block's logs): AutoAttack's per-attack log, the images each attack
  broke in turn (``--blocks whitebox`` with ``autoattack`` in the suite);
* ``transfer_matrix``: robust accuracy of each pipeline (rows) under the white-box suite crafted through each
  pipeline (columns; ``--blocks whitebox`` with ``eval.whitebox_cross``); the diagonal is the white-box block.

The tables of ``budget`` and the kinds after it are :mod:`~ipgan_jax.eval.report`'s (its ``*_rows`` functions), without
their titles.

A results path may join several runs with ``+`` (``results/a+results/b``): they are merged first
(``ResultSet.merge``: one worst case per image; runs of other classifiers simply sit side by side).

All rates are in %, two decimals, computed from the per-image records (:class:`~ipgan_jax.eval.resultset.ResultSet`).
"""
from __future__ import annotations

import inspect
import math
import re
import sys
from pathlib import Path

from ipgan_jax.config_lists import parse_names
from ipgan_jax.errors import UserError
from ipgan_jax.eval import report
from ipgan_jax.eval.formatting import classifier_name, defense_name, interval, pct, table_lines
from ipgan_jax.eval.ladder import BLOCK as BUDGET_BLOCK
from ipgan_jax.eval.min_eps import BLOCK as MIN_EPS_BLOCK
from ipgan_jax.eval.paper import paper_dsr
from ipgan_jax.eval.records import block_metrics
from ipgan_jax.eval.resultset import ResultsError, ResultSet

REPO_ROOT = Path(__file__).resolve().parents[2]
DOC_FILES = ("README.md", "docs/*.md")

_MARKER = re.compile(r"<!-- results (?P<spec>[^>]*?) -->\n(?P<body>.*?)<!-- /results -->", re.S)


class RenderError(UserError, ValueError):
    """A marker that names an unknown table, a bad option or results that cannot be read."""


def _rows(header: list, rows: list) -> str:
    return "\n".join(table_lines(header, rows))


def _pick(have: list, wanted: str | None, what: str) -> list:
    if not wanted:
        return have
    out = list(parse_names(wanted))
    missing = [w for w in out if w not in have]
    if missing:
        raise RenderError(f"{what} {missing} not in the results (they have {have})")
    return out


def _dsr_cell(rs, block, c, d) -> str:
    bm = rs.block_metrics(block, c, d)
    if bm is None:
        return "-"
    paper = paper_dsr(block, defense_name(d), classifier_name(c)) if d != "none" else None
    v = pct(bm.dsr)
    if paper is not None and not math.isnan(bm.dsr) and round(100 * bm.dsr, 2) >= paper:
        v = f"**{v}**"
    return v + (f" [{paper:.2f}]" if paper is not None else "")


def table1(rs: ResultSet, classifiers: str | None = None, defenses: str | None = None) -> str:
    """The paper's Table 1: DSR per defense (rows, 'none' left out) in setting 1 then 2 (columns per classifier)."""
    clfs = _pick(rs.classifiers, classifiers, "classifiers")
    defs = [d for d in _pick(rs.defenses, defenses, "defenses") if d != "none"]
    header = ["defense"] + [f"{s}: {classifier_name(c)}" for s in (1, 2) for c in clfs]
    rows = [[defense_name(d)] + [_dsr_cell(rs, b, c, d) for b in ("oblivious", "transfer") for c in clfs] for d in defs]
    return _rows(header, rows)


def block(rs: ResultSet, block: str = "oblivious", classifiers: str | None = None, defenses: str | None = None) -> str:
    """One bounded block: DSR [paper] and robust accuracy (95% Wilson interval) per classifier."""
    clfs = _pick(rs.classifiers, classifiers, "classifiers")
    defs = _pick(rs.defenses, defenses, "defenses")
    header = (["defense"] + [f"{classifier_name(c)} DSR" for c in clfs]
              + [f"{classifier_name(c)} rob. acc" for c in clfs])
    rows = []
    for d in defs:
        row = [defense_name(d)] + [_dsr_cell(rs, block, c, d) for c in clfs]
        for c in clfs:
            bm = rs.block_metrics(block, c, d)
            row.append("-" if bm is None else f"{pct(bm.robust_acc)} {interval(bm.robust_ci)}")
        rows.append(row)
    return _rows(header, rows)


def whitebox(rs: ResultSet, block: str = "whitebox", classifiers: str | None = None,
             defenses: str | None = None) -> str:
    """Through-the-pipeline block: clean f(d(x)), robust accuracy (worst case per image) with interval, per attack."""
    clfs = _pick(rs.classifiers, classifiers, "classifiers")
    defs = _pick(rs.defenses, defenses, "defenses")
    attacks = rs.attacks(block)
    header = ["classifier", "defense", "images", "clean f(d(x))", "robust acc. (upper bound)"] + \
        [f"under {a}" for a in attacks]
    rows = []
    for c in clfs:
        for d in defs:
            recs = rs.block_records(block, c, d)
            bm = rs.block_metrics(block, c, d)
            if bm is None:
                continue
            per = {r.attack: rs.attack_metrics(block, r.attack, c, d).robust_acc for r in recs if r.bounded}
            clean = float(recs[0].pipe_clean.mean()) if recs[0].n else None
            rows.append([classifier_name(c), defense_name(d), str(bm.n), pct(clean),
                         f"{pct(bm.robust_acc)} {interval(bm.robust_ci)}"] + [pct(per.get(a)) for a in attacks])
    if not rows:
        raise RenderError(f"no bounded records in block {block!r}")
    return _rows(header, rows)


def pooled(rs: ResultSet, blocks: str = "whitebox,budget", classifiers: str | None = None,
           defenses: str | None = None) -> str:
    """Worst case per image over the bounded records of several through-the-pipeline blocks (say the white-box
    suite of one run and the budget ladder of another, joined with ``+``): the tightest upper bound of everything
    that was run, beside each block's own."""
    names = list(parse_names(blocks))
    clfs = _pick(rs.classifiers, classifiers, "classifiers")
    defs = _pick(rs.defenses, defenses, "defenses")
    header = ["classifier", "defense", "images", "clean f(d(x))", "robust acc. (upper bound, pooled)"] + \
        [f"under {b}" for b in names]
    rows = []
    for c in clfs:
        for d in defs:
            per = {b: [r for r in rs.block_records(b, c, d) if r.bounded] for b in names}
            recs = [r for b in names for r in per[b]]
            if not recs:
                continue
            if len({r.n for r in recs}) > 1 or not all(r.through for r in recs):
                raise RenderError(f"{c}/{d}: pooled blocks must attack the pipeline on the same images; the records "
                                  f"have {sorted({r.n for r in recs})} images")
            bm = block_metrics(recs)
            rows.append([classifier_name(c), defense_name(d), str(bm.n), pct(rs.clean_accuracy(c, d)),
                         f"{pct(bm.robust_acc)} {interval(bm.robust_ci)}"]
                        + [pct(block_metrics(per[b]).robust_acc) if per[b] else "-" for b in names])
    if not rows:
        raise RenderError(f"no bounded records in the blocks {names}")
    return _rows(header, rows)


def clean(rs: ResultSet, classifiers: str | None = None, defenses: str | None = None) -> str:
    """Clean accuracy f(d(x)) of every pipeline (rows: defenses, columns: classifiers)."""
    clfs = _pick(rs.classifiers, classifiers, "classifiers")
    defs = _pick(rs.defenses, defenses, "defenses")
    return _rows(["defense"] + [classifier_name(c) for c in clfs],
                 [[defense_name(d)] + [pct(rs.clean_accuracy(c, d)) for c in clfs] for d in defs])


def checks(rs: ResultSet, classifiers: str | None = None, defenses: str | None = None) -> str:
    """The run's sanity checks (``ipgan_jax.eval.checks``): one row per check with its verdict and measured values."""
    clfs = _pick(rs.classifiers, classifiers, "classifiers")
    defs = _pick(rs.defenses, defenses, "defenses")
    verdict = {True: "pass", False: "**FAIL**", None: "skipped"}
    rows = [[classifier_name(ch.classifier), defense_name(ch.defense), ch.name, verdict[ch.ok],
             ch.detail.replace("|", "\\|")]
            for c in clfs for d in defs for ch in rs.checks if (ch.classifier, ch.defense) == (c, d)]
    if not rows:
        raise RenderError("the results hold no sanity checks (run with --blocks ...,checks)")
    return _rows(["classifier", "defense", "check", "verdict", "measured"], rows)


def _cells(rs, block_name, classifiers, defenses, what) -> list:
    clfs = _pick(rs.classifiers, classifiers, "classifiers")
    defs = _pick(rs.defenses, defenses, "defenses")
    cells = [(c, d) for c in clfs for d in defs if rs.block_records(block_name, c, d)]
    if not cells:
        raise RenderError(f"the results hold no {what} records (run with --blocks {block_name})")
    return cells


def budget(rs: ResultSet, classifiers: str | None = None, defenses: str | None = None) -> str:
    """The budget ladder (``report.budget_rows``)."""
    return _rows(*report.budget_rows(rs, _cells(rs, BUDGET_BLOCK, classifiers, defenses, "budget-ladder")))


def min_eps(rs: ResultSet, classifiers: str | None = None, defenses: str | None = None) -> str:
    """Minimal eps per image (``report.min_eps_rows``)."""
    return _rows(*report.min_eps_rows(rs, _cells(rs, MIN_EPS_BLOCK, classifiers, defenses, "min_eps")))


ATTACK_BLOCKS = ("oblivious", "transfer", "whitebox")


def _flag(value: str | bool, name: str) -> bool:
    """A ``true`` / ``false`` option as a bool."""
    v = str(value).lower()
    if v not in ("true", "false"):
        raise RenderError(f"option {name}= takes true or false, got {value!r}")
    return v == "true"


def attacks(rs: ResultSet, block: str = "oblivious", bounded: str = "true", classifiers: str | None = None,
            defenses: str | None = None) -> str:
    """Per attack of one block (``report.per_attack_rows``).

    Args:
        rs: the results.
        block: ``oblivious``, ``transfer`` or ``whitebox``.
        bounded: ``true``: the bounded (Linf) attacks; ``false``: the minimum-norm ones, with their median L2.
        classifiers: the classifiers (rows, in this order); all by default.
        defenses: the defenses (columns, in this order); by default every defense with a record.

    Returns:
        The Markdown table: one row per (classifier, attack); without the SSIM columns when the records carry no
        SSIM (records read back from results.json keep none).

    Raises:
        RenderError: another block, a ``bounded`` that is not true / false, names not in the results, or no such
            attack records.
    """
    if block not in ATTACK_BLOCKS:
        raise RenderError(f"table 'attacks' takes block={'|'.join(ATTACK_BLOCKS)}, got {block!r}")
    bnd = _flag(bounded, "bounded")
    clfs = _pick(rs.classifiers, classifiers, "classifiers")
    defs = _pick(report.recorded_defenses(rs), defenses, "defenses")
    header, rows = report.per_attack_rows(rs, block, bnd, clfs, defs)
    if not rows:
        need = "" if bnd else " and a minimum-norm attack (cw_l2, deepfool) in eval.attacks"
        raise RenderError(f"the results hold no {'bounded' if bnd else 'minimum-norm'} {block} attack records of "
                          f"those pipelines (run with --blocks {block}{need})")
    if all(set(r[-1] + r[-2]) <= {"-", "/"} for r in rows):   # results.json keeps no per-image SSIM: no empty columns
        header, rows = header[:-2], [r[:-2] for r in rows]
    return _rows(header, rows)


def curve(rs: ResultSet, classifiers: str | None = None, defenses: str | None = None) -> str:
    """Robust accuracy vs eps, oblivious / white-box (``report.curve_rows``).

    Args:
        rs: the results.
        classifiers: the classifiers (rows, in this order); all by default.
        defenses: the defenses (rows within a classifier, in this order); all by default.

    Returns:
        The Markdown table: one row per (classifier, defense) with a curve, one column per eps.

    Raises:
        RenderError: names not in the results, or no curve of those pipelines.
    """
    clfs = _pick(rs.classifiers, classifiers, "classifiers")
    defs = _pick(rs.defenses, defenses, "defenses")
    cells = [(c, d) for c in clfs for d in defs if (c, d) in rs.curves]
    if not cells:
        raise RenderError("the results hold no robust-accuracy-vs-eps curves (run with --blocks curve)")
    return _rows(*report.curve_rows(rs, cells))


def cw(rs: ResultSet, classifiers: str | None = None, defenses: str | None = None) -> str:
    """C&W-L2 on the pipeline: median L2 and success rate (``report.cw_rows``).

    Args:
        rs: the results.
        classifiers: the classifiers (rows, in this order); all by default.
        defenses: the defenses (columns, in this order); all by default.

    Returns:
        The Markdown table; '-' where a pipeline has no C&W record.

    Raises:
        RenderError: names not in the results, or no C&W record of those pipelines.
    """
    _cells(rs, "cw", classifiers, defenses, "C&W")
    return _rows(*report.cw_rows(rs, _pick(rs.classifiers, classifiers, "classifiers"),
                                 _pick(rs.defenses, defenses, "defenses")))


def attack_log(rs: ResultSet, block: str | None = None, classifiers: str | None = None,
               defenses: str | None = None) -> str:
    """AutoAttack's per-attack log, summed over batches (``report.attack_log_rows``).

    Args:
        rs: the results.
        block: only this block's logs; every block's by default.
        classifiers: the classifiers, in this order; all by default.
        defenses: the attacked defenses, in this order; all by default.

    Returns:
        The Markdown table: one row per (block, classifier, attacked defense, eps), in the run's order unless
        ``classifiers`` or ``defenses`` order them.

    Raises:
        RenderError: names not in the results, or no attack log of those pipelines.
    """
    cells = None
    if classifiers or defenses:
        cells = [(c, d) for c in _pick(rs.classifiers, classifiers, "classifiers")
                 for d in _pick(rs.defenses, defenses, "defenses")]
    header, rows = report.attack_log_rows(rs, cells, block)
    if not rows:
        raise RenderError("the results hold no attack logs of those pipelines (run with --blocks whitebox and "
                          "autoattack in eval.whitebox_suite)")
    return _rows(header, rows)


def transfer_matrix(rs: ResultSet, classifiers: str | None = None, defenses: str | None = None) -> str:
    """The white-box transfer matrix between pipelines (``report.transfer_matrix_rows``).

    Args:
        rs: the results.
        classifiers: the classifiers, in this order; all by default.
        defenses: the defenses, in this order, both the judged ones (rows) and those crafted through (columns);
            all by default.

    Returns:
        The Markdown table: robust accuracy of the row's pipeline under the white-box suite crafted through the
        column's; the diagonal is the white-box block.

    Raises:
        RenderError: names not in the results, or no white-box transfer record of those pipelines.
    """
    header, rows = report.transfer_matrix_rows(rs, _pick(rs.classifiers, classifiers, "classifiers"),
                                               _pick(rs.defenses, defenses, "defenses"))
    if not rows:
        raise RenderError("the results hold no white-box transfer records of those pipelines (run with --blocks "
                          "whitebox, eval.whitebox_cross on and two or more defenses)")
    return _rows(header, rows)


TABLES = {"table1": table1, "block": block, "whitebox": whitebox, "pooled": pooled, "clean": clean, "checks": checks,
          "budget": budget, "min_eps": min_eps, "attacks": attacks, "curve": curve, "cw": cw,
          "attack_log": attack_log, "transfer_matrix": transfer_matrix}


def _load(src: str, root: Path) -> ResultSet:
    """One run, or several joined with ``+``, merged."""
    try:
        runs = [ResultSet.load(Path(s) if Path(s).is_absolute() else root / s) for s in src.split("+")]
        return runs[0] if len(runs) == 1 else runs[0].merge(*runs[1:], labels=src.split("+"))
    except (ResultsError, ValueError) as e:
        raise RenderError(str(e)) from e


def render(kind: str, src: str, root: Path = REPO_ROOT, **options: str) -> str:
    """One table as Markdown.

    Args:
        kind: a key of :data:`TABLES`.
        src: the run's out_dir or results.json, relative to ``root`` unless absolute.
        root: the repository root.
        **options: the table's options (``classifiers``, ``defenses``, ``block``), as strings.

    Returns:
        The Markdown table, without a trailing newline.

    Raises:
        RenderError: unknown kind or option, results that cannot be read, or names not in the results.
    """
    if kind not in TABLES:
        raise RenderError(f"unknown table {kind!r}; known: {', '.join(TABLES)}")
    accepted = [p for p in inspect.signature(TABLES[kind]).parameters if p != "rs"]
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        raise RenderError(f"table {kind!r} takes options {', '.join(f'{a}=' for a in accepted)}; got {unknown}")
    return TABLES[kind](_load(src, root), **options)


def parse_spec(spec: str) -> tuple[str, str, dict]:
    """``'table1 results/mnist/table1 classifiers=lenet'`` -> (kind, src, options)."""
    parts = spec.split()
    if len(parts) < 2:
        raise RenderError(f"a results marker needs '<table> <results path> [key=value ...]', got {spec!r}")
    opts = {}
    for p in parts[2:]:
        k, eq, v = p.partition("=")
        if not eq or not k:
            raise RenderError(f"option {p!r} of marker {spec!r} is not key=value")
        opts[k] = v
    return parts[0], parts[1], opts


def _fenced(text: str) -> list:
    """[(start, end)] character spans of the fenced code blocks (```) of a Markdown text."""
    spans, start, pos = [], None, 0
    for line in text.splitlines(keepends=True):
        if line.lstrip().startswith("```"):
            if start is None:
                start = pos
            else:
                spans.append((start, pos + len(line)))
                start = None
        pos += len(line)
    if start is not None:
        spans.append((start, len(text)))
    return spans


def _markers(text: str) -> list:
    """The marker matches of ``text`` outside fenced code blocks (a marker shown as an example is not rendered)."""
    spans = _fenced(text)
    return [m for m in _MARKER.finditer(text) if not any(a <= m.start() < b for a, b in spans)]


def rerender(text: str, root: Path = REPO_ROOT) -> tuple[str, list]:
    """``text`` with every marked table rendered afresh, and the list of (line, spec) of those that changed."""
    changed = []
    live = {m.start() for m in _markers(text)}

    def sub(m):
        if m.start() not in live:
            return m.group(0)
        kind, src, opts = parse_spec(m.group("spec"))
        body = render(kind, src, root, **opts) + "\n"
        if body != m.group("body"):
            changed.append((text.count("\n", 0, m.start()) + 1, m.group("spec")))
        return f"<!-- results {m.group('spec')} -->\n{body}<!-- /results -->"

    return _MARKER.sub(sub, text), changed


def doc_files(root: Path = REPO_ROOT) -> list:
    """README.md and docs/*.md under ``root``."""
    out = []
    for pattern in DOC_FILES:
        out += sorted(root.glob(pattern))
    return out


def stale(root: Path = REPO_ROOT, write: bool = False) -> list:
    """Every marked table of the docs that differs from its results: ``['docs/results.md:12: table1 ...']``.

    With ``write``, the docs are rewritten (atomically, only files with a change) and the list says what changed.
    """
    from ipgan_jax.files import write_text
    out = []
    for f in doc_files(root):
        text = f.read_text()
        try:
            new, changed = rerender(text, root)
        except RenderError as e:
            raise RenderError(f"{f.relative_to(root)}: {e}") from None
        out += [f"{f.relative_to(root)}:{line}: {spec}" for line, spec in changed]
        if write and changed:
            write_text(f, new)
    return out


def count_markers(root: Path = REPO_ROOT) -> int:
    """How many marked tables the docs hold."""
    return sum(len(_markers(f.read_text())) for f in doc_files(root))


def main(argv: list) -> int:
    args = [a for a in argv if not a.startswith("--")]
    flags_ = [a for a in argv if a.startswith("--")]
    unknown = [a for a in flags_ if a not in ("--write", "--check")]
    try:
        if unknown:
            raise RenderError(f"unknown flag(s) {unknown}: use --write, --check or '<table> <results> [key=value]'")
        if args:
            kind, src, opts = parse_spec(" ".join(args))
            print(render(kind, src, Path.cwd(), **opts))
            return 0
        write = "--write" in flags_
        diffs = stale(REPO_ROOT, write=write)
    except RenderError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    n = count_markers(REPO_ROOT)
    if write:
        print(f"rewrote {len(diffs)} of {n} tables" + "".join(f"\n  {d}" for d in diffs))
        return 0
    for d in diffs:
        print(f"STALE {d}: differs from its results; run `python -m ipgan_jax.eval.render --write`")
    print(f"{n - len(diffs)} of {n} tables match their results")
    return 1 if diffs else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
