"""``blojax reproduce``: every implemented experiment of PAPER.md §5 (each in its own process, so one
failure or one global JAX setting cannot touch the others), the core demo, then the report.

Layout of ``OUT``: ``reproduce.json`` (mode, experiments, per-experiment status and seconds, total),
one run folder per experiment ``OUT/<name>/`` (with ``log.txt``: what the run printed),
``OUT/demo/output.txt``, ``OUT/report.html``, ``OUT/report.md``.
"""

from __future__ import annotations

import os
import pathlib
import resource
import shutil
import subprocess
import sys
import time

from blojax.experiments import common

from .errors import UsageError
from .report import write_report
from .rundir import claim_folder, now, read_json


def _say(msg: str) -> None:
    print(msg, flush=True)


def _children_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def _run_one(cmd: list[str], log: pathlib.Path, timeout: float | None) -> tuple[int, float, str]:
    """Run ``cmd``, its output streamed to a temporary file beside ``log`` (``tail -f`` it to watch a
    long run), renamed to ``log`` at the end."""
    t0 = time.perf_counter()
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    log.parent.mkdir(parents=True, exist_ok=True)
    partial = log.with_name(f".{log.name}.running")  # not .tmp: a run cleans those up in its folder
    with open(partial, "w") as fh:
        try:
            rc = subprocess.run(cmd, stdout=fh, stderr=subprocess.STDOUT, timeout=timeout, env=env).returncode
        except subprocess.TimeoutExpired:
            rc = 124
            fh.write(f"\ntimed out after {timeout} s\n")
    seconds = time.perf_counter() - t0
    os.replace(partial, log)
    return rc, seconds, log.read_text(errors="replace")


def reproduce(out: pathlib.Path, *, quick=True, only=None, resume=False, demo=True, timeout=None, argv=None) -> bool:
    found, broken = common.discover()
    if only:
        unknown = [n for n in only if n not in found]
        if unknown:
            raise UsageError(f"--only: unknown experiment(s) {', '.join(unknown)}; available: {', '.join(found) or '(none)'}")
        names = list(only)
    else:
        names = [n for n, path in found.items() if path.startswith("blojax.experiments.")]
    mode = "quick" if quick else "full"
    fp = f"reproduce-{mode}"
    claim_folder(out, "reproduce", fp, "reproduce", {"mode": mode})
    out.mkdir(parents=True, exist_ok=True)
    marker = {"kind": "reproduce", "experiment": "reproduce", "fingerprint": fp, "config": {"mode": mode}, "mode": mode,
              "experiments": names, "unusable": broken, "status": "running", "started": now(), "argv": argv, "runs": {}}
    common.atomic_write_json(out / "reproduce.json", marker)
    t_start, cpu_start = time.perf_counter(), _children_cpu()
    _say(f"reproduce ({mode}): {len(names)} experiment(s): {', '.join(names) or '(none)'}"
         + (f"; unusable: {', '.join(broken)}" if broken else ""))
    ok = True
    for i, name in enumerate(names, 1):
        folder = out / name
        prev = read_json(folder / "run.json")
        if resume and prev and prev.get("status") == "done" and (folder / "results.json").exists():
            _say(f"[{i}/{len(names)}] {name}: done before ({prev.get('seconds', 0):.1f} s), kept")
            marker["runs"][name] = {"status": "done", "seconds": prev.get("seconds"), "wall_seconds": 0.0, "kept": True}
            continue
        if not resume and prev is not None and folder.is_dir():
            shutil.rmtree(folder)  # a previous reproduction of this experiment: start it afresh
        cmd = [sys.executable, "-m", "blojax.runner.cli", "run", name, "--out", str(folder), "--quiet"]
        cmd += ["--quick"] if quick else []
        cmd += ["--resume"] if resume else []
        folder.mkdir(parents=True, exist_ok=True)
        cpu0 = _children_cpu()
        rc, seconds, text = _run_one(cmd, folder / "log.txt", timeout)
        cpu = _children_cpu() - cpu0
        run = read_json(folder / "run.json") or {}
        status = run.get("status", "failed") if rc == 0 else ("timed out" if rc == 124 else run.get("status", "failed"))
        if rc != 0 and status in ("done", "running"):
            status = "failed"
        if rc != 0:
            ok = False
            last = [line for line in text.strip().splitlines() if line.strip()][-1:] or ["(no output)"]
            if run:
                run.setdefault("error", last[0])
                run["status"] = status
                common.atomic_write_json(folder / "run.json", run)
            else:
                common.atomic_write_json(folder / "run.json", {"kind": "run", "experiment": name, "status": status,
                                                                 "error": last[0], "seconds": seconds})
        marker["runs"][name] = {"status": status, "seconds": run.get("seconds"), "wall_seconds": seconds, "cpu_seconds": cpu}
        common.atomic_write_json(out / "reproduce.json", marker)
        _say(f"[{i}/{len(names)}] {name}: {status} in {seconds:.1f} s (CPU {cpu:.1f} s)" + ("" if rc == 0 else f" (see {folder / 'log.txt'})"))
    if demo:
        d = out / "demo"
        d.mkdir(parents=True, exist_ok=True)
        rc, seconds, _ = _run_one([sys.executable, "-m", "blojax.demo"], d / "output.txt", timeout)
        common.atomic_write_json(d / "demo.json", {"status": "done" if rc == 0 else "failed", "seconds": seconds, "returncode": rc})
        ok = ok and rc == 0
        _say(f"demo: {'done' if rc == 0 else 'failed'} in {seconds:.1f} s")
    total, cpu_total = time.perf_counter() - t_start, _children_cpu() - cpu_start
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    marker.update(status="done" if ok else "failed", finished=now(), total_seconds=total, cpu_seconds=cpu_total,
                  cpu_count=os.cpu_count(), load_average=load)
    common.atomic_write_json(out / "reproduce.json", marker)
    html, md = write_report(out)
    _say(f"reproduce: total {total:.1f} s ({total / 60:.1f} min) wall, {cpu_total:.1f} s CPU on {os.cpu_count()} core(s), "
         f"load average {load:.1f}; wrote {html} and {md}")
    return ok
