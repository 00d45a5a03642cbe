"""A model's recipe travels with it: evaluation rebuilds a defense with the settings it was trained with,
and a run refuses to resume (or re-export) under a changed recipe."""
import jax
import numpy as np
import pytest

from ipgan_jax.defenses import load_defense, train_defense
from ipgan_jax.testing.suite import sharing_classifier


def _x():
    return jax.random.uniform(jax.random.PRNGKey(3), (8, 28, 28, 1))


@pytest.mark.slow
def test_evaluation_uses_the_trained_eps_inv_not_the_evaluation_configs(trained_tiny, tmp_path, caplog):
    c = sharing_classifier(trained_tiny, tmp_path / "wd")
    c.ipgan.eps_inv = 0.2
    train_defense(c)
    as_trained, t_trained = load_defense(c, "ipgan", "lenet")
    caplog.clear()
    default = c.copy_and_resolve_references()
    default.ipgan.eps_inv = 0.5                       # the default evaluation config
    d, t = load_defense(default, "ipgan", "lenet")
    assert t.cfg.eps_inv == pytest.approx(0.2) and t_trained.cfg.eps_inv == pytest.approx(0.2)
    np.testing.assert_array_equal(np.asarray(d(_x())), np.asarray(as_trained(_x())))
    notes = [r.getMessage() for r in caplog.records]  # one warning in the log, nothing printed
    assert len(notes) == 1 and "ignoring ipgan.eps_inv=0.5 (trained with 0.2)" in notes[0], notes
    assert default.ipgan.eps_inv == 0.5               # the caller's config is not changed
    caplog.clear()
    load_defense(c, "ipgan", "lenet")
    assert "ignoring" not in caplog.text              # nothing to say when they agree


@pytest.mark.slow
def test_a_finished_run_refuses_other_hyperparameters_and_keeps_its_model(trained_tiny, tmp_path):
    """Rerunning a finished run with another lr_g / eps_inv / l_cls used to re-export the same params
    under the new values; now it is refused in one line naming the keys, and nothing changes."""
    from ipgan_jax.defenses import defense_dir
    from ipgan_jax.training.loop import RecipeChangedError
    c = sharing_classifier(trained_tiny, tmp_path / "wd")
    train_defense(c)
    out = defense_dir(c, "ipgan", "lenet")
    before = {p: (out / p).read_bytes() for p in ("result.json", "params/ipgan_manifest.json")}
    changed = c.copy_and_resolve_references()
    changed.ipgan.lr_g, changed.ipgan.eps_inv, changed.ipgan.l_cls = 0.05, 0.1, 0.0
    with pytest.raises(RecipeChangedError, match=r"ipgan.eps_inv: 0.5 -> 0.1; ipgan.l_cls: 1.0 -> 0.0; "
                                                 r"ipgan.lr_g: 0.0002 -> 0.05\).*train.num_steps"):
        train_defense(changed)
    assert {p: (out / p).read_bytes() for p in before} == before
    longer = c.copy_and_resolve_references()           # a longer run and a learning-rate drop may resume
    longer.train.num_steps, longer.ipgan.lr_decay_steps = 9, (6,)
    assert train_defense(longer)["steps"] == 9


@pytest.mark.slow
def test_a_finished_classifier_refuses_another_learning_rate(tiny_config):
    from ipgan_jax.training.classifier import train_classifier
    from ipgan_jax.training.loop import RecipeChangedError
    train_classifier(tiny_config)
    tiny_config.classifier_train.learning_rate = 1e6
    with pytest.raises(RecipeChangedError, match="classifier_train.learning_rate: 0.002 -> 1000000.0"):
        train_classifier(tiny_config)
    tiny_config.classifier_train.learning_rate = 2e-3
    tiny_config.classifier_train.log_every = 7        # logging cadence may change
    assert train_classifier(tiny_config)["test_accuracy"] is not None


@pytest.mark.parametrize("defense,section", [("ipgan", "ipgan"), ("ipgan_adaptive", "ipgan"),
                                             ("grip_gan", "ipgan")])
def test_eps_inv_zero_is_refused_before_training(trained_tiny, tmp_path, defense, section):
    """eps_inv = 0 makes G's output irrelevant: the identity would be trained, exported and evaluated
    as IP-GAN (issue 45, WRONG 4)."""
    from ipgan_jax.defenses import defense_dir
    c = sharing_classifier(trained_tiny, tmp_path / "wd")
    c.defense = defense
    c[section].eps_inv = 0.0
    with pytest.raises(ValueError, match=r"eps_inv=0.0 must be in \(0, 1\]"):
        train_defense(c)
    assert not defense_dir(c, defense, "lenet").exists()
