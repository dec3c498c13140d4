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
Give every loop a distinct ``key``; resumed runs (``blojax run --resume``) end bit-identical to
uninterrupted ones as long as ``run`` is deterministic given its config.

Optional module attributes, used by the ``blojax`` command when present (see ``docs/cli.md``):

* ``run_batch(configs, ctx=None) -> list[Result]`` — the sweep hook. ``blojax sweep`` hands it the grid
  points that may share one compiled computation and expects one ``Result`` per config, in order, equal
  (to round-off) to ``[run(c) for c in configs]``; typically one ``jax.vmap`` over the varying fields,
  or one run over the union of a swept tuple (e.g. all K of a K sweep) sliced per config afterwards.
  Without it, grid points run one after another.
* ``BATCH_FIELDS = ("seed", ...)`` — the Config fields that may differ within one ``run_batch`` call
  (default ``("seed",)``); or ``batch_key(config) -> hashable``: configs with equal keys share a call.
* ``paper_comparison(results: dict) -> [{"quantity": ..., "ours": ..., "paper": ...}, ...]`` — rows
  for the report's "ours beside the paper" table (``results`` is ``Result.to_dict()``).
* ``PAPER`` (str) and ``PAPER_REF`` (e.g. ``"Fig. 10"``) — the paper's claim shown in the report.

Experiments outside this package can be made available with :func:`register` or the environment
variable ``BLOJAX_EXPERIMENTS="name=package.module,..."``.
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
    "available",
    "discover",
    "register",
    "load_experiment",
    "CheckpointError",
    "ResourceError",
    "RunContext",
    "ensure_context",
]


class ConfigError(ValueError):
    """A configuration value is out of range; the message names the field."""


def check_field(ok: bool, config_name: str, field: str, expected: str, got: Any) -> None:
    """Raise ``ConfigError('<Config>.<field> must be <expected>, got <got>')`` unless ``ok``."""
    if not ok:
        raise ConfigError(f"{config_name}.{field} must be {expected}, got {got!r}")


def check_int_fields(config, fields) -> None:
    """:func:`check_field` for integer fields of ``config``: each entry of ``fields`` is a field name
    (must be an int >= 1) or a ``(name, minimum)`` pair. Booleans are refused."""
    name = type(config).__name__
    for entry in fields:
        field, lo = (entry, 1) if isinstance(entry, str) else entry
        v = getattr(config, field)
        expected = "a positive integer" if lo == 1 else f"an integer >= {lo}"
        check_field(isinstance(v, int) and not isinstance(v, bool) and v >= lo, name, field, expected, v)


# ------------------------------------------------------------------------------------ files
_UMASK = os.umask(0o022)  # read once (os.umask can only be read by setting it)
os.umask(_UMASK)


def atomic_write_bytes(path, data: bytes) -> pathlib.Path:
    """Write ``data`` to ``path`` via a temporary file in the same folder and ``os.replace``: an
    interruption never leaves a half-written file behind."""
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, 0o666 & ~_UMASK)  # mkstemp makes 0600; give the file the usual permissions
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


def to_jsonable(x) -> Any:
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


class CheckpointError(RuntimeError):
    """A checkpoint on disk does not belong to the computation asked for (another config, blojax
    version or data files, a different step count or chunking) or cannot be read: resuming from it
    would not reproduce an uninterrupted run. The message names the file."""


class ResourceError(RuntimeError):
    """A loop would need more memory or time than allowed; raised before it starts (``force`` to
    proceed anyway). The message gives the estimate and how it was made."""


_CHECKPOINT_FORMAT = 3


def _available_memory() -> int | None:
    """Bytes of memory available to a new allocation (``MemAvailable``), or ``None`` if unknown."""
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def _gb(n: float) -> str:
    return f"{n / 1e9:.2f} GB" if n >= 1e7 else f"{n / 1e6:.2f} MB"


@dataclasses.dataclass
class Context:
    """Where an experiment's long loops run: progress bars, checkpoints and resumption.

    Args:
      checkpoint_dir: folder for checkpoints (``None``: no checkpoints).
      resume: load existing checkpoints instead of recomputing.
      checkpoint_every: outer steps per compiled chunk (and per checkpoint) in :meth:`scan`
        (``None``: ``ceil(steps / chunks)``).
      progress: show progress bars with ETA (default: when stderr is a terminal).
      chunks: number of chunks a scan is split into when ``checkpoint_every`` is not given.
      fingerprint: identity of the run (experiment, resolved config, blojax version); written into
        every checkpoint, and a checkpoint with another fingerprint, or other data files (see
        :func:`blojax.data.download.files_used`), is refused on resume.
      force: skip the resource guard (see :meth:`scan`).
      time_budget: seconds a loop may take; with it, one compiled step is timed before each loop and
        a loop estimated to run longer is refused (``None``: no time guard).
      memory_fraction: share of the available memory the per-step history of one loop may take.

    Keys: every :meth:`scan`, :meth:`run` and :meth:`stage` names its checkpoint with ``key``. Using
    the same key twice in one run is allowed: the n-th use becomes ``key#n`` (n >= 2), which is
    deterministic, so a resumed run finds each checkpoint again.

    After a run, :attr:`histories` maps each scan's key to ``{"history": ..., "axis": history_axis}``
    (host numpy arrays); the command line writes them to ``metrics/<key>.csv``.
    """

    checkpoint_dir: str | os.PathLike | None = None
    resume: bool = False
    checkpoint_every: int | None = None
    progress: bool | None = None
    chunks: int = 20
    fingerprint: str | None = None
    force: bool = False
    time_budget: float | None = None
    memory_fraction: float = 0.5
    histories: dict = dataclasses.field(default_factory=dict, init=False, repr=False)
    _uses: dict = dataclasses.field(default_factory=dict, init=False, repr=False)

    def __post_init__(self):
        if self.progress is None:
            self.progress = sys.stderr.isatty()
        if self.checkpoint_dir is not None:
            self.checkpoint_dir = pathlib.Path(self.checkpoint_dir)
        if self.checkpoint_every is not None and (
            not isinstance(self.checkpoint_every, int)
            or isinstance(self.checkpoint_every, bool)
            or self.checkpoint_every < 1
        ):
            raise ValueError(
                f"Context.checkpoint_every must be a positive integer or None, got {self.checkpoint_every!r}"
            )
        if not isinstance(self.chunks, int) or self.chunks < 1:
            raise ValueError(f"Context.chunks must be a positive integer, got {self.chunks!r}")

    def _claim(self, key: str) -> str:
        """The unique key of this use of ``key`` (``key``, then ``key#2``, ``key#3``, ...)."""
        n = self._uses.get(key, 0) + 1
        self._uses[key] = n
        return key if n == 1 else f"{key}#{n}"

    # --- persistence of arbitrary pytrees of arrays
    def _path(self, key: str) -> pathlib.Path | None:
        if self.checkpoint_dir is None:
            return None
        safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in key)
        return pathlib.Path(self.checkpoint_dir) / f"{safe}.pkl"

    def _identity(self) -> dict:
        from blojax.data.download import files_used

        return {"fingerprint": self.fingerprint, "data": files_used()}

    def load(self, key: str, required=("format",)):
        """The object saved under ``key`` when resuming, else ``None``.

        Raises :class:`CheckpointError` naming the file when it cannot be read (truncated, not a
        checkpoint), has another format or lacks the entries ``required``, or was written by another
        run (fingerprint) or with other data files."""
        path = self._path(key)
        if path is None or not self.resume or not path.exists():
            return None
        again = "start afresh (blojax run ... --force clears the folder)"
        try:
            with open(path, "rb") as fh:
                saved = pickle.load(fh)
        except Exception as exc:  # noqa: BLE001 - truncated, garbage, unknown classes: all one answer
            raise CheckpointError(
                f"checkpoint {path} is unreadable ({type(exc).__name__}: {exc}); {again}"
            ) from None
        if (
            not isinstance(saved, dict)
            or saved.get("format") != _CHECKPOINT_FORMAT
            or any(k not in saved for k in required)
        ):
            got = (
                f"format {saved.get('format')!r}" if isinstance(saved, dict) else f"a {type(saved).__name__}"
            )
            raise CheckpointError(
                f"checkpoint {path} is not a blojax checkpoint of format {_CHECKPOINT_FORMAT} (found {got}); {again}"
            )
        ident = self._identity()
        if saved.get("fingerprint") != ident["fingerprint"]:
            raise CheckpointError(
                f"checkpoint {path} belongs to another run (fingerprint {saved.get('fingerprint')}, "
                f"this run is {ident['fingerprint']}); {again}"
            )
        if saved.get("data") != ident["data"]:
            raise CheckpointError(
                f"checkpoint {path} was computed from other data files ({_data_line(saved.get('data'))}; "
                f"this run reads {_data_line(ident['data'])}); {again}"
            )
        return saved

    def save(self, key: str, obj: dict) -> None:
        """Save a dict of pytrees of arrays under ``key`` (host numpy, atomically, with the run's
        fingerprint and data files); no-op without a folder."""
        path = self._path(key)
        if path is None:
            return
        host = jax.tree_util.tree_map(np.asarray, obj)
        host.update(format=_CHECKPOINT_FORMAT, **self._identity())
        atomic_write_bytes(path, pickle.dumps(host, protocol=pickle.HIGHEST_PROTOCOL))

    def checkpointed(self) -> dict:
        """``{key: "done/steps"}`` of the checkpoints in the folder (what a resume continues from)."""
        out = {}
        if self.checkpoint_dir is None or not pathlib.Path(self.checkpoint_dir).is_dir():
            return out
        for p in sorted(pathlib.Path(self.checkpoint_dir).glob("*.pkl")):
            try:
                with open(p, "rb") as fh:
                    d = pickle.load(fh)
                out[p.stem] = f"{d['done']}/{d['steps']}" if "done" in d else "finished"
            except Exception:  # noqa: BLE001
                out[p.stem] = "unreadable"
        return out

    def _guard(self, chunk_fn, carry, steps: int, key: str) -> None:
        """Refuse (:class:`ResourceError`) a loop whose per-step history over ``steps`` steps would not
        fit in ``memory_fraction`` of the available memory, or (with ``time_budget``) whose estimated
        time exceeds it. History size comes from the shapes of one step (``jax.eval_shape``, no
        computation); time from one compiled step run twice (compilation excluded), result discarded."""
        if self.force:
            return
        if steps > 1000:
            try:
                shapes = jax.eval_shape(lambda c: chunk_fn(c, 1, 0)[1], carry)
            except Exception:  # noqa: BLE001 - a chunk that cannot be traced abstractly is not guarded
                shapes = None
            if shapes is not None:
                per_step = sum(
                    int(np.prod(x.shape)) * np.dtype(x.dtype).itemsize
                    for x in jax.tree_util.tree_leaves(shapes)
                )
                need, avail = per_step * steps, _available_memory()
                if avail is not None and need > self.memory_fraction * avail:
                    raise ResourceError(
                        f"{key}: {steps} steps x {per_step} B of per-step history = {_gb(need)}, above "
                        f"{self.memory_fraction:.0%} of the available memory ({_gb(avail)}); lower the step count, "
                        "or pass --force to proceed"
                    )
        if self.time_budget is not None:
            t = []
            for _ in range(2):
                t0 = time.perf_counter()
                jax.block_until_ready(chunk_fn(carry, 1, 0))
                t.append(time.perf_counter() - t0)
            est = t[1] * steps
            if est > self.time_budget:
                raise ResourceError(
                    f"{key}: {steps} steps x {t[1] * 1e3:.2f} ms per compiled step = about {est:.0f} s, above the "
                    f"time budget of {self.time_budget:g} s; lower the step count, raise the budget, or pass --force"
                )

    def stage(self, key: str, fn: Callable, *args, **kwargs):
        """Compute ``fn(*args, **kwargs)`` once: with ``resume`` a finished stage is loaded back."""
        key = self._claim(f"stage-{key}")
        cached = self.load(key, required=("format", "value"))
        if cached is not None:
            return jax.tree_util.tree_map(jnp.asarray, cached["value"])
        t0 = time.perf_counter()
        if self.progress:
            print(f"{key}: computing ...", file=sys.stderr, flush=True)
        value = jax.block_until_ready(fn(*args, **kwargs))
        if self.progress:
            print(f"{key}: done in {time.perf_counter() - t0:.1f} s", file=sys.stderr, flush=True)
        self.save(key, {"value": value})
        return value

    def _chunk_size(self, steps: int) -> int:
        if self.checkpoint_every is not None:
            return self.checkpoint_every
        if not self.progress and self.checkpoint_dir is None:
            return steps
        return max(1, -(-steps // max(1, self.chunks)))

    def scan(
        self,
        chunk_fn: Callable,
        carry,
        steps: int,
        *,
        key: str,
        desc: str | None = None,
        history_axis: int = 0,
    ):
        """Run ``steps`` steps of ``chunk_fn(carry, n) -> (carry, history)`` in compiled chunks.

        ``history`` leaves have the step axis at ``history_axis`` (1 for a run vmapped over seeds).
        Shows progress; with a ``checkpoint_dir`` saves ``(carry, history so far)`` after each chunk
        under ``key`` and, with ``resume``, continues from the last saved chunk. The chunk lengths
        depend only on ``steps`` and ``checkpoint_every`` (or ``chunks``), never on whether the run was
        interrupted, so a resumed run performs exactly the same computations as an uninterrupted one
        and ends bit-identical to it.
        """
        return self._scan(
            lambda c, n, start: chunk_fn(c, n),
            carry,
            steps,
            key=self._claim(f"scan-{key}"),
            desc=desc or key,
            history_axis=history_axis,
        )

    def _scan(self, chunk_fn, carry, steps, *, key, desc, history_axis, after_chunk=None):
        if not isinstance(steps, (int, np.integer)) or isinstance(steps, bool) or steps < 0:
            raise ValueError(f"Context.scan: steps must be a non-negative integer, got {steps!r}")
        steps = int(steps)
        if steps == 0:
            carry, hist = chunk_fn(carry, 0, 0)
            self.histories[key] = {"history": jax.tree_util.tree_map(np.asarray, hist), "axis": history_axis}
            return carry, hist
        size = self._chunk_size(steps)
        done, parts = 0, []
        saved = self.load(key, required=("format", "steps", "size", "done", "carry", "history"))
        if saved is None:
            self._guard(chunk_fn, carry, steps, key)
        else:
            if saved.get("steps") != steps or saved.get("size") != size:
                raise CheckpointError(
                    f"checkpoint {self._path(key)} is for {saved.get('steps')} steps in chunks of {saved.get('size')}, "
                    f"this run asks for {steps} steps in chunks of {size}; resume with the same settings or start afresh"
                )
            shapes = lambda t: [(np.shape(x), np.asarray(x).dtype) for x in jax.tree_util.tree_leaves(t)]  # noqa: E731
            if (
                jax.tree_util.tree_structure(saved["carry"]) != jax.tree_util.tree_structure(carry)
                or shapes(saved["carry"]) != shapes(carry)
                or not 0 < int(saved["done"]) <= steps
            ):
                raise CheckpointError(
                    f"checkpoint {self._path(key)} holds a state of another shape than this run's "
                    "(or an impossible step count); start afresh (blojax run ... --force clears the folder)"
                )
            done = int(saved["done"])
            carry = jax.tree_util.tree_map(jnp.asarray, saved["carry"])
            parts = [saved["history"]] if saved["history"] is not None else []
        bar = None
        if self.progress and done < steps:
            from tqdm import tqdm

            bar = tqdm(total=steps, initial=done, desc=desc, unit="step", leave=False, dynamic_ncols=True)
        try:
            while done < steps:
                n = min(size, steps - done)
                carry, hist = chunk_fn(carry, n, done)
                hist = jax.tree_util.tree_map(np.asarray, jax.block_until_ready(hist))
                parts.append(hist)
                done += n
                if len(parts) > 1:
                    parts = [_tree_concat(parts, history_axis)]
                self.save(
                    key, {"steps": steps, "size": size, "done": done, "carry": carry, "history": parts[0]}
                )
                if bar is not None:
                    bar.update(n)
                if after_chunk is not None:
                    after_chunk(carry, parts[0], done)
        finally:
            if bar is not None:
                bar.close()
        self.histories[key] = {"history": parts[0], "axis": history_axis}
        return carry, parts[0]

    def run(self, algo, state, steps: int, *, key: str, inner_batches=None, outer_batches=None, desc=None):
        """``algo.run`` through :meth:`scan` (chunked, checkpointed, with progress). Batches are
        sliced per chunk. Raises :class:`blojax.NonFiniteError` after the chunk where NaN/inf first
        appeared (the checkpoint keeps everything up to it)."""
        from blojax.algorithms import NonFiniteError

        def chunk(st, n, start):
            sl = lambda t: jax.tree_util.tree_map(lambda x: x[start : start + n], t)  # noqa: E731
            return algo.run(
                st, n, inner_batches=sl(inner_batches), outer_batches=sl(outer_batches), on_nonfinite="stop"
            )

        def check(st, history, done):
            bad = np.asarray(st.diverged_step)
            if np.any(bad >= 0):
                raise NonFiniteError(
                    f"{type(algo).__name__} ({key}): non-finite values (NaN/inf) at outer step {int(np.max(bad))}; "
                    "stopped, everything up to it is kept",
                    st,
                    history,
                )

        return self._scan(
            chunk,
            state,
            steps,
            key=self._claim(f"scan-{key}"),
            desc=desc or key,
            history_axis=0,
            after_chunk=check,
        )


RunContext = Context
"""The type experiments annotate ``ctx`` with (what ``run`` may call: ``scan``, ``run``, ...)."""


def ensure_context(ctx=None):
    """``ctx``, or a fresh in-memory :class:`Context` (progress bars, no checkpoints) when ``None``:
    every experiment's ``run(config, ctx=None)`` starts with ``ctx = common.ensure_context(ctx)``."""
    return ctx if ctx is not None else Context()


def _data_line(files) -> str:
    if not files:
        return "no data files"
    return ", ".join(
        f"{f.get('name')} ({f.get('size')} B, sha256 {str(f.get('sha256'))[:12]})" for f in files
    )


def timed(fn: Callable, *args, **kwargs):
    t0 = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - t0


# ------------------------------------------------------------------------------------ CLI of one module
def main(module_name: str, argv=None) -> int:
    """``python -m blojax.experiments.<name> --out DIR [--quick] [--seed N] [--set key=value ...]
    [--resume] [--quiet]``: the same run folder as ``blojax run <name>`` (see ``docs/cli.md``)."""
    from blojax.runner.cli import module_main

    mod = sys.modules.get(module_name) or importlib.import_module(module_name)
    if module_name == "__main__":
        spec = getattr(mod, "__spec__", None)
        module_name = spec.name if spec is not None else module_name
    name = module_name.rsplit(".", 1)[-1]
    return module_main(mod, name, argv)


# ------------------------------------------------------------------------------------ discovery
_REGISTERED: dict[str, str] = {}
EXPERIMENTS_ENV = "BLOJAX_EXPERIMENTS"


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


def _follows_contract(mod) -> bool:
    return all(hasattr(mod, a) for a in ("DESCRIPTION", "Config", "run", "plot"))


#: Modules of the package that hold the contract, not an experiment.
_CONTRACT_MODULES = ("common", "claims", "toolkit", "figures")


def discover() -> tuple[dict[str, str], dict[str, str]]:
    """``({name: module path}, {name: why it is not usable})`` over :mod:`blojax.experiments` and the
    registered modules; a module that fails to import is reported, never hides the others."""
    import pkgutil

    import blojax.experiments as pkg

    candidates = {
        info.name: f"blojax.experiments.{info.name}"
        for info in pkgutil.iter_modules(pkg.__path__)
        if not info.name.startswith("_") and info.name not in _CONTRACT_MODULES
    }
    candidates.update(_registered())
    found, broken = {}, {}
    for name, path in sorted(candidates.items()):
        try:
            mod = importlib.import_module(path)
        except Exception as exc:  # noqa: BLE001 - a broken module must not hide the others
            broken[name] = f"import failed: {type(exc).__name__}: {exc}".splitlines()[0]
            continue
        if _follows_contract(mod):
            found[name] = path
        else:
            missing = [a for a in ("DESCRIPTION", "Config", "run", "plot") if not hasattr(mod, a)]
            broken[name] = f"missing {', '.join(missing)}"
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
