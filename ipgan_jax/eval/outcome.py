"""What an evaluation produces, as data: the items the blocks yield and the :class:`RunOutcome` that holds them.

The blocks of ``evaluate`` (and ``checks``) are generators: each yields items, and the run files every item into
one :class:`RunOutcome` with :meth:`RunOutcome.add`. ``--merge`` (``merge.merge_results``) builds a RunOutcome from
the per-image records of earlier runs. Either becomes an immutable
:class:`~ipgan_jax.eval.resultset.ResultSet` with the run's meta (``ResultSet.from_outcome``), which ``report``
renders and writes; nothing else is read from the harness.

Items:

* :class:`~ipgan_jax.eval.records.AttackRecord`: one attack's per-image outcome on one (classifier, defense);
* :class:`Check`: one sanity check's verdict (``ipgan_jax.eval.checks``);
* :class:`Curve`: robust accuracy against eps for one (classifier, defense);
* :class:`AttackLog`: the per-call log of a Python-level suite member (AutoAttack's cascade);
* :class:`Samples`: the first images of one attack, for the figures.
"""
from __future__ import annotations

import dataclasses
from typing import Mapping, NamedTuple

from ipgan_jax.errors import UserError
from ipgan_jax.eval.records import AttackRecord


class ResultsError(UserError, ValueError):
    """Results that cannot be read or combined: a results.json missing, not JSON, of another schema or with a
    damaged record; runs that cannot be merged or compared."""


CROSS_BLOCK = "whitebox_transfer"   # the white-box suite crafted through one pipeline, judged on another


def cross_attack_name(attack: str, source: str) -> str:
    """Record name of white-box suite member ``attack`` crafted through ``source``'s pipeline."""
    return f"{attack}@{source}"


def cross_source(attack: str) -> str:
    """The pipeline a ``whitebox_transfer`` record's examples were crafted through."""
    return attack.split("@", 1)[1]   # suite member names never contain "@"


class Check(NamedTuple):
    """One sanity check on one (classifier, defense); ``name`` is one of ``checks.CHECKS``."""
    name: str
    classifier: str
    defense: str
    ok: bool | None      # None: skipped (the blocks it compares did not run)
    detail: str
    values: dict


class Curve(NamedTuple):
    """Robust accuracy against eps for one (classifier, defense).

    ``values``: ``eps`` (list, pixel units), ``oblivious`` / ``whitebox`` / ``oblivious_dsr`` (lists of rates in
    [0, 1], one per eps) and ``n`` (images)."""
    classifier: str
    defense: str
    values: dict


class AttackLog(NamedTuple):
    """A Python-level suite member's log of one batch: ``block``, ``classifier``, ``attacked`` (the defense),
    ``eps`` and the member's own counts (AutoAttack: ``n``, ``clean``, ``broken`` per attack, ``robust``)."""
    values: dict


class Samples(NamedTuple):
    """The first images of one attack for the figures: x, x_adv, d(x_adv), each float [k, H, W, C] in [0, 1]."""
    classifier: str
    attack: str
    defense: str
    images: tuple


@dataclasses.dataclass
class RunOutcome:
    """Everything a run (or a merge of runs) reports.

    Attributes:
        classifiers: the classifiers evaluated, in table order.
        defenses: the defenses evaluated, in table order ('none' is the identity).
        records: (block, attack, classifier, defense) -> AttackRecord.
        pipe_clean: (classifier, defense) -> bool [n], f(d(x)) == y on the clean images.
        curves: (classifier, defense) -> ``Curve.values``.
        checks: the sanity checks, in the order they ran.
        attack_logs: ``AttackLog.values`` of every Python-level member call.
        samples: (classifier, attack, defense) -> ``Samples.images``.
        notes: remarks for the reader (a merge's cuts and renames).
    """
    classifiers: list
    defenses: list
    records: dict = dataclasses.field(default_factory=dict)
    pipe_clean: dict = dataclasses.field(default_factory=dict)
    curves: dict = dataclasses.field(default_factory=dict)
    checks: list = dataclasses.field(default_factory=list)
    attack_logs: list = dataclasses.field(default_factory=list)
    samples: dict = dataclasses.field(default_factory=dict)
    notes: list = dataclasses.field(default_factory=list)

    def add(self, item) -> None:
        """File one item a block yielded (module docstring); any other type is a TypeError."""
        if isinstance(item, AttackRecord):
            self.records[(item.block, item.attack, item.classifier, item.defense)] = item
        elif isinstance(item, Check):
            self.checks.append(item)
        elif isinstance(item, Curve):
            self.curves[(item.classifier, item.defense)] = item.values
        elif isinstance(item, AttackLog):
            self.attack_logs.append(item.values)
        elif isinstance(item, Samples):
            self.samples[(item.classifier, item.attack, item.defense)] = item.images
        else:
            raise TypeError(f"a block yielded {type(item).__name__}; blocks yield AttackRecord, Check, Curve, "
                            "AttackLog or Samples")

    def block_records(self, block: str, clf: str, d: str) -> list:
        """:func:`block_records` of this run's records."""
        return block_records(self.records, block, clf, d)

    def cross_records(self, clf: str, d: str) -> dict:
        """:func:`cross_records` of this run's records."""
        return cross_records(self.records, clf, d)


def block_records(records: Mapping, block: str, clf: str, d: str) -> list:
    """The records of one block on one (classifier, defense), in the order they were added.

    Args:
        records: (block, attack, classifier, defense) -> AttackRecord.
        block, clf, d: the cell.
    """
    return [r for (b, _, c, dd), r in records.items() if (b, c, dd) == (block, clf, d)]


def cross_records(records: Mapping, clf: str, d: str) -> dict:
    """{source defense: [records]}: the white-box suite crafted through each other pipeline, judged on ``d``
    (block ``whitebox_transfer``), in the order they were run."""
    out: dict = {}
    for r in block_records(records, CROSS_BLOCK, clf, d):
        out.setdefault(cross_source(r.attack), []).append(r)
    return out
