"""Which experiments exist: the modules of :mod:`blojax.experiments` that follow the contract of
:mod:`blojax.experiments.common`, plus the ones registered from outside the package.

Experiments outside the package are made available with :func:`register` or the environment
variable ``BLOJAX_EXPERIMENTS="name=package.module,..."`` (which also reaches subprocesses and Ray
workers).
"""

from __future__ import annotations

import importlib
import os

__all__ = ["EXPERIMENTS_ENV", "register", "discover", "available", "load_experiment"]

_REGISTERED: dict[str, str] = {}
EXPERIMENTS_ENV = "BLOJAX_EXPERIMENTS"

#: Modules and subpackages of :mod:`blojax.experiments` that hold the contract or shared pieces, not
#: an experiment (``figures`` holds the plotting modules; names starting with ``_`` are private parts).
CONTRACT_MODULES = ("common", "claims", "toolkit", "figures")

_REQUIRED = ("DESCRIPTION", "Config", "run", "plot")


def register(name: str, module_path: str) -> None:
    """Make the module ``module_path`` (following the contract) available as experiment ``name``,
    besides the modules of :mod:`blojax.experiments`. The environment variable
    ``BLOJAX_EXPERIMENTS="name=package.module,..."`` does the same for subprocesses and Ray workers."""
    _REGISTERED[name] = module_path


def _registered() -> dict[str, str]:
    out = {}
    for item in os.environ.get(EXPERIMENTS_ENV, "").split(","):
        item = item.strip()
        if not item:
            continue
        name, _, path = item.partition("=") if "=" in item else (item.rsplit(".", 1)[-1], "", item)
        out[name.strip()] = path.strip()
    out.update(_REGISTERED)
    return out


def discover() -> tuple[dict[str, str], dict[str, str]]:
    """``({name: module path}, {name: why it is not usable})`` over :mod:`blojax.experiments` and the
    registered modules; a module that fails to import is reported, never hides the others."""
    import pkgutil

    import blojax.experiments as pkg

    candidates = {
        info.name: f"blojax.experiments.{info.name}"
        for info in pkgutil.iter_modules(pkg.__path__)
        if not info.name.startswith("_") and info.name not in CONTRACT_MODULES
    }
    candidates.update(_registered())
    found, broken = {}, {}
    for name, path in sorted(candidates.items()):
        try:
            mod = importlib.import_module(path)
        except Exception as exc:  # noqa: BLE001 - a broken module must not hide the others
            broken[name] = f"import failed: {type(exc).__name__}: {exc}".splitlines()[0]
            continue
        missing = [a for a in _REQUIRED if not hasattr(mod, a)]
        if missing:
            broken[name] = f"missing {', '.join(missing)}"
        else:
            found[name] = path
    return found, broken


def available() -> dict[str, str]:
    """Experiment modules that follow the contract: ``{name: DESCRIPTION}``."""
    found, _ = discover()
    return {name: importlib.import_module(path).DESCRIPTION for name, path in found.items()}


def load_experiment(name: str):
    """The module of experiment ``name``; ``KeyError`` listing the valid names if there is none."""
    found, broken = discover()
    if name not in found:
        hint = f" ({broken[name]})" if name in broken else ""
        raise KeyError(f"unknown experiment {name!r}{hint}; available: {', '.join(found) or '(none)'}")
    return importlib.import_module(found[name])
