"""The experiment contract: what every module ``blojax.experiments.<name>`` provides, and the few
names it may use from here.

Every experiment is a module ``blojax.experiments.<name>`` with

* ``DESCRIPTION``: one line for ``blojax list``; ``PAPER`` (the paper's claim), ``PAPER_REF`` (e.g.
  ``"Fig. 10"``) and ``CLAIMS`` (a tuple of :class:`blojax.experiments.claims.Claim`, the ledger);
* ``Config``: a frozen dataclass, every field with a documented default, a ``validate(self) -> None``
  method that raises :class:`ConfigError` naming the field (:func:`check_field`,
  :func:`check_int_fields`), and a ``quick()`` classmethod returning the shrunken configuration that
  keeps the scientific claim but runs in seconds;
* ``Result``: a frozen, typed dataclass (each field documented in the paper's notation) whose
  ``to_dict()`` returns the JSON-able numbers that ``results.json`` reports (:func:`to_jsonable`);
* ``run(config: Config, ctx: RunContext | None = None) -> Result``, starting with
  ``ctx = common.ensure_context(ctx)``;
* ``plot(result, out_dir) -> list[pathlib.Path]``: writes the figures (PNG/GIF, :func:`save_figure`)
  and returns their paths; the plotting code lives in ``blojax.experiments.figures.<name>`` and
  imports matplotlib inside its functions;
* a ``__main__`` block::

      if __name__ == "__main__":
          from blojax.runner.cli import run_module

          raise SystemExit(run_module(__name__))

  which gives ``python -m blojax.experiments.<name> --out DIR [--quick] [--seed N]``.

Shared computation (losses, accuracy, seed statistics, retraining, the NaN policy) comes from
:mod:`blojax.experiments.toolkit`; a module never imports another experiment's private names.

Imports go ``blojax.runner`` -> ``blojax.experiments`` -> the library, never back: nothing here (nor in
an experiment module, outside its ``__main__`` block) imports :mod:`blojax.runner`. Run folders,
checkpoints, ``results.json``, discovery and the environment record live there.

Long loops go through the context passed to ``run`` (:class:`RunContext`: ``ctx.scan``, ``ctx.run``,
``ctx.stage``): it shows a progress bar and runs the loop in compiled chunks; the runner's context
(:class:`blojax.runner.context.Context`) adds checkpoints, resumption and resource guards on top, so
experiments stay free of I/O. Give every loop a distinct ``key``; resumed runs (``blojax run
--resume``) end bit-identical to uninterrupted ones as long as ``run`` is deterministic given its
config. Called without a context, ``run`` gets an in-memory :class:`LoopContext` (no files).

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

Experiments outside this package are made available with :func:`blojax.runner.discovery.register`
or the environment variable ``BLOJAX_EXPERIMENTS="name=package.module,..."``.
"""

from __future__ import annotations

import dataclasses
import math
import pathlib
import sys
import time
from typing import Any, Callable, Protocol

import jax
import jax.numpy as jnp
import numpy as np

from blojax import _atomic
from blojax._atomic import atomic_write_bytes, atomic_write_text
from blojax.progress import chunk_size, scan_in_chunks

__all__ = [
    "ConfigError",
    "check_field",
    "check_int_fields",
    "to_jsonable",
    "save_figure",
    "atomic_write_bytes",
    "atomic_write_text",
    "RunContext",
    "LoopContext",
    "Context",
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


# ------------------------------------------------------------------------------------ results and figures
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
    return _atomic.atomic_write_bytes(path, buf.getvalue())


# ------------------------------------------------------------------------------------ loops
class RunContext(Protocol):
    """What an experiment's ``run`` may call on its context (the type ``ctx`` is annotated with).

    Every call names its loop with ``key`` (unique within the run: the runner's checkpoints are
    stored under it)."""

    def scan(
        self,
        chunk_fn: Callable,
        carry,
        steps: int,
        *,
        key: str,
        desc: str | None = None,
        history_axis: int = 0,
    ) -> tuple[Any, Any]:
        """``steps`` steps of ``chunk_fn(carry, n) -> (carry, history)``: ``(carry, history)``."""
        ...

    def run(
        self, algo, state, steps: int, *, key: str, inner_batches=None, outer_batches=None, desc=None
    ) -> tuple[Any, Any]:
        """``algo.run(state, steps, ...)`` in chunks: ``(state, history)``."""
        ...

    def stage(self, key: str, fn: Callable, *args, **kwargs) -> Any:
        """``fn(*args, **kwargs)``, computed once."""
        ...

    def reuse(self, name: str, config, fn: Callable[[], Any]) -> Any:
        """``fn()``, the computation ``name`` whose result ``config`` fixes; computed once for all the
        runs of a reproduction that share it."""
        ...


@dataclasses.dataclass
class LoopContext:
    """The in-memory context: long loops in compiled chunks with a progress bar, no files.

    :func:`ensure_context` gives one to ``run(config)`` called without a context; the runner's
    :class:`blojax.runner.context.Context` extends it with checkpoints, resumption and resource guards
    (overriding the ``_restore_*`` / ``_store_*`` / ``_guard`` hooks, which do nothing here).

    Args:
      progress: show progress bars (default: when stderr is a terminal); without them a scan is one
        compiled loop.
      chunks: number of chunks a scan with a progress bar is split into.

    After a run, :attr:`histories` maps each scan's key to ``{"history": ..., "axis": history_axis}``
    (host numpy arrays). Using the same key twice is allowed: the n-th use becomes ``key#n`` (n >= 2).
    """

    progress: bool | None = None
    chunks: int = 20
    histories: dict = dataclasses.field(default_factory=dict, init=False, repr=False)
    _uses: dict = dataclasses.field(default_factory=dict, init=False, repr=False)

    def __post_init__(self):
        if self.progress is None:
            self.progress = sys.stderr.isatty()
        if not isinstance(self.chunks, int) or isinstance(self.chunks, bool) or self.chunks < 1:
            raise ValueError(f"Context.chunks must be a positive integer, got {self.chunks!r}")

    def _claim(self, key: str) -> str:
        """The unique key of this use of ``key`` (``key``, then ``key#2``, ``key#3``, ...)."""
        n = self._uses.get(key, 0) + 1
        self._uses[key] = n
        return key if n == 1 else f"{key}#{n}"

    # --- hooks of the runner's context (no files here)
    def _chunk_size(self, steps: int) -> int:
        return chunk_size(steps, self.chunks) if self.progress else steps

    def _restore_stage(self, key: str):
        """The saved value of stage ``key`` when resuming (a dict with ``"value"``), else ``None``."""
        return None

    def _store_stage(self, key: str, value) -> None:
        """Keep the value of a finished stage."""

    def _restore_scan(self, key: str, carry, steps: int, size: int):
        """``(done, carry, history)`` where a resumed scan continues; ``(0, carry, None)`` afresh."""
        return 0, carry, None

    def _guard(self, chunk_fn, carry, steps: int, key: str) -> None:
        """Refuse a loop before it starts (resource limits); nothing here."""

    def _store_scan(self, key: str, steps: int, size: int, done: int, carry, history) -> None:
        """Keep the state of a scan after a chunk."""

    # --- what experiments call
    def reuse(self, name: str, config, fn: Callable[[], Any]) -> Any:
        """``fn()``: the computation ``name`` whose result is fixed by ``config`` (a frozen dataclass,
        seeds included; ``repr(config)`` identifies it). Here it is always computed; the runner's
        context computes it once for every run of a reproduction that reaches the same ``name`` and
        ``config`` and loads it in the others (:mod:`blojax.runner.reuse`), e.g. ``distill_table``'s
        one-sample column is ``canvas_distill``'s run."""
        return fn()

    def stage(self, key: str, fn: Callable, *args, **kwargs):
        """Compute ``fn(*args, **kwargs)`` once: with the runner's ``resume`` a finished stage is
        loaded back."""
        key = self._claim(f"stage-{key}")
        cached = self._restore_stage(key)
        if cached is not None:
            return jax.tree_util.tree_map(jnp.asarray, cached["value"])
        t0 = time.perf_counter()
        if self.progress:
            print(f"{key}: computing ...", file=sys.stderr, flush=True)
        value = jax.block_until_ready(fn(*args, **kwargs))
        if self.progress:
            print(f"{key}: done in {time.perf_counter() - t0:.1f} s", file=sys.stderr, flush=True)
        self._store_stage(key, value)
        return value

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
        Shows progress; the runner's context saves ``(carry, history so far)`` after each chunk under
        ``key`` and, when resuming, continues from the last saved chunk. The chunk lengths depend only
        on ``steps`` and the chunking settings, never on whether the run was interrupted, so a resumed
        run performs exactly the same computations as an uninterrupted one and ends bit-identical to it.
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
        done, carry, history = self._restore_scan(key, carry, steps, size)
        if done == 0:
            self._guard(chunk_fn, carry, steps, key)

        def after(c, h, d):
            self._store_scan(key, steps, size, d, c, h)
            if after_chunk is not None:
                after_chunk(c, h, d)

        carry, history = scan_in_chunks(
            chunk_fn,
            carry,
            steps,
            size=size,
            progress=bool(self.progress),
            desc=desc,
            history_axis=history_axis,
            done=done,
            history=history,
            after_chunk=after,
        )
        self.histories[key] = {"history": history, "axis": history_axis}
        return carry, history

    def run(self, algo, state, steps: int, *, key: str, inner_batches=None, outer_batches=None, desc=None):
        """``algo.run`` through :meth:`scan` (chunked, with progress). Batches are sliced per chunk.
        Raises :class:`blojax.NonFiniteError` after the chunk where NaN/inf first appeared (the
        runner's checkpoint keeps everything up to it)."""
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


Context = LoopContext
"""The in-memory :class:`LoopContext` under its former name (``common.Context(progress=False)``);
checkpoints and resumption are :class:`blojax.runner.context.Context`."""


def ensure_context(ctx: RunContext | None = None) -> RunContext:
    """``ctx``, or a fresh in-memory :class:`LoopContext` (progress bars, no files) when ``None``:
    every experiment's ``run(config, ctx=None)`` starts with ``ctx = common.ensure_context(ctx)``."""
    return ctx if ctx is not None else LoopContext()
