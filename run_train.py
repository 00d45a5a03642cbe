"""Train the classifiers the defense needs (those missing) and the defense.

    python run_train.py --config configs/mnist.py [--config.classifier=mcnn] [--config.train.num_steps=...]
    python run_train.py --config configs/imagenet.py
Stages (``--config.stage``): ``classifier`` trains only the target classifier ``config.classifier``;
``defense`` only the defense (every classifier it needs must exist: the target, the surrogates of
``config.ipgan.attack_sources`` and ``config.train.monitor_sources``; a missing one is an error that
names the command to train it); ``all`` (default) first trains each of those classifiers that is
missing, then the defense.
"""
from __future__ import annotations

import json
import sys

from absl import app, logging

from ipgan_jax.cli import check_config, define_config_flag, run_with_clear_errors
from ipgan_jax.errors import ConfigError

_CONFIG = define_config_flag("configs/mnist.py")


def main(argv):
    logging.set_verbosity(logging.WARNING)
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    config = _CONFIG.value
    check_config(config)
    from ipgan_jax.defenses.registry import resolve_defense
    adaptive_set = [a.split("=")[0] for a in sys.argv[1:] if a.startswith("--config.ipgan_adaptive.")]
    if adaptive_set and resolve_defense(config).defense.partition(":")[0] != "ipgan_adaptive":
        raise ConfigError(f"{', '.join(adaptive_set)} set(s) the adaptive IP-GAN, but this run trains "
                          f"{config.defense}: add --config.ipgan.adaptive=True (or drop the setting)")
    from ipgan_jax import compilation_cache
    compilation_cache.enable()   # compile each program once across runs (IPGAN_COMPILATION_CACHE=0: off)
    from ipgan_jax.training.parallel import maybe_initialize_distributed
    maybe_initialize_distributed(config.distributed)   # before anything touches the devices
    from ipgan_jax.defenses import train_defense
    from ipgan_jax.defenses.train import missing_classifiers
    from ipgan_jax.training.classifier import train_classifier
    results = {}
    if config.pretrained and config.stage == "classifier":
        raise ConfigError("--config.pretrained=True uses the shipped classifiers, so there is no classifier to "
                          "train: drop it, or use --config.stage=defense")
    if config.stage == "classifier" and config.dataset == "mnist":
        to_train = [config.classifier]   # (re)trains or resumes it, present or not
    elif config.stage == "all":
        to_train = missing_classifiers(config)   # the target and the defense's surrogates, where missing
    else:
        to_train = []   # stage defense: train_defense names any missing classifier and its command
    for name in to_train:
        if config.stage == "all":
            print(f"training classifier {name} (needed by {resolve_defense(config).defense}, not in "
                  f"{config.workdir}/classifiers)")
        results[f"classifier/{name}"] = r = train_classifier(config, name)
        print(f"classifier {name}: test accuracy {r['test_accuracy']:.4f}")
    if config.stage in ("all", "defense"):
        results["defense"] = train_defense(config)
        name = resolve_defense(config).defense   # ipgan with ipgan.adaptive=True trains ipgan_adaptive
        print(f"defense {name} on {config.classifier}: {json.dumps(results['defense'])}")
    return 0


if __name__ == "__main__":
    run_with_clear_errors(main)
