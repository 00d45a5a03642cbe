"""Small file helpers shared by the whole package: content hashes and atomic writes.

An atomic write builds the new file or folder next to its final place and renames it there only
when it is complete, so a reader (or a kill) never sees a half-written one.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Iterator

from ipgan_jax.errors import UserError


def sha256(path: str | os.PathLike) -> str:
    """Hex SHA-256 of a file's bytes (read in 1 MiB chunks)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def remove(path: str | os.PathLike) -> None:
    """Delete a file, link or folder if it exists."""
    path = Path(path)
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    elif path.exists() or path.is_symlink():
        path.unlink()


def replace(src: str | os.PathLike, dst: str | os.PathLike) -> Path:
    """Rename ``src`` onto ``dst`` (a file or a folder); an existing folder ``dst`` is moved aside
    first and deleted only after the rename, so ``dst`` is always either the old or the new one."""
    src, dst = Path(src), Path(dst)
    if dst.is_dir() and not dst.is_symlink():
        trash = Path(tempfile.mkdtemp(prefix=f".{dst.name}.old-", dir=dst.parent))
        os.replace(dst, trash / "old")
        os.replace(src, dst)
        shutil.rmtree(trash, ignore_errors=True)
    else:
        os.replace(src, dst)
    return dst


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str = "") -> Iterator[Path]:
    """Yield a fresh temporary path next to ``path`` (ending in ``suffix``, e.g. '.png' for writers
    that pick the format from the name); write the file or folder there. On a clean exit it
    replaces ``path``; on an exception it is removed and ``path`` is left as it was."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.tmp-", suffix=suffix, dir=path.parent)
    os.close(fd)
    tmp = Path(name)
    tmp.unlink()              # the writer creates it (a file, or a folder)
    try:
        yield tmp
        replace(tmp, path)
    finally:
        remove(tmp)


def write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Atomically write ``data`` to ``path``."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def write_text(path: str | os.PathLike, text: str) -> Path:
    """Atomically write ``text`` to ``path``."""
    return write_bytes(path, text.encode())


class NotWritableError(UserError, RuntimeError):
    """A folder the run must write to cannot be written (read-only, a file in the way, ...)."""


def check_writable(folder: str | os.PathLike, what: str, flag: str) -> Path:
    """Create ``folder`` if needed and prove it writable with a probe file; else raise
    :class:`NotWritableError` naming ``what`` and the config ``flag`` that chooses another one."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".write-probe-", dir=folder)
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise NotWritableError(f"{what} {folder} is not writable ({type(e).__name__}: {e.strerror or e}); "
                               f"choose another one with {flag}") from e
    return folder


def json_safe(v: Any) -> Any:
    """``v`` with NaN -> None and +-Inf -> "inf"/"-inf" (strict JSON), numpy scalars -> Python."""
    if isinstance(v, float) and (math.isnan(v) or math.isinf(v)):
        return None if math.isnan(v) else ("inf" if v > 0 else "-inf")
    if isinstance(v, dict):
        return {str(k): json_safe(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [json_safe(x) for x in v]
    if hasattr(v, "item") and getattr(v, "ndim", None) == 0:   # numpy / jax scalars
        return json_safe(v.item())
    return v


def write_json(path: str | os.PathLike, obj: Any, indent: int = 1) -> Path:
    """Atomically write ``obj`` as strict JSON (NaN -> null, see :func:`json_safe`)."""
    return write_text(path, json.dumps(json_safe(obj), indent=indent, allow_nan=False))
