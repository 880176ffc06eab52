"""The house rules of docs/ARCHITECTURE.md, checked: small modules, no import cycles
(function-level imports included), a runtime that never imports the converters, an
import of `lstm_infer` that does no work, and every op wired into the interpreter and
documented in docs/FORMAT.md."""
import ast
import os
import re
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGES = ("lstm_infer", "converters")
MAX_LINES = 600


def _modules() -> dict[str, str]:
    """Dotted module name -> path, for every module of the two packages."""
    found = {}
    for pkg in PACKAGES:
        for root, _, files in os.walk(os.path.join(ROOT, pkg)):
            if "__pycache__" in root:
                continue
            for f in files:
                if f.endswith(".py"):
                    path = os.path.join(root, f)
                    rel = os.path.relpath(path, ROOT)[:-3].replace(os.sep, ".")
                    found[rel[:-len(".__init__")] if rel.endswith(".__init__") else rel] = path
    return found


def _imports(name: str, path: str, known: set[str]) -> set[str]:
    """Modules of the two packages that `name` imports anywhere in its source."""
    is_pkg = path.endswith("__init__.py")
    package = name if is_pkg else name.rpartition(".")[0]
    out = set()
    for node in ast.walk(ast.parse(open(path).read(), path)):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package
                for _ in range(node.level - 1):
                    base = base.rpartition(".")[0]
                mod = f"{base}.{node.module}" if node.module else base
            else:
                mod = node.module or ""
            # `from pkg import sub` imports the submodule pkg.sub when there is one
            targets = [f"{mod}.{a.name}" if f"{mod}.{a.name}" in known else mod for a in node.names]
        else:
            continue
        for t in targets:
            while t and t not in known:
                t = t.rpartition(".")[0]
            if t and t != name:
                out.add(t)
    return out


def _graph() -> dict[str, set[str]]:
    mods = _modules()
    known = set(mods)
    return {name: _imports(name, path, known) for name, path in mods.items()}


def test_no_source_file_over_600_lines():
    long = {p: n for p in _modules().values() if (n := sum(1 for _ in open(p))) > MAX_LINES}
    assert not long, f"split these by responsibility: {long}"


def test_no_import_cycles_function_level_imports_included():
    graph = _graph()
    seen, stack, cycles = set(), [], []

    def visit(n):
        if n in stack:
            cycles.append(stack[stack.index(n):] + [n])
            return
        if n in seen:
            return
        seen.add(n)
        stack.append(n)
        for m in sorted(graph[n]):
            visit(m)
        stack.pop()

    for n in sorted(graph):
        visit(n)
    assert not cycles, "import cycles:\n" + "\n".join(" -> ".join(c) for c in cycles)


def test_runtime_never_imports_converters():
    graph = _graph()
    bad = {n: sorted(m for m in deps if m.startswith("converters"))
           for n, deps in graph.items() if n.startswith("lstm_infer") and n != "lstm_infer.cli"}
    assert not {n: d for n, d in bad.items() if d}


def test_import_lstm_infer_does_no_work():
    """No Numba, no cache set-up, no environment change until the first load()."""
    code = ("import os, sys; before = dict(os.environ); import lstm_infer; "
            "print('numba' in sys.modules, 'lstm_infer._cache' in sys.modules, "
            "dict(os.environ) == before, callable(lstm_infer.load))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT,
                         env=dict(os.environ, NUMBA_CACHE_DIR=""), check=True).stdout.split()
    assert out == ["False", "False", "True", "True"]


def test_every_op_is_dispatched_and_documented():
    from lstm_infer.ops import OPS
    import lstm_infer.ops as ops_pkg
    interpreter = open(os.path.join(ROOT, "lstm_infer", "kernels", "interpreter.py")).read()
    fmt = open(os.path.join(ROOT, "docs", "FORMAT.md")).read()
    for name in sorted(OPS):
        assert re.search(rf"`{name}`", fmt), f"op {name} has no row in docs/FORMAT.md"
    for mod_name in sorted(os.listdir(os.path.dirname(ops_pkg.__file__))):
        mod = sys.modules.get(f"lstm_infer.ops.{mod_name[:-3]}")
        if mod is not None and hasattr(mod, "OPCODE") and hasattr(mod, "step"):
            short = mod_name[:-3]
            assert f"op == {short}.OPCODE:\n        {short}.step(" in interpreter, \
                f"ops/{mod_name} has a step kernel but no dispatch line in kernels/interpreter.py"


@pytest.mark.parametrize("pkg", PACKAGES)
def test_one_errors_module_per_package(pkg):
    """Exception classes live in the package's errors module."""
    allowed = {f"{pkg}.errors"}
    defined = []
    for name, path in _modules().items():
        if not name.startswith(pkg) or name in allowed:
            continue
        for node in ast.walk(ast.parse(open(path).read())):
            if isinstance(node, ast.ClassDef) and any(
                    getattr(b, "id", getattr(b, "attr", "")).endswith(("Error", "Exception"))
                    for b in node.bases):
                defined.append(f"{name}.{node.name}")
    assert not defined, f"exception types outside {pkg}/errors.py: {defined}"


def test_every_prelude_op_is_documented():
    from lstm_infer.prelude import PRELUDE_OPS
    fmt = open(os.path.join(ROOT, "docs", "FORMAT.md")).read()
    for name in sorted(PRELUDE_OPS):
        assert re.search(rf"\| `{name}` \|", fmt), f"prelude op {name} has no row in docs/FORMAT.md"
