"""Sweeps: a grid of configurations (times seeds), run locally (vmapped where the experiment allows)
or as Ray tasks on a cluster, gathered into one results table.

Layout of ``blojax sweep EXP --grid ... --out DIR``::

    DIR/sweep.json                 experiment, base config, grid, seeds, fingerprint, status
    DIR/points/<i>_<k=v>.../       one folder per grid point: results.json (+ figures with --plots,
                                   + checkpoints of an interrupted point)
    DIR/results.csv, results.json  the table: one row per grid point, the grid values and every
                                   scalar result

A grid point whose ``results.json`` exists is done and is never recomputed: rerunning the same command
after an interruption continues with the rest.

The local backend groups the points that may share one compiled computation and hands each group to
the experiment's optional ``run_batch(configs, ctx) -> list[Result]`` hook (one ``vmap``); a module
without the hook, and groups of one, run point by point. Points may share a group when they differ
only in the fields the module lists in ``BATCH_FIELDS`` (default: ``("seed",)``), or, if the module
defines ``batch_key(config) -> hashable``, when their keys are equal.
"""

from __future__ import annotations

import dataclasses
import json
import os
import pathlib
import shutil
import socket
import sys
import tempfile
import time
from typing import Any

from blojax.experiments import common
from . import context, discovery, files

from . import configs
from .errors import UsageError
from .rundir import claim_folder, clean_temporaries, now, paper_comparison, read_json


@dataclasses.dataclass
class Point:
    index: int
    assign: dict
    config: Any

    @property
    def label(self) -> str:
        parts = [f"{k}={v}" for k, v in self.assign.items()]
        safe = "".join(c if c.isalnum() or c in "-_.=," else "_" for c in "_".join(parts))
        return f"{self.index:04d}" + (f"_{safe[:80]}" if safe else "")


def _point_dir(out: pathlib.Path, p: Point) -> pathlib.Path:
    return out / "points" / p.label


def _done(out: pathlib.Path, p: Point) -> bool:
    data = read_json(_point_dir(out, p) / "results.json")
    return data is not None and data.get("status") == "done"


def group_points(mod, points: list[Point]) -> list[list[Point]]:
    """Points that may run as one vmapped computation, in order of first appearance."""
    if not hasattr(mod, "run_batch"):
        return [[p] for p in points]
    key_fn = getattr(mod, "batch_key", None)
    batch_fields = set(getattr(mod, "BATCH_FIELDS", ("seed",)))

    def key(cfg):
        if key_fn is not None:
            return key_fn(cfg)
        d = configs.to_dict(cfg)
        return json.dumps({k: v for k, v in d.items() if k not in batch_fields}, sort_keys=True)

    groups: dict = {}
    for p in points:
        groups.setdefault(key(p.config), []).append(p)
    return list(groups.values())


def _write_point(out: pathlib.Path, name: str, p: Point, payload: dict) -> None:
    folder = _point_dir(out, p)
    row = {
        "status": payload.get("status", "done"),
        "experiment": name,
        "point": p.index,
        "assign": p.assign,
        "config": configs.to_dict(p.config),
        **{k: v for k, v in payload.items() if k not in ("status", "figure_bytes")},
    }
    for fname, data in (payload.get("figure_bytes") or {}).items():
        files.atomic_write_bytes(folder / fname, data)
    files.atomic_write_json(folder / "results.json", row)


def _scalars(d, prefix="") -> dict:
    out = {}
    if isinstance(d, dict):
        for k, v in d.items():
            out.update(_scalars(v, f"{prefix}{k}."))
    elif isinstance(d, (int, float, str, bool)) or d is None:
        out[prefix[:-1]] = d
    return out


def write_table(out: pathlib.Path, name: str, points: list[Point]) -> list[dict]:
    """Gather every point's results into ``results.json`` and ``results.csv``."""
    rows = []
    for p in points:
        data = read_json(_point_dir(out, p) / "results.json")
        if data is None:
            continue
        row = {
            "point": p.index,
            **{k: v for k, v in p.assign.items()},
            "status": data.get("status"),
            "seconds": data.get("seconds"),
        }
        if data.get("status") == "done":
            row.update(_scalars(data.get("results", {})))
        else:
            row["error"] = data.get("error")
        rows.append(row)
    files.atomic_write_json(out / "results.json", {"experiment": name, "rows": rows})
    cols: list[str] = []
    for r in rows:
        cols.extend(c for c in r if c not in cols)

    def cell(v):
        if v is None:
            return ""
        s = repr(v) if isinstance(v, float) else str(v)
        return f'"{s}"' if ("," in s or '"' in s) else s

    lines = [",".join(cols)] + [",".join(cell(r.get(c)) for c in cols) for r in rows]
    files.atomic_write_text(out / "results.csv", "\n".join(lines) + "\n")
    return rows


# ------------------------------------------------------------------------------------ one point
def compute_point(
    module_path: str, name: str, config_dict: dict, plots: bool, env_vars: dict | None = None
) -> dict:
    """Run one grid point from plain data (what a Ray task receives) and return plain data:
    ``{"status", "results", "seconds", "figure_bytes", "host", "error"?}``."""
    import importlib

    for k, v in (env_vars or {}).items():
        os.environ.setdefault(k, v)
    t0 = time.perf_counter()
    try:
        mod = importlib.import_module(module_path)
        config = configs.from_dict(mod.Config, config_dict, f"{name}.Config")
        result = mod.run(config, context.Context(progress=False))
        seconds = time.perf_counter() - t0
        results = common.to_jsonable(result.to_dict())
        figure_bytes = {}
        if plots:
            with tempfile.TemporaryDirectory() as tmp:
                for f in mod.plot(result, pathlib.Path(tmp)):
                    figure_bytes[pathlib.Path(f).name] = pathlib.Path(f).read_bytes()
        out = {
            "status": "done",
            "results": results,
            "seconds": seconds,
            "figure_bytes": figure_bytes,
            "host": socket.gethostname(),
            "pid": os.getpid(),
        }
        comparison = paper_comparison(mod, results)
        if comparison is not None:
            out["paper_comparison"] = comparison
        return out
    except Exception as exc:  # noqa: BLE001 - one failed point must not lose the others
        return {
            "status": "failed",
            "error": f"{type(exc).__name__}: {exc}".splitlines()[0],
            "seconds": time.perf_counter() - t0,
            "host": socket.gethostname(),
        }


# ------------------------------------------------------------------------------------ backends
def _run_local(mod, name, out, pending: list[Point], plots, progress, checkpoint_every, log):
    groups = group_points(mod, pending)
    for g in groups:
        t0 = time.perf_counter()
        try:
            if len(g) > 1:
                ids = "-".join(str(p.index) for p in g)
                ckdir = out / "batches" / (ids if len(ids) < 60 else configs.fingerprint(name, ids))
                clean_temporaries(ckdir)
                ctx = context.Context(
                    checkpoint_dir=ckdir, resume=True, checkpoint_every=checkpoint_every, progress=progress
                )
                results = mod.run_batch([p.config for p in g], ctx)
                if len(results) != len(g):
                    raise RuntimeError(
                        f"{name}.run_batch returned {len(results)} results for {len(g)} configs"
                    )
                how = f"vmapped batch of {len(g)}"
            else:
                p = g[0]
                ckdir = _point_dir(out, p) / "checkpoints"
                clean_temporaries(ckdir)
                ctx = context.Context(
                    checkpoint_dir=ckdir, resume=True, checkpoint_every=checkpoint_every, progress=progress
                )
                results = [mod.run(p.config, ctx)]
                how = "single run"
        except context.CheckpointError as exc:
            raise UsageError(str(exc)) from None
        except Exception as exc:  # noqa: BLE001
            msg = f"{type(exc).__name__}: {exc}".splitlines()[0]
            for p in g:
                _write_point(out, name, p, {"status": "failed", "error": msg, "seconds": None})
            log(f"  points {[p.index for p in g]}: failed: {msg}")
            continue
        seconds = (time.perf_counter() - t0) / len(g)
        for p, r in zip(g, results):
            res = common.to_jsonable(r.to_dict())
            payload = {"status": "done", "results": res, "seconds": seconds, "how": how}
            comparison = paper_comparison(mod, res)
            if comparison is not None:
                payload["paper_comparison"] = comparison
            if plots:
                folder = _point_dir(out, p)
                payload["figures"] = [pathlib.Path(f).name for f in mod.plot(r, folder)]
            _write_point(out, name, p, payload)
        if len(g) > 1:
            shutil.rmtree(ckdir, ignore_errors=True)
        log(f"  {how}: points {g[0].index}..{g[-1].index} in {seconds * len(g):.1f} s")


def _check_address(address: str) -> None:
    """Fail fast, in one line, when ``host:port`` does not answer."""
    if address in ("auto", "local"):
        return
    hostport = address.split("://", 1)[-1].rstrip("/")
    host, _, port = hostport.rpartition(":")
    if not host or not port.isdigit():
        raise UsageError(f"--address expects host:port, ray://host:port or auto, got {address!r}")
    try:
        socket.create_connection((host, int(port)), timeout=5).close()
    except OSError as exc:
        raise UsageError(
            f"cannot reach a Ray cluster at {address} ({exc.strerror or exc}); start one with `ray start --head` "
            "there, or leave out --address for a local cluster"
        ) from None


def _run_ray(mod, name, out, pending: list[Point], plots, address, log, num_cpus=None):
    try:
        import ray  # pyright: ignore[reportMissingImports]
    except ImportError:
        raise UsageError("the ray backend needs the optional extra: pip install 'blojax[ray]'") from None
    if address:
        _check_address(address)
    env_vars = {
        k: v for k, v in os.environ.items() if k in (discovery.EXPERIMENTS_ENV, "JAX_PLATFORMS", "XLA_FLAGS")
    }
    init_kwargs = dict(
        address=address or None,
        include_dashboard=False,
        ignore_reinit_error=True,
        log_to_driver=False,
        runtime_env={"env_vars": env_vars} if env_vars else None,
    )
    if not address and num_cpus:
        init_kwargs["num_cpus"] = num_cpus
    try:
        ray.init(**init_kwargs)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        raise UsageError(
            f"cannot connect to Ray at {address or 'a new local cluster'}: {str(exc).splitlines()[0]}"
        ) from None
    try:
        module_path = mod.__spec__.name
        task = ray.remote(num_cpus=1, max_retries=2)(compute_point)
        refs = {
            task.remote(module_path, name, configs.to_dict(p.config), plots, env_vars): p for p in pending
        }
        resources = ray.cluster_resources()
        log(f"  ray: {len(refs)} task(s) on a cluster with {resources.get('CPU', 0):g} CPU(s)")
        while refs:
            ready, _ = ray.wait(list(refs), num_returns=1)
            for ref in ready:
                p = refs.pop(ref)
                try:
                    payload = ray.get(ref)
                except Exception as exc:  # noqa: BLE001 - a lost worker: record, go on
                    payload = {
                        "status": "failed",
                        "error": f"{type(exc).__name__}: {str(exc).splitlines()[0]}",
                        "seconds": None,
                    }
                _write_point(out, name, p, payload)
                log(
                    f"  point {p.index} {p.assign}: {payload['status']}"
                    + (
                        f" ({payload.get('seconds', 0):.1f} s on {payload.get('host')})"
                        if payload["status"] == "done"
                        else f": {payload.get('error')}"
                    )
                )
    finally:
        ray.shutdown()


def run_sweep(
    mod,
    name: str,
    base,
    grid: dict,
    seeds,
    out,
    *,
    backend="local",
    address=None,
    plots=False,
    progress=None,
    checkpoint_every=None,
    quiet=False,
    argv=None,
    num_cpus=None,
) -> list[dict]:
    """Run every grid point not done yet, then write the table; returns its rows."""
    log = (lambda s: None) if quiet else (lambda s: print(s, file=sys.stderr, flush=True))
    label = f"{name}.Config"
    out = pathlib.Path(out)
    pts = [Point(i, a, c) for i, (a, c) in enumerate(configs.grid_points(base, grid, seeds, label))]
    for p in pts:
        try:
            p.config.validate()
        except common.ConfigError as exc:
            raise UsageError(f"grid point {p.assign}: {exc}") from None
    spec = {"base": configs.to_dict(base), "grid": common.to_jsonable(grid), "seeds": seeds}
    fp = configs.fingerprint(name, spec)
    claim_folder(out, "sweep", fp, name, {"base": spec["base"], "grid": spec["grid"], "seeds": seeds})
    marker = {
        "kind": "sweep",
        "experiment": name,
        "module": mod.__spec__.name,
        "fingerprint": fp,
        "config": {"base": spec["base"], "grid": spec["grid"], "seeds": seeds},
        "points": len(pts),
        "backend": backend,
        "status": "running",
        "started": now(),
        "argv": argv,
    }
    out.mkdir(parents=True, exist_ok=True)
    clean_temporaries(out)
    files.atomic_write_json(out / "sweep.json", marker)
    pending = [p for p in pts if not _done(out, p)]
    log(
        f"{name}: {len(pts)} grid point(s), {len(pts) - len(pending)} already done, {len(pending)} to run ({backend})"
    )
    t0 = time.perf_counter()
    if pending:
        if backend == "local":
            _run_local(mod, name, out, pending, plots, progress, checkpoint_every, log)
        elif backend == "ray":
            _run_ray(mod, name, out, pending, plots, address, log, num_cpus=num_cpus)
        else:
            raise UsageError(f"unknown --backend {backend!r}; choose local or ray")
    rows = write_table(out, name, pts)
    failed = [r for r in rows if r.get("status") != "done"]
    marker.update(
        status="done" if not failed else "partial",
        finished=now(),
        seconds=time.perf_counter() - t0,
        failed=len(failed),
    )
    files.atomic_write_json(out / "sweep.json", marker)
    return rows
