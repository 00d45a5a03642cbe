"""The sanity checks flag gradient masking: each mock masked defense (tests/masked_defenses.py)
fails the check named for it, on the tiny trained LeNet. (The identity and a trained IP-GAN
passing every check is asserted by tests/test_eval.py::test_run_eval_end_to_end.)"""
import pytest

from masked_defenses import MASKED


@pytest.fixture(scope="module")
def masked_eval(trained_tiny):
    """An Evaluator over the first 32 test images with the identity and every mock defense;
    the oblivious PGD and the white-box block run only where a check compares with them."""
    from ipgan_jax.eval.evaluate import Evaluator, ObliviousBlock
    c = trained_tiny.copy_and_resolve_references()
    c.eval.whitebox_num_examples = 32
    ev = Evaluator(c, ["lenet"], ["none"], ["pgd"], 32)
    for name, (fn, _) in MASKED.items():
        ev.add_defense("lenet", name, fn)
    ev.run_clean()
    ObliviousBlock(ev).run()
    ev.identity_checks = {}   # check name -> the identity's result (computed once)
    return ev


@pytest.mark.parametrize("mock", sorted(MASKED))
def test_masked_defense_is_flagged_by_its_named_check(masked_eval, mock):
    from ipgan_jax.eval.checks import ChecksBlock
    ev = masked_eval
    expected = MASKED[mock][1]
    if expected == "transfer_vs_whitebox":
        for d in ("none", mock):
            for r in ev.run_suite("whitebox", "lenet", [d], d, through=True)[d]:
                ev.records[("whitebox", r.attack, "lenet", d)] = r
    # the identity passes the same check on the same images; the mock fails it
    if expected not in ev.identity_checks:
        ev.identity_checks[expected] = ChecksBlock(ev).check_pair("lenet", "none", only=(expected,))[0]
    ok_identity = ev.identity_checks[expected]
    (flagged,) = ChecksBlock(ev).check_pair("lenet", mock, only=(expected,))
    assert flagged.name == expected
    assert ok_identity.ok is True, ok_identity.detail
    assert flagged.ok is False, flagged.detail
    # the mocks keep f's clean accuracy (they mask gradients, they do not just break the classifier)
    assert ev.pipe_clean[("lenet", mock)].mean() >= ev.f_clean["lenet"].mean() - 0.15
