"""The block table of ``run_eval.py``: name -> block class (evaluate.py's blocks and the checks)."""
from __future__ import annotations

from ipgan_jax.errors import ConfigError
from ipgan_jax.eval.budget import BudgetBlock
from ipgan_jax.eval.checks import ChecksBlock
from ipgan_jax.eval.eps_search import MinEpsBlock
from ipgan_jax.eval.evaluate import CurveBlock, CWBlock, Evaluator, ObliviousBlock, TransferBlock, WhiteboxBlock


def make_blocks(ev: Evaluator, names) -> list:
    """Blocks to run, in the order oblivious, transfer, whitebox, budget, min_eps, cw, curve, checks."""
    table = {"oblivious": ObliviousBlock, "transfer": TransferBlock, "whitebox": WhiteboxBlock,
             "budget": BudgetBlock, "min_eps": MinEpsBlock, "cw": CWBlock, "curve": CurveBlock,
             "checks": ChecksBlock}
    unknown = set(names) - set(table)
    if unknown:
        raise ConfigError(f"unknown blocks {sorted(unknown)}; choose from {list(table)}")
    return [table[n](ev) for n in table if n in names]
