"""One evaluation run read back from its ``results.json``: an immutable set of per-image records.

``run_eval.py`` writes ``results.json`` (schema ``ipgan-eval/2``, :data:`SCHEMAS`): the run's meta (models with
their sha256 and fingerprint, eps, suites, ...), one record per (block, attack, classifier, defense) with a bit per
test image (``records.record_to_json``) and the clean bits f(d(x)) per pipeline. A :class:`ResultSet` holds those
records as :class:`~ipgan_jax.eval.records.AttackRecord` s and computes every rate from them
(``records.attack_metrics`` / ``records.block_metrics``): the docs tables are rendered from it
(``ipgan_jax.eval.render``), never from a number typed by hand.

    rs = ResultSet.load("results/mnist/table1")          # a run's out_dir or its results.json
    rs.block_metrics("oblivious", "lenet", "ipgan").dsr  # in [0, 1]

"""
from __future__ import annotations

import dataclasses
import json
import types
from pathlib import Path
from typing import Mapping

import numpy as np

from ipgan_jax.eval.merge import merge_results, merged_meta
from ipgan_jax.eval.outcome import Check, ResultsError, RunOutcome, block_records, cross_records
from ipgan_jax.eval.paired import PairedComparison, compare
from ipgan_jax.eval.records import (
    AttackMetrics,
    AttackRecord,
    BlockMetrics,
    attack_metrics,
    block_metrics,
    record_from_json,
    unpack_bits,
)

SCHEMAS = ("ipgan-eval/2",)


def results_path(src: str | Path) -> Path:
    """``src`` (a run's out_dir or its results.json) -> the results.json path."""
    p = Path(src)
    return p / "results.json" if p.is_dir() else p


def _read(path: Path) -> dict:
    """The parsed results.json at ``path`` with its schema and top-level fields checked (records not decoded)."""
    if not path.is_file():
        raise ResultsError(f"no evaluation results at {path} (give a run_eval.py out_dir or its results.json)")
    try:
        data = json.loads(path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ResultsError(f"{path} is not valid JSON ({e}); it may be truncated: rerun that evaluation") from e
    schema = data.get("schema") if isinstance(data, dict) else None
    if schema not in SCHEMAS:
        raise ResultsError(f"{path} has schema {schema!r}; this version reads {', '.join(SCHEMAS)}")
    for k in ("meta", "records", "clean"):
        if k not in data:
            raise ResultsError(f"{path} has no {k!r} field: not a complete run_eval.py output")
    # a curve-only run (--blocks curve) keeps its per-eps rates in 'curves' and no per-image records
    if (not isinstance(data["records"], list) or not isinstance(data["clean"], list)
            or not (data["records"] or data.get("curves"))):
        raise ResultsError(f"{path}: 'records' must be a list of per-image records, non-empty unless the run has "
                           f"'curves', and 'clean' a list (got {type(data['records']).__name__} of "
                           f"{len(data['records'])}): nothing to combine")
    return data


def _decode(data: dict, path: Path) -> tuple[list, dict]:
    """([AttackRecord], {(classifier, defense): bool[n]}) of a results.json; a damaged entry is a ResultsError."""
    records = []
    for i, d in enumerate(data["records"]):
        try:
            records.append(record_from_json(d))
        except (KeyError, ValueError, TypeError, AttributeError) as e:
            what = "/".join(str(d.get(k, "?")) for k in ("block", "attack", "classifier", "defense")) \
                if isinstance(d, dict) else type(d).__name__
            detail = f"no {e} field" if isinstance(e, KeyError) else str(e)
            raise ResultsError(f"{path}: record {i} ({what}) is damaged ({detail}); rerun that evaluation") from None
    clean = {}
    for i, c in enumerate(data["clean"]):
        try:
            clean[(c["classifier"], c["defense"])] = unpack_bits(c["correct"], int(c["n"]))
        except (KeyError, ValueError, TypeError) as e:
            raise ResultsError(f"{path}: clean entry {i} is damaged ({type(e).__name__}: {e}); rerun that "
                               "evaluation") from None
    return records, clean


@dataclasses.dataclass(frozen=True)
class ResultSet:
    """The per-image records of one evaluation run, read-only.

    Attributes:
        meta: the run's ``meta`` (classifiers, defenses, eps, models with sha256 and fingerprint, ...).
        records: {(block, attack, classifier, defense): AttackRecord}, in the order the run wrote them.
        clean: {(classifier, defense): bool[n]}: f(d(x)) = y on each of the first n test images.
        source: the results.json it was read from (None when built in memory).
        checks: the run's sanity checks (:class:`~ipgan_jax.eval.outcome.Check`).
        attack_logs: the logs of its Python-level suite members (dicts).
        curves: {(classifier, defense): curve values} (``outcome.Curve.values``).
    """
    meta: Mapping
    records: Mapping
    clean: Mapping
    source: Path | None = None
    checks: tuple = ()
    attack_logs: tuple = ()
    curves: Mapping = dataclasses.field(default_factory=lambda: types.MappingProxyType({}))

    @classmethod
    def load(cls, src: str | Path) -> "ResultSet":
        """Read one run's results.json; one clear error for a missing, corrupt or foreign file.

        Args:
            src: a ``run_eval.py`` out_dir or its ``results.json``.

        Raises:
            ResultsError: the file is missing, not JSON, of another schema, or has a damaged record.
        """
        path = results_path(src)
        return cls.from_json(_read(path), path)

    @classmethod
    def from_json(cls, data: dict, source: Path | None = None) -> "ResultSet":
        """From a parsed results.json (every record decoded and checked)."""
        records, clean = _decode(data, source)
        recs = {(r.block, r.attack, r.classifier, r.defense): r for r in records}
        try:
            checks = tuple(Check(c["name"], c["classifier"], c["defense"], c["ok"], c["detail"], c.get("values", {}))
                           for c in data.get("sanity_checks", []))
            curves = {(c["classifier"], c["defense"]): {k: v for k, v in c.items()
                                                         if k not in ("classifier", "defense")}
                      for c in data.get("curves", [])}
        except (KeyError, TypeError) as e:
            raise ResultsError(f"{source}: a sanity check or curve entry is damaged ({type(e).__name__}: {e}); rerun "
                               "that evaluation") from None
        return cls(meta=types.MappingProxyType(dict(data["meta"])), records=types.MappingProxyType(recs),
                   clean=types.MappingProxyType(clean), source=source, checks=checks,
                   attack_logs=tuple(data.get("attack_logs", [])), curves=types.MappingProxyType(curves))

    @classmethod
    def from_outcome(cls, outcome: RunOutcome, meta: Mapping) -> "ResultSet":
        """A run's (or a merge's) :class:`~ipgan_jax.eval.outcome.RunOutcome` with its meta (whose
        ``classifiers`` / ``defenses`` order the tables); the samples stay behind (the figures take them)."""
        return cls(meta=types.MappingProxyType(dict(meta)), records=types.MappingProxyType(dict(outcome.records)),
                   clean=types.MappingProxyType(dict(outcome.pipe_clean)), checks=tuple(outcome.checks),
                   attack_logs=tuple(outcome.attack_logs), curves=types.MappingProxyType(dict(outcome.curves)))

    def merge(self, *others: "ResultSet", labels=None, classifiers=None, defenses=None,
              num_examples=None) -> "ResultSet":
        """This run and ``others`` pooled into one worst case per image (``merge.merge_results``).

        Args:
            *others: the other runs (none: only this one, cut to ``num_examples``).
            labels: a name per run for the notes and errors (default: each run's source path).
            classifiers, defenses: keep only these.
            num_examples: keep only the first N test images.

        Returns:
            The merged run; its meta keeps the sources' metas under ``merged_from`` and the merge's ``notes``.

        Raises:
            MergeError: runs of other weights, images, dataset or eps, or nothing left to merge.
        """
        runs = [self, *others]
        labels = list(labels) if labels is not None else [str(r.source) for r in runs]
        mr = merge_results(runs, labels, classifiers=classifiers, defenses=defenses, num_examples=num_examples)
        return ResultSet.from_outcome(mr, merged_meta(runs, labels, mr))

    def compare(self, defense: str, other: "ResultSet", other_defense: str, labels=None, **kw) -> PairedComparison:
        """``defense`` in this run against ``other_defense`` in ``other``, image by image (``paired.compare``;
        ``kw``: ``classifier``, ``block``, ``num_examples``)."""
        la, lb = labels if labels is not None else (str(self.source), str(other.source))
        return compare(self, la, defense, other, lb, other_defense, **kw)

    def _ordered(self, key: str, have: set) -> list:
        listed = list(self.meta.get(key, []))
        return [x for x in listed if x in have] + sorted(have - set(listed))

    @property
    def classifiers(self) -> list:
        """The classifiers in the run's order (those with a record, clean bits or a curve)."""
        return self._ordered("classifiers", {k[2] for k in self.records} | {c for c, _ in self.clean}
                             | {c for c, _ in self.curves})

    @property
    def defenses(self) -> list:
        """The defenses in the run's order (those with a record, clean bits or a curve)."""
        return self._ordered("defenses", {k[3] for k in self.records} | {d for _, d in self.clean}
                             | {d for _, d in self.curves})

    def attacks(self, block: str, bounded: bool = True) -> list:
        """The attacks of ``block`` (bounded ones by default), in the run's order."""
        return list(dict.fromkeys(a for (b, a, _, _), r in self.records.items() if b == block and r.bounded == bounded))

    def block_records(self, block: str, classifier: str, defense: str) -> list:
        """Every record of one (block, classifier, defense), in the run's order."""
        return block_records(self.records, block, classifier, defense)

    def cross_records(self, classifier: str, defense: str) -> dict:
        """{source defense: [records]} of the white-box suite crafted through other pipelines, judged on
        ``defense`` (``outcome.cross_records``)."""
        return cross_records(self.records, classifier, defense)

    def block_metrics(self, block: str, classifier: str, defense: str) -> BlockMetrics | None:
        """Worst case per image over the block's bounded attacks (``records.block_metrics``); None if none ran."""
        return block_metrics(self.block_records(block, classifier, defense))

    def attack_metrics(self, block: str, attack: str, classifier: str, defense: str) -> AttackMetrics | None:
        """One attack's rates (``records.attack_metrics``); None if it did not run on that cell."""
        r = self.records.get((block, attack, classifier, defense))
        return None if r is None else attack_metrics(r)

    def clean_accuracy(self, classifier: str, defense: str) -> float | None:
        """f(d(x)) accuracy in [0, 1] over the run's images; None if the pipeline was not evaluated."""
        v = self.clean.get((classifier, defense))
        return None if v is None or not v.size else float(np.mean(v))

    def model(self, key: str) -> dict | None:
        """``meta.models[key]`` (path, sha256, fingerprint, source) of e.g. ``defenses/ipgan/lenet``."""
        return (self.meta.get("models") or {}).get(key)


__all__ = ["SCHEMAS", "ResultSet", "ResultsError", "AttackRecord", "results_path"]
