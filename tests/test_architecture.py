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
# Packages and modules that never import torch or transformers, not even through each other.
TORCH_FREE = ("mitest.claims", "mitest.results", "mitest.plugin", "mitest.config", "mitest.errors", "mitest.progress")

# The layers, lowest first: a module imports (at any time) only from its own package or lower layers.
LAYERS = [
    ("mitest.errors",),
    ("mitest.config", "mitest.progress"),
    ("mitest.spec",),
    ("mitest.model", "mitest.claims"),
    ("mitest.engine", "mitest.results"),
    ("mitest.circuits", "mitest.families", "mitest.features", "mitest.sweeps"),
    ("mitest.zoo",),
    ("mitest.plugin", "mitest.cli"),
    ("mitest",),
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
    anywhere: set[str] = field(default_factory=set)  # modules imported at run time, in functions too


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(tree: ast.Module, *, in_functions: bool) -> Iterator[ast.Import | ast.ImportFrom]:
    """The module's imports that can run, except under ``if TYPE_CHECKING:``; with ``in_functions``
    false, only those executed when the module is imported."""
    stack: list[ast.AST] = list(tree.body)
    while stack:
        node = stack.pop()
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda) and not in_functions:
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
        for node in _imports(tree, in_functions=False):
            for target, _ in _targets(node, package, set(found)):
                # A module's own packages are initialised before it whatever it imports: not its edges.
                module.eager.update(p for p in _with_parents(target) if not module.name.startswith(p + "."))
        for node in _imports(tree, in_functions=True):
            module.anywhere.update(target for target, _ in _targets(node, package, set(found)))
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
    expected = {"mitest", "mitest.engine.measure", "mitest.plugin", "mitest.results.report.html", "mitest.zoo.planted"}
    assert expected <= set(graph)
    assert "torch" in graph["mitest.engine.measure"].eager and "mitest.errors" in graph["mitest.claims.effect"].eager
    assert "mitest.claims.effect" not in graph["mitest.plugin"].eager  # imported inside functions only


def test_mitest_modules_import_each_other_without_a_cycle():
    cycle = _cycle()
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_no_module_imports_a_private_name_from_another_mitest_module():
    found = {(name, private) for name, module in modules().items() for private in module.private}
    assert found - KNOWN_PRIVATE_IMPORTS == set(), "import a public name instead"
    assert KNOWN_PRIVATE_IMPORTS - found == set(), "fixed: remove it from KNOWN_PRIVATE_IMPORTS"


def _in(name: str, packages: tuple[str, ...]) -> bool:
    return any(name == package or name.startswith(package + ".") for package in packages)


def _layer(name: str) -> int:
    """The layer of a mitest module: that of the longest package prefix listed in LAYERS."""
    ranks = {package: rank for rank, packages in enumerate(LAYERS) for package in packages}
    owner = max((package for package in ranks if _in(name, (package,))), key=len)
    return ranks[owner]


def _package(name: str) -> str:
    return ".".join(name.split(".")[:2])


def test_every_module_imports_only_its_own_package_or_lower_layers():
    upward = []
    for name, module in modules().items():
        for target in module.anywhere & set(modules()):
            own = _package(target) == _package(name) or target == "mitest"
            if not own and _layer(target) >= _layer(name) and name != "mitest":
                upward.append(f"{name} -> {target}")
    assert upward == []


def test_the_claims_and_results_layers_never_import_torch_or_transformers():
    heavy = {}
    torch_free = [name for name in modules() if _in(name, TORCH_FREE) and name != "mitest.plugin.candidates"]
    for name in torch_free:
        direct = {target for target in modules()[name].anywhere if target.split(".")[0] in HEAVY}
        reached = {module for module in _eager_closure(name) if module.split(".")[0] in HEAVY}
        if direct | reached:
            heavy[name] = sorted(direct | reached)
    assert len(torch_free) > 15 and heavy == {}


def test_the_plugin_imports_only_pytest_the_standard_library_and_torch_free_mitest_modules():
    reached = _eager_closure("mitest.plugin")
    external = {name.split(".")[0] for name in reached if not name.startswith("mitest")}
    assert external - set(sys.stdlib_module_names) == {"pytest"}
    assert all(_in(name, TORCH_FREE) or name == "mitest" for name in reached if name.startswith("mitest"))


def test_importing_the_plugin_loads_no_numerical_library():
    heavy = "('torch', 'transformers', 'numpy', 'scipy', 'pandas')"
    code = f"import mitest.plugin, sys; print(sorted(m for m in sys.modules if m.split('.')[0] in {heavy}))"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=PACKAGE.parent, timeout=120
    )
    assert result.stdout.strip() == "[]"


def _calls(name: str) -> set[str]:
    """The mitest modules whose code calls ``name`` (a plain name or an attribute)."""
    found = set()
    for module in modules().values():
        for node in ast.walk(ast.parse(module.path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call):
                func = node.func
                called = (
                    func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else None
                )
                if called == name:
                    found.add(module.name)
    return found


def test_only_the_decide_module_records_verdicts_and_raises_claim_failures():
    """One owner for deciding a claim: every claim kind ends in mitest.claims.decide."""
    for name in ("current_recorder", "ClaimRefuted", "ClaimInconclusive"):
        assert _calls(name) == {"mitest.claims.decide"}, name
