"""Defenses: one interface (``DefenseTrainer``: ``defend(params, x) -> x_clean`` + a train step).

``DEFENSES`` maps a config name (``config.defense``) to its trainer class (``registry``);
``train_defense(config)`` trains one through the shared loop (``train``); ``load_defense``
returns a pure defend fn of the exported params. Nothing below this package imports it.
"""
from ipgan_jax.defenses.base import DefenseTrainer
from ipgan_jax.defenses.registry import DEFENSES, defense_dir, load_defense, make_trainer
from ipgan_jax.defenses.train import train_defense

__all__ = ["DEFENSES", "DefenseTrainer", "defense_dir", "load_defense", "make_trainer", "train_defense"]
