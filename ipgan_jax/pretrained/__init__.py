"""Trained models that ship with the repository: one msgpack file per model, and a manifest.

Layout (``pretrained/<dataset>/``, 50 MB at most in all)::

    MANIFEST.json                                  # one entry per model, see below
    classifiers/<name>.msgpack                     # target classifiers and surrogates (params)
    defenses/<defense>/<classifier>.msgpack        # exported defense params (what ``defend`` reads)
    train_states/<defense>/<classifier>.msgpack    # full train state (step, params, optimizer state):
                                                   # continue training on another machine

Each file is ``flax.serialization.msgpack_serialize`` of a float32 state dict (no pickle), so a
user can read one without this package: ``flax.serialization.msgpack_restore(open(f, 'rb').read())``
gives the nested params dict that ``module.apply({'params': p}, x)`` takes.

A manifest entry (key = the file's path without ``.msgpack``, e.g. ``defenses/ipgan/lenet``) holds:
``file``, ``sha256``, ``size``, ``num_params``, ``kind`` (classifier | defense | train_state),
``classifier``, ``defense``, ``steps``, ``fingerprint`` (:func:`tree_fingerprint` of the values, as in
``result.json`` and ``results.json``), ``classifier_fingerprint`` (defenses: the target they were
trained against), ``training`` (the exact commands, git commits, hardware and total wall time, from the
run's ``provenance.jsonl``), ``config`` (the full config of the run: the model's recipe), ``metrics``
(validation metrics, clean test accuracy) and ``history`` (why an earlier file was replaced).

Loading: ``config.pretrained=True`` makes :func:`ipgan_jax.training.classifier.load_classifier` and
:func:`ipgan_jax.defenses.load_defense` read only from here (never from ``config.workdir``); a model
that is not shipped is an error that says so. ``config.continue_pretrained=True`` starts a training
run whose workdir has no checkpoint from the shipped train state (see ``ipgan_jax/defenses/train.py``).
A file whose sha256 differs from the manifest is refused with :class:`PretrainedError` (one line).

Command line (``python -m ipgan_jax.pretrained --help``): ``verify``, ``list`` and ``add``.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Optional

import numpy as np

from ipgan_jax import files
from ipgan_jax.errors import UserError

# :mod:`.export` (``add``) and the command line import the trainers, which import this module: not re-exported
__all__ = [
    "FORMAT", "MANIFEST", "REPO_ROOT", "SIZE_BUDGET", "KINDS", "README_MARKERS", "PretrainedError",
    "root", "key_of", "read_manifest", "write_manifest", "entry", "verify_entry", "verify",
    "num_params", "to_bytes", "from_bytes", "load", "markdown_table", "readme_with_table", "source_record",
]

FORMAT = "ipgan-pretrained/1"
MANIFEST = "MANIFEST.json"
REPO_ROOT = Path(__file__).resolve().parents[2]
SIZE_BUDGET = 50 * 1024 * 1024     # bytes, all shipped files together
KINDS = ("classifier", "defense", "train_state")


class PretrainedError(UserError, RuntimeError):
    """A shipped model is missing, not shipped, or does not match its manifest entry."""


def root(config) -> Path:
    """``config.pretrained_dir``, or ``<repo>/pretrained/<config.dataset>``."""
    d = config.pretrained_dir
    return Path(d) if d else REPO_ROOT / "pretrained" / config.dataset


def key_of(kind: str, name: str, classifier: Optional[str] = None) -> str:
    """Manifest key: ``classifiers/<name>``, ``defenses/<name>/<classifier>`` or
    ``train_states/<name>/<classifier>``."""
    if kind == "classifier":
        return f"classifiers/{name}"
    if kind not in KINDS:
        raise ValueError(f"kind {kind!r}: choose one of {KINDS}")
    if not classifier:
        raise ValueError(f"a {kind} needs its classifier")
    return f"{kind}s/{name}/{classifier}"


# ---- manifest ------------------------------------------------------------------------------
def read_manifest(folder: str | os.PathLike) -> dict:
    """The manifest of ``folder`` (``{'format', 'models': {key: entry}}``); an empty one when absent."""
    path = Path(folder) / MANIFEST
    if not path.exists():
        return {"format": FORMAT, "models": {}}
    try:
        man = json.loads(path.read_text())
    except ValueError as e:
        raise PretrainedError(f"{path} is not valid JSON ({e})") from None
    if not isinstance(man, dict) or man.get("format") != FORMAT or not isinstance(man.get("models"), dict):
        raise PretrainedError(f"{path} is not a {FORMAT} manifest")
    return man


def write_manifest(folder: str | os.PathLike, man: dict) -> Path:
    man = {"format": FORMAT, "models": dict(sorted(man["models"].items()))}
    return files.write_json(Path(folder) / MANIFEST, man, indent=1)


def entry(folder: str | os.PathLike, key: str) -> dict:
    """The manifest entry ``key``; :class:`PretrainedError` naming what is shipped when absent."""
    models = read_manifest(folder)["models"]
    if key not in models:
        shipped = sorted(k for k in models if k.split("/")[0] == key.split("/")[0])
        raise PretrainedError(f"{key} is not shipped in {folder} (shipped: {', '.join(shipped) or 'none'}); "
                              f"drop --config.pretrained=True to use a model trained in --config.workdir")
    return models[key]


def verify_entry(folder: str | os.PathLike, key: str, e: dict) -> Optional[str]:
    """None when ``e['file']`` exists with its recorded size and sha256, else what is wrong."""
    path = Path(folder) / e["file"]
    if not path.is_file():
        return f"{key}: {path} is missing"
    if path.stat().st_size != e["size"]:
        return f"{key}: {path} has {path.stat().st_size} bytes, the manifest says {e['size']}"
    if files.sha256(path) != e["sha256"]:
        return f"{key}: {path} does not match its sha256 in {MANIFEST}"
    return None


def verify(folder: str | os.PathLike) -> list[str]:
    """Every problem of ``folder`` against its manifest ([] when all files verify): missing or
    changed files, files that no entry lists, and a total size over :data:`SIZE_BUDGET`."""
    folder = Path(folder)
    models = read_manifest(folder)["models"]
    problems = [p for k, e in models.items() if (p := verify_entry(folder, k, e))]
    listed = {(folder / e["file"]).resolve() for e in models.values()}
    for p in sorted(folder.rglob("*.msgpack")):
        if p.resolve() not in listed:
            problems.append(f"{p} is not in {MANIFEST}")
    total = sum(e["size"] for e in models.values())
    if total > SIZE_BUDGET:
        problems.append(f"the shipped files take {total / 2**20:.1f} MB, over the {SIZE_BUDGET / 2**20:.0f} MB budget")
    return problems


# ---- files ---------------------------------------------------------------------------------
def num_params(tree) -> int:
    import jax
    return int(sum(np.size(x) for x in jax.tree.leaves(tree)))


def to_bytes(tree) -> bytes:
    """msgpack bytes of ``tree`` (float leaves as float32; flax state dict: optax states become dicts)."""
    import jax
    from flax import serialization

    def host(x):
        a = np.asarray(jax.device_get(x))
        return a.astype(np.float32) if np.issubdtype(a.dtype, np.floating) else a
    return serialization.msgpack_serialize(serialization.to_state_dict(jax.tree.map(host, tree)))


def from_bytes(data: bytes, target, what: str):
    """The tree of ``target``'s structure (e.g. ``jax.eval_shape`` of the init) holding the values
    of ``data``; shapes and dtypes must match ``target`` (else :class:`PretrainedError`)."""
    import jax
    from flax import serialization
    try:
        tree = serialization.from_state_dict(target, serialization.msgpack_restore(data))
    except Exception as e:  # structure mismatch: missing / extra keys
        raise PretrainedError(f"{what} does not fit this model ({type(e).__name__}: {str(e)[:200]})") from None
    got = jax.tree_util.tree_flatten_with_path(tree)[0]
    want = jax.tree_util.tree_flatten_with_path(target)[0]
    if len(got) != len(want):
        raise PretrainedError(f"{what} has {len(got)} arrays, this model {len(want)}")
    for (path, a), (_, t) in zip(got, want):
        a = np.asarray(a)
        if a.shape != tuple(t.shape) or a.dtype != np.dtype(t.dtype):
            raise PretrainedError(f"{what}: {jax.tree_util.keystr(path)} is {a.dtype}{list(a.shape)}, this model "
                                  f"wants {np.dtype(t.dtype)}{list(t.shape)} (another architecture or config?)")
    return tree


def load(config, kind: str, name: str, classifier: Optional[str], target) -> tuple[Any, dict]:
    """``(tree, entry)``: the shipped ``kind`` model, verified against the manifest, in ``target``'s
    structure. Missing, unlisted or changed files raise :class:`PretrainedError` (one line)."""
    folder = root(config)
    key = key_of(kind, name, classifier)
    e = entry(folder, key)
    problem = verify_entry(folder, key, e)
    if problem is not None:
        raise PretrainedError(f"refusing the shipped model {problem}; restore it with `git checkout -- "
                              f"{folder / e['file']}` and check with `python -m ipgan_jax.pretrained verify`")
    tree = from_bytes((folder / e["file"]).read_bytes(), target, f"shipped {key}")
    return tree, e


def _pct(v):
    return "-" if v is None else f"{100 * v:.2f}"


def markdown_table(models: dict) -> str:
    """One row per shipped model: size, steps, training wall time and hardware, validation and test numbers."""
    rows = ["| model | size (KB) | params | steps | training wall time (s) | validation | clean test accuracy |",
            "|---|---|---|---|---|---|---|"]
    for k, e in models.items():
        m = e["metrics"]
        if e["kind"] == "classifier":
            val, test = _pct(m.get("validation_accuracy")), f"{_pct(m.get('test_accuracy'))} (all 10,000)"
        else:
            v = m.get("validation", {})
            shown = {a: b for a, b in v.items() if a.endswith("/dsr") or a.endswith("min/acc")}
            val = ", ".join(f"{a} {_pct(b)}" for a, b in sorted(shown.items())) or "-"
            test = f"{_pct(m.get('defended_clean_accuracy_first1000'))} f(d(x)), first 1,000"
        rows.append(f"| `{k}` | {e['size'] / 1024:.0f} | {e['num_params']:,} | {e['steps']} | "
                    f"{e['training']['wall_s']:.0f} | {val} | {test} |")
    hw = sorted({h for e in models.values() for h in e["training"]["hardware"]})
    return "\n".join(rows) + f"\n\nTrained on: {'; '.join(hw)}."


README_MARKERS = ("<!-- pretrained-table:start -->\n", "<!-- pretrained-table:end -->")


def readme_with_table(text: str, models: dict) -> str:
    """``text`` (README.md) with the block between :data:`README_MARKERS` replaced by :func:`markdown_table`."""
    start, end = README_MARKERS
    i, j = text.index(start) + len(start), text.index(end)
    return text[:i] + markdown_table(models) + "\n" + text[j:]


def source_record(config, kind: str, name: str, classifier: Optional[str], workdir_path) -> dict:
    """What ``results.json`` records of an evaluated model: ``{'source': 'pretrained', 'path', 'sha256'}``
    for a shipped file, ``{'source': 'workdir', 'path', 'sha256'}`` (sha256 of the export's integrity
    manifest, which hashes every file of it) for a model of ``config.workdir``."""
    if config.pretrained:
        folder = root(config)
        e = entry(folder, key_of(kind, name, classifier))
        return {"source": "pretrained", "path": str(_display(folder / e["file"])), "sha256": e["sha256"]}
    man = Path(workdir_path) / "ipgan_manifest.json"
    return {"source": "workdir", "path": str(workdir_path),
            "sha256": files.sha256(man) if man.exists() else None}


def _display(p: Path) -> Path:
    try:
        return p.resolve().relative_to(REPO_ROOT)
    except ValueError:
        return p
