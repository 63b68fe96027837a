"""The typed public surface: type checkers see every lazy ``mt.X`` name, and the package ships ``py.typed``."""

from __future__ import annotations

import ast
import inspect
from pathlib import Path

import mitest as mt
from mitest.plugin import Mi

PACKAGE = Path(mt.__file__).parent


def _type_checking_names() -> set[str]:
    tree = ast.parse((PACKAGE / "__init__.py").read_text(encoding="utf-8"))
    blocks = [node for node in tree.body if isinstance(node, ast.If) and ast.unparse(node.test) == "TYPE_CHECKING"]
    assert len(blocks) == 1
    return {
        alias.asname or alias.name
        for node in ast.walk(blocks[0])
        if isinstance(node, ast.ImportFrom)
        for alias in node.names
    }


def test_type_checkers_see_exactly_the_lazily_exported_names():
    assert _type_checking_names() == set(mt.__all__)


def test_each_type_checking_import_names_the_module_the_lazy_export_loads():
    tree = ast.parse((PACKAGE / "__init__.py").read_text(encoding="utf-8"))
    seen = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("mitest"):
            for alias in node.names:
                submodule = f"{node.module}.{alias.name}"
                is_module = (PACKAGE.parent / submodule.replace(".", "/")).with_suffix(".py").exists() or (
                    PACKAGE.parent / submodule.replace(".", "/") / "__init__.py"
                ).exists()
                seen[alias.name] = submodule if is_module else node.module
    assert seen == {name: module for name, module in mt._EXPORTS.items()}


def test_the_package_ships_a_py_typed_marker():
    assert (PACKAGE / "py.typed").is_file()
    pyproject = (PACKAGE.parent / "pyproject.toml").read_text(encoding="utf-8")
    assert '[tool.setuptools.package-data]\nmitest = ["py.typed"]' in pyproject


def test_the_mi_fixture_names_what_it_returns():
    returns = {name: inspect.signature(getattr(Mi, name)).return_annotation for name in ("measure", "circuit", "model")}
    assert returns == {"measure": "Effect", "circuit": "CircuitTest", "model": "Model"}
