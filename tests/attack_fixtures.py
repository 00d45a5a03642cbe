"""A small trained MNIST classifier shared by the attack tests and the attack benchmark.

``trained_lenet()`` trains LeNet-5 (``get_classifier('lenet')``) on the real MNIST train split
with optax Adam for a few hundred steps (~98% test accuracy, tens of seconds on a laptop CPU)
and caches the parameters under ``$IPGAN_TEST_CACHE`` (default ``/tmp/ipgan_jax_test_cache``)
in a file named by a hash of the settings, so later runs only read the file. Writes are atomic
(temp file + rename), so concurrent test workers are safe.

The lead may replace the training loop with the library's own classifier trainer; callers only
rely on ``trained_lenet()`` returning a :class:`TrainedClassifier` and on ``mnist_test_batch``.
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

SETTINGS: Dict[str, Any] = dict(model="lenet", dataset="mnist", steps=600, batch_size=128,
                                learning_rate=1e-3, seed=0, version=1)


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


def cache_dir() -> str:
    return os.environ.get("IPGAN_TEST_CACHE", os.path.join(tempfile.gettempdir(), "ipgan_jax_test_cache"))


def _cache_path(settings) -> str:
    digest = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]
    return os.path.join(cache_dir(), f"{settings['model']}_{settings['dataset']}_{digest}.msgpack")


def _train(settings) -> Tuple[Any, Any]:
    import optax
    from ipgan_jax.data.pipeline import make_loader
    from ipgan_jax.models.classifiers import get_classifier

    module = get_classifier(settings["model"])
    loader = make_loader(settings["dataset"], "train", settings["batch_size"], seed=settings["seed"], train=True)
    init_key = jax.random.key(settings["seed"])
    params = module.init(init_key, jnp.zeros((1, 28, 28, 1), jnp.float32), train=False)["params"]
    tx = optax.adam(settings["learning_rate"])
    opt_state = tx.init(params)

    @jax.jit
    def step(params, opt_state, image, label, key):
        def loss_fn(p):
            logits = module.apply({"params": p}, image, train=True, rngs={"dropout": key})
            return optax.softmax_cross_entropy_with_integer_labels(logits, label).mean()
        grads = jax.grad(loss_fn)(params)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state

    dropout_key = jax.random.key(settings["seed"] + 1)
    for i in range(settings["steps"]):
        batch = loader.batch(i)
        params, opt_state = step(params, opt_state, batch["image"], batch["label"],
                                 jax.random.fold_in(dropout_key, i))
    return module, params


def _evaluate(module, params, settings) -> float:
    images, labels = mnist_test_set()
    apply = jax.jit(lambda x: jnp.argmax(module.apply({"params": params}, x, train=False), -1))
    preds = np.concatenate([np.asarray(apply(images[i:i + 1000])) for i in range(0, len(images), 1000)])
    return float(np.mean(preds == labels))


_TEST_SET = None


def mnist_test_set() -> Tuple[np.ndarray, np.ndarray]:
    """The full MNIST test split: images float32 [10000,28,28,1] in [0,1], labels int32 [10000]."""
    global _TEST_SET
    if _TEST_SET is None:
        from ipgan_jax.data.pipeline import make_loader
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
    from flax import serialization
    from ipgan_jax.models.classifiers import get_classifier

    settings = dict(SETTINGS, **overrides)
    path = _cache_path(settings)
    module = get_classifier(settings["model"])
    if os.path.exists(path):
        with open(path, "rb") as f:
            blob = serialization.msgpack_restore(f.read())
        params = jax.tree_util.tree_map(jnp.asarray, blob["params"])  # plain nested dict, as linen expects
        return TrainedClassifier(module, params, float(blob["test_accuracy"]), settings)
    module, params = _train(settings)
    acc = _evaluate(module, params, settings)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    data = serialization.msgpack_serialize({"params": serialization.to_state_dict(params),
                                            "test_accuracy": acc})
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), suffix=".tmp")
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.replace(tmp, path)
    return TrainedClassifier(module, params, acc, settings)
