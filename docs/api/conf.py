"""Sphinx configuration of the API reference: ``make docs`` builds it into build/docs with warnings as errors.

Every name in ``blojax.__all__`` gets rendered: the group pages (problem, inner, hypergradients,
algorithms, linalg, analysis) document each name under its own heading with its maths; a name that no
group page documents yet is rendered automatically on the page ``more`` (see ``_add_undocumented``),
so a new export appears in the reference without any edit, and moving it to a group page is one
``.. autoclass::`` / ``.. autofunction::`` line.
"""

from __future__ import annotations

import inspect
import os
import pathlib
import re

import blojax

HERE = pathlib.Path(__file__).resolve().parent

project = "blojax"
author = "the blojax authors"
copyright = "the blojax authors"
release = version = blojax.__version__

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",  # the docstrings' Google-style "Args:" / "Returns:" sections
    "sphinx.ext.mathjax",
    "sphinx.ext.viewcode",
]
exclude_patterns = ["_build"]
templates_path: list[str] = []

autodoc_default_options = {"members": True, "member-order": "bysource", "show-inheritance": True}
autodoc_typehints = "signature"
autodoc_preserve_defaults = True
napoleon_google_docstring = True
napoleon_numpy_docstring = False
# "Attributes:" sections as field lists, so NamedTuple fields are not described twice.
napoleon_use_ivar = True
# ``x`` in docstrings is inline code (the docstrings write their formulas in it).
default_role = "code"
# Every cross-reference must resolve (a :func: to a renamed function fails the build), except types of
# other libraries, whose inventories are not fetched (the build needs no network), and private bases.
nitpicky = True
nitpick_ignore_regex = [
    ("py:class", r"(jax|jaxlib|optax|numpy|np|enum|typing|collections|abc)(\..*)?"),
    ("py:class", r"blojax(\.\w+)*\._\w+"),
]
# Docstrings already point at blojax.solve and blojax.implicit_diff (the strategies as a JAX transform);
# until blojax exports them those two links may dangle. The exemption lapses by itself once they exist.
nitpick_ignore = [("py:func", f"blojax.{name}") for name in ("solve", "implicit_diff") if not hasattr(blojax, name)]

html_theme = "furo"
html_title = f"blojax {release} API reference"
html_static_path: list[str] = []
# MathJax from its CDN when the pages are read; BLOJAX_MATHJAX points at a local copy (offline checks).
if os.environ.get("BLOJAX_MATHJAX"):
    mathjax_path = os.environ["BLOJAX_MATHJAX"]

_DIRECTIVE = re.compile(r"^\.\. auto(?:class|function|data|exception|module)::\s+blojax\.(\w+)\s*$", re.M)


def documented_names() -> set[str]:
    """Top-level names that a hand-written page documents (``.. autoX:: blojax.<name>``)."""
    names = set()
    for page in HERE.glob("*.rst"):
        if page.stem != "more":
            names.update(_DIRECTIVE.findall(page.read_text(encoding="utf-8")))
    if "stochastic" in names:  # its page renders blojax.stochastic.__all__, the solvers blojax re-exports
        names.update(blojax.stochastic.__all__)
    return names


def _directive(name: str) -> str:
    obj = getattr(blojax, name)
    if inspect.ismodule(obj):
        return f".. automodule:: blojax.{name}\n   :members:\n"
    if inspect.isclass(obj):
        kind = "autoexception" if issubclass(obj, BaseException) else "autoclass"
        return f".. {kind}:: blojax.{name}\n"
    if callable(obj):
        return f".. autofunction:: blojax.{name}\n"
    return f".. autodata:: blojax.{name}\n"


def _add_undocumented(app, docname, source):
    if docname != "more":
        return
    missing = [n for n in blojax.__all__ if n not in documented_names()]
    if not missing:
        source[0] += "\nEvery public name is documented on a page above.\n"
        return
    parts = [source[0]]
    for name in missing:
        parts.append(f"\n``blojax.{name}``\n{'-' * (len(name) + 12)}\n\n{_directive(name)}")
    source[0] = "\n".join(parts)


def setup(app):
    app.connect("source-read", _add_undocumented)
