"""Train the target classifier (if missing) and the defense.

    python run_train.py --config configs/mnist.py [--config.classifier=mcnn] [--config.train.num_steps=...]
    python run_train.py --config configs/imagenet.py
Stages (``--config.stage``): ``classifier`` trains only the target classifier, ``defense`` only
the defense (the classifier must exist), ``all`` (default) does what is missing, in order.
"""
from __future__ import annotations

import json
import sys

from absl import app, logging

from ipgan_jax.cli import check_config, define_config_flag, run_with_clear_errors

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
        raise ValueError(f"{', '.join(adaptive_set)} set(s) the adaptive IP-GAN, but this run trains "
                         f"{config.defense}: add --config.ipgan.adaptive=True (or drop the setting)")
    from ipgan_jax import compilation_cache
    compilation_cache.enable()   # compile each program once across runs (IPGAN_COMPILATION_CACHE=0: off)
    from ipgan_jax.training.parallel import maybe_initialize_distributed
    maybe_initialize_distributed(config.distributed)   # before anything touches the devices
    from ipgan_jax.defenses import train_defense
    from ipgan_jax.training.classifier import classifier_dir, train_classifier
    results = {}
    if config.pretrained and config.stage == "classifier":
        raise ValueError("--config.pretrained=True uses the shipped classifiers, so there is no classifier to "
                         "train: drop it, or use --config.stage=defense")
    if config.stage in ("all", "classifier") and config.dataset == "mnist" and not config.pretrained:
        if config.stage == "classifier" or not (classifier_dir(config, config.classifier) / "params").exists():
            results["classifier"] = train_classifier(config)
            print(f"classifier {config.classifier}: test accuracy {results['classifier']['test_accuracy']:.4f}")
    if config.stage in ("all", "defense"):
        results["defense"] = train_defense(config)
        name = resolve_defense(config).defense   # ipgan with ipgan.adaptive=True trains ipgan_adaptive
        print(f"defense {name} on {config.classifier}: {json.dumps(results['defense'])}")
    return 0


if __name__ == "__main__":
    run_with_clear_errors(lambda: app.run(main))
