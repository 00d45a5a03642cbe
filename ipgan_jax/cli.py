"""Command-line plumbing shared by ``run_train.py`` and ``run_eval.py``: the ``--config`` flag
(resolved relative to the repository when it is not found from the current folder), early config
checks, and the user's mistakes (:class:`~ipgan_jax.errors.UserError`, an unknown ``--config.<key>``)
printed as one line instead of a traceback; every other error keeps its traceback."""
from __future__ import annotations

import math
import os
import sys
import traceback
from pathlib import Path
from typing import NoReturn

from ml_collections import config_flags

from ipgan_jax.data.pipeline import DATASETS
from ipgan_jax.errors import ConfigError, UserError, UserFileNotFoundError

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
    raise UserFileNotFoundError(f"config file {path!r} not found (looked in {os.getcwd()} and in the repository "
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
        raise ConfigError(f"config.dataset={config.dataset!r}: choose one of {DATASETS}")
    if config.stage not in STAGES:
        raise ConfigError(f"config.stage={config.stage!r}: choose one of {STAGES}")
    for sect in ("train", "classifier_train"):
        if config[sect].batch_size <= 0:
            raise ConfigError(f"config.{sect}.batch_size must be positive, got {config[sect].batch_size}")
    from ipgan_jax.defenses.registry import trained_method
    trained_method(config.defense)
    bad = list(_nonfinite_fields(config))
    if bad:
        raise ConfigError(f"{', '.join(bad)}: config values must be finite numbers")
    curve = [float(e) for e in config.eval.eps_curve]
    if any(not (math.isfinite(e) and e >= 0) for e in curve):
        raise ConfigError(f"config.eval.eps_curve={tuple(curve)}: every eps must be finite and >= 0 (pixel units)")


def _from_config_override(exc: BaseException) -> bool:
    """Whether ``exc``, caught while the flags were parsed, came from applying a ``--config.<key>``
    override: raised inside ml_collections, with no frame of our own code (e.g. a config file's
    ``get_config``) in between."""
    frames = traceback.extract_tb(exc.__traceback__)[1:]   # [0]: the parser's own frame
    libs = (f"{os.sep}ml_collections{os.sep}", f"{os.sep}absl{os.sep}")
    return bool(frames) and any(libs[0] in f.filename for f in frames) and \
        all(any(lib in f.filename for lib in libs) for f in frames)


def _one_line(message: str) -> NoReturn:
    print(f"error: {message}", file=sys.stderr)
    sys.exit(2)


def _parse_flags(argv: list) -> list:
    """absl's flag parsing (``app.parse_flags_with_usage``: a bad flag prints usage and exits 1), which
    also loads ``--config`` and applies its ``--config.<key>=v`` overrides: an override of a key the
    config does not define raises KeyError / AttributeError in ml_collections, printed as one line."""
    from absl import app
    try:
        return app.parse_flags_with_usage(argv)
    except (KeyError, AttributeError) as e:
        if not _from_config_override(e):
            raise
        msg = e
        while isinstance(msg, BaseException) and msg.args:   # ml_collections wraps a KeyError in an AttributeError
            msg = msg.args[0]
        key, *hint = str(msg).splitlines()                   # "'num_stpes'", 'Did you mean "num_steps" ...?'
        hint = f" ({' '.join(hint)})" if hint else ""
        overrides = [a for a in argv[1:] if a.startswith("--config.")]
        _one_line(f"unknown config key {key.strip(chr(34))} in {overrides}{hint}. "
                  f"Every --config.<key> must exist in the config file (see configs/).")


def run_with_clear_errors(main) -> None:
    """Run the absl ``main(argv)`` of a command (``app.run``) in two phases, printing the user's
    mistakes as one line (``error: ...``, exit status 2) and everything else with its traceback.

    1. Flags: ``--config`` is resolved (a missing file is one line), then absl parses the flags and
       applies the ``--config.<key>=v`` overrides; only a KeyError / AttributeError raised by
       ml_collections while applying an override becomes "unknown config key". ``--help`` and bad
       flag values behave as in any absl program (usage, exit 1).
    2. ``main``: a :class:`~ipgan_jax.errors.UserError` (a bad config value or flag, a missing
       dataset, config file or trained model, a corrupt checkpoint, NaN/Inf in training, an
       unwritable folder, a workdir in use, a shipped model that does not match its manifest, ...)
       is printed as one line. Any other exception, e.g. a ``ValueError`` or ``AttributeError``
       of a bug in the library, propagates with its traceback.

    Args:
        main: the command's ``main(argv)``, as for ``absl.app.run``.
    """
    from absl import app
    try:
        sys.argv = [sys.argv[0], *_resolve_config_argv(sys.argv[1:])]
    except UserError as e:
        _one_line(str(e))

    def checked_main(argv):
        try:
            return main(argv)
        except UserError as e:
            _one_line(str(e))

    app.run(checked_main, flags_parser=_parse_flags)
