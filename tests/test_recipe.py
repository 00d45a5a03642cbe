"""A model's recipe travels with it: evaluation rebuilds a defense with the settings it was trained with,
and a run refuses to resume (or re-export) under a changed recipe."""
import jax
import numpy as np
import pytest
from conftest import sharing_classifier

from ipgan_jax.defenses import load_defense, train_defense
from ipgan_jax.training.checkpoint import CheckpointError


def _x():
    return jax.random.uniform(jax.random.PRNGKey(3), (8, 28, 28, 1))


def test_evaluation_uses_the_trained_eps_inv_not_the_evaluation_configs(trained_tiny, tmp_path, capsys):
    c = sharing_classifier(trained_tiny, tmp_path / "wd")
    c.ipgan.eps_inv = 0.2
    train_defense(c)
    as_trained, t_trained = load_defense(c, "ipgan", "lenet")
    capsys.readouterr()
    default = c.copy_and_resolve_references()
    default.ipgan.eps_inv = 0.5                       # the default evaluation config
    d, t = load_defense(default, "ipgan", "lenet")
    assert t.cfg.eps_inv == pytest.approx(0.2) and t_trained.cfg.eps_inv == pytest.approx(0.2)
    np.testing.assert_array_equal(np.asarray(d(_x())), np.asarray(as_trained(_x())))
    out = capsys.readouterr().out
    assert "ignoring ipgan.eps_inv=0.5 (trained with 0.2)" in out and out.count("\n") == 1
    assert default.ipgan.eps_inv == 0.5               # the caller's config is not changed
    load_defense(c, "ipgan", "lenet")
    assert "ignoring" not in capsys.readouterr().out  # nothing to say when they agree
