"""The shape of the package: no import cycles, a torch-free numeric core, and commands that import only what they use.

The cycle check reads every import in every module, including imports inside functions: a deferred import hides a
cycle from Python's import machinery, it does not break it.
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "mdlbench"
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def module_imports(name: str, path: Path, modules: set[str]) -> set[str]:
    """The package modules one module imports anywhere in its source (TYPE_CHECKING blocks excepted)."""
    is_package = path.name == "__init__.py"
    deps: set[str] = set()

    def resolve(target: str) -> None:
        while target and target not in modules:
            target = target.rpartition(".")[0]
        if target and target != name:
            deps.add(target)

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            return
        if isinstance(node, ast.Import):
            for alias in node.names:
                resolve(alias.name)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                package = name.split(".") if is_package else name.split(".")[:-1]
                package = package[:len(package) - (node.level - 1)]
                base = ".".join([*package, base] if base else package)
            for alias in node.names:
                resolve(f"{base}.{alias.name}")
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(ast.parse(path.read_text("utf-8")))
    return deps


def import_graph() -> dict[str, set[str]]:
    """module -> the package modules it imports anywhere in its source."""
    modules = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    return {name: module_imports(name, path, set(modules)) for name, path in modules.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def strong(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                strong(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    sys.setrecursionlimit(10_000)
    for v in sorted(graph):
        if v not in index:
            strong(v)
    return found


def test_the_cycle_finder_finds_a_planted_cycle():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert cycles(graph) == [["a", "b", "c"]]


def test_no_import_cycles_anywhere_in_the_package():
    graph = import_graph()
    # Imports inside functions count: `mdlbench run` imports the executor only when it runs.
    assert "mdlbench.run.execute" in graph["mdlbench.cli.run"]
    assert cycles(graph) == []


def test_library_modules_never_import_the_cli():
    graph = import_graph()
    offenders = {m: sorted(d for d in deps if d.startswith("mdlbench.cli")) for m, deps in graph.items()
                 if not m.startswith("mdlbench.cli") and m != "mdlbench.__main__"}
    assert {m: d for m, d in offenders.items() if d} == {}


def _modules_after(code: str) -> set[str]:
    probe = f"import sys\n{code}\nprint(' '.join(sorted(m.split('.')[0] for m in sys.modules)))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=ENV, timeout=120)
    assert out.returncode == 0, out.stderr
    return set(out.stdout.split())


def test_the_numeric_core_imports_without_torch():
    loaded = _modules_after("import mdlbench.windowing, mdlbench.codelength, mdlbench.prequential.schedule, "
                            "mdlbench.mdl.params, mdlbench.mdl.two_part, mdlbench.config")
    assert not loaded & {"torch", "transformers", "pandas", "pyarrow"}


@pytest.mark.parametrize("argv", [["--help"], ["ls", "{out}"], ["gc", "{out}", "--dry-run"], ["merge", "{out}"],
                                  ["baselines", "--list"], ["manifest", "create", "{corpus}", "--name", "m",
                                                            "--out-dir", "{tmp}"], ["models"], ["corpora"],
                                  ["export", "{out}", "--format", "csv", "--out", "{tmp}/csv"]])
def test_commands_that_need_no_model_import_neither_torch_nor_transformers(tmp_path, argv):
    corpus = tmp_path / "c.txt"
    corpus.write_text("hello")
    (tmp_path / "out").mkdir()
    args = [a.format(out=tmp_path / "out", corpus=corpus, tmp=tmp_path) for a in argv]
    code = (f"from mdlbench.cli import main\ntry:\n    main({args!r})\nexcept SystemExit:\n    pass")
    loaded = _modules_after(code)
    assert "mdlbench" in loaded and not loaded & {"torch", "transformers"}


# Functions that import another commit's mdlbench on purpose (the benchmark's "today" path, run with PYTHONPATH on
# an exported tree), so their names need not exist in this one.
OTHER_TREE_IMPORTS = {"bench_coding.py": {"child_old"}}


def test_benchmarks_import_only_names_this_package_has():
    """A benchmark is run by hand, long after the layout it was written against: every ``from mdlbench... import
    name`` in benchmarks/ must resolve now, so a move is caught by the suite rather than by a failed benchmark."""
    import importlib.util

    missing = []
    for path in sorted((PACKAGE.parent / "benchmarks").glob("*.py")):
        tree = ast.parse(path.read_text("utf-8"))
        skipped = {id(n) for f in ast.walk(tree) if isinstance(f, ast.FunctionDef)
                   and f.name in OTHER_TREE_IMPORTS.get(path.name, ()) for n in ast.walk(f)}
        for node in ast.walk(tree):
            if not isinstance(node, ast.ImportFrom) or id(node) in skipped:
                continue
            if not (node.module or "").startswith("mdlbench"):
                continue
            module = importlib.import_module(node.module)
            for alias in node.names:
                if not hasattr(module, alias.name) and importlib.util.find_spec(f"{node.module}.{alias.name}") is None:
                    missing.append(f"{path.name}:{node.lineno} {node.module}.{alias.name}")
    assert not missing, missing
