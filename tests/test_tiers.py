"""The two test tiers (docs/testing.md): the `slow` marker is registered and strict, and .ci/run runs both tiers."""
import re
import shlex
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_slow_marker_is_registered_and_markers_are_strict():
    """Without the registration, `@pytest.mark.slow` is only a warning and `-m "not slow"` still selects what
    it means to; with --strict-markers a misspelt marker (`@pytest.mark.slwo`, a test silently put in the fast
    tier) is a collection error instead."""
    ini = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["pytest"]["ini_options"]
    assert any(m.split(":")[0].strip() == "slow" for m in ini["markers"]), ini["markers"]
    assert "--strict-markers" in ini["addopts"], ini["addopts"]


def test_ci_runs_the_fast_tier_then_the_slow_tier_with_the_same_arguments():
    """The two tiers partition the README's test command: its pytest arguments plus `-m "not slow"`, then
    plus `-m slow`, in that order, so every test runs once."""
    readme = re.search(r"&& (python -m pytest [^\n]*)\n", (ROOT / "README.md").read_text())
    assert readme, "README's test command (the Quick start's install line ending in pytest) not found"
    runs = [shlex.split(ln) for ln in (ROOT / ".ci" / "run").read_text().splitlines()
            if re.match(r"\s*python -m pytest ", ln)]
    tiers = []
    for args in runs:
        assert "-m" in args[3:], f".ci/run runs pytest without a tier: {shlex.join(args)}"
        i = args.index("-m", 3)
        tiers.append((args[i + 1], args[:i] + args[i + 2:]))
    assert [t for t, _ in tiers] == ["not slow", "slow"], tiers
    assert tiers[0][1] == tiers[1][1] == shlex.split(readme.group(1)), (tiers, readme.group(1))
