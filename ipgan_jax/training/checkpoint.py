"""Resumable orbax checkpoints and exported params, with an integrity manifest.

``Checkpointer(directory, save_every, keep, meta=...)`` wraps ``orbax.checkpoint.CheckpointManager``:
``save(step, state)`` writes every ``save_every`` steps (and always when ``force=True``);
``restore(abstract_state)`` returns ``(state, step)`` of the newest *good* checkpoint or
``(None, 0)`` when there is none. Orbax writes to a temporary folder and renames it when complete,
so a kill during a save never leaves a half-written step.

Integrity: every saved step (and every export) gets ``ipgan_manifest.json`` (sha256 of each file,
the step and ``meta``), written atomically after the data and checked against the files on disk
before it counts. A state with a NaN/Inf leaf is never saved (:class:`NonFiniteError`). On restore a
step whose files do not match its manifest, or whose values are not finite, is reported in one
line, moved to ``<directory>.corrupt/`` (never deleted) and the next older step is tried; so is a
step without a manifest that does not restore (its bytes cannot be checked, so a failure means damage;
a verified step that does not restore was written by another model, and that is an error). Old steps
beyond ``keep`` are deleted only after their successor is written *and* verified. A step without a
manifest (written before manifests existed) is *legacy*: it is restored (values checked) with a
one-line note, never treated as corrupt.

``export_params(out, params, meta)`` / ``restore_params(path, abstract, what)`` write and read the
final exported parameters (``<out>/params`` with its manifest + ``<out>/result.json``).
``tree_fingerprint(tree)`` is the sha256 of a pytree's values (identifies a target classifier).
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any, Optional

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
from absl import logging

from ipgan_jax import files
from ipgan_jax.errors import UserError

MANIFEST = "ipgan_manifest.json"
MANIFEST_FORMAT = "ipgan-manifest/1"


class CheckpointError(UserError, RuntimeError):
    """A checkpoint exists but cannot be used (corrupt, or of another model/config)."""


class NonFiniteError(UserError, RuntimeError):
    """A loss, a state or a restored value is NaN/Inf (training diverged or a file is corrupt)."""


# ---- values ---------------------------------------------------------------------------------
@jax.jit
def _finite_flags(leaves):
    return jnp.stack([jnp.all(jnp.isfinite(x)) for x in leaves]) if leaves else jnp.ones((0,), bool)


def first_nonfinite(tree) -> Optional[str]:
    """Path (``jax.tree_util.keystr``) of the first float leaf of ``tree`` holding a NaN/Inf, or None.

    One jitted reduction over the float leaves and one small transfer: cheap next to a train step."""
    flat = [(p, x) for p, x in jax.tree_util.tree_flatten_with_path(tree)[0]
            if hasattr(x, "dtype") and jnp.issubdtype(x.dtype, jnp.inexact)]
    if not flat:
        return None
    ok = np.asarray(jax.device_get(_finite_flags([x for _, x in flat])))
    bad = np.flatnonzero(~ok)
    return jax.tree_util.keystr(flat[bad[0]][0]) if bad.size else None


def tree_fingerprint(tree) -> str:
    """sha256 (hex) over a pytree's leaf paths, dtypes, shapes and bytes (host copy)."""
    h = hashlib.sha256()
    for path, x in jax.tree_util.tree_flatten_with_path(jax.device_get(tree))[0]:
        a = np.ascontiguousarray(np.asarray(x))
        h.update(f"{jax.tree_util.keystr(path)}|{a.dtype.str}|{a.shape}|".encode())
        h.update(a.tobytes())
    return h.hexdigest()


# ---- manifests ------------------------------------------------------------------------------
def _hash_folder(folder: Path) -> dict:
    return {str(p.relative_to(folder)): files.sha256(p) for p in sorted(folder.rglob("*"))
            if p.is_file() and p.name != MANIFEST}


def write_manifest(folder: str | os.PathLike, step: Optional[int], meta: Optional[dict] = None) -> dict:
    """Hash every file of ``folder`` into ``folder/ipgan_manifest.json`` (atomic); returns it."""
    folder = Path(folder)
    man = {"format": MANIFEST_FORMAT, "step": None if step is None else int(step), "meta": meta or {},
           "files": _hash_folder(folder)}
    files.write_json(folder / MANIFEST, man)
    return man


def read_manifest(folder: str | os.PathLike) -> Optional[dict]:
    """The manifest of ``folder``, or None when it has none (legacy). An unreadable one raises."""
    path = Path(folder) / MANIFEST
    if not path.exists():
        return None
    try:
        man = json.loads(path.read_text())
        if not isinstance(man, dict) or man.get("format") != MANIFEST_FORMAT or not isinstance(man.get("files"), dict):
            raise ValueError("not an ipgan manifest")
    except (ValueError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{path} is damaged ({_first_line(e)})") from e
    return man


def verify_folder(folder: str | os.PathLike) -> tuple[Optional[dict], Optional[str]]:
    """``(manifest, problem)``: manifest None for a legacy folder; problem None when every listed
    file is present with its recorded sha256, else a short description of the first mismatch."""
    folder = Path(folder)
    try:
        man = read_manifest(folder)
    except CheckpointError as e:
        return None, str(e)
    if man is None:
        return None, None
    for rel, digest in man["files"].items():
        p = folder / rel
        if not p.is_file():
            return man, f"{rel} is missing"
        if files.sha256(p) != digest:
            return man, f"{rel} does not match its sha256 in {MANIFEST}"
    return man, None


def _note(msg: str) -> None:
    logging.warning("%s", msg)


# ---- training checkpoints -------------------------------------------------------------------
class Checkpointer:
    """Orbax steps under ``directory`` with manifests; see the module docstring.

    ``meta``: recorded in every manifest (e.g. ``{'classifier_fingerprint': ...}``); on restore a
    recorded value that differs from ``meta`` raises :class:`CheckpointError` unless
    ``allow_meta_mismatch`` (then a note). ``notes`` collects the one-line messages printed."""

    def __init__(self, directory: str | os.PathLike, save_every: int = 1000, keep: int = 3,
                 async_save: bool = False, meta: Optional[dict] = None, allow_meta_mismatch: bool = False):
        self.directory = Path(directory).absolute()
        self.keep, self.meta, self.allow_meta_mismatch = keep, dict(meta or {}), allow_meta_mismatch
        self.notes: list[str] = []
        # max_to_keep=None: old steps are pruned here, only after the new one is verified
        options = ocp.CheckpointManagerOptions(save_interval_steps=max(1, int(save_every)),
                                               max_to_keep=None, create=True,
                                               enable_async_checkpointing=async_save)
        self.manager = ocp.CheckpointManager(self.directory, options=options)

    def _say(self, msg: str) -> None:
        self.notes.append(msg)
        if jax.process_index() == 0:
            _note(msg)

    def latest_step(self) -> Optional[int]:
        return self.manager.latest_step()

    def save(self, step: int, state: Any, force: bool = False) -> bool:
        """Save ``state`` at ``step`` when due (or ``force``). A non-finite state raises
        :class:`NonFiniteError` and nothing is written. Returns whether a step was written."""
        step = int(step)
        if not (force or self.manager.should_save(step)):
            return False
        bad = first_nonfinite(state)
        if bad is not None:
            raise NonFiniteError(f"step {step}: state{bad} holds NaN/Inf, so it was not saved "
                                 f"(last good checkpoint: {self.latest_step()}). Training diverged: lower the "
                                 f"learning rate or check the config values and the data.")
        if not self.manager.save(step, args=ocp.args.StandardSave(state), force=force):
            return False
        self.manager.wait_until_finished()
        folder = self.directory / str(step)
        def check():
            man = write_manifest(folder, step, self.meta)
            _, problem = verify_folder(folder)   # read back from disk
            if problem is not None or man["files"] == {}:
                return (f"the checkpoint just written at {folder} does not verify ({problem}); "
                        f"older checkpoints were kept. Check the disk.")
            return None

        _on_process0_raise_everywhere(check, f"write checkpoint {step}")
        self._prune(step)   # every process: orbax's delete synchronises them (process 0 alone would hang)
        return True

    def _prune(self, newest: int) -> None:
        """Delete steps older than the ``keep`` newest (the newest one is verified)."""
        if not self.keep:
            return
        steps = sorted(s for s in self.manager.all_steps() if s <= newest)
        for s in steps[:-self.keep]:
            self.manager.delete(s)

    def _set_aside(self, step: int, why: str) -> None:
        src = self.directory / str(step)
        dst_root = self.directory.parent / f"{self.directory.name}.corrupt"
        dst = dst_root / str(step)
        k = 1
        while dst.exists():
            dst, k = dst_root / f"{step}-{k}", k + 1
        if jax.process_index() == 0:
            dst_root.mkdir(parents=True, exist_ok=True)
            os.replace(src, dst)
        self._say(f"checkpoint {src} is unusable ({why}); moved it to {dst} and trying an older one")
        self.manager.reload()

    def _check_meta(self, man: Optional[dict], where: Path) -> None:
        found = (man or {}).get("meta", {})
        for k, want in self.meta.items():
            if k == "recipe":        # recorded here, compared key by key by the training loop
                continue
            if k in found and found[k] != want:
                msg = (f"the checkpoint at {where} was written with {k}={str(found[k])[:16]}..., "
                       f"but this run has {k}={str(want)[:16]}...")
                if not self.allow_meta_mismatch:
                    raise CheckpointError(msg + " (the target classifier changed?). Use a fresh --config.workdir, "
                                          "or set --config.allow_other_classifier=True to resume anyway.")
                self._say(msg + "; resuming anyway (allowed by the config)")

    def meta_of(self, step: int) -> dict:
        """The ``meta`` recorded with saved ``step`` ({} for a legacy step)."""
        man = read_manifest(self.directory / str(step))
        return dict(man.get("meta", {})) if man else {}

    def restore(self, abstract_state: Any, step: Optional[int] = None):
        """Restore the newest good step (or exactly ``step``) into the structure/shardings of
        ``abstract_state`` (e.g. from jax.eval_shape); ``(None, 0)`` when no good step is left."""
        while True:
            steps = sorted(self.manager.all_steps(), reverse=True)
            if step is not None:
                steps = [s for s in steps if s == step]
            if not steps:
                return None, 0
            s = steps[0]
            folder = self.directory / str(s)
            man, problem = verify_folder(folder)
            if problem is not None:
                self._set_aside(s, problem)
                continue
            self._check_meta(man, folder)
            try:
                state = self.manager.restore(s, args=ocp.args.StandardRestore(abstract_state))
            except Exception as e:  # orbax raises many types: missing files, bad metadata, shape mismatch
                if man is None:       # unverifiable bytes that do not restore: damaged, try an older step
                    self._set_aside(s, f"no {MANIFEST} and it does not restore: {_first_line(e)[:120]}")
                    continue
                raise CheckpointError(
                    f"the checkpoint at {folder} could not be restored "
                    f"({_first_line(e)}). It is corrupt or was "
                    f"written by a different model/config. Nothing was changed; move it away or choose another "
                    f"--workdir to start fresh (steps present: {list(self.manager.all_steps())}).") from e
            bad = first_nonfinite(state)
            if bad is not None:
                self._set_aside(s, f"state{bad} holds NaN/Inf")
                continue
            if man is None:
                self._say(f"checkpoint {folder} has no {MANIFEST} (written by an older version): "
                          f"restored it without a checksum check (values are finite)")
            return state, int(s)

    def wait(self):
        self.manager.wait_until_finished()

    def close(self):
        self.manager.wait_until_finished()
        self.manager.close()


def _first_line(e: BaseException) -> str:
    return f"{type(e).__name__}: {str(e).splitlines()[0][:300] if str(e) else ''}"


# ---- exported params ------------------------------------------------------------------------
def export_params(out: str | os.PathLike, params, meta: dict) -> None:
    """Write final params (orbax, ``<out>/params`` with ``ipgan_manifest.json`` holding ``meta``)
    and ``<out>/result.json`` (= ``meta``); each replaces the old one only when complete. Every
    process takes part in the save; process 0 writes the manifest and renames. Non-finite params
    raise :class:`NonFiniteError` and nothing is written."""
    bad = first_nonfinite(params)
    if bad is not None:
        raise NonFiniteError(f"params{bad} hold NaN/Inf: nothing exported to {out}. Training diverged: lower the "
                             f"learning rate or check the config values and the data.")
    out = Path(out)
    if jax.process_index() == 0:
        out.mkdir(parents=True, exist_ok=True)
    tmp = out / "params.tmp"            # the same name on every host (orbax saves collectively)
    if jax.process_index() == 0:
        files.remove(tmp)               # a leftover of a killed export
    _barrier("ipgan_export_start")
    ckptr = ocp.StandardCheckpointer()
    ckptr.save(tmp.absolute(), params)
    ckptr.wait_until_finished()
    def check():
        write_manifest(tmp, meta.get("steps"), files.json_safe(meta))
        _, problem = verify_folder(tmp)
        if problem is not None:
            return (f"the params just written at {tmp} do not verify ({problem}); {out / 'params'} "
                    f"was kept. Check the disk.")
        files.replace(tmp, out / "params")
        files.write_json(out / "result.json", meta, indent=2)
        return None

    _on_process0_raise_everywhere(check, f"export params to {out}")
    _barrier("ipgan_export_done")       # no process reads <out>/params before process 0 has renamed it


def _on_process0_raise_everywhere(check, what: str) -> None:
    """Run ``check() -> error message or None`` on process 0 only, then raise
    :class:`CheckpointError` on *every* process if it failed (or raised), so the other processes
    stop too instead of waiting forever at the next collective. No-op broadcast in one process."""
    msg = None
    if jax.process_index() == 0:
        try:
            msg = check()
        except Exception as e:  # noqa: BLE001 - reported on every process below
            if jax.process_count() == 1:
                raise
            msg = f"{what} failed on process 0: {_first_line(e)}"
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils
        failed = int(multihost_utils.broadcast_one_to_all(np.int32(msg is not None)))
        if failed and msg is None:
            msg = f"{what} failed on process 0 (its log says why); this process stops as well"
    if msg is not None:
        raise CheckpointError(msg)


def _barrier(name: str) -> None:
    """Wait for every process (no-op in a single process)."""
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils
        multihost_utils.sync_global_devices(name)


def restore_params(path: str | os.PathLike, abstract, what: str):
    """Exported params at ``path`` in the structure of ``abstract``. A damaged (manifest
    mismatch), non-finite or mismatched folder raises :class:`CheckpointError` naming ``what``
    (e.g. "classifier params") and the fix; a legacy folder (no manifest) loads with a note."""
    path = Path(path)
    man, problem = verify_folder(path)
    if problem is not None:
        raise CheckpointError(f"{what} at {path} are corrupt ({problem}); delete the folder and retrain.")
    try:
        params = ocp.StandardCheckpointer().restore(path.absolute(), abstract)
    except Exception as e:  # orbax raises many types: missing files, bad metadata, shape mismatch
        raise CheckpointError(f"{what} at {path} could not be restored ({_first_line(e)}); "
                              f"delete the folder and retrain.") from e
    bad = first_nonfinite(params)
    if bad is not None:
        raise CheckpointError(f"{what} at {path} hold NaN/Inf (at {bad}); delete the folder and retrain.")
    if man is None and jax.process_index() == 0:
        _note(f"{what} at {path} have no {MANIFEST} (written by an older version): loaded without a checksum check")
    return params


def params_meta(path: str | os.PathLike) -> dict:
    """The ``meta`` recorded with exported params at ``path`` ({} for legacy exports)."""
    man = read_manifest(path)
    return dict(man.get("meta", {})) if man else {}


def abstract_like(tree, sharding=None):
    """ShapeDtypeStructs (optionally with a sharding) for restoring into ``tree``'s layout."""
    def f(x):
        return jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sharding if sharding is not None
                                    else getattr(x, "sharding", None))
    return jax.tree.map(f, tree)
