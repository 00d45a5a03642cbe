"""The persistent compilation cache (ipgan_jax/compilation_cache.py): where it goes, that it can be
turned off, that a compiled program lands in it, and that a bad folder never fails a run."""
from __future__ import annotations

import os
import subprocess
import sys

from ipgan_jax import compilation_cache as cc


def test_folder_from_environment(tmp_path):
    assert cc.cache_dir_from_env({"JAX_COMPILATION_CACHE_DIR": str(tmp_path / "j"),
                                  "IPGAN_COMPILATION_CACHE": str(tmp_path / "i")}) == str(tmp_path / "j")
    assert cc.cache_dir_from_env({"IPGAN_COMPILATION_CACHE": str(tmp_path / "i")}) == str(tmp_path / "i")
    assert cc.cache_dir_from_env({}) == os.path.expanduser(cc.DEFAULT_DIR)
    for off in ("0", "off", "False", ""):
        assert cc.cache_dir_from_env({"IPGAN_COMPILATION_CACHE": off}) is None
    for on in ("1", "on", "TRUE", " yes "):    # switched on: the default folder, not a folder named '1'
        assert cc.cache_dir_from_env({"IPGAN_COMPILATION_CACHE": on}) == os.path.expanduser(cc.DEFAULT_DIR)


def _run(env_extra, code):
    env = {k: v for k, v in os.environ.items() if k not in ("JAX_COMPILATION_CACHE_DIR", "IPGAN_COMPILATION_CACHE")}
    env.update(env_extra)
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)


PROGRAM = ("import jax, jax.numpy as jnp; from ipgan_jax import compilation_cache as cc; "
           "print('DIR', cc.enable(min_compile_secs=0.0)); "
           "jax.jit(lambda x: jnp.tanh(x @ x.T).sum()).lower(jnp.ones((8, 8))).compile()")


def test_compiled_program_is_written_and_off_writes_nothing(tmp_path):
    on = tmp_path / "on"
    r = _run({"IPGAN_COMPILATION_CACHE": str(on)}, PROGRAM)
    assert r.returncode == 0, r.stderr
    assert f"DIR {on}" in r.stdout
    assert any(name.startswith("jit_") for name in os.listdir(on)), os.listdir(on)
    r = _run({"IPGAN_COMPILATION_CACHE": "0", "HOME": str(tmp_path / "home")}, PROGRAM)
    assert r.returncode == 0, r.stderr
    assert "DIR None" in r.stdout
    assert not (tmp_path / "home" / ".cache").exists()


def test_unusable_folder_is_ignored(tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    r = _run({"IPGAN_COMPILATION_CACHE": str(blocker / "xla")}, PROGRAM)
    assert r.returncode == 0, r.stderr
    assert "DIR None" in r.stdout
