"""Evaluate defenses like the paper's Table 1, plus an honest full white-box block.

    python run_eval.py                                   # embedded MNIST default, checkpoints of run_train.py
    python run_eval.py --config configs/mnist.py --num_examples 10000 --classifiers lenet --blocks oblivious
    python run_eval.py --attacks fgsm,pgd --defenses none,ipgan
    python run_eval.py --merge <out_dir_1>,<out_dir_2> --config.eval.out_dir=<out_dir_merged>
    python run_eval.py --compare <out_dir_a>@<defense_a>,<out_dir_b>@<defense_b>

Prints Markdown tables (ours next to the paper's DSR) and the sanity checks that flag gradient
masking, then writes results.json (per-image records, schema ``ipgan-eval/2``) / results.csv and
PNG figures (image grids, robust-accuracy-vs-eps curves) to ``<workdir>/eval`` (or
``--config.eval.out_dir``). Definitions: ``ipgan_jax/eval/records.py``.
"""
from __future__ import annotations

import time

from absl import app, flags, logging

from ipgan_jax.cli import define_config_flag
from ipgan_jax.config_lists import parse_names
from ipgan_jax.errors import ConfigError

_CONFIG = define_config_flag("configs/mnist.py", lock=False)
flags.DEFINE_integer("num_examples", None, "test images per cell (default config.eval.num_examples)")
flags.DEFINE_string("attacks", None,
                    "comma list (default config.eval.attacks): fgsm,pgd,bim,mifgsm,cw_l2,cw_hc,deepfool")
flags.DEFINE_string("defenses", None, "comma list (default config.eval.defenses), e.g. none,ipgan")
flags.DEFINE_string("classifiers", None, "comma list (default config.classifiers)")
flags.DEFINE_string("blocks", None, "comma list (default config.eval.blocks) of the parts to run: "
                    "oblivious,transfer,whitebox,budget,min_eps,cw,curve,checks (budget: the white-box suite "
                    "scaled until the number converges, config.eval.budget; min_eps: the minimal eps per image, "
                    "config.eval.min_eps; neither is in the default)")
flags.DEFINE_bool("allow_partial", False, "skip requested defenses / classifiers that are not trained "
                  "(default: exit with an error naming the missing one)")
flags.DEFINE_string("merge", None, "comma list of run_eval.py out_dirs (or results.json files) of runs on the same "
                    "trained models: pool their per-image records into one worst case per image (no attack is run; "
                    "writes to --config.eval.out_dir, which must not be one of them; with --num_examples N, only the "
                    "first N images are kept, and one run is enough; see ipgan_jax/eval/merge.py)")
flags.DEFINE_string("compare", None, "<out_dir_a>@<defense_a>,<out_dir_b>@<defense_b>: a paired, per-image comparison "
                    "of two defenses' worst-case robust accuracy on the images both runs evaluated (block --blocks, "
                    "default whitebox; --classifiers and --num_examples select; McNemar's exact test; no attack is "
                    "run; see ipgan_jax/eval/paired.py)")
FLAGS = flags.FLAGS


def _names(value) -> list:
    return list(parse_names(value))
ALL_BLOCKS = "oblivious,transfer,whitebox,budget,min_eps,cw,curve,checks"


def main(argv):
    logging.set_verbosity(logging.WARNING)
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    config = _CONFIG.value
    from ipgan_jax import compilation_cache
    compilation_cache.enable()   # compile each program once across runs (IPGAN_COMPILATION_CACHE=0: off)
    from ipgan_jax.cli import check_config
    from ipgan_jax.files import check_writable
    check_config(config)
    out_dir = config.eval.out_dir or f"{config.workdir}/eval"
    n = FLAGS.num_examples   # 0 is refused, not replaced by the config's default
    if n is None and FLAGS.merge is None and FLAGS.compare is None:
        n = config.eval.num_examples   # (a merge without it reads every image all runs saw)
    if n is not None and n < 1:
        raise ConfigError(f"--num_examples must be positive, got {n}")
    if FLAGS.merge is not None and FLAGS.compare is not None:
        raise ConfigError("--merge and --compare are two separate commands: give one of them")
    if FLAGS.merge is not None:   # reads finished runs only: nothing is created until they merge
        return merge_runs(out_dir)
    if FLAGS.compare is not None:   # reads finished runs only, writes nothing
        return compare_runs(n)
    check_writable(out_dir, "eval output folder", "--config.eval.out_dir")   # before hours of evaluation
    from ipgan_jax.eval.blocks import make_blocks
    from ipgan_jax.eval.evaluate import Evaluator
    from ipgan_jax.eval.report import print_and_write
    from ipgan_jax.eval.resultset import ResultSet
    from ipgan_jax.training.logging import progress

    classifiers = _names(FLAGS.classifiers or config.classifiers)
    defenses = _names(FLAGS.defenses or config.eval.defenses)
    attacks = _names(FLAGS.attacks or config.eval.attacks)
    names = _names(FLAGS.blocks or config.eval.blocks)
    for flag, given in (("classifiers", classifiers), ("defenses", defenses), ("attacks", attacks), ("blocks", names)):
        twice = sorted({x for x in given if given.count(x) > 1})
        if twice:
            raise ConfigError(f"--{flag} lists {', '.join(twice)} more than once: give each once")
    unknown = set(names) - set(_names(ALL_BLOCKS))
    if unknown:
        raise ConfigError(f"unknown --blocks {sorted(unknown)}; choose from {ALL_BLOCKS}")
    t0 = time.time()
    ev = Evaluator(config, classifiers, defenses, attacks, n, seed=config.seed, allow_missing=FLAGS.allow_partial)
    blocks = make_blocks(ev, names)
    bar = progress(sum(b.units() for b in blocks), desc="eval")
    outcome = ev.run(blocks, bar)
    bar.close()
    evaluated = ev.num_images(ev.classifiers[0])   # what was actually evaluated (the split may be smaller)
    if evaluated < n:
        print(f"\nnote: --num_examples={n} requested, but the test split has {evaluated} images: all {evaluated} "
              f"were evaluated (recorded as num_examples)")
    meta = {"num_examples": evaluated, "num_examples_requested": n,
            "missing": [list(m) for m in ev.missing], "classifiers": ev.classifiers, "defenses": ev.defenses,
            "attacks": attacks,
            "blocks": names, "seconds": round(time.time() - t0, 1), **ev.settings(),
            "whitebox_num_examples": ev.num_images(ev.classifiers[0], costly=True), "models": ev.model_sources()}
    # tables first (a failure while writing files must not lose them), then the files
    files = print_and_write(ResultSet.from_outcome(outcome, meta), out_dir, samples=outcome.samples)
    print(f"\nwrote: {', '.join(str(p) for p in files.values())}  ({time.time() - t0:.0f} s)")


def merge_runs(out_dir) -> None:
    """``--merge``: one per-image worst case over earlier runs' records (ipgan_jax/eval/merge.py)."""
    from pathlib import Path

    from ipgan_jax.eval.report import print_and_write
    from ipgan_jax.eval.resultset import ResultSet, results_path
    ignored = [f for f in ("attacks", "blocks", "allow_partial") if FLAGS[f].present]
    if ignored:
        raise ConfigError(f"--merge runs no attack: drop --{', --'.join(ignored)} (the merged runs fix them)")
    sources = _names(FLAGS.merge)
    target = (Path(out_dir) / "results.json").resolve()
    if any(results_path(s).resolve() == target for s in sources):
        raise ConfigError(f"--config.eval.out_dir={out_dir} is one of the merged runs: its results.json would be "
                          "overwritten; give another --config.eval.out_dir")
    first, *others = [ResultSet.load(s) for s in sources]
    merged = first.merge(*others, labels=sources, classifiers=_names(FLAGS.classifiers) if FLAGS.classifiers else None,
                         defenses=_names(FLAGS.defenses) if FLAGS.defenses else None,
                         num_examples=FLAGS.num_examples)   # None: every image all runs saw
    files = print_and_write(merged, out_dir)
    if merged.meta["notes"]:
        print("\n**Merge notes**\n\n" + "\n".join(f"- {x}" for x in merged.meta["notes"]))
    print(f"\nmerged {len(sources)} runs; wrote: {', '.join(str(p) for p in files.values())}")


def compare_runs(num_examples) -> None:
    """``--compare``: a paired per-image comparison of two defenses (ipgan_jax/eval/paired.py)."""
    from ipgan_jax.eval.paired import PairedError, markdown
    from ipgan_jax.eval.resultset import ResultSet
    ignored = [f for f in ("attacks", "defenses", "allow_partial", "merge") if FLAGS[f].present]
    if ignored:
        raise ConfigError(f"--compare runs no attack: drop --{', --'.join(ignored)} (the compared runs fix them; "
                          "the defenses are named after each run's @)")
    sides = _names(FLAGS.compare)
    parsed = [s.rpartition("@") for s in sides]
    if len(sides) != 2 or any(not run or not at or not d for run, at, d in parsed):
        raise PairedError("--compare wants exactly two entries <out_dir>@<defense>, comma-separated, "
                          f"got {FLAGS.compare!r}")
    blocks = _names(FLAGS.blocks) if FLAGS.blocks else ["whitebox"]
    if len(blocks) != 1:
        raise PairedError(f"--compare reads one block, got --blocks={FLAGS.blocks}")
    clfs = _names(FLAGS.classifiers) if FLAGS.classifiers else [None]
    if len(clfs) != 1:
        raise PairedError(f"--compare reads one classifier, got --classifiers={FLAGS.classifiers}")
    (ra, _, da), (rb, _, db) = parsed
    c = ResultSet.load(ra).compare(da, ResultSet.load(rb), db, labels=(ra, rb), classifier=clfs[0], block=blocks[0],
                                   num_examples=num_examples)
    print(markdown(c))


if __name__ == "__main__":
    from ipgan_jax.cli import run_with_clear_errors
    run_with_clear_errors(main)
