"""A small trained MNIST classifier shared by the attack tests and the attack benchmark.

``trained_lenet()`` trains LeNet-5 on the real MNIST train split with the library's own
classifier trainer (``train_classifier``: the one training loop, configs/mnist.py with the
settings below) for a few hundred steps (~98% test accuracy, about a minute on a laptop CPU)
and caches the parameters under ``$IPGAN_TEST_CACHE`` (default ``/tmp/ipgan_jax_test_cache``)
in a file named by a hash of the settings, so later runs only read the file. Writes are atomic
(temp file + rename), so concurrent test workers are safe.
"""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
from dataclasses import dataclass
from typing import Any, Callable, Dict, Tuple

import jax
import jax.numpy as jnp
import numpy as np
from flax import serialization

from configs import mnist
from ipgan_jax import files
from ipgan_jax.data.pipeline import make_loader
from ipgan_jax.models.classifiers import get_classifier
from ipgan_jax.training.classifier import load_classifier, train_classifier

SETTINGS: Dict[str, Any] = dict(model="lenet", dataset="mnist", steps=600, batch_size=128,
                                learning_rate=1e-3, warmup_steps=50, weight_decay=0.0, seed=0, version=2)


@dataclass
class TrainedClassifier:
    module: Any            # the flax module (eval mode: train=False)
    params: Any            # its parameters
    test_accuracy: float   # on the full MNIST test split
    settings: Dict[str, Any]

    def logits_fn(self) -> Callable[[jax.Array], jax.Array]:
        """x float [B,28,28,1] in [0,1] -> logits [B,10], eval mode."""
        module, params = self.module, self.params
        return lambda x: module.apply({"params": params}, x, train=False)


def tiny_mlp(num_classes: int = 10, in_dim: int = 64, hidden: int = 32, seed: int = 0, scale: float = 3.0):
    """A tiny random tanh MLP for attack unit tests (smooth, fast to compile).

    Args:
        num_classes: K, the logits' size.
        in_dim: the flattened input size (64 for [B, 8, 8, 1] images).
        hidden: the hidden width.
        seed: the weights' PRNG seed.
        scale: the weights' scale (larger: more confident logits).

    Returns:
        fn(x float [B, ...]) -> logits [B, num_classes].
    """
    k1, k2 = jax.random.split(jax.random.key(seed))
    w1 = jax.random.normal(k1, (in_dim, hidden)) * scale / np.sqrt(in_dim)
    w2 = jax.random.normal(k2, (hidden, num_classes)) * scale / np.sqrt(hidden)
    return lambda x: jnp.tanh(x.reshape(x.shape[0], -1) @ w1) @ w2


def cache_dir() -> str:
    return os.environ.get("IPGAN_TEST_CACHE", os.path.join(tempfile.gettempdir(), "ipgan_jax_test_cache"))


def _cache_path(settings) -> str:
    digest = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]
    return os.path.join(cache_dir(), f"{settings['model']}_{settings['dataset']}_{digest}.msgpack")


def _train(settings) -> Tuple[Any, Any, float]:
    """(module, params, test accuracy) of ``train_classifier`` with ``settings`` in a temporary workdir."""
    c = mnist.get_config()
    c.seed, c.classifier, c.dataset = settings["seed"], settings["model"], settings["dataset"]
    c.classifier_train.update(num_steps=settings["steps"], batch_size=settings["batch_size"],
                              learning_rate=settings["learning_rate"], warmup_steps=settings["warmup_steps"],
                              weight_decay=settings["weight_decay"], checkpoint_every=settings["steps"])
    with tempfile.TemporaryDirectory(prefix="attack_fixture_") as wd:
        c.workdir = wd
        acc = train_classifier(c)["test_accuracy"]
        module, variables = load_classifier(c)
        params = jax.device_get(variables["params"])
    return module, params, float(acc)


_TEST_SET = None


def mnist_test_set() -> Tuple[np.ndarray, np.ndarray]:
    """The full MNIST test split: images float32 [10000,28,28,1] in [0,1], labels int32 [10000]."""
    global _TEST_SET
    if _TEST_SET is None:
        loader = make_loader("mnist", "test", 10000, train=False)
        b = loader.batch(0)
        n = int(np.sum(b["mask"]))
        _TEST_SET = (b["image"][:n], b["label"][:n])
    return _TEST_SET


def mnist_test_batch(n: int, offset: int = 0) -> Tuple[jax.Array, jax.Array]:
    """``n`` test images (float32 [n,28,28,1] in [0,1]) and labels (int32 [n]), fixed order."""
    images, labels = mnist_test_set()
    return jnp.asarray(images[offset:offset + n]), jnp.asarray(labels[offset:offset + n])


def trained_lenet(**overrides) -> TrainedClassifier:
    """Train (or load from the /tmp cache) LeNet-5 on MNIST; see module docstring."""
    settings = dict(SETTINGS, **overrides)
    path = _cache_path(settings)
    module = get_classifier(settings["model"])
    if os.path.exists(path):
        with open(path, "rb") as f:
            blob = serialization.msgpack_restore(f.read())
        params = jax.tree_util.tree_map(jnp.asarray, blob["params"])  # plain nested dict, as linen expects
        return TrainedClassifier(module, params, float(blob["test_accuracy"]), settings)
    module, params, acc = _train(settings)
    files.write_bytes(path, serialization.msgpack_serialize({"params": serialization.to_state_dict(params),
                                                             "test_accuracy": acc}))
    return TrainedClassifier(module, params, acc, settings)
