"""Merge several ``run_eval.py`` results into one per-image worst case (no attack is run).

    python run_eval.py --merge workdir/mnist/eval_a,workdir/mnist/eval_b --config.eval.out_dir=workdir/mnist/eval_ab

Two runs on the same trained models and the same first-n test images (e.g. PGD + AutoAttack in
one run, Square-5000 in another) each report a worst case over their own attacks; the honest
number is the worst case per image over *all* of them. :func:`merge_results` pools the
per-image records of every run, so a block's robust accuracy is again ``records.block_metrics``
over one set of images:

* records of one (block, classifier, defense) are cut to the smallest n among them (the common
  prefix of the test images) and the cut is reported;
* an attack name met again in a later run gets a suffix ``#2``, ``#3`` ... (a cross-pipeline name
  ``member@source`` becomes ``member#2@source``), so both are kept and both count;
* ``f_clean`` (f(x) = y, which needs no defense) must agree wherever two runs saw the same image
  with the same classifier; otherwise the runs used different weights or images and merging them
  is refused (``MergeError``). Clean-through-the-pipeline bits that disagree are refused too for a
  deterministic defense; for Defense-GAN (:data:`SEARCH_DEFENSES`, whose z-search depends on the
  evaluation's settings) they are combined conservatively: an image is clean-correct only if it is in every run;
* the models of each run (``meta.models``: path, sha256 and fingerprint of every classifier and defense it
  evaluated) must agree wherever two runs name the same model: different weights under one name are refused;
* the runs' dataset and eps must agree; sanity checks are kept (each tagged with its run);
  AutoAttack logs are kept per run; robust-accuracy curves are not merged (they are not per image);
* ``num_examples`` (``--merge ... --num_examples N``) cuts every group further to the first N images,
  so a 1000-image run can be read on the first 100 beside 100-image runs; with it a single run is
  accepted (that run's worst case on its first N images).
"""
from __future__ import annotations

import dataclasses

import numpy as np

from ipgan_jax.eval.outcome import ResultsError, RunOutcome

# defenses whose test-time output depends on evaluation settings (Defense-GAN's z-search: seed, steps, restarts),
# so two runs may disagree on clean inputs; every other defense is a deterministic function of its params
SEARCH_DEFENSES = ("defense_gan",)


class MergeError(ResultsError):
    """Runs that cannot be merged (other weights, images, dataset or eps; too few runs)."""


def _suffixed(attack: str, k: int) -> str:
    member, at, source = attack.partition("@")
    return f"{member}#{k}{at}{source}"


def _check_same(runs: list, labels: list, key: str, default=None) -> None:
    """Refuse runs whose meta differ in ``key`` (``default``: the value of runs that do not record it)."""
    vals = {lab: run.meta.get(key, default) for run, lab in zip(runs, labels)}
    if len(set(map(repr, vals.values()))) > 1:
        raise MergeError(f"the runs differ in {key}: {vals}; only runs of one dataset, eps and test slice can be "
                         "merged")


def check_same_models(runs: list, labels: list, keep, error=None) -> list:
    """Refuse runs (``ResultSet`` s) that evaluated different weights under one name: every model key
    (``classifiers/<c>``, ``defenses/<d>/<c>``, kept by ``keep(c, d)``) recorded in ``meta.models`` by
    two runs must have one fingerprint (``error``, default :class:`MergeError`, names the key and the runs).
    Returns notes for runs that record no fingerprints (written before run_eval.py recorded them)."""
    error = error or MergeError
    seen: dict = {}
    notes = []
    for run, lab in zip(runs, labels):
        models = run.meta.get("models")
        if models is None:
            notes.append(f"{lab} records no model fingerprints (an older run_eval.py): its weights were not checked")
            continue
        for key, rec in models.items():
            parts = key.split("/")
            c, d = (parts[1], None) if parts[0] == "classifiers" else (parts[-1], parts[1])
            if not keep(c, d):
                continue
            fp = rec.get("fingerprint")
            if key in seen and fp != seen[key][1]:
                raise error(f"{key} differs between {seen[key][0]} ({str(seen[key][1])[:12]}) and {lab} "
                            f"({str(fp)[:12]}): the runs evaluated different weights under one name; "
                            "not combining them")
            seen.setdefault(key, (lab, fp))
    return notes


def _and_prefix(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, bool]:
    """Elementwise AND on the common prefix, the longer tail kept; and whether the prefix agreed."""
    m = min(len(a), len(b))
    agree = bool(np.array_equal(a[:m], b[:m]))
    out = (a if len(a) >= len(b) else b).copy()
    out[:m] = a[:m] & b[:m]
    return out, agree


def merge_results(runs: list, labels: list, classifiers=None, defenses=None, num_examples=None) -> RunOutcome:
    """Pool the per-image records of several runs into one worst case per image (module docstring).

    Args:
        runs: the runs, each a :class:`~ipgan_jax.eval.resultset.ResultSet`; none is changed.
        labels: a name per run, for the notes and errors (e.g. its path).
        classifiers, defenses: keep only these (default: every one in the runs).
        num_examples: keep only the first N test images (default: every image all runs of a group saw); with it
            one run is enough.

    Returns:
        A :class:`RunOutcome` (no curves, no samples), ``notes`` saying what was cut or renamed.

    Raises:
        MergeError: runs of other weights, images, dataset or eps; too few runs; nothing left to merge.
    """
    if num_examples is not None and (isinstance(num_examples, bool) or not isinstance(num_examples, int)
                                     or num_examples < 1):
        raise MergeError(f"num_examples must be a positive integer, got {num_examples!r}")
    if len(runs) < (1 if num_examples is not None else 2):
        raise MergeError(f"--merge needs at least two runs (or one with --num_examples), got {len(runs)}")
    _check_same(runs, labels, "dataset")
    _check_same(runs, labels, "eps")
    _check_same(runs, labels, "first_test_image", default=0)   # records are per image index: one slice
    def keep(c, d):
        return (classifiers is None or c in classifiers) and (defenses is None or d in defenses)

    notes: list = check_same_models(runs, labels, lambda c, d: keep(c, d) if d is not None else
                                    (classifiers is None or c in classifiers))
    recs: list = []          # (label, AttackRecord), in run order
    keys_of = {lab: (run.meta.get("seed", 0), run.meta.get("run_nonce", 0)) for run, lab in zip(runs, labels)}
    same_keys = {lab: next((o for o in labels[:i] if keys_of[o] == keys_of[lab]), None)
                 for i, lab in enumerate(labels)}
    for run, lab in zip(runs, labels):
        recs += [(lab, r) for r in run.records.values() if keep(r.classifier, r.defense)]
    if not recs:
        raise MergeError(f"no records left to merge (classifiers={classifiers}, defenses={defenses})")

    # f(x) = y needs no defense: two runs must agree on it wherever both saw the image
    f_clean: dict = {}
    for lab, r in recs:
        prev = f_clean.get(r.classifier)
        if prev is None:
            f_clean[r.classifier] = (lab, r.f_clean)
            continue
        merged, agree = _and_prefix(prev[1], r.f_clean)
        if not agree:
            m = min(len(prev[1]), r.n)
            bad = int(np.sum(prev[1][:m] != r.f_clean[:m]))
            raise MergeError(f"{r.classifier}'s clean predictions differ between {prev[0]} and {lab} on {bad} "
                             "image(s): the runs used different classifier weights or test images; not merging")
        f_clean[r.classifier] = (prev[0], merged)

    # clean through the pipeline, per (classifier, defense): conservative AND over the runs
    pipe: dict = {}
    for run, lab in zip(runs, labels):
        for k, v in run.clean.items():
            if not keep(*k):
                continue
            if k in pipe:
                prev, first = pipe[k]
                m = min(len(prev), len(v), num_examples or len(v))   # the images the merge keeps
                bad = int(np.sum(prev[:m] != v[:m]))
                v, _ = _and_prefix(prev, v)
                if bad:
                    if k[1].partition(":")[0] not in SEARCH_DEFENSES:
                        raise MergeError(f"{k[1]} on {k[0]}: clean f(d(x)) differs between {first} and {lab} on {bad} "
                                         "image(s), and this defense is deterministic: the runs evaluated different "
                                         "models (or test images); not merging")
                    notes.append(f"{k[1]} on {k[0]}: clean f(d(x)) differs between runs (its z-search depends on the "
                                 "evaluation's seed and budget); an image counts as clean-correct only if it is in "
                                 "every run")
                pipe[k] = (v, first)
            else:
                pipe[k] = (v, lab)
    pipe = {k: v for k, (v, _) in pipe.items()}
    if num_examples is not None:
        pipe = {k: v[:num_examples] for k, v in pipe.items()}

    # one name per record; one image prefix per (block, classifier, defense)
    records: dict = {}
    for lab, r in recs:
        name, k = r.attack, 1
        while (r.block, name, r.classifier, r.defense) in records:
            k += 1
            name = _suffixed(r.attack, k)
        if name != r.attack:
            notes.append(f"{r.block}/{r.classifier}/{r.defense}: {r.attack} of {lab} kept as {name}")
            if same_keys.get(lab):
                notes.append(f"{lab} used the seed and eval.run_nonce of {same_keys[lab]}: its {r.attack} repeats the "
                             "same random starts and adds no restart (rerun it with another --config.eval.run_nonce)")
        records[(r.block, name, r.classifier, r.defense)] = dataclasses.replace(r, attack=name)
    groups: dict = {}
    for key, r in records.items():
        groups.setdefault((r.block, r.classifier, r.defense), []).append(key)
    for (b, c, d), keys in groups.items():
        m = min(records[k].n for k in keys)
        if any(records[k].n != m for k in keys):
            notes.append(f"{b}/{c}/{d}: records cut to the first {m} images, the ones every run evaluated "
                         f"(had {sorted({records[k].n for k in keys})})")
        if num_examples is not None and num_examples < m:
            notes.append(f"{b}/{c}/{d}: records cut to the first {num_examples} of {m} images (--num_examples)")
            m = num_examples
        for k in keys:
            r = records[k].take(m)
            p = pipe.get((c, d))   # clean-through-the-pipeline bits, AND over the runs
            if p is not None and len(p) >= m:
                r.pipe_clean = r.pipe_clean & p[:m]
            records[k] = r

    checks, logs = [], []
    for run, lab in zip(runs, labels):
        checks += [ch._replace(detail=f"{ch.detail} [{lab}]") for ch in run.checks if keep(ch.classifier, ch.defense)]
        logs += [{**log, "block": f"{log['block']} ({lab})"} for log in run.attack_logs]
        if run.curves:
            notes.append(f"{lab}: its robust-accuracy curves are not merged (not per image); see its own results")
    def order(key, seen):   # the runs' own order of their classifiers / defenses, only those in ``seen``
        return list(dict.fromkeys(x for run in runs for x in run.meta.get(key, []) if x in seen))
    seen_c = {r.classifier for r in records.values()}
    seen_d = {r.defense for r in records.values()} | {d for (_, d) in pipe}
    return RunOutcome(order("classifiers", seen_c), order("defenses", seen_d), records=records, pipe_clean=pipe,
                      checks=checks, attack_logs=logs, notes=notes)


def merged_meta(runs: list, labels: list, mr: RunOutcome) -> dict:
    """results.json meta of a merged run: the sources' metas kept whole under ``merged_from``."""
    metas = [dict(run.meta) for run in runs]
    n = max([r.n for r in mr.records.values()] + [len(v) for v in mr.pipe_clean.values()], default=0)
    return {"merged_from": [{"path": lab, "meta": m} for m, lab in zip(metas, labels)],
            "num_examples": n, "dataset": metas[0].get("dataset"), "eps": metas[0].get("eps"),
            "classifiers": mr.classifiers, "defenses": mr.defenses,
            "blocks": list(dict.fromkeys(b for (b, _, _, _) in mr.records)),
            "seconds": round(sum(float(m.get("seconds", 0.0)) for m in metas), 1), "notes": mr.notes,
            "models": {k: v for m in metas for k, v in m.get("models", {}).items()}}
