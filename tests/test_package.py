"""Package hygiene: every module imports on its own, the import graph has no cycle, and nothing in
the library imports ``ipgan_jax.testing`` (the helpers of tests/ and benchmarks/, the top layer).

The graph is read from the source (AST), function-local imports included: an import inside a
function still ties the two modules together, it only hides the cycle until that call.
"""
import ast
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("ipgan_jax", "configs")


def module_files(root: Path, packages=PACKAGES) -> dict:
    """{dotted module name: file} of every .py file under the given top-level packages."""
    out = {}
    for pkg in packages:
        for f in sorted((root / pkg).rglob("*.py")):
            parts = list(f.relative_to(root).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            out[".".join(parts)] = f
    return out


def import_graph(root: Path, packages=PACKAGES) -> dict:
    """{module: set of modules of the same packages it imports}, anywhere in its source.

    ``from a.b import c`` is an edge to ``a.b.c`` when that is a module, else to ``a.b``;
    relative imports are resolved against the importing module's package.
    """
    mods = module_files(root, packages)
    graph = {}
    for name, f in mods.items():
        is_pkg = f.name == "__init__.py"
        base = name.split(".") if is_pkg else name.split(".")[:-1]
        edges = set()
        for node in ast.walk(ast.parse(f.read_text(), str(f))):
            targets = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                pkg = node.module or ""
                if node.level:
                    up = base[:len(base) - (node.level - 1)]
                    pkg = ".".join(up + ([node.module] if node.module else []))
                targets = [f"{pkg}.{a.name}" if f"{pkg}.{a.name}" in mods else pkg for a in node.names]
            for t in targets:
                while t and t not in mods:      # `import a.b.c` of a non-module attribute: its package
                    t = t.rpartition(".")[0]
                if t and t != name:
                    edges.add(t)
        graph[name] = edges
    return graph


def find_cycle(graph: dict):
    """One import cycle as a list [m0, m1, ..., m0], or None (iterative DFS, white/grey/black)."""
    state = {m: 0 for m in graph}
    for start in sorted(graph):
        if state[start]:
            continue
        stack = [(start, iter(sorted(graph[start])))]
        path = [start]
        state[start] = 1
        while stack:
            node, it = stack[-1]
            nxt = next(it, None)
            if nxt is None:
                state[node] = 2
                stack.pop()
                path.pop()
            elif state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            elif state.get(nxt) == 0:
                state[nxt] = 1
                stack.append((nxt, iter(sorted(graph[nxt]))))
                path.append(nxt)
    return None


def test_package_has_no_import_cycle():
    graph = import_graph(ROOT)
    assert len(graph) > 40 and "ipgan_jax.training.loop" in graph
    assert find_cycle(graph) is None, f"import cycle: {' -> '.join(find_cycle(graph))}"


TESTING = "ipgan_jax.testing"


def imports_of_testing(graph: dict, testing: str = TESTING) -> list:
    """'module -> imported' edges from a module outside package ``testing`` into it."""
    def inside(m):
        return m == testing or m.startswith(testing + ".")
    return sorted(f"{m} -> {t}" for m, edges in graph.items() if not inside(m) for t in edges if inside(t))


def test_library_does_not_import_testing():
    """``ipgan_jax.testing`` is the top layer: it may import anything of the package, and no module
    of the package outside it imports it (function-local imports included)."""
    graph = import_graph(ROOT)
    assert {"ipgan_jax.testing.attack_fixtures", "ipgan_jax.testing.torch_models"} <= set(graph)
    assert graph["ipgan_jax.testing.attack_fixtures"], "the fixtures import the library"
    bad = imports_of_testing(graph)
    assert not bad, "the library imports ipgan_jax.testing: " + ", ".join(bad)


def _write_pkg(tmp_path, files):
    for rel, text in files.items():
        p = tmp_path / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(textwrap.dedent(text))


def test_cycle_check_finds_a_planted_cycle(tmp_path):
    """The checker is not vacuous: a cycle hidden in a function-local import is found, as is one
    through a package __init__; the same package without them has none."""
    files = {"pkg/__init__.py": "from pkg.registry import REG\n",
             "pkg/registry.py": "from pkg import impl\nREG = {}\n",
             "pkg/impl.py": "def f():\n    from pkg.loop import run\n    return run\n",
             "pkg/loop.py": "import numpy\n\ndef run():\n    from pkg.impl import f\n    return f\n",
             "pkg/leaf.py": "from . import impl\n"}
    _write_pkg(tmp_path, files)
    cycle = find_cycle(import_graph(tmp_path, ("pkg",)))
    assert cycle is not None and set(cycle) == {"pkg.impl", "pkg.loop"}
    # a child importing its own package's __init__, which imports the child
    (tmp_path / "pkg/loop.py").write_text("def run():\n    return 1\n")
    (tmp_path / "pkg/registry.py").write_text("from pkg import REG as _R\nREG = {}\n")
    cycle = find_cycle(import_graph(tmp_path, ("pkg",)))
    assert cycle is not None and set(cycle) == {"pkg", "pkg.registry"}
    (tmp_path / "pkg/registry.py").write_text("REG = {}\n")
    assert find_cycle(import_graph(tmp_path, ("pkg",))) is None


def test_testing_layer_check_finds_a_planted_import(tmp_path):
    """The layer check is not vacuous: a library module importing the testing package (in a
    function, or its __init__ through a relative import) is found; the testing package importing
    the library is fine."""
    _write_pkg(tmp_path, {"pkg/__init__.py": "", "pkg/lib.py": "X = 1\n",
                          "pkg/testing/__init__.py": "", "pkg/testing/fix.py": "from pkg.lib import X\n"})
    graph = import_graph(tmp_path, ("pkg",))
    assert graph["pkg.testing.fix"] == {"pkg.lib"} and imports_of_testing(graph, "pkg.testing") == []
    (tmp_path / "pkg/lib.py").write_text("X = 1\n\ndef f():\n    from pkg.testing import fix\n    return fix\n")
    (tmp_path / "pkg/__init__.py").write_text("from . import testing\n")
    assert imports_of_testing(import_graph(tmp_path, ("pkg",)), "pkg.testing") == [
        "pkg -> pkg.testing", "pkg.lib -> pkg.testing.fix"]


def import_alone_failures(names, packages, cwd, extra_path=None) -> list:
    """Import each module in one fresh interpreter, first dropping every module of ``packages``
    from ``sys.modules`` (third-party libraries stay loaded: cheap), so each is imported alone,
    as if nothing of ours had been imported before. Returns 'module: error' lines."""
    code = textwrap.dedent(f"""
        import importlib, sys, traceback
        sys.path[:0] = {[str(extra_path)] if extra_path else []!r}
        failed = []
        for name in {list(names)!r}:
            for m in [m for m in sys.modules if m.split('.')[0] in {tuple(packages)!r}]:
                del sys.modules[m]
            try:
                importlib.import_module(name)
            except BaseException:
                failed.append(name + ': ' + traceback.format_exc().strip().splitlines()[-1])
        print('\\n'.join(failed))
    """)
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=cwd,
                       env=dict(os.environ, JAX_PLATFORMS="cpu"))
    assert r.returncode == 0, r.stderr[-3000:]
    return [ln for ln in r.stdout.splitlines() if ln.strip()]


def test_every_module_imports_alone():
    # run from outside the repo: the package must come from the installation, not the cwd
    failed = import_alone_failures(sorted(module_files(ROOT)), PACKAGES, cwd=os.path.dirname(ROOT))
    assert not failed, "\n".join(failed)


def test_import_alone_check_catches_an_order_dependent_module(tmp_path):
    """``bad.a`` imports only when ``bad.b`` was imported first (a cycle through a partially
    initialised module): imported alone it fails, and the check says so; ``bad.b`` is fine."""
    _write_pkg(tmp_path, {"bad/__init__.py": "", "bad/a.py": "import bad.b\nX = 1\n",
                          "bad/b.py": "from bad.a import X\n"})
    failed = import_alone_failures(["bad.b", "bad.a"], ["bad"], cwd=tmp_path.parent, extra_path=tmp_path)
    assert len(failed) == 1 and failed[0].startswith("bad.a:") and "X" in failed[0], failed


@pytest.mark.parametrize("pkg", PACKAGES)
def test_package_is_installed_not_path_hacked(pkg):
    """The tests import the installed package (``pip install -e .``), which is this checkout."""
    r = subprocess.run([sys.executable, "-c", f"import {pkg}, os; print(os.path.dirname({pkg}.__file__))"],
                       capture_output=True, text=True, cwd=os.path.dirname(ROOT))
    assert r.returncode == 0, r.stderr[-2000:]
    assert Path(r.stdout.strip()).resolve() == (ROOT / pkg).resolve()
