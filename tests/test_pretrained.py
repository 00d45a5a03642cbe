"""Shipped models (pretrained/mnist): every file verifies, each classifier scores what its manifest says,
damaged files are refused, shipped and workdir models are never mixed, results.json names the files it
evaluated, and a shipped train state continues on a fresh workdir exactly as if the run had never moved."""
import shutil

import jax
import numpy as np
import pytest

from configs import mnist
from ipgan_jax import pretrained
from ipgan_jax.defenses import load_defense, train_defense
from ipgan_jax.eval.evaluate import Evaluator
from ipgan_jax.pretrained.export import CLASSIFIER_CHECK_N, add, clean_accuracy
from ipgan_jax.provenance import read_segments
from ipgan_jax.testing.suite import sharing_classifier
from ipgan_jax.training.classifier import load_classifier
from ipgan_jax.training.loop import RecipeChangedError

SHIPPED = pretrained.REPO_ROOT / "pretrained" / "mnist"
MODELS = pretrained.read_manifest(SHIPPED)["models"]


def _shipped_config():
    c = mnist.get_config()
    c.pretrained = True
    return c


def test_every_shipped_model_verifies_within_budget():
    assert {"classifiers/lenet", "classifiers/mcnn", "classifiers/alexnet"} <= set(MODELS)
    assert pretrained.verify(SHIPPED) == []
    for key, e in MODELS.items():
        assert e["file"] == f"{key}.msgpack" and e["training"]["commands"] and e["training"]["wall_s"] > 0
        assert e["config"]["dataset"] == "mnist" and e["num_params"] > 0


@pytest.mark.parametrize("key", sorted(k for k in MODELS if k.startswith("classifiers/")))
def test_shipped_classifier_scores_its_manifest_accuracy(key):
    c = _shipped_config()
    module, variables = load_classifier(c, key.split("/")[1])
    acc = clean_accuracy(c, lambda x: module.apply(variables, x, train=False), CLASSIFIER_CHECK_N)
    assert acc == MODELS[key]["metrics"][f"test_accuracy_first{CLASSIFIER_CHECK_N}"]


@pytest.mark.parametrize("key", sorted(k for k in MODELS if k.startswith("defenses/")))
def test_shipped_defense_loads_with_its_recipe_and_fingerprint(key):
    _, defense, clf = key.split("/")
    defend, _ = load_defense(_shipped_config(), defense, clf)
    assert defend.source["fingerprint"] == MODELS[key]["fingerprint"]
    assert defend.source["source"] == "pretrained" and defend.source["sha256"] == MODELS[key]["sha256"]


def test_damaged_or_unlisted_files_are_refused(tmp_path):
    folder = tmp_path / "mnist"
    shutil.copytree(SHIPPED, folder)
    c = _shipped_config()
    c.pretrained_dir = str(folder)
    path = folder / MODELS["classifiers/lenet"]["file"]
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF                      # one flipped byte, same size
    path.write_bytes(bytes(data))
    with pytest.raises(pretrained.PretrainedError, match="does not match its sha256"):
        load_classifier(c, "lenet")
    path.write_bytes(bytes(data[:-10]))               # truncated
    with pytest.raises(pretrained.PretrainedError, match="bytes, the manifest says"):
        load_classifier(c, "lenet")
    (folder / "classifiers" / "stray.msgpack").write_bytes(b"x")
    problems = pretrained.verify(folder)
    assert any("lenet" in p for p in problems) and any("stray.msgpack is not in" in p for p in problems)


@pytest.mark.slow
def test_shipped_and_workdir_models_are_never_mixed(trained_tiny, tmp_path):
    """With the switch, a model that is not shipped is an error even when the workdir has it; the
    evaluation records which files it read."""
    c = sharing_classifier(trained_tiny, tmp_path / "wd")
    train_defense(c)                                   # a workdir IP-GAN
    shipped = c.copy_and_resolve_references()
    shipped.pretrained_dir = str(tmp_path / "shipped")
    add(shipped, "classifiers/lenet")                  # ship the classifier only
    shipped.pretrained = True
    shipped.workdir = str(tmp_path / "elsewhere")
    with pytest.raises(pretrained.PretrainedError, match="defenses/ipgan/lenet is not shipped"):
        load_defense(shipped, "ipgan", "lenet")
    shipped.workdir = c.workdir                        # the workdir's IP-GAN is there, and still not used
    with pytest.raises(pretrained.PretrainedError, match="not shipped"):
        load_defense(shipped, "ipgan", "lenet")
    shipped.pretrained = False
    add(shipped, "defenses/ipgan/lenet")
    shipped.pretrained = True
    ev = Evaluator(shipped, ["lenet"], ["none", "ipgan"], ["fgsm"], 8)
    src = ev.model_sources()
    man = pretrained.read_manifest(tmp_path / "shipped")["models"]
    assert set(src) == {"classifiers/lenet", "defenses/ipgan/lenet"}
    for k, rec in src.items():
        assert rec["source"] == "pretrained" and rec["sha256"] == man[k]["sha256"]
        assert rec["fingerprint"] == man[k]["fingerprint"]
    c_ev = Evaluator(c, ["lenet"], ["ipgan"], ["fgsm"], 8).model_sources()
    assert {r["source"] for r in c_ev.values()} == {"workdir"}
    with pytest.raises(ValueError, match="shipped already"):
        shipped.pretrained = False
        add(shipped, "defenses/ipgan/lenet")
    # a fresh machine: no workdir classifier; a defense trained against the shipped one ships against it too
    fresh = shipped.copy_and_resolve_references()
    fresh.workdir, fresh.defense, fresh.pretrained = str(tmp_path / "fresh"), "dae", True
    train_defense(fresh)
    assert not (tmp_path / "fresh" / "classifiers").exists()
    fresh.pretrained = False
    e = add(fresh, "defenses/dae/lenet")
    assert e["classifier_fingerprint"] == man["classifiers/lenet"]["fingerprint"]


@pytest.mark.slow
def test_shipped_train_state_continues_as_if_the_run_never_moved(trained_tiny, tmp_path):
    """Train 6 steps and ship the train state; a fresh workdir continues it to 12 steps with
    continue_pretrained. The result equals the first run resumed to 12 steps in place, bit for bit."""
    def config(name, steps):
        c = sharing_classifier(trained_tiny, tmp_path / name)
        c.ipgan.adaptive = True
        c.train.num_steps = steps
        c.pretrained_dir = str(tmp_path / "shipped")
        return c
    first = config("first", 6)
    train_defense(first)
    add(first, "classifiers/lenet")
    e = add(first, "train_states/ipgan_adaptive/lenet")
    assert e["steps"] == 6 and e["kind"] == "train_state"
    assert [(s["from_step"], s["to_step"]) for s in e["training"]["segments"]] == [(0, 6)]
    moved = config("moved", 12)                        # another machine: only the shipped files
    moved.pretrained, moved.continue_pretrained = True, True
    other = moved.copy_and_resolve_references()
    other.ipgan.lr_g = 1e-3                            # not the shipped run's recipe: refused before training
    with pytest.raises(RecipeChangedError, match="ipgan.lr_g: 0.0002 -> 0.001"):
        train_defense(other)
    train_defense(moved)
    first.train.num_steps = 12                         # the run that never moved: resumed in place
    train_defense(first)
    x = jax.random.uniform(jax.random.PRNGKey(1), (8, 28, 28, 1))
    moved.pretrained = False                           # its own export, in its own workdir
    a = np.asarray(load_defense(moved, "ipgan_adaptive", "lenet")[0](x))
    b = np.asarray(load_defense(first, "ipgan_adaptive", "lenet")[0](x))
    np.testing.assert_array_equal(a, b)
    segs = read_segments(tmp_path / "moved" / "defenses" / "ipgan_adaptive" / "lenet")
    assert [(s["from_step"], s["to_step"]) for s in segs] == [(0, 6), (6, 12)]   # both sittings recorded


def test_readme_table_is_the_manifest_rendered():
    """README's shipped-model table is `python -m ipgan_jax.pretrained list --markdown`, not hand-typed."""
    text = (pretrained.REPO_ROOT / "README.md").read_text()
    assert pretrained.readme_with_table(text, MODELS) == text, \
        "README's table is stale: python -m ipgan_jax.pretrained list --write_readme"
