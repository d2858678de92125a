"""The layout holds (issue 28): no import cycle between the project's modules, deferred imports
(inside functions, under ``if TYPE_CHECKING``) included, and no module of algorithm/, benchmarks/ or
training/ over 600 lines.

Imports are read from the source (``ast``), not by importing. An edge runs from a module to each
project module it names: ``import a.b`` and ``from a.b import c`` name ``a.b``, or ``a.b.c`` where
that is a module. The parent packages Python runs on the way are not edges: every submodule would
otherwise form a cycle with a package ``__init__`` that imports it.
"""

from __future__ import annotations

import ast
from pathlib import Path

from conftest import REPO_ROOT

PACKAGES = ("algorithm", "benchmarks", "training")
MAX_LINES = 600


def project_modules() -> dict[str, Path]:
    """Dotted module name -> file, for every module of PACKAGES."""
    modules = {}
    for package in PACKAGES:
        for path in sorted((REPO_ROOT / package).rglob("*.py")):
            parts = list(path.relative_to(REPO_ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            modules[".".join(parts)] = path
    return modules


def imported_names(module: str, path: Path) -> set[str]:
    """Every dotted name an import statement of the module names, relative imports resolved."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)
    return names


def import_graph() -> dict[str, set[str]]:
    modules = project_modules()
    return {module: {name for name in imported_names(module, path) if name in modules and name != module}
            for module, path in modules.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan), each sorted."""
    index, low, on_stack, stack, found = {}, {}, set(), [], []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for other in sorted(graph[node]):
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in on_stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_the_cycle_finder_finds_a_deferred_cycle(tmp_path):
    """The parser sees an import inside a function, and a relative one."""
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "a.py").write_text("def f():\n    from pkg import b\n")
    (tmp_path / "pkg" / "b.py").write_text("from .a import f\n")
    names_a = imported_names("pkg.a", tmp_path / "pkg" / "a.py")
    names_b = imported_names("pkg.b", tmp_path / "pkg" / "b.py")
    assert "pkg.b" in names_a and "pkg.a" in names_b
    assert cycles({"pkg.a": {"pkg.b"}, "pkg.b": {"pkg.a"}, "pkg.c": {"pkg.a"}}) == [["pkg.a", "pkg.b"]]


def test_no_import_cycle_through_algorithm_or_benchmarks():
    touching = [c for c in cycles(import_graph()) if any(m.split(".")[0] in ("algorithm", "benchmarks") for m in c)]
    assert touching == []


def test_no_import_cycle_in_training():
    assert cycles(import_graph()) == []


def test_algorithm_never_imports_training_or_benchmarks():
    graph = import_graph()
    wrong = {m: sorted(o for o in graph[m] if o.split(".")[0] != "algorithm") for m in graph if m.startswith("algorithm")}
    assert {m: o for m, o in wrong.items() if o} == {}


def test_no_module_is_over_600_lines():
    long = {str(path.relative_to(REPO_ROOT)): n for path in project_modules().values()
            if (n := len(path.read_text(encoding="utf-8").splitlines())) > MAX_LINES}
    assert long == {}


# What each phase of training/ may import of the others (docs/design.md, "Layout of training/ and
# results/"): data <- evaluation <- loop, realism reads phantoms, nothing reads realism.
TRAINING_PHASES_ALLOWED = {
    "training.data": set(),
    "training.evaluation": {"training.data"},
    "training.loop": {"training.data", "training.evaluation"},
    "training.phantoms": set(),
    "training.realism": {"training.phantoms"},
}


def phase_of(module: str) -> str | None:
    """The phase package of a training module (``training.loop.train`` -> ``training.loop``)."""
    phase = ".".join(module.split(".")[:2])
    return phase if phase in TRAINING_PHASES_ALLOWED else None


def test_training_phases_depend_one_way():
    graph = import_graph()
    wrong = sorted((m, o) for m, others in graph.items() for o in others
                   if (mine := phase_of(m)) and (theirs := phase_of(o)) and theirs != mine
                   and theirs not in TRAINING_PHASES_ALLOWED[mine])
    assert wrong == []
