"""Test setup: 8 emulated CPU devices (sharding tests), quiet progress bars, tiny configs.

The package is imported as installed (``pip install -e .``; see README), not through sys.path edits.
"""
import os

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")
os.environ.setdefault("IPGAN_PROGRESS", "0")

import pytest  # noqa: E402


@pytest.fixture
def tiny_config(tmp_path):
    """configs/mnist_tiny.py with its workdir in a fresh temporary folder."""
    from configs import mnist_tiny
    c = mnist_tiny.get_config()
    c.workdir = str(tmp_path / "wd")
    return c


@pytest.fixture(scope="module")
def trained_tiny(tmp_path_factory):
    """configs/mnist_tiny.py with a tiny LeNet already trained in a module-wide temporary workdir."""
    from configs import mnist_tiny
    from ipgan_jax.training.classifier import train_classifier
    c = mnist_tiny.get_config()
    c.workdir = str(tmp_path_factory.mktemp("trained_tiny") / "wd")
    train_classifier(c)
    return c
