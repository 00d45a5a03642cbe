"""Small file helpers shared by the whole package: content hashes and atomic writes.

An atomic write builds the new file or folder next to its final place and renames it there only
when it is complete, so a reader (or a kill) never sees a half-written one.
"""
from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterator


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
