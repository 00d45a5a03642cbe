"""Resumable orbax checkpoints with clear errors.

``Checkpointer(directory, save_every, keep)`` wraps ``orbax.checkpoint.CheckpointManager``:
``save(step, state)`` writes every ``save_every`` steps (and always when ``force=True``),
keeping the ``keep`` newest; ``restore(abstract_state)`` returns ``(state, step)`` of the
latest checkpoint or ``(None, 0)`` when there is none. Orbax writes to a temporary folder
and renames it when complete, so a kill during a save never leaves a half-written step.

``export_params(out, params, meta)`` / ``restore_params(path, abstract, what)`` write and read
the final exported parameters (``<out>/params`` + ``<out>/result.json``) of any trained model.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Optional

import jax
import orbax.checkpoint as ocp

from ipgan_jax import files


class CheckpointError(RuntimeError):
    """A checkpoint exists but cannot be used (corrupt, or of another model/config)."""


class Checkpointer:
    def __init__(self, directory: str | os.PathLike, save_every: int = 1000, keep: int = 3,
                 async_save: bool = False):
        self.directory = Path(directory).absolute()
        options = ocp.CheckpointManagerOptions(save_interval_steps=max(1, int(save_every)),
                                               max_to_keep=keep, create=True,
                                               enable_async_checkpointing=async_save)
        self.manager = ocp.CheckpointManager(self.directory, options=options)

    def latest_step(self) -> Optional[int]:
        return self.manager.latest_step()

    def save(self, step: int, state: Any, force: bool = False) -> bool:
        return self.manager.save(int(step), args=ocp.args.StandardSave(state), force=force)

    def restore(self, abstract_state: Any, step: Optional[int] = None):
        """Restore into the structure/shardings of ``abstract_state`` (e.g. from jax.eval_shape)."""
        step = self.manager.latest_step() if step is None else step
        if step is None:
            return None, 0
        try:
            state = self.manager.restore(step, args=ocp.args.StandardRestore(abstract_state))
        except Exception as e:  # orbax raises many types: missing files, bad metadata, shape mismatch
            raise CheckpointError(
                f"the checkpoint at {self.directory / str(step)} could not be restored "
                f"({_first_line(e)}). It is corrupt or was "
                f"written by a different model/config. Nothing was changed; move it away or choose another "
                f"--workdir to start fresh (steps present: {list(self.manager.all_steps())}).") from e
        return state, int(step)

    def wait(self):
        self.manager.wait_until_finished()

    def close(self):
        self.manager.wait_until_finished()
        self.manager.close()


def _first_line(e: BaseException) -> str:
    return f"{type(e).__name__}: {str(e).splitlines()[0][:300] if str(e) else ''}"


def export_params(out: str | os.PathLike, params, meta: dict) -> None:
    """Write final params (orbax, ``<out>/params``) and ``<out>/result.json``; each replaces the
    old one only when complete. Every process takes part in the save; process 0 renames."""
    out = Path(out)
    if jax.process_index() == 0:
        out.mkdir(parents=True, exist_ok=True)
    tmp = out / "params.tmp"            # the same name on every host (orbax saves collectively)
    files.remove(tmp)                   # a leftover of a killed export
    ckptr = ocp.StandardCheckpointer()
    ckptr.save(tmp.absolute(), params)
    ckptr.wait_until_finished()
    if jax.process_index() == 0:
        files.replace(tmp, out / "params")
        files.write_text(out / "result.json", json.dumps(meta, indent=2))


def restore_params(path: str | os.PathLike, abstract, what: str):
    """Exported params at ``path`` in the structure of ``abstract``; a damaged or mismatched folder
    raises :class:`CheckpointError` naming ``what`` (e.g. "classifier params") and the fix."""
    path = Path(path)
    try:
        return ocp.StandardCheckpointer().restore(path.absolute(), abstract)
    except Exception as e:  # orbax raises many types: missing files, bad metadata, shape mismatch
        raise CheckpointError(f"{what} at {path} could not be restored ({_first_line(e)}); "
                              f"delete the folder and retrain.") from e


def abstract_like(tree, sharding=None):
    """ShapeDtypeStructs (optionally with a sharding) for restoring into ``tree``'s layout."""
    def f(x):
        return jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sharding if sharding is not None
                                    else getattr(x, "sharding", None))
    return jax.tree.map(f, tree)
