"""Test setup: 8 emulated CPU devices (sharding tests), quiet progress bars, tiny configs.

The package is imported as installed (``pip install -e .``; see README), not through sys.path edits;
helpers the tests share live in ``ipgan_jax.testing`` (tests import nothing from each other or from here).
"""
import os

# ipgan_jax.testing.suite imports only the standard library: jax is not imported before XLA_FLAGS is set
from ipgan_jax.testing.suite import COLLECTIVE_TIMEOUTS

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8 " + COLLECTIVE_TIMEOUTS)
os.environ.setdefault("IPGAN_PROGRESS", "0")
# XLA's persistent compilation cache (ipgan_jax/compilation_cache.py) beside the trained-fixture cache:
# a second run of the suite, and every subprocess a test starts, reads compiled programs back.
# IPGAN_COMPILATION_CACHE=0 measures a cold suite.
if os.environ.get("IPGAN_COMPILATION_CACHE", "1").strip().lower() not in ("0", "off", "false", "no", ""):
    import tempfile
    _cache = os.path.join(
        os.environ.get("IPGAN_TEST_CACHE", os.path.join(tempfile.gettempdir(), "ipgan_jax_test_cache")), "xla")
    os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", _cache)
    os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0.2")

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

