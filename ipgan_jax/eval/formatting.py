"""How the tables print numbers and names (``report``, ``render`` and ``paired`` share these)."""
from __future__ import annotations

import math

from ipgan_jax.eval.paper import CLASSIFIER_NAMES, DEFENSE_NAMES


def pct(v) -> str:
    """A rate in [0, 1] as a percentage with 2 decimals; '-' for None or NaN."""
    return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{100 * v:.2f}"


def interval(lo_hi) -> str:
    """A (low, high) interval of rates as '(lo-hi)' in percent."""
    return f"({pct(lo_hi[0])}-{pct(lo_hi[1])})"


def table_lines(header: list, rows: list) -> list:
    """A Markdown table as lines: the header, the rule, one line per row (lists of cell strings)."""
    return ["| " + " | ".join(header) + " |", "|---" * len(header) + "|"] + ["| " + " | ".join(r) + " |" for r in rows]


def classifier_name(c: str) -> str:
    """The paper's name of a classifier ('lenet' -> 'LeNet'); unknown names unchanged."""
    return CLASSIFIER_NAMES.get(c, c)


def defense_name(d: str) -> str:
    """The paper's name of a defense; a tagged copy ``<defense>:<tag>`` is its method's name with the tag."""
    base, _, tag = d.partition(":")
    return f"{DEFENSE_NAMES.get(base, base)}, copy {tag}" if tag else DEFENSE_NAMES.get(d, d)
