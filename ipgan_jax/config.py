"""Config checks and friendly top-level errors for the command-line entry points."""
from __future__ import annotations

import sys
import traceback

STAGES = ("all", "classifier", "defense")


def check_config(config) -> None:
    """Fail early, with the offending key, on values the code cannot use."""
    from ipgan_jax.data.pipeline import DATASETS
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
    from ipgan_jax.data.fetch import DatasetNotFoundError
    from ipgan_jax.training.checkpoint import CheckpointError
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
