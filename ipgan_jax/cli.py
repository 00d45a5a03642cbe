"""Command-line plumbing shared by ``run_train.py`` and ``run_eval.py``: the ``--config`` flag,
early config checks, and known user errors printed as one line instead of a traceback."""
from __future__ import annotations

import sys
import traceback

from ml_collections import config_flags

from ipgan_jax.data.pipeline import DATASETS
from ipgan_jax.data.wheels import DatasetNotFoundError
from ipgan_jax.training.checkpoint import CheckpointError

STAGES = ("all", "classifier", "defense")


def define_config_flag(default: str = "configs/mnist.py"):
    """``--config``: an ml_collections config file, locked, so ``--config.<key>=v`` may only set
    keys the file defines (a typo is an error, never a new silently ignored field)."""
    return config_flags.DEFINE_config_file("config", default, "Path to an ml_collections config file.",
                                           lock_config=True)


def check_config(config) -> None:
    """Fail early, with the offending key, on values the code cannot use."""
    if config.dataset not in DATASETS:
        raise ValueError(f"config.dataset={config.dataset!r}: choose one of {DATASETS}")
    if config.stage not in STAGES:
        raise ValueError(f"config.stage={config.stage!r}: choose one of {STAGES}")
    for sect in ("train", "classifier_train"):
        if sect in config and config[sect].batch_size <= 0:
            raise ValueError(f"config.{sect}.batch_size must be positive, got {config[sect].batch_size}")


def _from_config_override(exc: BaseException) -> bool:
    return any("ml_collections" in f.filename for f in traceback.extract_tb(exc.__traceback__))


def run_with_clear_errors(fn) -> None:
    """Run ``fn``; print known user errors as one line (no deep traceback) and exit 2.

    Known errors: an unknown ``--config.key`` override, a missing dataset, a corrupt
    checkpoint, a missing trained model, a bad config value.
    """
    try:
        fn()
    except (KeyError, AttributeError) as e:
        if not _from_config_override(e):
            raise
        overrides = [a for a in sys.argv[1:] if a.startswith("--config.")]
        print(f"error: unknown config key {str(e).strip(chr(34))} in {overrides}. "
              f"Every --config.<key> must exist in the config file (see configs/).", file=sys.stderr)
        sys.exit(2)
    except (DatasetNotFoundError, CheckpointError, FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
