"""Shipping a model trained in a workdir: its file, its manifest entry, its measured clean accuracy.

``add(config, key)`` reads the exported model (``<workdir>/classifiers/<name>/params``,
``<workdir>/defenses/<d>/<c>/params``, or the newest checkpoint of ``<workdir>/defenses/<d>/<c>/checkpoints``
for a train state) with its ``result.json``, measures its clean accuracy on the first test images
(classifiers: the first :data:`CLASSIFIER_CHECK_N`, the value ``tests/test_pretrained.py`` checks; defenses:
f(d(x)) on the first :data:`DEFENSE_CHECK_N`), and writes ``pretrained/<dataset>/<key>.msgpack`` and its
entry in the manifest. The command line is ``python -m ipgan_jax.pretrained add <key>``.
"""
from __future__ import annotations

import json

from ipgan_jax import files, pretrained, provenance
from ipgan_jax.errors import ConfigError, UserFileNotFoundError

CLASSIFIER_CHECK_N = 500    # clean accuracy of a shipped classifier on the first N test images
DEFENSE_CHECK_N = 1000      # clean accuracy f(d(x)) of a shipped defense on the first N test images


def clean_accuracy(config, logits_fn, n: int) -> float:
    """Top-1 accuracy of ``logits_fn`` (images [B,H,W,C] in [0,1] -> logits) on the first ``n`` test images."""
    import jax
    import numpy as np

    from ipgan_jax.data.pipeline import config_loader
    loader = config_loader(config, "test", min(n, 500), train=False, num_examples=n)
    fn = jax.jit(lambda x: jax.numpy.argmax(logits_fn(x), -1))
    correct = total = 0
    for b in loader.iterate(prefetch=0):
        pred = np.asarray(fn(b["image"]))
        correct += int(((pred == b["label"]) & b["mask"]).sum())
        total += int(b["mask"].sum())
    return correct / total


def _training(segments: list) -> dict:
    return {**provenance.summarize(segments), "segments": segments}


def _collect(config, key: str) -> tuple:
    """(tree, fields of the manifest entry) of the workdir model ``key``."""
    import jax

    from ipgan_jax.defenses.registry import defense_dir, load_defense, split_tag
    from ipgan_jax.training.checkpoint import Checkpointer, abstract_like, tree_fingerprint
    from ipgan_jax.training.classifier import classifier_dir, load_classifier
    parts = key.split("/")
    kind = {"classifiers": "classifier", "defenses": "defense", "train_states": "train_state"}.get(parts[0])
    if kind is None or len(parts) != (2 if kind == "classifier" else 3):
        raise ConfigError(f"key {key!r}: use classifiers/<name>, defenses/<defense>/<classifier> or "
                          "train_states/<defense>/<classifier>")
    if kind == "classifier":
        name = parts[1]
        run = classifier_dir(config, name)
        result = json.loads((run / "result.json").read_text())
        module, variables = load_classifier(config, name)
        acc = clean_accuracy(config, lambda x: module.apply(variables, x, train=False), CLASSIFIER_CHECK_N)
        fields = {"kind": kind, "classifier": name, "defense": None, "steps": result["steps"],
                  "fingerprint": tree_fingerprint(variables), "classifier_fingerprint": None,
                  "metrics": {"validation_accuracy": result.get("validation_accuracy"),
                              "test_accuracy": result["test_accuracy"],
                              f"test_accuracy_first{CLASSIFIER_CHECK_N}": acc}}
        return variables["params"], run, result, fields
    defense, clf = parts[1], parts[2]
    split_tag(defense)
    cfg = config.copy_and_resolve_references()
    cfg.defense, cfg.classifier = defense, clf
    run = defense_dir(cfg)
    result = json.loads((run / "result.json").read_text())
    # the target: the shipped classifier when there is one (a defense trained with --config.pretrained=True on a
    # fresh machine has no workdir classifier), else the workdir's; load_defense checks its fingerprint either way
    shipped_clf = pretrained.key_of("classifier", clf) in pretrained.read_manifest(pretrained.root(cfg))["models"]
    target_cfg = cfg.copy_and_resolve_references()
    target_cfg.pretrained = shipped_clf
    module, variables = load_classifier(target_cfg, clf)
    defend, trainer = load_defense(cfg, defense, clf, target=(module, variables))
    f = lambda x: module.apply(variables, x, train=False)   # noqa: E731
    acc = clean_accuracy(cfg, lambda x: f(defend(x)), DEFENSE_CHECK_N)
    metrics = {"validation": result.get("heldout", {}), f"defended_clean_accuracy_first{DEFENSE_CHECK_N}": acc}
    common = {"classifier": clf, "defense": defense, "classifier_fingerprint": result.get("classifier_fingerprint")}
    if kind == "defense":
        return defend.params, run, result, {"kind": kind, **common, "steps": result["steps"],
                                            "fingerprint": defend.source["fingerprint"], "metrics": metrics}
    abstract = jax.eval_shape(trainer.init_state, jax.random.PRNGKey(0))   # the trainer of the model's recipe
    ckpt = Checkpointer(run / "checkpoints", save_every=1, keep=0)
    try:
        state, step = ckpt.restore(abstract_like(abstract))
    finally:
        ckpt.close()
    if state is None:
        raise UserFileNotFoundError(f"no checkpoint under {run / 'checkpoints'} to ship as a train state")
    if step != result["steps"]:
        raise ConfigError(f"the newest checkpoint of {run} is step {step}, its export step {result['steps']}: "
                          "ship the train state of the exported model (rerun its training command to export)")
    if tree_fingerprint(trainer.defense_params(state)) != defend.source["fingerprint"]:
        raise ConfigError(f"the checkpoint of {run} at step {step} does not hold the exported params")
    return state, run, result, {"kind": kind, **common, "steps": step,
                                "fingerprint": tree_fingerprint(state), "metrics": metrics}


def add(config, key: str, replace: bool = False, reason: str | None = None) -> dict:
    """Ship the workdir model ``key`` (see the module docstring); returns its manifest entry."""
    folder = pretrained.root(config)
    man = pretrained.read_manifest(folder)
    old = man["models"].get(key)
    if old is not None and not replace:
        raise ConfigError(f"{key} is shipped already (sha256 {old['sha256'][:12]}); pass --replace --reason '...' "
                          "to replace it (only with a better model from a documented recipe)")
    if replace and not reason:
        raise ConfigError("--replace needs --reason: the manifest keeps why a shipped model was replaced")
    tree, run, result, fields = _collect(config, key)
    data = pretrained.to_bytes(tree)
    rel = f"{key}.msgpack"
    files.write_bytes(folder / rel, data)
    segments = result.get("provenance") or provenance.read_segments(run)
    history = list(old.get("history", [])) if old else []
    if old:
        history.append({"replaced_sha256": old["sha256"], "replaced_on": provenance.now_utc(), "reason": reason})
    e = {"file": rel, "sha256": files.sha256(folder / rel), "size": len(data),
         "num_params": pretrained.num_params(tree), "dtype": "float32", **fields,
         "training": _training(segments), "config": result.get("config"), "added": provenance.now_utc(),
         "history": history}
    man["models"][key] = e
    pretrained.write_manifest(folder, man)
    return e
