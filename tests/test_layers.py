"""The import direction of docs/architecture.md, read from the source (no module is imported).

Library (``_tree``, ``problem``, ``inner``, ``linalg``, ``hypergrad``, ``algorithms``, ``analysis``)
<- ``data``, ``models`` <- ``experiments`` <- ``runner``: a module never imports a layer above its own.
"""

from __future__ import annotations

import ast
import pathlib

import pytest

SRC = pathlib.Path(__file__).resolve().parents[1] / "src"
PKG = SRC / "blojax"

# Layer of each top-level part of the package; a module may import its own layer and those below.
# Every part not named here (problem, inner, linalg, hypergrad, algorithms, analysis, _tree, a new
# core module or subpackage) is the library, layer 0.
APPLICATION_LAYER = {"data": 1, "models": 1, "experiments": 2, "demo": 2, "runner": 3}


def layer(part: str) -> int:
    return APPLICATION_LAYER.get(part, 0)


def _module_name(path: pathlib.Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _part(module: str) -> str:
    """``blojax.runner.cli`` -> ``runner``; ``blojax`` -> ``__init__``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def imported_modules(path: pathlib.Path) -> set[str]:
    """Every ``blojax...`` module that ``path`` imports, at module level or inside a function."""
    module = _module_name(path)
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
                # `from . import linalg` names submodules
                found.update(f"{target}.{a.name}" if not node.module else target for a in node.names)
            elif node.module and node.module.split(".")[0] == "blojax":
                found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.split(".")[0] == "blojax")
    return found


def _edges():
    """``(file, its part, imported module)`` for every import of a blojax module."""
    for path in sorted(PKG.rglob("*.py")):
        source = _part(_module_name(path))
        for target in imported_modules(path):
            yield path.relative_to(SRC).as_posix(), source, target


# The upward edges docs/architecture.md lists, as (importing part, imported module): experiments.common's
# entry point into runner.cli (called inside main()).
KNOWN_UPWARD = {("experiments", "blojax.runner.cli")}


def test_parser_sees_relative_and_absolute_imports():
    """The reader finds the imports the library is known to have (so the layer test cannot pass
    because it found nothing)."""
    got = imported_modules(PKG / "hypergrad.py")
    assert {"blojax.linalg", "blojax._tree"} <= got
    assert "blojax.hypergrad" in imported_modules(PKG / "algorithms.py")
    assert "blojax.experiments" in imported_modules(PKG / "runner" / "rundir.py")


@pytest.mark.parametrize("path, source, target", list(_edges()))
def test_imports_point_down(path, source, target):
    if (source, target) in KNOWN_UPWARD:
        return
    part = _part(target)
    assert layer(part) <= layer(source), (
        f"{path} ({source}, layer {layer(source)}) imports {target} (layer {layer(part)}); "
        "see docs/architecture.md"
    )


def test_known_upward_edges_still_exist():
    """An exception that no import uses any more is removed here and from docs/architecture.md."""
    used = {(source, target) for _, source, target in _edges()}
    assert KNOWN_UPWARD <= used, f"no longer imported, remove from KNOWN_UPWARD: {KNOWN_UPWARD - used}"


def test_library_imports_no_application_code():
    """The library never imports data, models, experiments or runner, not even inside a function."""
    for path, source, target in _edges():
        if layer(source) == 0:
            assert layer(_part(target)) == 0, f"{path} imports {target}"
