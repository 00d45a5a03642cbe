"""Defenses: one interface (``DefenseTrainer``: ``defend(params, x) -> x_clean`` + a train step).

``DEFENSES`` maps a config name (``config.defense``) to its trainer class (``registry``);
``train_defense(config)`` trains one through the shared loop (``train``); ``load_defense``
returns a pure defend fn of the exported params; ``PARAMETER_FREE`` holds the defenses that need
no training (``none``, ``binarize``). :mod:`.losses` has the pixel, GAN, classification-guidance and
feature losses, ``make_training_attack`` the attacks made inside a train step. Nothing below this
package imports it.
"""
from ipgan_jax.defenses import losses
from ipgan_jax.defenses.ape_gan import APEGANTrainer
from ipgan_jax.defenses.base import DefenseTrainer
from ipgan_jax.defenses.dae import DAETrainer
from ipgan_jax.defenses.defense_gan import DefenseGANTrainer
from ipgan_jax.defenses.grip_gan import GRIPGANTrainer
from ipgan_jax.defenses.ipgan import IPGANTrainer
from ipgan_jax.defenses.ipgan_adaptive import AdaptiveIPGANTrainer
from ipgan_jax.defenses.registry import (
    DEFENSES,
    PARAMETER_FREE,
    DefenseNotFoundError,
    binarize,
    defense_dir,
    load_defense,
    make_trainer,
    resolve_defense,
)
from ipgan_jax.defenses.train import train_defense
from ipgan_jax.defenses.training_attacks import make_training_attack
from ipgan_jax.defenses.uipd import UIPDTrainer

__all__ = [
    "DEFENSES", "PARAMETER_FREE", "DefenseTrainer", "DefenseNotFoundError",
    "defense_dir", "load_defense", "make_trainer", "resolve_defense", "train_defense", "binarize",
    "IPGANTrainer", "AdaptiveIPGANTrainer", "APEGANTrainer", "DefenseGANTrainer", "DAETrainer", "UIPDTrainer",
    "GRIPGANTrainer",
    "losses", "make_training_attack",
]
