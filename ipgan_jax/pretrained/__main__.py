"""The shipped models' command line.

    python -m ipgan_jax.pretrained verify                  # every file against pretrained/mnist/MANIFEST.json
    python -m ipgan_jax.pretrained list [--markdown]       # one line (table row) per shipped model
    python -m ipgan_jax.pretrained list --write_readme     # that table into README.md
    python -m ipgan_jax.pretrained add classifiers/lenet   # ship a model trained in --config.workdir
    python -m ipgan_jax.pretrained add defenses/ipgan/lenet
    python -m ipgan_jax.pretrained add train_states/ipgan_adaptive/lenet     # its latest checkpoint
    python -m ipgan_jax.pretrained add defenses/ipgan/lenet --replace --reason "..."   # a better one

``add`` reads the exported model (``<workdir>/classifiers/<name>/params``, ``<workdir>/defenses/<d>/<c>/params``,
or the newest checkpoint of ``<workdir>/defenses/<d>/<c>/checkpoints`` for a train state) with its
``result.json``, measures its clean accuracy on the first test images (classifiers: the first 500, the value
``tests/test_pretrained.py`` checks; defenses: f(d(x)) on the first 1000), writes
``pretrained/<dataset>/<key>.msgpack`` and its manifest entry. Replacing a shipped file needs ``--replace``
and a ``--reason``, kept in the entry's ``history``: every replacement grows the repository for good.
All three take ``--config`` (default configs/mnist.py) and its overrides (``--config.workdir=...``).
"""
from __future__ import annotations

import json
import sys
import time

from absl import app, flags, logging

from ipgan_jax import files, pretrained
from ipgan_jax.cli import define_config_flag, run_with_clear_errors
from ipgan_jax.errors import ConfigError
from ipgan_jax.pretrained.export import add

_CONFIG = define_config_flag("configs/mnist.py")
flags.DEFINE_bool("replace", False, "add: replace a shipped model (needs --reason)")
flags.DEFINE_string("reason", None, "add --replace: why the new model replaces the shipped one")
flags.DEFINE_bool("markdown", False, "list: a Markdown table (the one in README)")
flags.DEFINE_bool("write_readme", False, "list: write that table into README.md (between its pretrained-table markers)")
FLAGS = flags.FLAGS


def main(argv):
    logging.set_verbosity(logging.WARNING)
    config = _CONFIG.value
    if len(argv) < 2 or argv[1] not in ("verify", "list", "add"):
        raise app.UsageError("usage: python -m ipgan_jax.pretrained verify | list | add <key> [--replace --reason ...]")
    folder = pretrained.root(config)
    cmd, rest = argv[1], argv[2:]
    if cmd == "verify":
        problems = pretrained.verify(folder)
        models = pretrained.read_manifest(folder)["models"]
        for p in problems:
            print(f"FAILED {p}")
        total = sum(e["size"] for e in models.values())
        print(f"{len(models) - len({p.split(':')[0] for p in problems})} of {len(models)} models verify "
              f"({total / 2**20:.1f} MB of {pretrained.SIZE_BUDGET / 2**20:.0f} MB) in {folder}")
        return 1 if problems else 0
    if cmd == "list":
        models = pretrained.read_manifest(folder)["models"]
        if FLAGS.write_readme:
            readme = pretrained.REPO_ROOT / "README.md"
            files.write_text(readme, pretrained.readme_with_table(readme.read_text(), models))
            print(f"wrote the table of {len(models)} models into {readme}")
            return 0
        if FLAGS.markdown:
            print(pretrained.markdown_table(models))
            return 0
        for k, e in models.items():
            m = {a: b for a, b in e["metrics"].items() if not isinstance(b, dict)}
            print(f"{k:40s} {e['size'] / 1024:8.0f} KB  {e['num_params']:>9,d} params  {e['steps']:>6} steps  "
                  f"{e['training']['wall_s']:>7.0f} s  {json.dumps(m)}")
        return 0
    if len(rest) != 1:
        raise app.UsageError("add takes one key, e.g. classifiers/lenet or defenses/ipgan/lenet")
    if config.pretrained:
        raise ConfigError("add ships a model of --config.workdir: drop --config.pretrained=True")
    t0 = time.time()
    e = add(config, rest[0], FLAGS.replace, FLAGS.reason)
    print(f"shipped {rest[0]}: {e['size'] / 1024:.0f} KB, sha256 {e['sha256'][:12]}, "
          f"metrics {json.dumps({a: b for a, b in e['metrics'].items() if not isinstance(b, dict)})} "
          f"({time.time() - t0:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.argv[0] = "python -m ipgan_jax.pretrained"
    run_with_clear_errors(main)
