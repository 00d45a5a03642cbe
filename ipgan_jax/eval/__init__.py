"""Evaluation: the harness, its blocks, the white-box suite as data, and results as data.

    from ipgan_jax.eval import Evaluator, make_blocks
    ev = Evaluator(config, ["lenet"], ["none", "ipgan"], ["fgsm", "pgd"], num_examples=1000)
    outcome = ev.run(make_blocks(ev, ["oblivious", "whitebox", "checks"]))   # a RunOutcome
    rs = ResultSet.load("results/mnist/table1")
    rs.block_metrics("oblivious", "lenet", "ipgan").dsr
    rs.merge(ResultSet.load("other_run")).block_metrics("whitebox", "lenet", "ipgan").robust_acc

Modules: ``evaluate`` (the :class:`Evaluator` and the attack blocks), ``suite`` (white-box suite members as
:class:`Member` specs), ``budget`` / ``ladder`` (the suite scaled until the number converges, and its
rows and stop rule), ``eps_search`` / ``min_eps`` (the minimal eps per image by bisection, and its records),
``surrogate`` (a defense's learned smooth surrogate, for BPDA), ``checks`` (gradient-masking
checks), ``outcome`` (what blocks yield, :class:`RunOutcome`), ``records`` (per-image records and their metrics),
``resultset`` (a results.json read back), ``merge`` / ``paired`` (pooling and comparing runs), ``report`` (tables and
figures), ``render`` (docs tables from results files; run as ``python -m ipgan_jax.eval.render``, so not imported
here).
"""
from ipgan_jax.eval.blocks import make_blocks
from ipgan_jax.eval.budget import BudgetBlock
from ipgan_jax.eval.checks import CHECKS, ChecksBlock, check_names
from ipgan_jax.eval.eps_search import MinEpsBlock
from ipgan_jax.eval.evaluate import (
    CurveBlock,
    CWBlock,
    Evaluator,
    ObliviousBlock,
    TransferBlock,
    WhiteboxBlock,
    block_key,
)
from ipgan_jax.eval.ladder import LadderRow, converged_at, ladder_rows
from ipgan_jax.eval.merge import MergeError, merge_results
from ipgan_jax.eval.min_eps import minimal_eps
from ipgan_jax.eval.outcome import CROSS_BLOCK, AttackLog, Check, Curve, RunOutcome, Samples
from ipgan_jax.eval.paired import PairedError, compare
from ipgan_jax.eval.records import AttackMetrics, AttackRecord, BlockMetrics, attack_metrics, block_metrics
from ipgan_jax.eval.report import markdown, print_and_write, write_outputs
from ipgan_jax.eval.resultset import ResultsError, ResultSet
from ipgan_jax.eval.suite import GROUPS, MEMBERS, Budget, Member, suite_members

__all__ = [
    "Evaluator", "make_blocks", "ObliviousBlock", "TransferBlock", "WhiteboxBlock", "CWBlock", "CurveBlock",
    "ChecksBlock", "BudgetBlock", "MinEpsBlock", "block_key", "minimal_eps",
    "LadderRow", "ladder_rows", "converged_at",
    "Member", "Budget", "MEMBERS", "GROUPS", "suite_members",
    "CHECKS", "check_names",
    "RunOutcome", "AttackRecord", "Check", "Curve", "AttackLog", "Samples", "CROSS_BLOCK",
    "AttackMetrics", "BlockMetrics", "attack_metrics", "block_metrics",
    "ResultSet", "ResultsError", "merge_results", "MergeError", "compare", "PairedError",
    "markdown", "print_and_write", "write_outputs",
]
