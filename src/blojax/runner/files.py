"""What the runner writes: atomic files, ``results.json`` and the environment it records.

Every file of a run folder is written atomically (a temporary file in the same folder, then
``os.replace``), so an interrupted run never leaves a half-written file.
"""

from __future__ import annotations

import importlib
import json
import os
import pathlib
import platform
import sys

import jax
import numpy as np

from blojax import _atomic
from blojax.experiments.common import to_jsonable

__all__ = ["atomic_write_bytes", "atomic_write_text", "atomic_write_json", "environment", "write_results"]


def atomic_write_bytes(path, data: bytes) -> pathlib.Path:
    """Write ``data`` to ``path`` atomically (:func:`blojax._atomic.atomic_write_bytes`, looked up at
    each call, so a test can make every write of a run fail there)."""
    return _atomic.atomic_write_bytes(path, data)


def atomic_write_text(path, text: str) -> pathlib.Path:
    """``text`` as UTF-8, atomically."""
    return _atomic.atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path, obj) -> pathlib.Path:
    """``obj`` as indented JSON (through :func:`blojax.experiments.common.to_jsonable`), atomically."""
    return atomic_write_text(path, json.dumps(to_jsonable(obj), indent=2, sort_keys=False) + "\n")


def environment() -> dict:
    """Versions and platform, for results.json."""
    import optax

    versions = {
        "python": sys.version.split()[0],
        "jax": jax.__version__,
        "optax": optax.__version__,
        "numpy": np.__version__,
    }
    for mod in ("jaxlib", "lineax", "equinox", "matplotlib", "blojax"):
        try:
            versions[mod] = importlib.import_module(mod).__version__
        except Exception:  # noqa: BLE001
            pass
    return {
        "versions": versions,
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
        "jax_backend": jax.default_backend(),
        "jax_devices": [str(d) for d in jax.devices()],
        "x64": bool(jax.config.read("jax_enable_x64")),
    }


def write_results(
    out_dir, name: str, config, result, seconds: float, extra: dict | None = None
) -> pathlib.Path:
    """``out_dir/results.json``: experiment, config, environment, seconds and ``result.to_dict()``."""
    payload = {
        "experiment": name,
        "config": config,
        "environment": environment(),
        "seconds": seconds,
        "results": result.to_dict() if hasattr(result, "to_dict") else result,
    }
    if extra:
        payload.update(extra)
    return atomic_write_json(pathlib.Path(out_dir) / "results.json", payload)
