"""Lists in the config: the one parser of every list of names (classifiers, defenses, attacks,
blocks, surrogates, ...), given as a comma string (``"fgsm,pgd"``, as on the command line) or a
sequence. It imports nothing of the package, so any module may use it."""
from __future__ import annotations

from collections.abc import Iterable


def parse_names(value: str | Iterable) -> tuple[str, ...]:
    """A config list as a tuple of names.

    Args:
        value: a comma string (``"fgsm, pgd,"``) or a sequence of names (``("fgsm", "pgd")``).

    Returns:
        The stripped, non-empty names in order, repeats kept: ``("fgsm", "pgd")``; ``()`` for ``""``.
    """
    items = value.split(",") if isinstance(value, str) else value
    return tuple(n for n in (str(v).strip() for v in items) if n)
