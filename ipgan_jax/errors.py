"""The errors that report a mistake in what the user asked for, as opposed to a bug.

``run_train.py``, ``run_eval.py`` and ``python -m ipgan_jax.pretrained`` print a :class:`UserError`
as one line (``error: <message>``, exit status 2); every other exception keeps its traceback, so
an internal ``ValueError`` or a typo in library code is never mistaken for a bad setting. Each
module's own user-facing errors (``DatasetNotFoundError``, ``CheckpointError``, ...) derive from
:class:`UserError` as well as from the built-in class they always had, so ``except ValueError`` /
``except FileNotFoundError`` keep working.

This module imports nothing from the package, so every layer may import it.
"""
from __future__ import annotations


class UserError(Exception):
    """An error in what the user asked for (a setting, a name, a file, a model that is not there).

    The command-line tools print it as one line, ``error: <message>``, and exit with status 2; the
    message must say what was wrong and how to fix it (the flag to change, the command to run).
    """


class ConfigError(UserError, ValueError):
    """A config value, command-line flag or name (of an attack, defense, classifier, ...) that the
    code cannot use; the message names the setting and what it accepts."""


class UserFileNotFoundError(UserError, FileNotFoundError):
    """A file or folder the user named, or one a command needs and the user provides, is not there;
    the message names the path and how to provide it."""


class ModelNotFoundError(UserFileNotFoundError):
    """A trained model (classifier or defense) that a command needs is not there; the message names
    the command that trains it (or ``--config.pretrained=True`` for the shipped ones)."""
