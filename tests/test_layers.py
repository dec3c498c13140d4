"""The import direction of docs/architecture.md, read from the source (no module is imported).

Library (``_tree``, ``problem``, ``inner``, ``linalg``, ``hypergrad``, ``algorithms``, ``progress``,
``analysis``, ...) <- ``data``, ``models`` <- ``experiments`` <- ``runner``: a module never imports a
layer above its own, not even inside a function. The one exception: an experiment module's
``if __name__ == "__main__":`` block imports the command line (``blojax.runner.cli.run_module``),
which runs only when the module is the program. Experiment modules share code through
``experiments/toolkit.py``, never another experiment's private (underscore) names.
"""

from __future__ import annotations

import ast
import pathlib

import pytest

SRC = pathlib.Path(__file__).resolve().parents[1] / "src"
PKG = SRC / "blojax"

# Layer of each top-level part of the package; a module may import its own layer and those below.
# Every part not named here (problem, inner, linalg, hypergrad, algorithms, progress, analysis, _tree,
# a new core module or subpackage) is the library, layer 0.
APPLICATION_LAYER = {"data": 1, "models": 1, "experiments": 2, "demo": 2, "runner": 3}

# Modules of blojax.experiments that are the contract or shared pieces, not experiments
# (blojax.runner.discovery.CONTRACT_MODULES; `_name` modules are private parts of one experiment).
CONTRACT = {"common", "claims", "toolkit", "figures", "__init__"}


def layer(part: str) -> int:
    return APPLICATION_LAYER.get(part, 0)


def _module_name(path: pathlib.Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _part(module: str) -> str:
    """``blojax.runner.cli`` -> ``runner``; ``blojax`` -> ``__init__``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _is_main_block(node: ast.AST) -> bool:
    """``if __name__ == "__main__":`` (the block that runs only when the module is the program)."""
    if not isinstance(node, ast.If):
        return False
    t = node.test
    return (
        isinstance(t, ast.Compare)
        and isinstance(t.left, ast.Name)
        and t.left.id == "__name__"
        and len(t.comparators) == 1
        and isinstance(t.comparators[0], ast.Constant)
        and t.comparators[0].value == "__main__"
    )


def _nodes(tree: ast.Module, *, main_blocks: bool):
    """Every node of ``tree``; the ``__main__`` blocks' only with ``main_blocks``."""
    todo: list[ast.AST] = list(tree.body)
    while todo:
        node = todo.pop()
        if not main_blocks and _is_main_block(node):
            continue
        yield node
        todo.extend(ast.iter_child_nodes(node))


def imports(path: pathlib.Path, *, main_blocks: bool = False) -> list[tuple[str, list[str]]]:
    """``(blojax module, names imported from it)`` for every import of a blojax module in ``path``, at
    module level or inside a function (inside ``__main__`` blocks only with ``main_blocks``).
    ``from . import linalg`` gives ``("blojax.linalg", [])``."""
    module = _module_name(path)
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    found = []
    for node in _nodes(ast.parse(path.read_text(encoding="utf-8")), main_blocks=main_blocks):
        if isinstance(node, ast.ImportFrom):
            names = [a.name for a in node.names]
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                if node.module:
                    found.append((".".join([*base, node.module]), names))
                else:
                    found.extend((".".join([*base, a]), []) for a in names)
            elif node.module and node.module.split(".")[0] == "blojax":
                found.append((node.module, names))
        elif isinstance(node, ast.Import):
            found.extend((a.name, []) for a in node.names if a.name.split(".")[0] == "blojax")
    return found


def imported_modules(path: pathlib.Path, *, main_blocks: bool = False) -> set[str]:
    """Every ``blojax...`` module that ``path`` imports (see :func:`imports`)."""
    return {target for target, _ in imports(path, main_blocks=main_blocks)}


def _edges(*, main_blocks: bool = False):
    """``(file, its part, imported module)`` for every import of a blojax module."""
    for path in sorted(PKG.rglob("*.py")):
        source = _part(_module_name(path))
        for target in imported_modules(path, main_blocks=main_blocks):
            yield path.relative_to(SRC).as_posix(), source, target


def _experiment_modules():
    """``blojax.experiments.<name>`` of every experiment (not the contract, not a private part)."""
    for path in sorted((PKG / "experiments").glob("*.py")):
        if path.stem not in CONTRACT and not path.stem.startswith("_"):
            yield path


# ------------------------------------------------------------------------------------ the reader
def test_parser_sees_relative_and_absolute_imports():
    """The reader finds the imports the library is known to have (so the layer tests cannot pass
    because they found nothing)."""
    got = imported_modules(PKG / "hypergrad.py")
    assert {"blojax.linalg", "blojax._tree"} <= got
    assert "blojax.hypergrad" in imported_modules(PKG / "algorithms.py")
    assert "blojax.progress" in imported_modules(PKG / "algorithms.py")
    assert "blojax.experiments" in imported_modules(PKG / "runner" / "rundir.py")
    assert ("blojax.experiments.common", ["LoopContext"]) in imports(PKG / "runner" / "context.py")


def test_main_blocks_are_seen_only_when_asked(tmp_path):
    """An import in ``if __name__ == "__main__":`` is found with ``main_blocks=True`` and not
    otherwise; one inside a function is always found."""
    mod = PKG / "experiments" / "theory.py"
    assert "blojax.runner.cli" not in imported_modules(mod)
    assert "blojax.runner.cli" in imported_modules(mod, main_blocks=True)
    assert _is_main_block(ast.parse('if __name__ == "__main__":\n    pass').body[0])
    assert not _is_main_block(ast.parse('if __name__ == "x":\n    pass').body[0])


# ------------------------------------------------------------------------------------ the direction
@pytest.mark.parametrize("path, source, target", list(_edges()))
def test_imports_point_down(path, source, target):
    part = _part(target)
    assert layer(part) <= layer(source), (
        f"{path} ({source}, layer {layer(source)}) imports {target} (layer {layer(part)}); "
        "see docs/architecture.md"
    )


def test_only_main_blocks_import_the_runner_from_experiments():
    """Inside ``__main__`` blocks an experiment may import ``blojax.runner.cli`` and nothing else of
    the runner; every experiment module has such a block (``python -m blojax.experiments.<name>``)."""
    modules = list(_experiment_modules())
    assert len(modules) >= 10
    for path in modules:
        upward = {
            t for t in imported_modules(path, main_blocks=True) if layer(_part(t)) > layer("experiments")
        }
        assert upward == {"blojax.runner.cli"}, f"{path.name}: {sorted(upward)}"


def test_library_imports_no_application_code():
    """The library never imports data, models, experiments or runner, not even inside a function or
    a ``__main__`` block."""
    for path, source, target in _edges(main_blocks=True):
        if layer(source) == 0:
            assert layer(_part(target)) == 0, f"{path} imports {target}"


def _owner(stem: str, experiments: set[str]) -> str | None:
    """The experiment a module of ``blojax.experiments`` belongs to: ``rings`` for ``rings``,
    ``_rings_variant`` and ``figures/rings``; ``None`` for the contract and shared private modules."""
    bare = stem.lstrip("_")
    owners = [e for e in experiments if bare == e or bare.startswith(e + "_")]
    return max(owners, key=len) if owners else None


def _private_violations(stem: str, found, experiments: set[str]) -> list[str]:
    """What module ``stem`` of ``blojax.experiments`` imports (``found``: :func:`imports`' pairs) of
    another experiment's private names or private ``_<experiment>_<part>`` modules."""
    own, bad = _owner(stem, experiments), []
    for target, names in found:
        parts = target.split(".")
        if parts[:2] != ["blojax", "experiments"] or len(parts) < 3:
            continue
        owner = _owner(parts[-1], experiments)
        if owner is None or owner == own:
            continue
        if parts[-1].startswith("_"):
            bad.append(f"{target} (a private part of {owner})")
        bad += [f"{target}.{n}" for n in names if n.startswith("_")]
    return bad


def test_experiments_import_no_private_names_of_another_experiment():
    """An experiment module (or its figures / private parts) imports from another experiment only its
    public names, and none of its private ``_<experiment>_<part>`` modules; shared code lives in the
    toolkit (or a shared private module named after no experiment)."""
    experiments = {p.stem for p in _experiment_modules()}
    files = sorted((PKG / "experiments").rglob("*.py"))
    assert len(experiments) >= 10 and files
    for path in files:
        bad = _private_violations(path.stem, imports(path, main_blocks=True), experiments)
        assert not bad, f"{path.relative_to(SRC)} imports {bad}"


def test_the_private_import_check_finds_violations():
    experiments = {p.stem for p in _experiment_modules()}
    assert _owner("_rings_variant", experiments) == "rings" and _owner("_distill2d", experiments) is None
    found = [
        ("blojax.experiments.rings", ["run", "_helper"]),
        ("blojax.experiments._rings_variant", ["run_variant"]),
        ("blojax.experiments._distill2d", ["_shared"]),
        ("blojax.experiments.toolkit", ["accuracy"]),
    ]
    assert _private_violations("solution_concepts", found, experiments) == [
        "blojax.experiments.rings._helper",
        "blojax.experiments._rings_variant (a private part of rings)",
    ]
    assert _private_violations("_rings_variant", found, experiments) == []  # its own experiment
    assert _private_violations("rings", found, experiments) == []  # figures/rings.py too
