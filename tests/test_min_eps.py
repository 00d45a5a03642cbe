"""Minimal eps per image (ipgan_jax/eval/eps_search.py, min_eps.py): the grid, the bisection, the records and the
report's table."""
import numpy as np
import pytest

from ipgan_jax.errors import ConfigError
from ipgan_jax.eval.eps_search import bisect_levels
from ipgan_jax.eval.min_eps import eps_of, level_name, levels, minimal_eps, summarize


def test_levels_are_a_grid_up_to_max_eps():
    np.testing.assert_allclose(levels(0.1, 0.3), [0.1, 0.2, 0.3])
    assert len(levels(0.01, 0.5)) == 50 and levels(0.01, 0.5)[29] == 0.3
    for step, top in ((0, 0.3), (-0.1, 0.3), (0.1, 0.25), (0.1, 1.5), (0.5, 0.3)):
        with pytest.raises(ConfigError):
            levels(step, top)
    assert eps_of(level_name(0.29)) == 0.29 and eps_of("eps=0.3#2") == 0.3    # #2: a merge's rename


@pytest.mark.parametrize("num_levels", [1, 2, 7, 50])
def test_bisection_finds_each_images_first_broken_level_in_log_rounds(num_levels):
    rng = np.random.default_rng(0)
    truth = rng.integers(0, num_levels + 1, 200)            # num_levels: never broken
    calls = np.zeros(200, int)

    def attack_at(k, rows):
        calls[rows] += 1
        return k >= truth[rows]
    rows = np.arange(200)
    np.testing.assert_array_equal(bisect_levels(num_levels, attack_at, rows), truth)
    assert calls.max() <= int(np.ceil(np.log2(num_levels + 1))) + 1, calls.max()


def test_minimal_eps_reads_the_first_broken_level_from_the_records():
    from ipgan_jax.eval.records import AttackRecord
    pipe_clean = np.array([1, 1, 1, 0], bool)
    robust_at = {0.1: [1, 1, 1, 0], 0.2: [0, 1, 1, 0], 0.3: [0, 0, 1, 0]}
    nan = np.full(4, np.nan)
    recs = [AttackRecord("min_eps", level_name(e), "lenet", "d", True, True, pipe_clean, pipe_clean,
                         np.array(r, bool), np.array(r, bool), nan, nan, nan) for e, r in robust_at.items()]
    np.testing.assert_array_equal(minimal_eps(recs[::-1]), [0.2, 0.3, np.inf, 0.0])
    s = summarize(recs)
    assert s.n == 4 and s.median == 0.2 and s.curve == {0.1: 0.75, 0.2: 0.5, 0.3: 0.25}


def _threshold(x):
    """A level each image 'needs', from its pixels alone: 0.05, 0.10, ..., 0.40."""
    return 0.05 * (1 + int(round(float(np.sum(x)) * 10)) % 8)


@pytest.mark.slow
def test_min_eps_block_on_the_tiny_lenet(trained_tiny, monkeypatch):
    """Wiring, with a deterministic member: it returns the inverted image (1 - x) once eps reaches the image's own
    threshold, else x. The search must find exactly that threshold where f gets the inverted image wrong, and
    "> max" elsewhere; one record per level, robust accuracy falling with eps; the report's table."""
    from ipgan_jax.eval import suite
    from ipgan_jax.eval.eps_search import MinEpsBlock
    from ipgan_jax.eval.evaluate import Evaluator
    from ipgan_jax.eval.report import markdown
    from ipgan_jax.eval.resultset import ResultSet

    def invert(logits_fn, x, y, key, mask, *, eps):
        x = np.asarray(x)
        need = np.array([_threshold(xi) for xi in x])
        return np.where((eps >= need - 1e-9)[:, None, None, None], 1.0 - x, x).astype(np.float32), None
    monkeypatch.setitem(suite.MEMBERS, "invert", suite.Member("invert", lambda b: dict(eps=float(b.eps)),
                                                              driver=invert))
    c = trained_tiny.copy_and_resolve_references()
    c.eval.whitebox_num_examples = 40
    c.eval.min_eps.update(suite="invert", step=0.05, max_eps=0.4)
    ev = Evaluator(c, ["lenet"], ["none"], ["pgd"], 40)
    out = ev.run([MinEpsBlock(ev)])
    recs = out.block_records("min_eps", "lenet", "none")
    assert [r.attack for r in recs] == [level_name(e) for e in levels(0.05, 0.4)]
    acc = [float(r.robust.mean()) for r in recs]
    assert acc == sorted(acc, reverse=True) and acc[0] > acc[-1], acc

    x, y = ev.images("lenet", costly=True)
    inverted_wrong = np.asarray(ev.logits("lenet")(1.0 - x)).argmax(-1) != y
    clean = out.pipe_clean[("lenet", "none")]
    want = np.where(inverted_wrong, [_threshold(xi) for xi in x], np.inf)
    want[~clean] = 0.0
    np.testing.assert_allclose(minimal_eps(recs), want)
    assert len(set(want[clean & inverted_wrong])) >= 3                    # several levels are exercised
    md = markdown(ResultSet.from_outcome(out, {}))
    assert "Minimal eps per image" in md and "| LeNet | No defense | 40 |" in md, md
