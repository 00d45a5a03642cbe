"""The budget ladder (ipgan_jax/eval/budget.py, ladder.py): rungs that at least double, the stop rule, cumulative
records, members run only on the images still robust, and the report's table."""
import numpy as np
import pytest

from ipgan_jax.errors import ConfigError
from ipgan_jax.eval.ladder import converged_at, ladder_rows, parse_ladder, record_name, rung_of


def test_ladder_rungs_must_double():
    assert parse_ladder([(1, 100), [2, 100], (5, 100)]) == ((1, 100), (2, 100), (5, 100))
    for bad in ((), ((1, 100), (1, 150)), ((0, 100),), ((1, -1),), (("a", 1),), (1, 2)):
        with pytest.raises(ConfigError):
            parse_ladder(bad)


def test_stop_rule_is_the_first_doubling_that_moves_less_than_the_tolerance():
    assert converged_at([0.80, 0.79, 0.788, 0.70], 0.005) == 2     # 0.2 points < 0.5: stop at the third rung
    assert converged_at([0.80, 0.70, 0.60], 0.005) is None          # still falling: not converged
    assert converged_at([0.80, 0.796], 0.005) == 1
    assert converged_at([0.80, 0.795], 0.005) is None               # exactly the tolerance is not below it
    assert converged_at([0.80], 0.005) is None                      # one rung decides nothing


def test_record_names_round_trip():
    assert rung_of(record_name("apgd_ce~hybrid", 5, 500)) == ("apgd_ce~hybrid", 5, 500)
    assert rung_of("apgd_ce/5x500#2") == ("apgd_ce", 5, 500)          # a merge's rename of a repeated record
    with pytest.raises(ValueError):
        rung_of("apgd_ce")


def test_ladder_rows_read_rungs_back_from_cumulative_records():
    from ipgan_jax.eval.records import AttackRecord
    clean = np.array([1, 1, 1, 1, 0], bool)

    def rec(name, adv):
        z = np.zeros(5, np.float32)
        return AttackRecord("budget", name, "lenet", "d", True, True, clean, clean, clean, np.array(adv, bool),
                            z, z, z)
    recs = [rec("a/1x10", [1, 1, 1, 0, 0]), rec("b/1x10", [1, 1, 0, 0, 0]), rec("a/2x10", [1, 1, 0, 0, 0]),
            rec("b/2x10", [1, 1, 0, 0, 0])]
    rows = ladder_rows(recs)
    assert [(r.restarts, r.steps, r.members, r.attacked, r.robust_correct, r.broke) for r in rows] == [
        (1, 10, ("a", "b"), 4, 2, (1, 1)), (2, 10, ("a", "b"), 2, 2, (0, 0))]
    assert rows[1].robust_acc == pytest.approx(0.4)


@pytest.fixture
def budget_eval(trained_tiny, monkeypatch):
    """An Evaluator on the tiny LeNet, 32 images, eps 0.05 (some images hold), with the suite APGD-CE plus a
    driver member that attacks nothing and counts the rows it is given."""
    from ipgan_jax.eval import suite
    from ipgan_jax.eval.evaluate import Evaluator
    seen = []

    def count_rows(logits_fn, x, y, key, mask):
        seen.append(int(np.sum(mask)))
        return x, None
    monkeypatch.setitem(suite.MEMBERS, "rows", suite.Member("rows", lambda b: {}, driver=count_rows))
    c = trained_tiny.copy_and_resolve_references()
    c.eval.whitebox_num_examples = 32
    c.eval.attack_params = dict(pgd=dict(eps=0.05))
    c.eval.budget.update(suite="apgd_ce,rows", ladder=((1, 1), (1, 2), (1, 4), (2, 4)), tolerance=0.5)
    ev = Evaluator(c, ["lenet"], ["none"], ["pgd"], 32)
    ev.rows_seen = seen
    return ev


@pytest.mark.slow
def test_budget_block_attacks_only_the_images_still_robust_and_stops_when_converged(budget_eval):
    from ipgan_jax.eval.budget import BudgetBlock
    from ipgan_jax.eval.report import markdown
    from ipgan_jax.eval.resultset import ResultSet
    ev = budget_eval
    out = ev.run([BudgetBlock(ev)])
    recs = out.block_records("budget", "lenet", "none")
    names = [r.attack for r in recs]
    assert names[:4] == ["apgd_ce/1x1", "rows/1x1", "apgd_ce/1x2", "rows/1x2"], names
    clean = out.pipe_clean[("lenet", "none")]
    robust = [r.robust for r in recs]
    assert 0 < robust[-1].sum() < clean.sum()                        # eps 0.05: some images hold, some break
    for a, b in zip(robust, robust[1:]):                              # cumulative: an image once broken stays so
        assert not (b & ~a).any()
    # the counting member sees exactly the images APGD left robust just before it, never the padding
    assert ev.rows_seen == [int(r.robust.sum()) for r in recs[0::2]]
    rows = ladder_rows(recs)
    # tolerance 50 points: the second rung converges, and the ladder stops there
    assert len(rows) == 2 and converged_at([r.robust_acc for r in rows], 0.5) == 1, rows
    assert all(rows[i].attacked == rows[i - 1].robust_correct for i in range(1, len(rows)))
    md = markdown(ResultSet.from_outcome(out, {"budget": ev.config.eval.budget.to_dict()}))
    assert "Budget ladder" in md and "converged at 1 x 2" in md and "not converged" not in md, md


@pytest.mark.slow
def test_budget_block_reports_a_ladder_that_runs_out_as_not_converged(budget_eval):
    from ipgan_jax.eval.budget import BudgetBlock
    from ipgan_jax.eval.report import markdown
    from ipgan_jax.eval.resultset import ResultSet
    ev = budget_eval
    with ev.config.unlocked():
        ev.config.eval.budget.update(suite="apgd_ce", ladder=((1, 1),))
    out = ev.run([BudgetBlock(ev)])
    assert [r.attack for r in out.block_records("budget", "lenet", "none")] == ["apgd_ce/1x1"]
    md = markdown(ResultSet.from_outcome(out, {"budget": ev.config.eval.budget.to_dict()}))
    assert "not converged" in md and "upper bound" in md, md


def _budget_run(ev, ladder, tmp_path, name, resume_from=None, **meta_over):
    """Run the budget block of ``ev`` with ``ladder`` (continuing ``resume_from``), write results.json under
    tmp_path/name as run_eval.py would, and return (records, out_dir)."""
    from ipgan_jax.eval.budget import BudgetBlock
    from ipgan_jax.eval.outcome import RunOutcome
    from ipgan_jax.eval.report import write_outputs
    from ipgan_jax.eval.resultset import ResultSet
    with ev.config.unlocked():
        ev.config.eval.budget.update(ladder=ladder, resume_from=resume_from)
    ev.outcome = RunOutcome(ev.classifiers, ev.defenses)   # a fresh run of the same Evaluator
    out = ev.run([BudgetBlock(ev)])
    meta = {"models": ev.model_sources(), "dataset": ev.config.dataset, "eps": ev.eps, "seed": ev.config.seed,
            "first_test_image": 0, "run_nonce": ev.run_nonce, "budget": ev.config.eval.budget.to_dict(),
            "whitebox_per_defense": ev.config.eval.whitebox_per_defense.to_dict(), **meta_over}
    write_outputs(ResultSet.from_outcome(out, meta), tmp_path / name)
    return out.block_records("budget", "lenet", "none"), tmp_path / name


@pytest.mark.slow
def test_a_ladder_run_in_pieces_gives_the_records_of_the_ladder_run_at_once(budget_eval, tmp_path):
    from ipgan_jax.eval.resultset import ResultSet
    ev = budget_eval
    with ev.config.unlocked():   # 'rows' first: it counts the images still robust as each rung begins
        ev.config.eval.budget.update(suite="rows,apgd_ce", tolerance=1e-9)   # stop only at a rung that breaks nothing
    full, _ = _budget_run(ev, ((1, 1), (1, 2), (1, 4)), tmp_path, "full")
    seen_full = list(ev.rows_seen)
    first, piece1 = _budget_run(ev, ((1, 1),), tmp_path, "piece1")
    assert [r.attack for r in first] == ["rows/1x1", "apgd_ce/1x1"]
    ev.rows_seen.clear()
    rest, piece2 = _budget_run(ev, ((1, 1), (1, 2), (1, 4)), tmp_path, "piece2", resume_from=str(piece1))
    assert [r.attack for r in rest] == [r.attack for r in full] and len(full) >= 4
    # the continued rungs start from the images the first piece left robust, never from all of them again
    assert ev.rows_seen == seen_full[1:] and seen_full[1] < seen_full[0], (ev.rows_seen, seen_full)
    for a, b in zip(rest, full):
        np.testing.assert_array_equal(a.pipe_adv, b.pipe_adv, err_msg=a.attack)
        np.testing.assert_array_equal(a.f_adv, b.f_adv, err_msg=a.attack)
    assert ResultSet.load(piece2).meta["budget"]["resume_from"] == str(piece1)


@pytest.mark.slow
def test_a_ladder_continues_only_with_the_settings_it_started_with(budget_eval, tmp_path):
    import json
    ev = budget_eval
    with ev.config.unlocked():
        ev.config.eval.budget.update(suite="apgd_ce", tolerance=1e-9)
    _, piece1 = _budget_run(ev, ((1, 1), (1, 2)), tmp_path, "piece1")
    with pytest.raises(ConfigError, match="must begin"):          # the earlier rungs are not this ladder's first
        _budget_run(ev, ((1, 2), (1, 4)), tmp_path, "x", resume_from=str(piece1))
    with ev.config.unlocked():
        ev.config.eval.budget.suite = "apgd_dlr"
    with pytest.raises(ConfigError, match="budget.suite="):       # another suite, read from the meta
        _budget_run(ev, ((1, 1), (1, 2), (1, 4)), tmp_path, "x", resume_from=str(piece1))
    data = json.loads((piece1 / "results.json").read_text())
    del data["meta"]["budget"]                                    # a meta that does not say: the records do
    (tmp_path / "nobudget").mkdir()
    (tmp_path / "nobudget" / "results.json").write_text(json.dumps(data))
    with pytest.raises(ConfigError, match="suite and views"):
        _budget_run(ev, ((1, 1), (1, 2), (1, 4)), tmp_path, "x", resume_from=str(tmp_path / "nobudget"))
    with ev.config.unlocked():
        ev.config.eval.budget.suite = "apgd_ce"
    for key, value, match in (("eps", 0.1, "eps="), ("models", None, "differs between")):
        data = json.loads((piece1 / "results.json").read_text())
        if key == "models":
            k = next(iter(data["meta"]["models"]))
            data["meta"]["models"][k]["fingerprint"] = "0" * 64     # other weights under the same name
        else:
            data["meta"][key] = value
        (tmp_path / key).mkdir()
        (tmp_path / key / "results.json").write_text(json.dumps(data))
        with pytest.raises(ConfigError, match=match):
            _budget_run(ev, ((1, 1), (1, 2), (1, 4)), tmp_path, "x", resume_from=str(tmp_path / key))
    with pytest.raises(ConfigError, match="no evaluation results"):
        _budget_run(ev, ((1, 1),), tmp_path, "x", resume_from=str(tmp_path / "nowhere"))
