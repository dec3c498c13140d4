"""The runner's context: an experiment's loops with checkpoints, resumption and resource guards.

:class:`Context` extends the in-memory :class:`blojax.experiments.common.LoopContext` (chunked loops,
progress bars) with a checkpoint folder: after every chunk of a scan it saves ``(carry, history so
far)`` with the run's fingerprint and data files, a resumed run continues from there, and a loop that
would not fit in memory or in a time budget is refused before it starts.
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
import pickle
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

from blojax.experiments.common import LoopContext
from blojax.progress import chunk_size

from . import files

__all__ = ["Context", "CheckpointError", "ResourceError"]


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


def _data_line(files) -> str:
    if not files:
        return "no data files"
    return ", ".join(
        f"{f.get('name')} ({f.get('size')} B, sha256 {str(f.get('sha256'))[:12]})" for f in files
    )


def _history_bytes(chunk_fn, carry) -> int | None:
    """Bytes of history one step of ``chunk_fn`` records (shapes from ``jax.eval_shape``: nothing is
    computed), or ``None`` when the step cannot be traced abstractly (it is then not guarded)."""
    try:
        shapes = jax.eval_shape(lambda c: chunk_fn(c, 1, 0)[1], carry)
    except Exception:  # noqa: BLE001 - a chunk that cannot be traced abstractly is not guarded
        return None
    return sum(int(np.prod(x.shape)) * np.dtype(x.dtype).itemsize for x in jax.tree_util.tree_leaves(shapes))


def _step_bytes(chunk_fn, carry) -> int | None:
    """Bytes one compiled step holds at once (arguments + outputs + temporaries, XLA's
    ``memory_analysis()`` of ``jax.jit(step).lower(carry).compile()``; nothing is run), or ``None``
    when the backend gives no analysis or the step does not compile under ``jit``."""
    try:
        mem = jax.jit(lambda c: chunk_fn(c, 1, 0)).lower(carry).compile().memory_analysis()
    except Exception:  # noqa: BLE001
        return None
    if mem is None:
        return None
    return int(mem.argument_size_in_bytes + mem.output_size_in_bytes + mem.temp_size_in_bytes)


#: The compiled step's memory is asked for only when the history alone takes more than this share of
#: the allowance: it costs compiling a one-step program (all 12 loops of ``stochastic_bias --quick``:
#: 49 s of a 105 s run on 2 loaded cores), and a step's temporaries, unlike the history, do not grow
#: with the step count, so they can only tip a loop whose history is already large.
COMPILED_CHECK_SHARE = 0.1


@dataclasses.dataclass
class Context(LoopContext):
    """Where an experiment's long loops run in a run folder: progress bars, checkpoints and resumption.

    Args:
      progress: show progress bars with ETA (default: when stderr is a terminal).
      chunks: number of chunks a scan is split into when ``checkpoint_every`` is not given.
      checkpoint_dir: folder for checkpoints (``None``: no checkpoints).
      resume: load existing checkpoints instead of recomputing.
      checkpoint_every: outer steps per compiled chunk (and per checkpoint) in :meth:`scan`
        (``None``: ``ceil(steps / chunks)``).
      fingerprint: identity of the run (experiment, resolved config, blojax version); written into
        every checkpoint, and a checkpoint with another fingerprint, or other data files (see
        :func:`blojax.data.download.files_used`), is refused on resume.
      force: skip the resource guard (see :meth:`_guard`).
      time_budget: seconds a loop may take; with it, one compiled step is timed before each loop and
        a loop estimated to run longer is refused (``None``: no time guard).
      memory_fraction: share of the available memory the per-step history of one loop may take.
      reuse_dir: the folder of a reproduction's shared computations (:mod:`blojax.runner.reuse`;
        ``None``: :meth:`reuse` always computes). After a run, :attr:`reused` lists what was loaded.

    Keys: every :meth:`scan`, :meth:`run` and :meth:`stage` names its checkpoint with ``key``. Using
    the same key twice in one run is allowed: the n-th use becomes ``key#n`` (n >= 2), which is
    deterministic, so a resumed run finds each checkpoint again.

    After a run, :attr:`histories` maps each scan's key to ``{"history": ..., "axis": history_axis}``
    (host numpy arrays); the command line writes them to ``metrics/<key>.csv``.
    """

    checkpoint_dir: str | os.PathLike | None = None
    resume: bool = False
    checkpoint_every: int | None = None
    fingerprint: str | None = None
    force: bool = False
    time_budget: float | None = None
    memory_fraction: float = 0.5
    reuse_dir: str | os.PathLike | None = None
    reused: list = dataclasses.field(default_factory=list, init=False, repr=False)

    def __post_init__(self):
        super().__post_init__()
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

    # --- computations shared by the runs of a reproduction
    def reuse(self, name: str, config, fn):
        """``fn()`` computed once per reproduction (see :meth:`LoopContext.reuse`): with ``reuse_dir``
        the value is loaded when another run (or an earlier part of this one) left it there, with the
        histories its loops recorded and the data files it read; otherwise it is computed and left
        there for the others."""
        if self.reuse_dir is None:
            return fn()
        from blojax.data import download

        from .reuse import Store

        def compute() -> dict:
            before = download.files_used(full=True)
            keys = set(self.histories)
            download.reset_files_used()
            try:
                value = fn()
            finally:
                read = download.files_used(full=True)
                download.reset_files_used()
                download.add_files_used(before + read)
            hist = {k: v for k, v in self.histories.items() if k not in keys}
            return {"value": value, "histories": hist, "data": read}

        store = Store(pathlib.Path(self.reuse_dir))
        entry, reused = store.get_or_compute(name, config, compute, who=self.fingerprint)
        if reused:
            download.add_files_used(entry.get("data", []))
            for k, h in entry.get("histories", {}).items():
                self.histories[self._claim(k)] = h
            self.reused.append(
                dict(
                    store.describe(name, config),
                    seconds=entry.get("seconds"),
                    computed_by=entry.get("computed_by"),
                )
            )
            print(
                f"{name}: loaded the value another run of this reproduction computed "
                f"({entry.get('seconds', 0.0):.1f} s)",
                file=sys.stderr,
                flush=True,
            )
        return entry["value"]

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
        files.atomic_write_bytes(path, pickle.dumps(host, protocol=pickle.HIGHEST_PROTOCOL))

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

    # --- the hooks of LoopContext
    def _chunk_size(self, steps: int) -> int:
        if self.checkpoint_every is not None:
            return self.checkpoint_every
        if not self.progress and self.checkpoint_dir is None:
            return steps
        return chunk_size(steps, self.chunks)

    def _restore_stage(self, key: str):
        return self.load(key, required=("format", "value"))

    def _store_stage(self, key: str, value) -> None:
        self.save(key, {"value": value})

    def _restore_scan(self, key: str, carry, steps: int, size: int):
        saved = self.load(key, required=("format", "steps", "size", "done", "carry", "history"))
        if saved is None:
            return 0, carry, None
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
        return int(saved["done"]), jax.tree_util.tree_map(jnp.asarray, saved["carry"]), saved["history"]

    def _store_scan(self, key: str, steps: int, size: int, done: int, carry, history) -> None:
        self.save(key, {"steps": steps, "size": size, "done": done, "carry": carry, "history": history})

    def _guard(self, chunk_fn, carry, steps: int, key: str) -> None:
        """Refuse (:class:`ResourceError`) a loop that would not fit in ``memory_fraction`` of the
        available memory, or (with ``time_budget``) whose estimated time exceeds it.

        Memory (loops of more than 1000 steps): ``steps x`` the per-step history (its shapes, from
        ``jax.eval_shape``: no computation); when that alone takes more than
        :data:`COMPILED_CHECK_SHARE` of the allowance, plus what one compiled step holds at once (its
        arguments, outputs and temporaries, from XLA's ``memory_analysis()`` of
        ``jax.jit(step).lower(...).compile()``; nothing is run). Time: one compiled step run twice
        (compilation excluded), result discarded."""
        if self.force:
            return
        if steps > 1000:
            per_step, avail = _history_bytes(chunk_fn, carry), _available_memory()
            if per_step is not None and avail is not None:
                allowed, need = self.memory_fraction * avail, per_step * steps
                what = f"{steps} steps x {per_step} B of per-step history"
                if need <= allowed and need > COMPILED_CHECK_SHARE * allowed:
                    working = _step_bytes(chunk_fn, carry)
                    if working is not None:
                        need += working
                        what += f" + {_gb(working)} held by one compiled step (XLA's memory analysis)"
                if need > allowed:
                    raise ResourceError(
                        f"{key}: {what} = {_gb(need)}, above {self.memory_fraction:.0%} of the available "
                        f"memory ({_gb(avail)}); lower the step count, or pass --force to proceed"
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
