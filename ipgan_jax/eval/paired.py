"""Paired per-image comparison of two defenses' worst-case robust accuracy (no attack is run).

    python run_eval.py --compare <run_a>@<defense_a>,<run_b>@<defense_b> [--classifiers lenet] [--num_examples N]

Two robust accuracies on the same test images, each with a 95% Wilson interval, often overlap while
one defense keeps nearly every image the other keeps and more: the intervals ignore that the two
numbers come from the same images. The paired view counts the discordant images (robust under A but
not B, and the other way round) and tests them with McNemar's exact test (two-sided binomial with
p = 1/2 on the discordant pairs). Each side is one ``run_eval.py`` output (a merged one for a worst
case over several runs) and a defense in it; its robust bits are the per-image worst case over the
block's bounded attacks, exactly as the tables count them (``records.block_metrics``).

The sides must be one dataset, one eps and one classifier with the same clean predictions on the
common images (else they used other weights or other images: refused, :class:`PairedError`). Images:
the first n both runs evaluated (``num_examples`` cuts further). Attack sets may differ (e.g. a
5-member suite against a 4-member one); they are reported so that the reader sees it.
"""
from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

from ipgan_jax.errors import UserError
from ipgan_jax.eval.formatting import interval, pct
from ipgan_jax.eval.merge import MergeError, check_same_models, merge_results
from ipgan_jax.eval.records import worst_case
from ipgan_jax.metrics import wilson_interval


class PairedError(UserError, ValueError):
    """Two sides that cannot be compared image by image."""


class Side(NamedTuple):
    label: str
    classifier: str
    defense: str
    attacks: tuple
    robust: np.ndarray      # bool [n]: f(d(x)) and f(d(x_adv)) right for every bounded attack
    f_clean: np.ndarray     # bool [n]: f(x) right (no defense), to check that both sides saw the same images


class PairedComparison(NamedTuple):
    n: int
    a: Side
    b: Side
    a_correct: int
    b_correct: int
    a_only: int             # robust under A, broken (or clean-wrong) under B
    b_only: int
    p_value: float          # McNemar's exact test on (a_only, b_only)


def mcnemar_exact(a_only: int, b_only: int) -> float:
    """Two-sided exact McNemar p-value: P(|X - k/2| >= |a_only - k/2|), X ~ Binomial(k, 1/2), k = a_only + b_only."""
    for v in (a_only, b_only):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 0:
            raise ValueError(f"discordant counts must be non-negative integers, got {a_only!r}, {b_only!r}")
    k, lo = a_only + b_only, min(a_only, b_only)
    if k == 0 or a_only == b_only:
        return 1.0
    tail = sum(math.comb(k, i) for i in range(lo + 1))
    return min(1.0, 2.0 * tail / 2 ** k)


def side(run, label: str, defense: str, classifier: str | None = None, block: str = "whitebox") -> Side:
    """Per-image worst-case robust bits of ``defense`` in one run (a :class:`~ipgan_jax.eval.resultset.ResultSet`)."""
    clfs = sorted({c for (b, _, c, d) in run.records if b == block and d == defense})
    if not clfs:
        have = sorted({(b, d) for (b, _, _, d) in run.records})
        raise PairedError(f"{label} has no {block!r} records for defense {defense!r}; it has (block, defense): {have}")
    if classifier is None:
        if len(clfs) > 1:
            raise PairedError(f"{label} has {defense!r} on several classifiers {clfs}: name one with --classifiers")
        classifier = clfs[0]
    elif classifier not in clfs:
        raise PairedError(f"{label} has {defense!r} in block {block!r} on {clfs}, not on {classifier!r}")
    n_max = max(r.n for r in run.records.values())
    try:   # one run: its records of this cell cut to their common images, clean bits ANDed in, as in a merge
        mr = merge_results([run], [label], classifiers=[classifier], defenses=[defense], num_examples=n_max)
    except MergeError as e:
        raise PairedError(str(e)) from e
    recs = [r for r in mr.block_records(block, classifier, defense) if r.bounded]
    if not recs:
        raise PairedError(f"{label}: {defense!r} on {classifier!r} has no bounded attack in block {block!r}")
    w = worst_case(recs)
    return Side(label=f"{label}@{defense}", classifier=classifier, defense=defense,
                attacks=tuple(r.attack for r in recs), robust=w.robust, f_clean=w.f_clean)


def compare(run_a, label_a: str, defense_a: str, run_b, label_b: str, defense_b: str,
            classifier: str | None = None, block: str = "whitebox",
            num_examples: int | None = None) -> PairedComparison:
    """A against B on the images both evaluated (the first ``num_examples`` of them, if given).

    Args:
        run_a, run_b: the two runs, each a :class:`~ipgan_jax.eval.resultset.ResultSet`.
        label_a, label_b: their names in the table and the errors.
        defense_a, defense_b: the defense compared in each run.
        classifier: the classifier (default: the only one ``defense_a`` has in ``block``).
        block: the block whose worst case per image is compared.
        num_examples: compare only the first N images.

    Returns:
        A :class:`PairedComparison` with McNemar's exact p-value.
    """
    if num_examples is not None and (isinstance(num_examples, bool) or not isinstance(num_examples, int)
                                     or num_examples < 1):
        raise PairedError(f"num_examples must be a positive integer, got {num_examples!r}")
    for key, default in (("dataset", None), ("eps", None), ("first_test_image", 0)):
        va, vb = run_a.meta.get(key, default), run_b.meta.get(key, default)
        if va != vb:
            raise PairedError(f"the runs differ in {key}: {label_a} {va!r}, {label_b} {vb!r}; not comparable")
    a = side(run_a, label_a, defense_a, classifier, block)
    classifier = a.classifier   # B must be on A's classifier: one f, two defenses
    # one f: the classifier's weights must agree (the two defenses may share a name and differ: that is the point)
    check_same_models([run_a, run_b], [label_a, label_b], lambda c, d: c == classifier and d is None, PairedError)
    b = side(run_b, label_b, defense_b, classifier, block)
    n = min(len(a.robust), len(b.robust), num_examples or len(a.robust))
    bad = int(np.sum(a.f_clean[:n] != b.f_clean[:n]))
    if bad:
        raise PairedError(f"{classifier}'s clean predictions differ between {label_a} and {label_b} on {bad} of the "
                          f"first {n} images: the runs used other classifier weights or other test images")
    ra, rb = a.robust[:n], b.robust[:n]
    a_only, b_only = int(np.sum(ra & ~rb)), int(np.sum(rb & ~ra))
    return PairedComparison(n=n, a=a, b=b, a_correct=int(ra.sum()), b_correct=int(rb.sum()), a_only=a_only,
                            b_only=b_only, p_value=mcnemar_exact(a_only, b_only))


def markdown(c: PairedComparison) -> str:
    """The comparison as a short Markdown table and one sentence."""
    def row(s: Side, k: int) -> str:
        return f"| {s.label} | {', '.join(s.attacks)} | {pct(k / c.n)} {interval(wilson_interval(k, c.n))} |"
    lines = [f"**Paired comparison, first {c.n} test images** (worst case per image over each side's bounded attacks)",
             "", "| side | attacks | robust acc. (95% Wilson) |", "|---|---|---|",
             row(c.a, c.a_correct), row(c.b, c.b_correct), "",
             f"Robust under A only: {c.a_only}; under B only: {c.b_only}; "
             f"McNemar exact two-sided p = {c.p_value:.3g}."]
    if set(c.a.attacks) != set(c.b.attacks):
        lines.append("Note: the two sides were attacked by different attack sets (listed above).")
    return "\n".join(lines)
