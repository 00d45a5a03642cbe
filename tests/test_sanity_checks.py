"""The sanity checks flag gradient masking: each mock masked defense (ipgan_jax/testing/masked_defenses.py)
fails the check named for it, on the tiny trained LeNet. (The identity and a trained IP-GAN
passing every check is asserted by tests/test_eval.py::test_run_eval_end_to_end.)"""
import pytest

from ipgan_jax.testing.masked_defenses import MASKED


@pytest.fixture(scope="module")
def masked_eval(trained_tiny):
    """An Evaluator over the first 32 test images with the identity and every mock defense;
    the oblivious PGD and the white-box block run only where a check compares with them."""
    from ipgan_jax.eval.evaluate import Evaluator, ObliviousBlock
    c = trained_tiny.copy_and_resolve_references()
    c.eval.whitebox_num_examples = 32
    for name in MASKED:   # the mocks are attacked naively: no per-defense BPDA (the real `binarize` control has it)
        if name in c.eval.whitebox_per_defense:
            del c.eval.whitebox_per_defense[name]
    ev = Evaluator(c, ["lenet"], ["none"], ["pgd"], 32)
    for name, (fn, _) in MASKED.items():
        ev.add_defense("lenet", name, fn)
    ev.run([ObliviousBlock(ev)])
    ev.identity_checks = {}   # check name -> the identity's result (computed once)
    return ev


@pytest.mark.parametrize("mock,expected", [(m, k) for m in sorted(MASKED) for k in MASKED[m][1]])
def test_masked_defense_is_flagged_by_its_named_check(masked_eval, mock, expected):
    from ipgan_jax.eval.checks import ChecksBlock
    ev = masked_eval
    if expected == "transfer_vs_whitebox":
        for d in ("none", mock):
            for r in ev.run_suite("whitebox", "lenet", [d], d, through=True).records[d]:
                ev.outcome.add(r)
    if expected == "blackbox_vs_whitebox":   # a gradient member and Square in the white-box block
        with ev.config.unlocked():
            ev.config.eval.square_queries = 300
            for d in ("none", mock):
                ev.config.eval.whitebox_per_defense[d] = dict(suite="pgd_ce,square", restarts=1)
        for d in ("none", mock):
            for r in ev.run_suite("whitebox", "lenet", [d], d, through=True).records[d]:
                ev.outcome.add(r)
        with ev.config.unlocked():
            for d in ("none", mock):
                del ev.config.eval.whitebox_per_defense[d]
    # the identity passes the same check on the same images; the mock fails it
    if expected not in ev.identity_checks:
        ev.identity_checks[expected] = ChecksBlock(ev).check_pair("lenet", "none", only=(expected,))[0]
    ok_identity = ev.identity_checks[expected]
    (flagged,) = ChecksBlock(ev).check_pair("lenet", mock, only=(expected,))
    assert flagged.name == expected
    assert ok_identity.ok is True, ok_identity.detail
    assert flagged.ok is False, flagged.detail
    # the mocks keep f's clean accuracy (they mask gradients, they do not just break the classifier)
    assert ev.outcome.pipe_clean[("lenet", mock)].mean() >= ev.f_clean["lenet"].mean() - 0.15


def _robust(recs):
    import numpy as np
    return float(np.mean(np.all([r.pipe_adv for r in recs], axis=0)))


@pytest.mark.slow
def test_whitebox_suite_bpda_and_square_see_through_a_zero_gradient_defense(masked_eval):
    """The stop_gradient mock holds against the default gradient suite (its gradient is zero), but
    not when the same suite differentiates it with BPDA (whitebox_per_defense.<d>.bpda), nor against
    the gradient-free Square member; the identity is broken by all three."""
    from ipgan_jax.eval.suite import suite_members
    from ipgan_jax.testing.masked_defenses import stop_gradient
    ev = masked_eval
    assert suite_members("pgd_ce,autoattack_full,apgd_ce") == ["pgd_ce", "apgd_ce", "apgd_t", "square"]
    with pytest.raises(ValueError, match="unknown eval.whitebox_suite entry 'fab'"):
        suite_members("pgd_ce,fab")
    with ev.config.unlocked():
        ev.config.eval.square_queries = 300
        ev.config.eval.whitebox_per_defense["sg_bpda"] = dict(bpda=True)
        ev.config.eval.whitebox_per_defense["sg_square"] = dict(suite="square")
        ev.config.eval.whitebox_per_defense["none_square"] = dict(suite="square")
        ev.config.eval.whitebox_per_defense["none_aa"] = dict(suite="autoattack", steps=20)
    ev.add_defense("lenet", "none_aa", lambda x: x)
    ev.add_defense("lenet", "sg_bpda", stop_gradient)
    ev.add_defense("lenet", "sg_square", stop_gradient)
    ev.add_defense("lenet", "none_square", lambda x: x)
    ev.run_clean()
    runs = {d: ev.run_suite("whitebox", "lenet", [d], d, through=True)
            for d in ("none", "stop_gradient", "sg_bpda", "sg_square", "none_square", "none_aa")}
    acc = {d: _robust(run.records[d]) for d, run in runs.items()}
    clean = float(ev.f_clean["lenet"].mean())
    # masked: the exact gradient is zero (only PGD's random start in the eps ball breaks a few images)
    assert acc["stop_gradient"] >= clean - 0.15 and acc["stop_gradient"] >= acc["none"] + 0.5, acc
    assert acc["none"] <= 0.2 and acc["sg_bpda"] <= acc["none"] + 0.05, acc
    assert acc["none_square"] <= clean - 0.3 and acc["sg_square"] <= acc["none_square"] + 0.05, acc
    # the AutoAttack cascade: as strong as PGD here, and its log counts only the 32 real images
    assert acc["none_aa"] <= acc["none"] + 0.05, acc
    assert all(not run.logs for d, run in runs.items() if d != "none_aa")   # only the Python-level member logs
    for log in runs["none_aa"].logs:
        ev.outcome.add(log)
    logs = [g.values for g in runs["none_aa"].logs]
    assert {(g["block"], g["attacked"]) for g in logs} == {("whitebox", "none_aa")}
    assert sum(g["n"] for g in logs) == 32 and sum(g["robust"] for g in logs) == round(acc["none_aa"] * 32)
    assert list(logs[0]["broken"]) == ["apgd-ce", "apgd-t", "square"]
    from ipgan_jax.eval.report import markdown
    from ipgan_jax.eval.resultset import ResultSet
    table = markdown(ResultSet.from_outcome(ev.outcome, {}))
    assert "**AutoAttack log**" in table, table
    assert "| whitebox | LeNet | none_aa |" in table.split("**AutoAttack log**")[1], table


@pytest.mark.parametrize("cross", [True, False])
def test_whitebox_transfer_between_pipelines_flags_a_masked_pipeline(trained_tiny, cross):
    """With no oblivious block, the stop_gradient mock looks robust to its own white-box suite;
    the same suite crafted through the identity pipeline (``eval.whitebox_cross``) breaks it, and
    ``transfer_vs_whitebox`` fails on that alone. Without the cross records the check is skipped."""
    from ipgan_jax.eval.checks import ChecksBlock
    from ipgan_jax.eval.evaluate import CROSS_BLOCK, Evaluator, WhiteboxBlock
    from ipgan_jax.eval.report import markdown
    from ipgan_jax.eval.resultset import ResultSet
    from ipgan_jax.testing.masked_defenses import stop_gradient
    c = trained_tiny.copy_and_resolve_references()
    c.eval.whitebox_num_examples = 32
    c.eval.whitebox_steps, c.eval.whitebox_restarts = 20, 1
    c.eval.whitebox_cross = cross
    ev = Evaluator(c, ["lenet"], ["none"], ["pgd"], 32)
    ev.add_defense("lenet", "sg", stop_gradient)
    ev.run([WhiteboxBlock(ev)])
    crossed = {k for k in ev.outcome.records if k[0] == CROSS_BLOCK}
    (check,) = ChecksBlock(ev).check_pair("lenet", "sg", only=("transfer_vs_whitebox",))
    if not cross:
        assert not crossed and check.ok is None, check
        return
    assert crossed == {(CROSS_BLOCK, f"{a}@{s}", "lenet", d) for a in ("pgd_ce", "pgd_margin")
                       for s, d in (("none", "sg"), ("sg", "none"))}
    assert check.ok is False and check.values["white-box via none"] <= 0.2, check
    assert check.values["whitebox"] >= check.values["white-box via none"] + 0.5, check
    (identity,) = ChecksBlock(ev).check_pair("lenet", "none", only=("transfer_vs_whitebox",))
    assert identity.ok is True, identity
    table = markdown(ResultSet.from_outcome(ev.outcome, {}))
    assert "**White-box transfer between pipelines**" in table, table
    section = table.split("**White-box transfer between pipelines**")[1]
    row = next(line for line in section.splitlines() if line.startswith("| LeNet | sg |"))
    via_none, own = (float(v) / 100 for v in row.strip("| ").split(" | ")[2:])   # columns: none, sg
    assert via_none == pytest.approx(check.values["white-box via none"], abs=1e-4), row
    assert own == pytest.approx(check.values["whitebox"], abs=1e-4), row


def test_checks_names_selects_checks_and_progress_units(trained_tiny):
    """``eval.checks.names`` runs only the named checks, in CHECKS order, and the progress bar's length
    (units) is exactly the work they do; an unknown name fails before any attack runs."""
    from ipgan_jax.eval.checks import CHECKS, ChecksBlock, check_names
    from ipgan_jax.eval.evaluate import Evaluator

    class Bar:
        n = 0

        def update(self, k=1):
            self.n += k

    c = trained_tiny.copy_and_resolve_references()
    c.eval.whitebox_num_examples = 16
    c.eval.checks.names = "transfer_vs_whitebox, gradient"
    ev = Evaluator(c, ["lenet"], ["none"], ["pgd"], 16)
    block, bar = ChecksBlock(ev), Bar()
    checks = ev.run([block], bar).checks
    assert [k.name for k in checks] == ["gradient", "transfer_vs_whitebox"], checks
    assert checks[0].ok is True and checks[1].ok is None      # no white-box block ran: skipped
    assert bar.n == block.units() == len(ev.batches("lenet", True))
    c.eval.checks.names = "steps,fgsm_vs_pgd"                         # PGD-many is shared by both
    assert ChecksBlock(ev).units() == 3 * len(ev.batches("lenet", True))
    assert check_names("all") == CHECKS
    for empty in ("", " , "):      # names no check: an error, not every check (issue 45)
        with pytest.raises(ValueError, match="names no check"):
            check_names(empty)
    c.eval.checks.names = "gradient,stpes"
    with pytest.raises(ValueError, match="stpes"):
        ChecksBlock(ev).units()


def test_attack_views_run_every_member_per_view_and_the_block_takes_the_worst_case(masked_eval):
    """A defense whose exact gradient is zero but which offers a straight-through view: with
    ``views='exact,straight_through'`` every suite member runs under both, as records ``<member>`` and
    ``<member>~straight_through``; the straight-through view breaks what the exact one cannot, and the
    block's worst case per image takes it. A view the defense lacks is a clear error."""
    import numpy as np

    from ipgan_jax.eval.records import block_metrics
    from ipgan_jax.testing.masked_defenses import stop_gradient
    ev = masked_eval

    def masked(x):          # value of the identity, zero gradient: a saturated fusion's exact view
        return stop_gradient(x)
    masked.view = lambda name: {"straight_through": lambda x: x}[name]
    with ev.config.unlocked():
        ev.config.eval.whitebox_per_defense["viewed"] = dict(views="exact,straight_through", suite="pgd_ce")
        ev.config.eval.whitebox_per_defense["no_views"] = dict(views="exact,hybrid", suite="pgd_ce")
    ev.add_defense("lenet", "viewed", masked)
    ev.run_clean()
    recs = ev.run_suite("whitebox", "lenet", ["viewed"], "viewed", through=True).records["viewed"]
    assert [r.attack for r in recs] == ["pgd_ce", "pgd_ce~straight_through"]
    exact, st = (float(r.robust.mean()) for r in recs)
    bm = block_metrics(recs)
    assert exact >= 0.5 and st <= 0.2 and bm.robust_acc <= st, (exact, st, bm.robust_acc)
    assert np.array_equal(bm.robust_correct, int(np.sum(recs[0].robust & recs[1].robust)))
    assert [e.name for e in ev.suite_entries("viewed")] == ["pgd_ce", "pgd_ce~straight_through"]
    ev.add_defense("lenet", "no_views", lambda x: x)
    ev.run_clean()
    with pytest.raises(ValueError, match="no attack view 'hybrid'"):
        ev.run_suite("whitebox", "lenet", ["no_views"], "no_views", through=True)
    for d in ("viewed", "no_views"):
        ev.defenses.remove(d)


def test_learned_binariser_views_break_what_the_exact_gradient_cannot(masked_eval):
    """IP-GAN's fusion with a binarising 'generator' (masked_defenses.learned_binariser) through the
    white-box block with every attack view: the exact gradient is stuck, the views that pass the
    saturated tanh and clip (straight_through, hybrid, smooth) break far more, and the block's worst case
    per image takes them. (The parametrised test above shows the bpda check failing on it.)"""
    import numpy as np

    from ipgan_jax.eval.records import block_metrics
    from ipgan_jax.testing.masked_defenses import learned_binariser
    ev = masked_eval
    with ev.config.unlocked():
        ev.config.eval.whitebox_per_defense["lb_views"] = dict(views="exact,straight_through,hybrid,smooth",
                                                               suite="pgd_ce")
    ev.add_defense("lenet", "lb_views", learned_binariser)
    ev.run_clean()
    recs = ev.run_suite("whitebox", "lenet", ["lb_views"], "lb_views", through=True).records["lb_views"]
    acc = {r.attack: float(np.mean(r.robust)) for r in recs}
    assert list(acc) == ["pgd_ce", "pgd_ce~straight_through", "pgd_ce~hybrid", "pgd_ce~smooth"]
    for view in ("straight_through", "hybrid", "smooth"):
        assert acc[f"pgd_ce~{view}"] <= acc["pgd_ce"] - 0.2, acc
    assert block_metrics(recs).robust_acc <= min(acc.values()), acc


def test_a_suite_member_is_one_spec(masked_eval, monkeypatch):
    """docs/evaluation.md's worked example: one ``suite.Member`` entry adds MI-FGSM to the white-box suite, with
    the budget's eps reaching the attack (eps 0 leaves every clean-correct image robust; eps 0.3 breaks the
    undefended LeNet); a Python-level member gets the batch's mask as an argument and its log comes back as data,
    with the run's context."""
    import numpy as np

    from ipgan_jax.eval import suite
    from ipgan_jax.eval.outcome import AttackLog
    ev = masked_eval
    monkeypatch.setitem(suite.MEMBERS, "mifgsm", suite.Member("mifgsm", lambda b: dict(eps=b.eps, steps=b.steps)))

    def count_rows(logits_fn, x, y, key, mask, *, eps):   # a driver that attacks nothing and logs what it saw
        return x, {"rows": int(np.sum(mask)), "eps_seen": eps}
    monkeypatch.setitem(suite.MEMBERS, "rows", suite.Member("rows", lambda b: dict(eps=float(b.eps)),
                                                            driver=count_rows))
    with ev.config.unlocked():
        ev.config.eval.whitebox_per_defense["none_mi"] = dict(suite="mifgsm,rows", steps=10, restarts=1)
    ev.add_defense("lenet", "none_mi", lambda x: x)
    ev.run_clean()
    clean = ev.outcome.pipe_clean[("lenet", "none_mi")]
    for eps in (0.0, 0.3):
        run = ev.run_suite("whitebox", "lenet", ["none_mi"], "none_mi", eps, through=True)
        mi, rows = run.records["none_mi"]
        assert (mi.attack, rows.attack) == ("mifgsm", "rows")
        if eps == 0.0:
            assert np.array_equal(mi.robust, clean) and np.array_equal(rows.robust, clean)
        else:
            assert mi.robust.mean() <= 0.3 * clean.mean() and np.array_equal(rows.robust, clean), mi.robust.mean()
        assert all(isinstance(g, AttackLog) for g in run.logs)
        assert sum(g.values["rows"] for g in run.logs) == 32 == mi.n    # the real rows only, never the padding
        assert {(g.values["attacked"], g.values["eps"], g.values["eps_seen"]) for g in run.logs} == {
            ("none_mi", eps, eps)}
    ev.defenses.remove("none_mi")


@pytest.mark.slow
def test_surrogate_view_differentiates_a_fitted_smooth_network(masked_eval):
    """The attack view ``surrogate`` (BPDA through a small smooth network fitted to imitate the defense on training
    images): on a defense with the identity's value and a zero gradient, the exact view holds and the surrogate
    view breaks it like the identity; the surrogate imitates the defense closely and is fitted once per pair."""
    import numpy as np

    from ipgan_jax.testing.masked_defenses import stop_gradient
    ev = masked_eval
    with ev.config.unlocked():
        ev.config.eval.whitebox_per_defense["sg_sur"] = dict(views="exact,surrogate", suite="pgd_ce", restarts=1)
    ev.add_defense("lenet", "sg_sur", stop_gradient)
    ev.run_clean()
    recs = ev.run_suite("whitebox", "lenet", ["sg_sur"], "sg_sur", through=True).records["sg_sur"]
    acc = {r.attack: float(np.mean(r.robust)) for r in recs}
    clean = float(ev.f_clean["lenet"].mean())
    assert list(acc) == ["pgd_ce", "pgd_ce~surrogate"]
    assert acc["pgd_ce"] >= clean - 0.15 and acc["pgd_ce~surrogate"] <= 0.2, acc
    s = ev.surrogate("lenet", "sg_sur")
    assert ev.surrogate("lenet", "sg_sur") is s
    x = ev.batches("lenet", True)[0]["image"]
    assert float(np.mean(np.abs(np.asarray(s(x) - x)))) < 0.02   # the identity it imitates
    ev.defenses.remove("sg_sur")
