"""Import rules of the package, read from its source with ``ast`` (nothing is imported to check them).

No import cycles at module level, no private names imported across modules, no torch below the
claims and results layers, and a plugin that loads without the numerical stack.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

import mitest

PACKAGE = Path(mitest.__file__).parent
HEAVY = ("torch", "transformers")
TORCH_FREE = [
    "mitest.claims",
    "mitest.stats",
    "mitest.verdict",
    "mitest.config",
    "mitest.baseline",
    "mitest.gating",
    "mitest.candidates",
    "mitest.report",
    "mitest.report.html",
    "mitest.report.markdown",
    "mitest.report.table",
]

# (importing module, private name) pairs that exist today and are still to be given public names.
# This list must only shrink: a new private import across modules fails the test.
KNOWN_PRIVATE_IMPORTS: set[tuple[str, str]] = set()


@dataclass
class Module:
    name: str
    path: Path
    eager: set[str] = field(default_factory=set)  # modules imported when this one is imported
    private: list[str] = field(default_factory=list)  # "module.name" of private names it imports


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _runs_on_import(tree: ast.Module) -> Iterator[ast.Import | ast.ImportFrom]:
    """Imports executed when the module is imported: not in functions, not under ``if TYPE_CHECKING:``."""
    stack: list[ast.AST] = list(tree.body)
    while stack:
        node = stack.pop()
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
            continue
        if isinstance(node, ast.Import | ast.ImportFrom):
            yield node
        elif isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            stack.extend(node.orelse)
        else:
            stack.extend(ast.iter_child_nodes(node))


def _targets(node: ast.Import | ast.ImportFrom, package: str, known: set[str]) -> list[tuple[str, str | None]]:
    """(module, imported name or None) for each name the statement imports, relative imports resolved."""
    if isinstance(node, ast.Import):
        return [(alias.name, None) for alias in node.names]
    base = node.module or ""
    if node.level:
        anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
        base = ".".join(anchor + ([node.module] if node.module else []))
    found = []
    for alias in node.names:
        submodule = f"{base}.{alias.name}"
        found.append((submodule, None) if submodule in known else (base, alias.name))
    return found


def _with_parents(module: str) -> list[str]:
    """Importing ``a.b.c`` runs ``a``, ``a.b`` and ``a.b.c``."""
    parts = module.split(".")
    return [".".join(parts[: i + 1]) for i in range(len(parts))]


@cache
def modules() -> dict[str, Module]:
    found = {_module_name(path): Module(_module_name(path), path) for path in sorted(PACKAGE.rglob("*.py"))}
    for module in found.values():
        tree = ast.parse(module.path.read_text(encoding="utf-8"))
        package = module.name if module.path.name == "__init__.py" else module.name.rsplit(".", 1)[0]
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                for target, name in _targets(node, package, set(found)):
                    if target.startswith("mitest") and name and name.startswith("_") and not name.startswith("__"):
                        module.private.append(f"{target}.{name}")
        for node in _runs_on_import(tree):
            for target, _ in _targets(node, package, set(found)):
                module.eager.update(_with_parents(target))
        module.eager.discard(module.name)
    return found


def _eager_closure(start: str) -> set[str]:
    """Every module, mitest's and external, that importing ``start`` imports."""
    graph = modules()
    seen, todo = set(), [start, *_with_parents(start)]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        if name in graph:
            todo.extend(graph[name].eager)
    return seen - {start}


def _cycle() -> list[str] | None:
    """One import cycle among mitest modules (as a path that ends where it starts), or None."""
    graph = modules()
    state: dict[str, str] = {}

    def visit(name: str, path: list[str]) -> list[str] | None:
        state[name] = "open"
        for target in sorted(graph[name].eager & set(graph)):
            if state.get(target) == "open":
                return path[path.index(target) :] + [target]
            if target not in state:
                found = visit(target, [*path, target])
                if found:
                    return found
        state[name] = "done"
        return None

    for name in sorted(graph):
        if name not in state:
            found = visit(name, [name])
            if found:
                return found
    return None


def test_the_checker_reads_every_module_of_the_package():
    graph = modules()
    assert {"mitest", "mitest.run", "mitest.plugin", "mitest.report.html", "mitest.zoo.planted"} <= set(graph)
    assert "torch" in graph["mitest.run"].eager and "mitest.errors" in graph["mitest.claims"].eager
    assert "mitest.claims" not in graph["mitest.plugin"].eager  # imported inside functions only


def test_mitest_modules_import_each_other_without_a_cycle():
    cycle = _cycle()
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_no_module_imports_a_private_name_from_another_mitest_module():
    found = {(name, private) for name, module in modules().items() for private in module.private}
    assert found - KNOWN_PRIVATE_IMPORTS == set(), "import a public name instead"
    assert KNOWN_PRIVATE_IMPORTS - found == set(), "fixed: remove it from KNOWN_PRIVATE_IMPORTS"


def test_the_claims_and_results_layers_never_import_torch_or_transformers():
    heavy = {}
    for name in TORCH_FREE:
        assert name in modules(), name
        reached = {module for module in _eager_closure(name) if module.split(".")[0] in HEAVY}
        if reached:
            heavy[name] = sorted(reached)
    assert heavy == {}


def test_the_plugin_imports_only_pytest_the_standard_library_and_torch_free_mitest_modules():
    reached = _eager_closure("mitest.plugin")
    external = {name.split(".")[0] for name in reached if not name.startswith("mitest")}
    assert external - set(sys.stdlib_module_names) == {"pytest"}
    assert {name for name in reached if name.startswith("mitest")} <= {"mitest", "mitest.errors"} | set(TORCH_FREE)


def test_importing_the_plugin_loads_no_numerical_library():
    heavy = "('torch', 'transformers', 'numpy', 'scipy', 'pandas')"
    code = f"import mitest.plugin, sys; print(sorted(m for m in sys.modules if m.split('.')[0] in {heavy}))"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=PACKAGE.parent, timeout=120
    )
    assert result.stdout.strip() == "[]"
