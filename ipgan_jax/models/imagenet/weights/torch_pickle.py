"""Read PyTorch state dicts (``torch.save`` files) into numpy arrays without importing torch.

Both serialisation formats are supported:

* the legacy (pre-1.6) stream: pickled magic number, protocol version and sys info, then
  the pickled object whose storages are persistent ids, then the pickled list of storage
  keys, then for every key an int64 element count followed by the raw little-endian bytes;
* the zip format (torch >= 1.6): ``<root>/data.pkl`` plus one ``<root>/data/<key>`` file per
  storage.

Unpickling is restricted to containers and tensor-rebuild functions (no arbitrary code can
run); every tensor comes back as a C-contiguous numpy array (a copy, never a view into the
file). Usage: ``load_state_dict(path) -> {name: np.ndarray}`` (nested containers are kept).
"""
from __future__ import annotations

import collections
import io
import os
import pickle
import struct
import zipfile

import numpy as np

from ipgan_jax.errors import UserError, UserFileNotFoundError

LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
LEGACY_PROTOCOL = 1001


def _bfloat16():
    import ml_dtypes  # a jax dependency
    return ml_dtypes.bfloat16


_STORAGE_DTYPES = {
    "FloatStorage": np.float32, "DoubleStorage": np.float64, "HalfStorage": np.float16,
    "LongStorage": np.int64, "IntStorage": np.int32, "ShortStorage": np.int16,
    "CharStorage": np.int8, "ByteStorage": np.uint8, "BoolStorage": np.bool_,
    "BFloat16Storage": _bfloat16,
}


class TorchPickleError(UserError, ValueError):
    """The file is not a readable torch state dict (message names the file)."""


class _StorageType:
    def __init__(self, name):
        dt = _STORAGE_DTYPES[name]
        self.name, self.dtype = name, np.dtype(dt() if dt is _bfloat16 else dt)


class _Storage:
    def __init__(self, key, dtype, numel):
        self.key, self.dtype, self.numel, self.array = key, dtype, numel, None


class _LazyTensor:
    def __init__(self, storage, offset, size, stride):
        self.storage, self.offset, self.size, self.stride = storage, offset, tuple(size), tuple(stride)

    def materialize(self):
        base = self.storage.array
        if base is None:
            raise TorchPickleError(f"storage {self.storage.key!r} has no data")
        n = int(np.prod(self.size)) if self.size else 1
        need = self.offset + (1 + sum((s - 1) * st for s, st in zip(self.size, self.stride)) if n else 0)
        if need > base.size:
            raise TorchPickleError(f"tensor of shape {self.size} overruns storage {self.storage.key!r}")
        item = base.dtype.itemsize
        view = np.lib.stride_tricks.as_strided(base[self.offset:], self.size, [s * item for s in self.stride])
        return np.array(view, copy=True, order="C")


def _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad=False, backward_hooks=None,
                       metadata=None):
    return _LazyTensor(storage, storage_offset, size, stride)


def _rebuild_tensor(storage, storage_offset, size, stride):
    return _LazyTensor(storage, storage_offset, size, stride)


def _rebuild_parameter(data, requires_grad=False, backward_hooks=None):
    return data


class _Unpickler(pickle.Unpickler):
    _FUNCS = {("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor_v2,
              ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
              ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
              ("collections", "OrderedDict"): collections.OrderedDict}

    def __init__(self, f, source):
        super().__init__(f, encoding="utf-8")
        self.source, self.storages = source, {}

    def find_class(self, module, name):
        if (module, name) in self._FUNCS:
            return self._FUNCS[(module, name)]
        if module == "torch" and name in _STORAGE_DTYPES:
            return _StorageType(name)
        raise TorchPickleError(f"{self.source}: refusing to unpickle {module}.{name} (only state dicts "
                               "of plain tensors are supported)")

    def persistent_load(self, pid):
        if not (isinstance(pid, tuple) and pid and pid[0] == "storage" and isinstance(pid[1], _StorageType)):
            raise TorchPickleError(f"{self.source}: unsupported persistent id {pid!r:.80}")
        _, stype, key, _location, numel = pid[:5]
        if len(pid) > 5 and pid[5] is not None:
            raise TorchPickleError(f"{self.source}: storage views are not supported")
        if key not in self.storages:
            self.storages[key] = _Storage(key, stype.dtype, numel)
        return self.storages[key]


def _materialize(obj):
    if isinstance(obj, _LazyTensor):
        return obj.materialize()
    if isinstance(obj, dict):
        out = type(obj)() if isinstance(obj, collections.OrderedDict) else {}
        for k, v in obj.items():
            out[k] = _materialize(v)
        return out
    if isinstance(obj, (list, tuple)):
        return type(obj)(_materialize(v) for v in obj)
    return obj


def _load_legacy(data: bytes, source: str):
    f = io.BytesIO(data)
    try:
        magic = pickle.load(f)
        if magic != LEGACY_MAGIC:
            raise TorchPickleError(f"{source}: not a torch file (bad magic number)")
        if pickle.load(f) != LEGACY_PROTOCOL:
            raise TorchPickleError(f"{source}: unsupported legacy protocol version")
        sys_info = pickle.load(f)
        if not sys_info.get("little_endian", True):
            raise TorchPickleError(f"{source}: big-endian files are not supported")
        up = _Unpickler(f, source)
        obj = up.load()
        keys = pickle.load(f)
        for key in keys:
            st = up.storages[key]
            (numel,) = struct.unpack("<q", f.read(8))
            nbytes = numel * st.dtype.itemsize
            raw = f.read(nbytes)
            if len(raw) != nbytes:
                raise TorchPickleError(f"{source}: truncated data for storage {key!r}")
            st.array = np.frombuffer(raw, dtype=st.dtype, count=numel)
    except (pickle.UnpicklingError, EOFError, KeyError, struct.error, AttributeError) as e:
        raise TorchPickleError(f"{source}: corrupt or unsupported torch file ({type(e).__name__}: {e})") from e
    return _materialize(obj)


def _load_zip(path, source: str):
    try:
        with zipfile.ZipFile(path) as zf:
            names = zf.namelist()
            pkl = [n for n in names if n.endswith("/data.pkl") or n == "data.pkl"]
            if len(pkl) != 1:
                raise TorchPickleError(f"{source}: zip file has no single data.pkl")
            root = pkl[0][: -len("data.pkl")]
            up = _Unpickler(io.BytesIO(zf.read(pkl[0])), source)
            obj = up.load()
            for key, st in up.storages.items():
                raw = zf.read(f"{root}data/{key}")
                if len(raw) < st.numel * st.dtype.itemsize:
                    raise TorchPickleError(f"{source}: truncated data for storage {key!r}")
                st.array = np.frombuffer(raw, dtype=st.dtype, count=st.numel)
    except (zipfile.BadZipFile, pickle.UnpicklingError, EOFError, KeyError) as e:
        raise TorchPickleError(f"{source}: corrupt or unsupported torch file ({type(e).__name__}: {e})") from e
    return _materialize(obj)


def load_state_dict(path) -> dict:
    """Load a ``torch.save``'d state dict as ``{name: np.ndarray}`` (legacy or zip format)."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise UserFileNotFoundError(f"torch state dict {path} does not exist")
    if zipfile.is_zipfile(path):
        return _load_zip(path, path)
    with open(path, "rb") as f:
        return _load_legacy(f.read(), path)
