"""The experiment contract and what every experiment module shares.

Every experiment is a module ``blojax.experiments.<name>`` with

* ``DESCRIPTION``: one line for ``blojax list``;
* ``Config``: a frozen dataclass, every field with a documented default, a ``validate()`` method that
  raises :class:`ConfigError` naming the field, and a ``quick()`` classmethod returning the shrunken
  configuration that keeps the scientific claim but runs in seconds;
* ``run(config, ctx=None) -> Result``: ``Result`` is any object with ``to_dict()`` returning the
  JSON-able numbers that ``results.json`` reports;
* ``plot(result, out_dir) -> list[pathlib.Path]``: writes the figures (PNG/GIF) and returns their paths;
* a ``__main__`` block: ``raise SystemExit(common.main(__name__))``, which gives
  ``python -m blojax.experiments.<name> --out DIR [--quick] [--seed N]``.

Long loops go through the :class:`Context` passed to ``run`` (``ctx.scan`` / ``ctx.run``): it shows a
progress bar, and it is where checkpoints and resumption hook in, so experiments stay free of I/O.
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import math
import os
import pathlib
import pickle
import platform
import sys
import tempfile
import time
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

__all__ = [
    "ConfigError",
    "check_field",
    "Context",
    "environment",
    "atomic_write_bytes",
    "atomic_write_text",
    "atomic_write_json",
    "save_figure",
    "to_jsonable",
    "write_results",
    "main",
]


class ConfigError(ValueError):
    """A configuration value is out of range; the message names the field."""


def check_field(ok: bool, config_name: str, field: str, expected: str, got: Any) -> None:
    """Raise ``ConfigError('<Config>.<field> must be <expected>, got <got>')`` unless ``ok``."""
    if not ok:
        raise ConfigError(f"{config_name}.{field} must be {expected}, got {got!r}")


# ------------------------------------------------------------------------------------ files
def atomic_write_bytes(path, data: bytes) -> pathlib.Path:
    """Write ``data`` to ``path`` via a temporary file in the same folder and ``os.replace``: an
    interruption never leaves a half-written file behind."""
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    return path


def atomic_write_text(path, text: str) -> pathlib.Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def to_jsonable(x):
    """Convert numbers, arrays, dataclasses and containers into plain JSON values (NaN/inf -> None
    is *not* done: they are written as strings so that nothing is silently hidden)."""
    if dataclasses.is_dataclass(x) and not isinstance(x, type):
        return {f.name: to_jsonable(getattr(x, f.name)) for f in dataclasses.fields(x)}
    if isinstance(x, dict):
        return {str(k): to_jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [to_jsonable(v) for v in x]
    if isinstance(x, (jax.Array, np.ndarray, np.generic)):
        a = np.asarray(x)
        return to_jsonable(a.tolist()) if a.ndim else to_jsonable(a.item())
    if isinstance(x, float) and not math.isfinite(x):
        return str(x)
    if isinstance(x, (str, int, float, bool)) or x is None:
        return x
    if isinstance(x, pathlib.Path):
        return str(x)
    return repr(x)


def atomic_write_json(path, obj) -> pathlib.Path:
    return atomic_write_text(path, json.dumps(to_jsonable(obj), indent=2, sort_keys=False) + "\n")


def save_figure(fig, path, **kwargs) -> pathlib.Path:
    """Save a matplotlib figure atomically (format from the suffix) and close it."""
    import io

    import matplotlib.pyplot as plt

    path = pathlib.Path(path)
    buf = io.BytesIO()
    kwargs.setdefault("dpi", 120)
    kwargs.setdefault("bbox_inches", "tight")
    fig.savefig(buf, format=path.suffix.lstrip(".") or "png", **kwargs)
    plt.close(fig)
    return atomic_write_bytes(path, buf.getvalue())


def environment() -> dict:
    """Versions and platform, for results.json."""
    import optax

    versions = {"python": sys.version.split()[0], "jax": jax.__version__, "optax": optax.__version__, "numpy": np.__version__}
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


def write_results(out_dir, name: str, config, result, seconds: float, extra: dict | None = None) -> pathlib.Path:
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


# ------------------------------------------------------------------------------------ context
def _tree_concat(parts, axis):
    return jax.tree_util.tree_map(lambda *xs: np.concatenate([np.asarray(x) for x in xs], axis=axis), *parts)


@dataclasses.dataclass
class Context:
    """Where an experiment's long loops run: progress bars, checkpoints and resumption.

    Args:
      checkpoint_dir: folder for checkpoints (``None``: no checkpoints).
      resume: load existing checkpoints instead of recomputing.
      checkpoint_every: outer steps per compiled chunk (and per checkpoint) in :meth:`scan`.
      progress: show progress bars (default: when stderr is a terminal).
    """

    checkpoint_dir: str | os.PathLike | None = None
    resume: bool = False
    checkpoint_every: int | None = None
    progress: bool | None = None
    chunks: int = 20

    def __post_init__(self):
        if self.progress is None:
            self.progress = sys.stderr.isatty()
        if self.checkpoint_dir is not None:
            self.checkpoint_dir = pathlib.Path(self.checkpoint_dir)

    # --- persistence of arbitrary pytrees of arrays
    def _path(self, key: str) -> pathlib.Path | None:
        if self.checkpoint_dir is None:
            return None
        safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in key)
        return self.checkpoint_dir / f"{safe}.pkl"

    def load(self, key: str):
        path = self._path(key)
        if path is None or not self.resume or not path.exists():
            return None
        with open(path, "rb") as fh:
            return pickle.load(fh)

    def save(self, key: str, obj) -> None:
        path = self._path(key)
        if path is None:
            return
        host = jax.tree_util.tree_map(np.asarray, obj)
        atomic_write_bytes(path, pickle.dumps(host, protocol=pickle.HIGHEST_PROTOCOL))

    def stage(self, key: str, fn: Callable, *args, **kwargs):
        """Compute ``fn(*args, **kwargs)`` once: with ``resume`` a finished stage is loaded back."""
        cached = self.load(f"stage-{key}")
        if cached is not None:
            return jax.tree_util.tree_map(jnp.asarray, cached["value"])
        value = fn(*args, **kwargs)
        self.save(f"stage-{key}", {"value": value})
        return value

    def scan(self, chunk_fn: Callable, carry, steps: int, *, key: str, desc: str | None = None, history_axis: int = 0):
        """Run ``steps`` steps of ``chunk_fn(carry, n) -> (carry, history)`` in compiled chunks.

        ``history`` leaves have the step axis at ``history_axis`` (1 for a run vmapped over seeds).
        Shows progress; with a ``checkpoint_dir`` saves ``(carry, history so far)`` after each chunk
        under ``key`` and, with ``resume``, continues from the last saved chunk. The chunk lengths
        depend only on ``steps`` and the context settings, so a resumed run performs exactly the same
        computations as an uninterrupted one.
        """
        if steps <= 0:
            carry, hist = chunk_fn(carry, 0)
            return carry, hist
        size = self.checkpoint_every or max(1, -(-steps // max(1, self.chunks)))
        if not self.progress and self.checkpoint_dir is None and self.checkpoint_every is None:
            size = steps
        done, parts = 0, []
        saved = self.load(f"scan-{key}")
        if saved is not None:
            done = int(saved["done"])
            carry = jax.tree_util.tree_map(jnp.asarray, saved["carry"])
            parts = [saved["history"]] if saved["history"] is not None else []
        bar = None
        if self.progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=steps, initial=done, desc=desc or key, unit="step", leave=False)
        try:
            while done < steps:
                n = min(size, steps - done)
                carry, hist = chunk_fn(carry, n)
                hist = jax.tree_util.tree_map(np.asarray, jax.block_until_ready(hist))
                parts.append(hist)
                done += n
                if len(parts) > 1:
                    parts = [_tree_concat(parts, history_axis)]
                self.save(f"scan-{key}", {"done": done, "carry": carry, "history": parts[0]})
                if bar is not None:
                    bar.update(n)
        finally:
            if bar is not None:
                bar.close()
        return carry, parts[0]

    def run(self, algo, state, steps: int, *, key: str, inner_batches=None, outer_batches=None, desc=None):
        """``algo.run`` through :meth:`scan` (chunked, checkpointed, with progress). Batches are
        sliced per chunk. Raises :class:`blojax.NonFiniteError` after the chunk where NaN/inf first
        appeared (the checkpoint keeps everything up to it)."""
        offset = {"i": 0}

        def chunk(st, n):
            i = offset["i"]
            sl = lambda t: jax.tree_util.tree_map(lambda x: x[i : i + n], t)  # noqa: E731
            st, h = algo.run(st, n, inner_batches=sl(inner_batches), outer_batches=sl(outer_batches), on_nonfinite="stop")
            offset["i"] = i + n
            return st, h

        saved = self.load(f"scan-{key}")
        if saved is not None:
            offset["i"] = int(saved["done"])
        state, history = self.scan(chunk, state, steps, key=key, desc=desc)
        return state, history


def timed(fn: Callable, *args, **kwargs):
    t0 = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - t0


# ------------------------------------------------------------------------------------ CLI of one module
def main(module_name: str, argv=None) -> int:
    """``python -m blojax.experiments.<name> --out DIR [--quick] [--seed N]``."""
    import argparse

    mod = importlib.import_module(module_name)
    name = module_name.rsplit(".", 1)[-1]
    parser = argparse.ArgumentParser(prog=f"python -m {module_name}", description=getattr(mod, "DESCRIPTION", ""))
    parser.add_argument("--out", required=True, help="output folder (results.json and figures)")
    parser.add_argument("--quick", action="store_true", help="shrunken settings that run in seconds")
    parser.add_argument("--seed", type=int, default=None, help="random seed (overrides the config)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    args = parser.parse_args(argv)
    config = mod.Config.quick() if args.quick else mod.Config()
    if args.seed is not None:
        if not any(f.name == "seed" for f in dataclasses.fields(config)):
            parser.error(f"{name} has no seed")
        config = dataclasses.replace(config, seed=args.seed)
    try:
        config.validate()
    except ConfigError as exc:
        parser.exit(2, f"error: {exc}\n")
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    ctx = Context(progress=False if args.quiet else None)
    t0 = time.perf_counter()
    result = mod.run(config, ctx)
    seconds = time.perf_counter() - t0
    figures = mod.plot(result, out)
    write_results(out, name, config, result, seconds, {"figures": [pathlib.Path(f).name for f in figures]})
    print(f"{name}: {seconds:.1f} s; wrote {out / 'results.json'} and {len(figures)} figure(s)")
    return 0


def available() -> dict[str, str]:
    """Experiment modules that follow the contract: ``{name: DESCRIPTION}``."""
    import pkgutil

    import blojax.experiments as pkg

    found = {}
    for info in pkgutil.iter_modules(pkg.__path__):
        if info.name.startswith("_") or info.name == "common":
            continue
        try:
            mod = importlib.import_module(f"blojax.experiments.{info.name}")
        except Exception:  # noqa: BLE001 - a broken module must not hide the others
            continue
        if all(hasattr(mod, a) for a in ("DESCRIPTION", "Config", "run", "plot")):
            found[info.name] = mod.DESCRIPTION
    return dict(sorted(found.items()))
