"""Command-line plumbing shared by ``run_train.py`` and ``run_eval.py``: the ``--config`` flag
(resolved relative to the repository when it is not found from the current folder), early config
checks, and known user errors printed as one line instead of a traceback."""
from __future__ import annotations

import math
import os
import sys
import traceback
from pathlib import Path

from ml_collections import config_flags

from ipgan_jax.data.pipeline import DATASETS
from ipgan_jax.data.wheels import DatasetNotFoundError
from ipgan_jax.files import NotWritableError
from ipgan_jax.pretrained import PretrainedError
from ipgan_jax.training.checkpoint import CheckpointError, NonFiniteError

STAGES = ("all", "classifier", "defense")
REPO = Path(__file__).resolve().parent.parent


def resolve_config_path(arg: str) -> str:
    """``arg`` (``path[:param]``) as given when the file exists from here, else relative to the
    repository; a file found in neither raises FileNotFoundError naming both places."""
    path, sep, param = arg.partition(":")
    if os.path.exists(path):
        return arg
    alt = REPO / path
    if not os.path.isabs(path) and alt.exists():
        return f"{alt}{sep}{param}"
    raise FileNotFoundError(f"config file {path!r} not found (looked in {os.getcwd()} and in the repository "
                            f"{REPO}); see configs/ for the available ones")


def _resolve_config_argv(argv: list) -> list:
    out, it = [], iter(range(len(argv)))
    for i in it:
        a = argv[i]
        if a.startswith(("--config=", "-config=")):
            k, _, v = a.partition("=")
            out.append(f"{k}={resolve_config_path(v)}")
        elif a in ("--config", "-config") and i + 1 < len(argv):
            out += [a, resolve_config_path(argv[i + 1])]
            next(it)
        else:
            out.append(a)
    return out


def define_config_flag(default: str = "configs/mnist.py", lock: bool = True):
    """``--config``: an ml_collections config file (the default resolved against the repository).
    Locked by default, so ``--config.<key>=v`` may only set keys the file defines (a typo is an
    error, never a new silently ignored field)."""
    if not os.path.exists(default) and (REPO / default).exists():
        default = str(REPO / default)
    if str(REPO) not in sys.path:     # config files import ``configs.*``
        sys.path.append(str(REPO))
    return config_flags.DEFINE_config_file("config", default, "Path to an ml_collections config file.",
                                           lock_config=lock)


def _nonfinite_fields(config, prefix="config"):
    for k, v in config.items():
        if hasattr(v, "items"):
            yield from _nonfinite_fields(v, f"{prefix}.{k}")
        elif isinstance(v, float) and not math.isfinite(v):
            yield f"{prefix}.{k}={v}"


def check_config(config) -> None:
    """Fail early, with the offending key, on values the code cannot use."""
    if config.dataset not in DATASETS:
        raise ValueError(f"config.dataset={config.dataset!r}: choose one of {DATASETS}")
    if config.stage not in STAGES:
        raise ValueError(f"config.stage={config.stage!r}: choose one of {STAGES}")
    for sect in ("train", "classifier_train"):
        if sect in config and config[sect].batch_size <= 0:
            raise ValueError(f"config.{sect}.batch_size must be positive, got {config[sect].batch_size}")
    if "defense" in config:
        from ipgan_jax.defenses.registry import trained_method
        trained_method(config.defense)
    bad = list(_nonfinite_fields(config))
    if bad:
        raise ValueError(f"{', '.join(bad)}: config values must be finite numbers")
    if "eval" in config:
        curve = [float(e) for e in config.eval.get("eps_curve", ())]
        if any(not (math.isfinite(e) and e >= 0) for e in curve):
            raise ValueError(f"config.eval.eps_curve={tuple(curve)}: every eps must be finite and >= 0 (pixel units)")


def _from_config_override(exc: BaseException) -> bool:
    return any("ml_collections" in f.filename for f in traceback.extract_tb(exc.__traceback__))


def run_with_clear_errors(fn) -> None:
    """Run ``fn``; print known user errors as one line (no deep traceback) and exit 2.

    Known errors: an unknown ``--config.key`` override, a missing config file, a missing dataset,
    a corrupt checkpoint, a missing trained model, a bad config value, NaN/Inf in training or in
    a model's outputs, an unwritable folder, a workdir in use by another training, a shipped model
    that is not shipped or does not match its manifest.
    """
    from ipgan_jax.training.loop import WorkdirLockedError
    try:
        sys.argv = [sys.argv[0], *_resolve_config_argv(sys.argv[1:])]
        fn()
    except (KeyError, AttributeError) as e:
        if not _from_config_override(e):
            raise
        overrides = [a for a in sys.argv[1:] if a.startswith("--config.")]
        print(f"error: unknown config key {str(e).strip(chr(34))} in {overrides}. "
              f"Every --config.<key> must exist in the config file (see configs/).", file=sys.stderr)
        sys.exit(2)
    except (DatasetNotFoundError, CheckpointError, FileNotFoundError, ValueError, NonFiniteError,
            NotWritableError, WorkdirLockedError, PretrainedError) as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
