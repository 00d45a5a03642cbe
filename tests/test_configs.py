"""One config schema: every config (mnist, mnist_tiny, each imagenet variant) has exactly the key tree
of ``configs/base.py``, sets every dataset key the base leaves open, and its placeholder fields take
command-line overrides like any other."""
import ml_collections
import pytest
from absl import flags
from ml_collections import config_flags

from configs import base, imagenet, mnist, mnist_tiny
from ipgan_jax.cli import REPO
from ipgan_jax.config_lists import parse_names

IMAGENET_ARGS = ("resnet50", "vgg19", "inception_v3", "efficientnet_lite0", "efficientnet_lite0,demo",
                 "efficientnet_lite0,tiny", "resnet50,demo,tiny")
VARIANTS = {"mnist": mnist.get_config, "mnist_tiny": mnist_tiny.get_config,
            **{f"imagenet:{a}": (lambda a=a: imagenet.get_config(a)) for a in IMAGENET_ARGS}}


def key_tree(config, prefix: str = "") -> set:
    """The dotted path of every key of ``config``; a map of ``base.OPEN_MAPS`` is one leaf."""
    out = set()
    for k, v in config.items():
        path = prefix + k
        out.add(path)
        if isinstance(v, ml_collections.ConfigDict) and path not in base.OPEN_MAPS:
            out |= key_tree(v, path + ".")
    return out


def value(config, path: str):
    for k in path.split("."):
        config = config[k]
    return config


def schema_problems(config) -> list:
    """How ``config`` departs from the schema: keys it lacks or adds, dataset keys it leaves unset."""
    want, got = key_tree(base.get_config()), key_tree(config)
    return ([f"missing {k}" for k in sorted(want - got)] + [f"not in configs/base.py: {k}" for k in sorted(got - want)]
            + [f"unset {k}" for k in base.DATASET_KEYS if k in got and value(config, k) is None])


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_every_config_has_the_schema_of_the_base(name):
    config = VARIANTS[name]()
    assert schema_problems(config) == []


def test_the_base_leaves_every_dataset_key_to_the_dataset_configs():
    c = base.get_config()
    assert set(base.DATASET_KEYS) | set(base.OPEN_MAPS) <= key_tree(c)
    assert [k for k in base.DATASET_KEYS if value(c, k) is not None] == []


def test_schema_check_finds_a_missing_an_extra_and_an_unset_key():
    """The check is not vacuous: a config without a key, with a stray one, or with a dataset key unset fails."""
    c = mnist.get_config()
    del c.eval.checks["tol"]
    c.train.num_stpes = 5
    c.uipd.eps = None
    assert schema_problems(c) == ["missing eval.checks.tol", "not in configs/base.py: train.num_stpes",
                                  "unset uipd.eps"]


def test_placeholder_fields_take_command_line_overrides():
    argv = ["prog", f"--config={REPO / 'configs' / 'mnist.py'}", "--config.ipgan.eps_inv=0.25",
            "--config.train.num_steps=7", "--config.eval.eps_curve=(0.0,0.1)",
            "--config.eval.transfer_source_fallback=alexnet", "--config.classifier=mcnn"]
    fv = flags.FlagValues()
    config_flags.DEFINE_config_file("config", flag_values=fv, lock_config=True, sys_argv=argv)
    fv(argv)
    c = fv.config
    assert (c.ipgan.eps_inv, c.train.num_steps, c.eval.eps_curve, c.classifier) == (0.25, 7, (0.0, 0.1), "mcnn")
    assert c.eval.transfer_source_fallback == "alexnet"


@pytest.mark.parametrize("value, names", [("fgsm, pgd,,", ("fgsm", "pgd")), ("", ()), (" a ", ("a",)),
                                          (["target", " lenet_s1", "", "target"], ("target", "lenet_s1", "target"))])
def test_parse_names(value, names):
    assert parse_names(value) == names
