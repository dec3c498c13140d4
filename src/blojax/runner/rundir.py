"""Run folders: one experiment run, everything it produced, every file written atomically.

Layout of ``blojax run EXP --out DIR``::

    DIR/run.json          experiment, resolved config, fingerprint, status, start/end, seconds, argv,
                          measurements (wall times and memory the experiment reported)
    DIR/config.json       the resolved config (what --set/--config/--quick/--seed gave)
    DIR/environment.json  package versions and platform
    DIR/metrics/<key>.csv per-step metrics of every ctx.scan/ctx.run (step column, one per metric)
    DIR/metrics/<key>.npz the same histories in full (multi-dimensional metrics too)
    DIR/checkpoints/      (carry, history) after every chunk; what --resume continues from
    DIR/results.json      config, environment and every reported number; no times: the same command
                          and seeds give a bit-identical file on the same machine
    DIR/*.png, *.gif      figures and animations

A folder belongs to one run: its fingerprint (experiment + resolved config + blojax version) is in
``run.json``, in ``results.json`` and in every checkpoint (with the data files read), and a different run
is refused (:class:`UsageError`), so results are never mixed: a folder whose ``run.json`` is missing
while it holds results or checkpoints is refused too; ``--force`` clears the run's files first.

Order of writing: metrics, then ``results.json`` and ``run.json`` (status ``done``), then the figures; a
figure that fails leaves the results and the status ``done (figures failed: ...)``.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import io
import json
import math
import os
import pathlib
import sys
import time
import traceback

import numpy as np

from blojax.experiments import common
from . import context, files, jaxcache, reuse

from . import configs
from .errors import UsageError

MARKERS = {"run": "run.json", "sweep": "sweep.json", "reproduce": "reproduce.json"}


class RunFailed(Exception):
    """The run started but did not finish (diverged, or the experiment raised); the folder keeps
    everything written up to then and ``run.json`` says why. ``code`` is the exit code (1)."""

    code = 1


class RunRefused(RunFailed):
    """The run stopped before computing anything because its checkpoints belong to another run or are
    unreadable, or a loop would exceed the memory/time guard: bad input, exit code 2."""

    code = 2


class RunInterrupted(RunFailed):
    """SIGINT (exit code 130) or SIGTERM (143) during the run; ``run.json`` says ``interrupted`` and
    lists what was checkpointed."""

    def __init__(self, message: str, code: int = 130):
        super().__init__(message)
        self.code = code


class Terminated(KeyboardInterrupt):
    """Raised in the main thread by the SIGTERM handler of the command line (exit code 143)."""


# Files a run writes at the top of its folder (figures are listed in results.json).
RUN_FILES = ("run.json", "config.json", "environment.json", "results.json", "error.txt")


def now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def read_json(path):
    try:
        return json.loads(pathlib.Path(path).read_text())
    except (OSError, ValueError):
        return None


def claim_folder(
    out: pathlib.Path, kind: str, fp: str, what: str, config_dict: dict | None = None, *, force: bool = False
) -> dict | None:
    """Check that ``out`` holds nothing or a run of the same ``kind`` and fingerprint ``fp``.

    Returns the previous marker (or ``None``); raises :class:`UsageError` naming what the folder holds.
    With ``force`` a run folder holding another run (or unidentified results/checkpoints) is cleared
    (only the files a run writes) instead.
    """
    out = pathlib.Path(out)
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out} is a file, not a folder")
    fresh = "--force clears it" if kind == "run" else "remove it"
    for other_kind, marker in MARKERS.items():
        path = out / marker
        if not path.exists():
            continue
        data = read_json(path)
        if not isinstance(data, dict):
            if force and kind == "run" and other_kind == "run":
                clear_run(out)
                return None
            raise UsageError(
                f"--out {out}: {path} is unreadable (not JSON); choose another --out folder, or {fresh}"
            )
        held = f"{other_kind} of {data.get('experiment', '?')}"
        if other_kind != kind:
            raise UsageError(f"--out {out} holds a {held}, not a {kind}; choose another --out folder")
        if data.get("fingerprint") != fp:
            if force and kind == "run":
                clear_run(out)
                return None
            changes = (
                configs.diff(data.get("config") or {}, config_dict or {})
                if data.get("experiment") == what
                else []
            )
            if not changes and data.get("experiment") == what and data.get("blojax") != configs.version():
                changes = [f"blojax version: {data.get('blojax')} there, {configs.version()} here"]
            detail = (
                f" (differs in {'; '.join(changes[:4])}{' ...' if len(changes) > 4 else ''})"
                if changes
                else ""
            )
            raise UsageError(
                f"--out {out} holds a different {held}{detail}; choose another --out folder, or {fresh}"
            )
        return data
    if kind == "run":
        orphans = [
            p.name
            for p in (out / "results.json", out / "checkpoints")
            if p.exists() and (p.is_file() or any(p.glob("*.pkl")))
        ]
        if orphans:
            if force:
                clear_run(out)
                return None
            raise UsageError(
                f"--out {out} holds {' and '.join(orphans)} but no run.json saying which run they belong to; "
                "choose another --out folder, or --force clears them"
            )
    return None


def clear_run(out: pathlib.Path) -> None:
    """Remove what a run wrote in ``out`` (its files, figures, metrics and checkpoints), nothing else."""
    import shutil

    res = read_json(out / "results.json")
    figures = res.get("figures", []) if isinstance(res, dict) else []
    for name in [
        *RUN_FILES,
        *(f for f in figures if isinstance(f, str) and "/" not in f and not f.startswith(".")),
    ]:
        p = out / name
        if p.is_file():
            p.unlink()
    for sub in ("checkpoints", "metrics"):
        if (out / sub).is_dir():
            shutil.rmtree(out / sub)


def check_writable(out: pathlib.Path) -> None:
    """Create ``out`` and check that a file can be written in it; :class:`UsageError` naming the path."""
    import tempfile

    out = pathlib.Path(out)
    try:
        out.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".write-check.", suffix=".tmp", dir=out)
        os.close(fd)
        os.unlink(tmp)
    except OSError as exc:
        raise UsageError(f"--out {out}: cannot write there ({os_error(exc)})") from None


def os_error(exc: OSError) -> str:
    """``"<reason>: <path>"`` of a file-system error, one line."""
    reason = exc.strerror or type(exc).__name__
    path = exc.filename if exc.filename is not None else ""
    return f"{reason}: {path}" if path else f"{reason} ({exc})"


def clean_temporaries(folder: pathlib.Path) -> None:
    """Remove ``.name.*.tmp`` files an interrupted atomic write left behind."""
    if folder.is_dir():
        for p in folder.glob(".*.tmp"):
            try:
                p.unlink()
            except OSError:
                pass


# ------------------------------------------------------------------------------------ metrics
def _path_name(path) -> str:
    parts = []
    for k in path:
        for attr in ("key", "name", "idx"):
            if hasattr(k, attr):
                parts.append(str(getattr(k, attr)))
                break
        else:
            parts.append(str(k))
    return ".".join(parts) or "value"


def _column_text(a: np.ndarray) -> list[str]:
    """The CSV text of a column: ints and bools as integers, floats by ``repr`` (shortest round-trip)."""
    if a.dtype == np.bool_ or np.issubdtype(a.dtype, np.integer):
        return [str(int(v)) for v in a.tolist()]
    return [repr(float(v)) for v in a.tolist()]


def history_columns(history, axis: int = 0, max_width: int = 16) -> dict[str, np.ndarray]:
    """Per-step columns of a history pytree: ``{name: 1-D array over steps}``; a metric with a few
    values per step (e.g. one per seed) becomes ``name[i]`` columns; wider ones are left to the npz."""
    import jax

    cols: dict[str, np.ndarray] = {}
    for path, leaf in jax.tree_util.tree_flatten_with_path(history)[0]:
        a = np.asarray(leaf)
        if a.ndim == 0 or a.ndim <= axis:
            continue
        a = np.moveaxis(a, axis, 0)
        name = _path_name(path)
        flat = a.reshape(a.shape[0], -1)
        if flat.shape[1] == 1 and a.ndim == 1:
            cols[name] = flat[:, 0]
        elif flat.shape[1] <= max_width:
            for j, idx in enumerate(np.ndindex(*a.shape[1:])):
                cols[f"{name}[{','.join(map(str, idx))}]"] = flat[:, j]
    return cols


def write_metrics(histories: dict, folder: pathlib.Path) -> list[pathlib.Path]:
    """``metrics/<key>.csv`` (and ``.npz``) for every recorded history; returns the CSV paths."""
    import jax

    written = []
    for key, entry in histories.items():
        hist, axis = entry["history"], entry.get("axis", 0)
        safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in key.removeprefix("scan-"))
        cols = history_columns(hist, axis)
        lengths = {len(v) for v in cols.values()}
        if cols and len(lengths) == 1:
            n = lengths.pop()
            names = list(cols)
            text = [_column_text(np.asarray(cols[c])) for c in names]
            lines = [",".join(["step", *names])]
            lines += [",".join(row) for row in zip(map(str, range(1, n + 1)), *text)]
            written.append(
                files.atomic_write_text(folder / "metrics" / f"{safe}.csv", "\n".join(lines) + "\n")
            )
        arrays = {
            _path_name(p): np.asarray(leaf) for p, leaf in jax.tree_util.tree_flatten_with_path(hist)[0]
        }
        if arrays:
            buf = io.BytesIO()
            np.savez(buf, **{k.replace("/", "_"): v for k, v in arrays.items()})  # pyright: ignore[reportArgumentType]
            files.atomic_write_bytes(folder / "metrics" / f"{safe}.npz", buf.getvalue())
    return written


# ------------------------------------------------------------------------------------ one run
def paper_comparison(mod, results: dict):
    """The experiment's optional ``paper_comparison(results) -> [{"quantity", "ours", "paper"}, ...]``."""
    fn = getattr(mod, "paper_comparison", None)
    if fn is None:
        return None
    try:
        return common.to_jsonable(fn(results))
    except Exception as exc:  # noqa: BLE001 - a comparison bug must not lose the run
        return [{"quantity": "paper_comparison failed", "ours": f"{type(exc).__name__}: {exc}", "paper": ""}]


def execute(
    mod,
    name: str,
    config,
    out,
    *,
    resume: bool = False,
    force: bool = False,
    progress: bool | None = None,
    checkpoint_every: int | None = None,
    plots: bool = True,
    argv: list[str] | None = None,
    time_budget: float | None = None,
) -> dict:
    """Run ``mod.run(config, ctx)`` into the run folder ``out`` and return the results.json payload.

    Raises :class:`UsageError` if ``out`` holds a different run (or is not writable),
    :class:`RunFailed` if the run diverged or raised, or its figures failed (``run.json`` then records
    the status and the message; results written before a figure failed are kept), and
    :class:`RunInterrupted` on SIGINT/SIGTERM.
    """
    from blojax.data import download

    out = pathlib.Path(out)
    config_dict = configs.to_dict(config)
    fp = configs.fingerprint(name, config)
    previous = claim_folder(out, "run", fp, name, config_dict, force=force)
    check_writable(out)
    ckpt = out / "checkpoints"
    if not resume and ckpt.is_dir():
        for p in ckpt.glob("*.pkl"):
            p.unlink()
    for folder in (out, ckpt, out / "metrics"):
        clean_temporaries(folder)
    if resume and previous is None:
        print(f"{name}: nothing to resume in {out}; starting afresh", file=sys.stderr)
    marker = {
        "kind": "run",
        "experiment": name,
        "module": mod.__spec__.name if getattr(mod, "__spec__", None) else mod.__name__,
        "fingerprint": fp,
        "blojax": configs.version(),
        "config": config_dict,
        "status": "running",
        "started": now(),
        "resumed": bool(resume and previous is not None),
        "argv": argv,
    }
    files.atomic_write_json(out / "run.json", marker)
    compiles_before = jaxcache.counts()
    files.atomic_write_json(out / "config.json", config_dict)
    env = files.environment()
    files.atomic_write_json(out / "environment.json", env)
    download.reset_files_used()
    ctx = context.Context(
        checkpoint_dir=ckpt,
        resume=resume,
        checkpoint_every=checkpoint_every,
        progress=progress,
        fingerprint=fp,
        force=force,
        time_budget=time_budget,
        reuse_dir=os.environ.get(reuse.ENV) or None,
    )
    t0 = time.perf_counter()

    def fail(status: str, message: str, history=None, cls=RunFailed, **kw):
        if history is not None and not ctx.histories:
            ctx.histories["partial"] = {"history": history, "axis": 0}
        try:
            write_metrics(ctx.histories, out)
        except Exception:  # noqa: BLE001 - the run already failed; report that, not this
            pass
        marker.update(
            status=status,
            finished=now(),
            seconds=time.perf_counter() - t0,
            error=message,
            checkpointed=ctx.checkpointed(),
            data=download.files_used(full=True),
        )
        try:
            files.atomic_write_json(out / "run.json", marker)
        except OSError:
            pass
        return cls(f"{name}: {message} (folder {out} keeps what was written)", **kw)

    from blojax.algorithms import NonFiniteError
    from blojax.status import runtime_message

    try:
        result = mod.run(config, ctx)
        seconds = time.perf_counter() - t0
        metrics = write_metrics(ctx.histories, out)
        results = common.to_jsonable(result.to_dict() if hasattr(result, "to_dict") else result)
    except NonFiniteError as exc:
        raise fail("diverged", str(exc).splitlines()[0], getattr(exc, "history", None)) from None
    except (context.CheckpointError, context.ResourceError) as exc:
        raise fail("refused", str(exc), cls=RunRefused) from None
    except KeyboardInterrupt as exc:
        code = 143 if isinstance(exc, Terminated) else 130
        raise fail(
            "interrupted",
            "interrupted (SIGTERM)" if code == 143 else "interrupted (SIGINT)",
            cls=RunInterrupted,
            code=code,
        ) from None
    except OSError as exc:
        raise fail("failed", f"file-system error: {os_error(exc)}") from None
    except Exception as exc:  # noqa: BLE001
        try:
            files.atomic_write_text(out / "error.txt", traceback.format_exc())
            where = " (traceback in error.txt)"
        except OSError:
            where = ""
        # a run-time check of the library (throw=True) raised under jit: show its own message
        checked = runtime_message(exc)
        if checked is not None and "non-finite" in checked:
            raise fail("diverged", checked + where) from None
        if checked is not None:
            raise fail("failed", checked + where) from None
        raise fail("failed", f"{type(exc).__name__}: {exc}".splitlines()[0] + where) from exc
    measurements = {k: results.pop(k) for k in MEASUREMENT_KEYS if isinstance(results, dict) and k in results}
    payload = {
        "experiment": name,
        "description": getattr(mod, "DESCRIPTION", ""),
        "fingerprint": fp,
        "config": config_dict,
        "environment": env,
        "data": download.files_used(full=True),
        "results": results,
        "figures": [],
        "metrics": [_rel(m, out) for m in metrics],
    }
    comparison = paper_comparison(mod, results)
    if comparison is not None:
        payload["paper_comparison"] = comparison
    bad = nonfinite_keys(results, getattr(mod, "NONFINITE_OK", ()))
    # results first: a figure that fails cannot lose them
    try:
        files.atomic_write_json(out / "results.json", payload)
        status = (
            "done"
            if not bad
            else f"done (non-finite results: {', '.join(bad[:5])}{' ...' if len(bad) > 5 else ''})"
        )
        marker.update(
            status=status, finished=now(), seconds=seconds, data=payload["data"], measurements=measurements
        )
        if ctx.reused:
            marker["reused"] = ctx.reused
        # programs compiled / loaded from JAX's persistent cache during the run (runner.jaxcache)
        marker["compilations"] = {k: v - compiles_before[k] for k, v in jaxcache.counts().items()}
        files.atomic_write_json(out / "run.json", marker)
    except OSError as exc:
        raise fail("failed", f"file-system error while writing results: {os_error(exc)}") from None
    plot_seconds = 0.0
    if plots:
        t1 = time.perf_counter()
        try:
            figures = [pathlib.Path(f) for f in mod.plot(result, out)]
        except KeyboardInterrupt as exc:
            code = 143 if isinstance(exc, Terminated) else 130
            marker.update(status="done (figures interrupted)")
            files.atomic_write_json(out / "run.json", marker)
            raise RunInterrupted(
                f"{name}: interrupted while plotting; results.json is written", code
            ) from None
        except Exception as exc:  # noqa: BLE001 - results are safe; say what went wrong, keep going
            why = (
                os_error(exc) if isinstance(exc, OSError) else f"{type(exc).__name__}: {exc}".splitlines()[0]
            )
            try:
                files.atomic_write_text(out / "error.txt", traceback.format_exc())
            except OSError:
                pass
            marker.update(status=f"done (figures failed: {why})", finished=now())
            try:
                files.atomic_write_json(out / "run.json", marker)
            except OSError:
                pass
            raise RunFailed(f"{name}: figures failed ({why}); results.json is written in {out}") from None
        plot_seconds = time.perf_counter() - t1
        payload.update(figures=[_rel(f, out) for f in figures])
        marker.update(plot_seconds=plot_seconds)
        files.atomic_write_json(out / "results.json", payload)
        files.atomic_write_json(out / "run.json", marker)
    if bad:
        raise RunFailed(
            f"{name}: non-finite numbers in the results ({', '.join(bad[:5])}"
            f"{' ...' if len(bad) > 5 else ''}); results.json is written in {out}, status says so"
        )
    return {**payload, "seconds": seconds, "plot_seconds": plot_seconds, "measurements": measurements}


#: Top-level keys of an experiment's results that measure this run on this machine (wall time, memory)
#: rather than what the computation gave. They go to run.json (``measurements``, next to ``seconds`` and
#: ``plot_seconds``) and never into results.json, so that the same command with the same seeds writes a
#: bit-identical results.json on the same machine.
MEASUREMENT_KEYS = ("seconds", "run_seconds", "peak_rss_mb")


def nonfinite_keys(results, allowed=()) -> list[str]:
    """Dotted keys of the numbers in ``results`` (JSON form: NaN/inf are the strings 'nan', 'inf',
    '-inf') that are not finite, except those under a key listed in ``allowed``."""
    bad: list[str] = []

    def walk(x, key):
        if key and key.split("[")[0] in allowed:
            return
        if isinstance(x, dict):
            for k, v in x.items():
                walk(v, f"{key}.{k}" if key else str(k))
        elif isinstance(x, list):
            for i, v in enumerate(x):
                walk(v, f"{key}[{i}]")
        elif (isinstance(x, str) and x in ("nan", "inf", "-inf")) or (
            isinstance(x, float) and not math.isfinite(x)
        ):
            base = key.split("[")[0]
            if base not in bad:
                bad.append(base)

    walk(results, "")
    return bad


def _rel(path: pathlib.Path, base: pathlib.Path) -> str:
    try:
        return str(pathlib.Path(path).resolve().relative_to(base.resolve()))
    except ValueError:
        return str(path)


def validate(config, label: str) -> None:
    """``config.validate()`` with :class:`ConfigError` turned into :class:`UsageError`."""
    try:
        config.validate()
    except common.ConfigError as exc:
        name = label.split(".")[0]
        msg = str(exc)
        raise UsageError(msg if msg.startswith(name) else f"{name}: {msg}") from None


def has_seed(config) -> bool:
    return any(f.name == "seed" for f in dataclasses.fields(config))
