"""Run folders: one experiment run, everything it produced, every file written atomically.

Layout of ``blojax run EXP --out DIR``::

    DIR/run.json          experiment, resolved config, fingerprint, status, start/end, seconds, argv
    DIR/config.json       the resolved config (what --set/--config/--quick/--seed gave)
    DIR/environment.json  package versions and platform
    DIR/metrics/<key>.csv per-step metrics of every ctx.scan/ctx.run (step column, one per metric)
    DIR/metrics/<key>.npz the same histories in full (multi-dimensional metrics too)
    DIR/checkpoints/      (carry, history) after every chunk; what --resume continues from
    DIR/results.json      config, environment, seconds and every reported number
    DIR/*.png, *.gif      figures and animations

A folder belongs to one run: its fingerprint (experiment + resolved config) is in ``run.json`` and a
different run is refused (:class:`UsageError`), so results are never mixed.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import io
import json
import pathlib
import sys
import time
import traceback

import numpy as np

from blojax.experiments import common

from . import configs
from .errors import UsageError

MARKERS = {"run": "run.json", "sweep": "sweep.json", "reproduce": "reproduce.json"}


class RunFailed(Exception):
    """The run started but did not finish (diverged, or the experiment raised); the folder keeps
    everything written up to then and ``run.json`` says why."""


def now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def read_json(path):
    try:
        return json.loads(pathlib.Path(path).read_text())
    except (OSError, ValueError):
        return None


def claim_folder(out: pathlib.Path, kind: str, fp: str, what: str, config_dict: dict | None = None) -> dict | None:
    """Check that ``out`` holds nothing or a run of the same ``kind`` and fingerprint ``fp``.

    Returns the previous marker (or ``None``); raises :class:`UsageError` naming what the folder holds.
    """
    out = pathlib.Path(out)
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out} is a file, not a folder")
    for other_kind, marker in MARKERS.items():
        data = read_json(out / marker)
        if data is None:
            continue
        held = f"{other_kind} of {data.get('experiment', '?')}"
        if other_kind != kind:
            raise UsageError(f"--out {out} holds a {held}, not a {kind}; choose another --out folder")
        if data.get("fingerprint") != fp:
            changes = configs.diff(data.get("config") or {}, config_dict or {}) if data.get("experiment") == what else []
            detail = f" (differs in {'; '.join(changes[:4])}{' ...' if len(changes) > 4 else ''})" if changes else ""
            raise UsageError(
                f"--out {out} holds a different {held}{detail}; choose another --out folder, or remove it"
            )
        return data
    return None


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


def _fmt(x) -> str:
    if isinstance(x, (bool, np.bool_)):
        return str(int(x))
    if isinstance(x, (int, np.integer)):
        return str(int(x))
    return repr(float(x))


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
            lines = [",".join(["step", *names])]
            for i in range(n):
                lines.append(",".join([str(i + 1), *(_fmt(cols[c][i]) for c in names)]))
            written.append(common.atomic_write_text(folder / "metrics" / f"{safe}.csv", "\n".join(lines) + "\n"))
        arrays = {_path_name(p): np.asarray(leaf) for p, leaf in jax.tree_util.tree_flatten_with_path(hist)[0]}
        if arrays:
            buf = io.BytesIO()
            np.savez(buf, **{k.replace("/", "_"): v for k, v in arrays.items()})  # pyright: ignore[reportArgumentType]
            common.atomic_write_bytes(folder / "metrics" / f"{safe}.npz", buf.getvalue())
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
    progress: bool | None = None,
    checkpoint_every: int | None = None,
    plots: bool = True,
    argv: list[str] | None = None,
) -> dict:
    """Run ``mod.run(config, ctx)`` into the run folder ``out`` and return the results.json payload.

    Raises :class:`UsageError` if ``out`` holds a different run, :class:`RunFailed` if the run
    diverged or raised (``run.json`` then records the status and the message).
    """
    out = pathlib.Path(out)
    config_dict = configs.to_dict(config)
    fp = configs.fingerprint(name, config)
    previous = claim_folder(out, "run", fp, name, config_dict)
    out.mkdir(parents=True, exist_ok=True)
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
        "config": config_dict,
        "status": "running",
        "started": now(),
        "resumed": bool(resume and previous is not None),
        "argv": argv,
    }
    common.atomic_write_json(out / "run.json", marker)
    common.atomic_write_json(out / "config.json", config_dict)
    env = common.environment()
    common.atomic_write_json(out / "environment.json", env)
    ctx = common.Context(checkpoint_dir=ckpt, resume=resume, checkpoint_every=checkpoint_every, progress=progress)
    t0 = time.perf_counter()

    def fail(status: str, message: str, history=None):
        if history is not None and not ctx.histories:
            ctx.histories["partial"] = {"history": history, "axis": 0}
        try:
            write_metrics(ctx.histories, out)
        except Exception:  # noqa: BLE001
            pass
        marker.update(status=status, finished=now(), seconds=time.perf_counter() - t0, error=message)
        common.atomic_write_json(out / "run.json", marker)
        return RunFailed(f"{name}: {message} (folder {out} keeps what was written)")

    from blojax.algorithms import NonFiniteError

    try:
        result = mod.run(config, ctx)
    except NonFiniteError as exc:
        raise fail("diverged", str(exc).splitlines()[0], getattr(exc, "history", None)) from None
    except common.CheckpointError as exc:
        raise fail("failed", str(exc)) from None
    except KeyboardInterrupt:
        raise fail("interrupted", "interrupted") from None
    except Exception as exc:  # noqa: BLE001
        tb = traceback.format_exc()
        common.atomic_write_text(out / "error.txt", tb)
        raise fail("failed", f"{type(exc).__name__}: {exc}".splitlines()[0] + " (traceback in error.txt)") from exc
    seconds = time.perf_counter() - t0
    metrics = write_metrics(ctx.histories, out)
    results = common.to_jsonable(result.to_dict() if hasattr(result, "to_dict") else result)
    figures = []
    plot_seconds = 0.0
    if plots:
        t1 = time.perf_counter()
        figures = [pathlib.Path(f) for f in mod.plot(result, out)]
        plot_seconds = time.perf_counter() - t1
    payload = {
        "experiment": name,
        "description": getattr(mod, "DESCRIPTION", ""),
        "config": config_dict,
        "environment": env,
        "seconds": seconds,
        "plot_seconds": plot_seconds,
        "results": results,
        "figures": [_rel(f, out) for f in figures],
        "metrics": [_rel(m, out) for m in metrics],
    }
    comparison = paper_comparison(mod, results)
    if comparison is not None:
        payload["paper_comparison"] = comparison
    common.atomic_write_json(out / "results.json", payload)
    marker.update(status="done", finished=now(), seconds=seconds, plot_seconds=plot_seconds)
    common.atomic_write_json(out / "run.json", marker)
    return payload


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
