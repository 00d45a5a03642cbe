"""XLA's persistent compilation cache for ``run_train.py``, ``run_eval.py`` and the tests: a program
compiled once (an attack, a train step) is read back from disk by the next run with the same shapes,
JAX version and XLA flags instead of being compiled again.

Where: ``$JAX_COMPILATION_CACHE_DIR`` if set (JAX's own variable), else ``$IPGAN_COMPILATION_CACHE``,
else ``~/.cache/ipgan_jax/xla``. ``IPGAN_COMPILATION_CACHE=0`` turns it off, and ``=1`` (on, true, yes) asks
for the default folder (not a folder named ``1``). Entries are keyed by a
hash of the program and its compile options, written atomically by JAX, and safe to share between
concurrent processes; deleting the folder only costs compile time.
"""
from __future__ import annotations

import os
from typing import Optional

DEFAULT_DIR = os.path.join("~", ".cache", "ipgan_jax", "xla")
OFF = ("0", "off", "false", "no", "")
ON = ("1", "on", "true", "yes")


def cache_dir_from_env(environ=os.environ) -> Optional[str]:
    """The folder to use (expanded), or None when the cache is turned off."""
    if environ.get("JAX_COMPILATION_CACHE_DIR"):
        return os.path.expanduser(environ["JAX_COMPILATION_CACHE_DIR"])
    value = environ.get("IPGAN_COMPILATION_CACHE", DEFAULT_DIR)
    if value.strip().lower() in OFF:
        return None
    if value.strip().lower() in ON:
        value = DEFAULT_DIR
    return os.path.expanduser(value)


def enable(min_compile_secs: float = 0.2) -> Optional[str]:
    """Point JAX at the cache folder (creating it) for programs that took at least
    ``min_compile_secs`` to compile; returns the folder, or None when turned off or not writable
    (the run then compiles as usual: a cache is never a reason to fail)."""
    import jax
    path = cache_dir_from_env()
    if path is None:
        return None
    try:
        os.makedirs(path, exist_ok=True)
    except OSError:
        return None
    if not os.access(path, os.W_OK):
        return None
    jax.config.update("jax_compilation_cache_dir", path)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", float(min_compile_secs))
    return path
