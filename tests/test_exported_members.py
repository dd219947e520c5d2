"""Each package's ``__all__`` is its public API and must not drift (as httpx's test of the same name).

For every package of edge, devices, models and sync: every name in ``__all__`` resolves (lazy
names through the package's ``__getattr__`` included), none is listed twice, and every public
name the ``__init__`` itself binds — its own definitions and what it imports from its own
modules — is listed. Names imported from elsewhere (``Path``, ``GatewayContext``, ``Any``), those
imported only for type checking, and the module logger are not API. Modules that declare an
``__all__`` are held to its first half too: every listed name exists.
"""

from __future__ import annotations

import ast
import importlib
import logging
import pkgutil
from pathlib import Path
from types import ModuleType

import pytest

ROOTS = ("edge", "devices", "models", "sync")
ROOT = Path(__file__).resolve().parents[1]


def _walk(packages_only: bool) -> list[str]:
    names: list[str] = []
    for root in ROOTS:
        names.append(root)
        for info in pkgutil.walk_packages([str(ROOT / root)], prefix=f"{root}."):
            if (info.ispkg or not packages_only) and not info.name.endswith(".__main__"):
                names.append(info.name)
    return sorted(names)


PACKAGES = _walk(packages_only=True)
MODULES = _walk(packages_only=False)


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _own_import(node: ast.ImportFrom, package: str) -> bool:
    module = node.module or ""
    return node.level > 0 or module == package or module.startswith(package + ".")


def _bound_public_names(module: ModuleType) -> set[str]:
    """Public names the package's own top-level code binds to its definitions or its modules' names."""
    assert module.__file__ is not None
    tree = ast.parse(Path(module.__file__).read_text(encoding="utf-8"))
    names: set[str] = set()
    for node in tree.body:
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            continue
        if isinstance(node, ast.ImportFrom) and _own_import(node, module.__name__):
            names.update(alias.asname or alias.name for alias in node.names)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.Assign):
            names.update(t.id for t in node.targets if isinstance(t, ast.Name))
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.add(node.target.id)
    return {
        n
        for n in names
        if not n.startswith("_") and not isinstance(getattr(module, n, None), (logging.Logger, ModuleType))
    }


def test_every_package_is_found():
    assert {"edge", "edge.decisioning", "devices", "devices.ble", "models", "sync"} <= set(PACKAGES)


@pytest.mark.parametrize("name", PACKAGES)
def test_package_exports_its_public_names(name):
    package = importlib.import_module(name)
    public = _bound_public_names(package)
    exported = getattr(package, "__all__", None)
    if exported is None:
        assert not public, f"{name} binds public names {sorted(public)} but declares no __all__"
        return
    assert len(exported) == len(set(exported)), f"{name}.__all__ lists a name twice"
    missing = sorted(public - set(exported))
    assert not missing, f"{name} binds public names missing from __all__: {missing}"


@pytest.mark.parametrize("name", MODULES)
def test_every_name_in_all_exists(name):
    module = importlib.import_module(name)
    exported = getattr(module, "__all__", ())
    assert all(isinstance(n, str) for n in exported), f"{name}.__all__ holds a non-string"
    absent = [n for n in exported if not hasattr(module, n)]
    assert not absent, f"{name}.__all__ names what the module does not have: {absent}"
