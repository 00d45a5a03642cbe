"""The budget ladder as data: its rungs, its record names, its stop rule, and its rows read back from records.

The block that runs it is :class:`ipgan_jax.eval.budget.BudgetBlock` (its docstring describes the ladder); this
module holds what the report needs without the harness.
"""
from __future__ import annotations

import re
from typing import NamedTuple, Sequence

from ipgan_jax.errors import ConfigError
from ipgan_jax.eval.records import AttackRecord
from ipgan_jax.metrics import wilson_interval

BLOCK = "budget"
_NAME = re.compile(r"^(?P<member>[^/@]+)/(?P<restarts>\d+)x(?P<steps>\d+)(#\d+)?$")   # #k: a merge's rename


def parse_ladder(ladder) -> tuple:
    """``eval.budget.ladder`` -> ((restarts, steps), ...), checked.

    Args:
        ladder: a sequence of (restarts, iterations) pairs, e.g. ((1, 100), (2, 100), (2, 200)).

    Returns:
        The rungs as int pairs.

    Raises:
        ConfigError: an empty ladder, a rung that is not two positive integers, or a rung whose budget
            (restarts x iterations) is less than twice the one before (the stop rule compares doublings).
    """
    try:
        rungs = tuple((int(r), int(s)) for r, s in ladder)
    except (TypeError, ValueError):
        raise ConfigError(f"eval.budget.ladder must be (restarts, iterations) pairs, got {ladder!r}") from None
    if not rungs:
        raise ConfigError("eval.budget.ladder is empty")
    for i, (r, s) in enumerate(rungs):
        if r < 1 or s < 1:
            raise ConfigError(f"eval.budget.ladder rung {(r, s)}: restarts and iterations must be >= 1")
        if i and r * s < 2 * rungs[i - 1][0] * rungs[i - 1][1]:
            raise ConfigError(f"eval.budget.ladder rung {(r, s)} is less than twice the budget of {rungs[i - 1]}: "
                              "each rung must at least double restarts x iterations")
    return rungs


def record_name(member: str, restarts: int, steps: int) -> str:
    """Attack name of a ladder record: ``'apgd_ce/2x500'``."""
    return f"{member}/{restarts}x{steps}"


def rung_of(attack: str) -> tuple:
    """(member, restarts, steps) of a ladder record's attack name (:func:`record_name`)."""
    m = _NAME.match(attack)
    if m is None:
        raise ValueError(f"not a budget-ladder record name: {attack!r}")
    return m["member"], int(m["restarts"]), int(m["steps"])


def converged_at(accs: Sequence[float], tolerance: float) -> int | None:
    """The stop rule: the first rung (index >= 1) whose robust accuracy is within ``tolerance`` of the rung
    before (the budget doubled and the number moved by less than the tolerance); None if no rung is.

    Args:
        accs: robust accuracy (rates in [0, 1]) after each rung, cumulative (non-increasing).
        tolerance: the largest change (a rate: 0.005 is half a point) that counts as converged.
    """
    for i in range(1, len(accs)):
        if accs[i - 1] - accs[i] < tolerance:
            return i
    return None


class LadderRow(NamedTuple):
    """One rung of a (classifier, defense)'s ladder, as the report shows it."""
    restarts: int
    steps: int
    members: tuple        # the member (and view) names run at this rung
    attacked: int         # images still robust before the rung (the ones its first member attacked)
    robust_correct: int   # images robust after the rung (cumulative worst case)
    n: int
    broke: tuple = ()     # per member (and view), the images it broke that every record before it left robust

    @property
    def robust_acc(self) -> float:
        return self.robust_correct / self.n if self.n else float("nan")

    @property
    def robust_ci(self) -> tuple:
        return wilson_interval(self.robust_correct, self.n)


def ladder_rows(records: Sequence[AttackRecord]) -> list:
    """The rungs of one (classifier, defense)'s ``budget`` records, in run order.

    Args:
        records: the block's records of one (classifier, defense), in the order they were run.

    Returns:
        [:class:`LadderRow`]: per rung, the cumulative robust count after its last record, and how many images each
        of its records broke that the records before it had left robust.
    """
    groups: list = []
    for r in records:
        member, restarts, steps = rung_of(r.attack)
        if not groups or groups[-1][0] != (restarts, steps):
            groups.append(((restarts, steps), []))
        groups[-1][1].append((member, r))
    rows = []
    for (restarts, steps), seen in groups:
        last = seen[-1][1]
        before = rows[-1].robust_correct if rows else int(last.pipe_clean.sum())
        left, broke = before, []
        for _, r in seen:
            now = int(r.robust.sum())
            broke.append(left - now)
            left = now
        rows.append(LadderRow(restarts, steps, tuple(m for m, _ in seen), before, int(last.robust.sum()), last.n,
                              tuple(broke)))
    return rows
