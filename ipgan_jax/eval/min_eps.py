"""Minimal eps per image as data: the records of the ``min_eps`` block and what the report reads from them.

The block (:class:`ipgan_jax.eval.eps_search.MinEpsBlock`) finds, per image, the smallest eps of a grid of levels
(``eval.min_eps.step``, ``2 step``, ..., ``eval.min_eps.max_eps``) at which the white-box suite breaks f(d(.)), by
bisection over the levels. It keeps one record per level, attack ``eps=<level>``: an image counts as robust at a level
when the smallest level at which the search broke it lies above (an x_adv found at eps e is a valid one at every
larger eps). Each minimal eps is an upper bound under the suite (a stronger attack may break the image at a smaller
eps), each robust accuracy an upper bound too, and the records' robust accuracy per level is the robust-accuracy
curve on a fine grid.
"""
from __future__ import annotations

import re
from typing import NamedTuple, Sequence

import numpy as np

from ipgan_jax.errors import ConfigError
from ipgan_jax.eval.records import AttackRecord

BLOCK = "min_eps"
_NAME = re.compile(r"^eps=(?P<eps>[0-9.]+)(#\d+)?$")   # #k: a merge's rename


def levels(step: float, max_eps: float) -> np.ndarray:
    """The eps grid of the search: ``step, 2 step, ..., max_eps`` (pixel units).

    Raises:
        ConfigError: a step that is not positive, or a max_eps that is not a multiple of it in (0, 1].
    """
    step, max_eps = float(step), float(max_eps)
    k = round(max_eps / step) if step > 0 else 0
    if not (step > 0 and 0 < max_eps <= 1 and k >= 1 and abs(k * step - max_eps) < 1e-9):
        raise ConfigError(f"eval.min_eps: step={step} and max_eps={max_eps} must give a grid step, 2 step, ..., "
                          "max_eps in (0, 1] (max_eps a multiple of step)")
    return np.round(step * np.arange(1, k + 1), 6)


def level_name(eps: float) -> str:
    """The attack name of a level's record: ``'eps=0.3'``."""
    return f"eps={float(eps):g}"


def eps_of(attack: str) -> float:
    """The level of a ``min_eps`` record's attack name (:func:`level_name`)."""
    m = _NAME.match(attack)
    if m is None:
        raise ValueError(f"not a min_eps record name: {attack!r}")
    return float(m["eps"])


def minimal_eps(records: Sequence[AttackRecord]) -> np.ndarray:
    """Per image, the smallest level at which the search broke f(d(.)) (an upper bound on its minimal eps).

    Args:
        records: one (classifier, defense)'s ``min_eps`` records, one per level, any order.

    Returns:
        float [n]: 0 for an image f(d(x)) already gets wrong, +inf for one no level up to the largest broke.
    """
    recs = sorted(records, key=lambda r: eps_of(r.attack))
    out = np.full(recs[0].n, np.inf)
    for r in reversed(recs):
        out[~r.robust] = eps_of(r.attack)
    out[~recs[0].pipe_clean] = 0.0
    return out


class MinEpsSummary(NamedTuple):
    """The distribution of one (classifier, defense)'s minimal eps (upper bounds under the suite)."""
    n: int
    median: float       # over every image (0 for clean errors, inf for images never broken)
    q25: float
    q75: float
    curve: dict         # level -> robust accuracy at that level (a rate in [0, 1])


def summarize(records: Sequence[AttackRecord]) -> MinEpsSummary:
    """:class:`MinEpsSummary` of one (classifier, defense)'s ``min_eps`` records."""
    e = minimal_eps(records)
    q25, med, q75 = np.quantile(e, [0.25, 0.5, 0.75], method="lower")
    curve = {eps_of(r.attack): float(np.mean(r.robust)) for r in sorted(records, key=lambda r: eps_of(r.attack))}
    return MinEpsSummary(len(e), float(med), float(q25), float(q75), curve)
