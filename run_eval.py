"""Evaluate defenses like the paper's Table 1, plus an honest full white-box block.

    python run_eval.py                                   # embedded MNIST default, checkpoints of run_train.py
    python run_eval.py --config configs/mnist.py --num_examples 10000 --classifiers lenet --blocks oblivious
    python run_eval.py --attacks fgsm,pgd --defenses none,ipgan

Prints Markdown tables (ours next to the paper's DSR), writes results.json / results.csv and
PNG figures (image grids, robust-accuracy-vs-eps curves) to ``<workdir>/eval`` (or
``--config.eval.out_dir``), and runs sanity checks that flag gradient masking.
"""
from __future__ import annotations

import time

from absl import app, flags, logging
from ml_collections import config_flags

_CONFIG = config_flags.DEFINE_config_file("config", "configs/mnist.py", "Path to an ml_collections config file.")
flags.DEFINE_integer("num_examples", None, "test images per cell (default config.eval.num_examples)")
flags.DEFINE_string("attacks", None, "comma list (default config.eval.attacks): fgsm,pgd,bim,mifgsm,cw_l2,deepfool")
flags.DEFINE_string("defenses", None, "comma list (default config.eval.defenses), e.g. none,ipgan")
flags.DEFINE_string("classifiers", None, "comma list (default config.classifiers)")
flags.DEFINE_string("blocks", None, "comma list (default config.eval.blocks) of the parts to run: "
                    "oblivious,transfer,whitebox,cw,curve,checks")
FLAGS = flags.FLAGS
ALL_BLOCKS = "oblivious,transfer,whitebox,cw,curve,checks"


def _split(s):
    return [p.strip() for p in s.split(",") if p.strip()]


def main(argv):
    logging.set_verbosity(logging.WARNING)
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    config = _CONFIG.value
    from ipgan_jax.cli import check_config
    check_config(config)
    from ipgan_jax.eval.evaluate import TRANSFER_ATTACKS, Evaluator
    from ipgan_jax.eval.report import markdown, sanity_checks, write_outputs
    from ipgan_jax.training.logging import progress

    classifiers = _split(FLAGS.classifiers or ",".join(config.classifiers))
    defenses = _split(FLAGS.defenses or config.eval.defenses)
    attacks = _split(FLAGS.attacks or config.eval.attacks)
    blocks = set(_split(FLAGS.blocks or config.eval.blocks))
    unknown = blocks - set(_split(ALL_BLOCKS))
    if unknown:
        raise ValueError(f"unknown --blocks {sorted(unknown)}")
    n = FLAGS.num_examples or config.eval.num_examples
    t0 = time.time()
    ev = Evaluator(config, classifiers, defenses, attacks, n, seed=config.seed)
    nb, nc = len(ev.batches), len(ev.costly_batches_of(classifiers[0]))
    nd = len([d for d in defenses if d != "none"])
    def source_of(clf):
        src = config.eval.transfer_source
        return config.eval.transfer_source_for_mcnn if clf == src else src

    transfer_clfs = [c for c in classifiers if source_of(c) != c]  # a classifier is never its own surrogate
    work = {"oblivious": len(classifiers) * len(attacks) * nb,
            "transfer": len(transfer_clfs) * len([a for a in TRANSFER_ATTACKS if a in attacks]) * nb,
            "whitebox": len(classifiers) * nd * nc, "cw": len(classifiers) * (nd + 1) * nc,
            "curve": len(classifiers) * (nd + 1) * len(config.eval.eps_curve) * nc}
    bar = progress(sum(v for k, v in work.items() if k in blocks), desc="eval")
    ev.run_clean()
    if "oblivious" in blocks:
        ev.run_oblivious(bar=bar)
    if "transfer" in blocks and transfer_clfs:
        from ipgan_jax.training.classifier import load_classifier
        for c in classifiers:
            s = source_of(c)
            if s not in ev.targets:
                ev.targets[s] = load_classifier(config, s)
        ev.run_oblivious(block="transfer", source_of=source_of,
                         attacks=[a for a in TRANSFER_ATTACKS if a in attacks], bar=bar)
    if "whitebox" in blocks:
        ev.run_whitebox(bar=bar)
    if "cw" in blocks:
        ev.run_cw_distortion(bar=bar)
    if "curve" in blocks:
        ev.run_eps_curve(bar=bar)
    bar.close()
    if "checks" in blocks:
        ev.gradient_check()
        for c in classifiers:
            for d in defenses:
                if d == "none" or (c, d) in ev.defend_fns:
                    ev.steps_check(c, d, steps=tuple(config.eval.steps_check))
    checks = sanity_checks(ev)
    out_dir = config.eval.out_dir or f"{config.workdir}/eval"
    meta = {"num_examples": n, "classifiers": classifiers, "defenses": defenses, "attacks": attacks,
            "blocks": sorted(blocks), "seconds": round(time.time() - t0, 1), "dataset": config.dataset,
            "whitebox_steps": config.eval.whitebox_steps, "whitebox_restarts": config.eval.whitebox_restarts,
            "whitebox_num_examples": config.eval.get("whitebox_num_examples") or n}
    files = write_outputs(ev, out_dir, checks, meta)
    print(markdown(ev))
    print("\n**Sanity checks**\n")
    if not checks:
        print("(none run: add `checks`, `curve` or `whitebox` to --blocks)")
    for ch in checks:
        print(f"- {'PASS' if ch['ok'] else 'WARNING'}: {ch['name']}: {ch['detail']}")
    print(f"\nwrote: {', '.join(str(p) for p in files.values())}  ({time.time() - t0:.0f} s)")


if __name__ == "__main__":
    from ipgan_jax.cli import run_with_clear_errors
    run_with_clear_errors(lambda: app.run(main))
