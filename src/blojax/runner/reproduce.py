"""``blojax reproduce``: every implemented experiment of PAPER.md §5 (each in its own process, so one
failure or one global JAX setting cannot touch the others; with ``--quick`` the two groups of
:data:`QUICK_GROUPS` share a process each), the core demo, then the report. Computations that two
experiments share are done once (:mod:`blojax.runner.reuse`). Children use JAX's persistent
compilation cache (:mod:`blojax.runner.jaxcache`); SIGINT/SIGTERM end them and are recorded.

Layout of ``OUT``: ``reproduce.json`` (mode, experiments, per-experiment status and seconds, total),
one run folder per experiment ``OUT/<name>/`` (with ``log.txt``: what the run printed),
``OUT/demo/output.txt``, ``OUT/report.html``, ``OUT/report.md``.
"""

from __future__ import annotations

import concurrent.futures
import functools
import json
import os
import pathlib
import shutil
import subprocess
import sys
import threading
import time

from . import discovery, files, reuse

from .errors import UsageError
from .report import write_report
from .rundir import claim_folder, now, read_json


# Quick runs share processes (``run-group``): every experiment sets float64 only inside ``jax.enable_x64``
# contexts and touches no other global state, so running them one after another in one process gives
# the numbers of separate processes (tests/test_reliability_cache.py compares them, slow marker) and
# saves the start-ups, the imports and the compilations they share. Two groups of about equal time, one
# per job: the image experiments together (table3 first: it computes what the other three load, see
# :mod:`blojax.runner.reuse`), the float64 ones together. An experiment in no group (a registered one)
# runs in its own process. The full reproduction runs each experiment in its own process.
QUICK_GROUPS = (
    ("table3", "canvas_distill", "distill_table", "augment_net", "rings", "solution_concepts"),
    ("stochastic_bias", "antidistill", "hypergrad_field", "projection_sketch", "spectral", "theory"),
)
GROUP_TAG = "@@blojax-group "
#: Started before the others (in this order): the longest runs, so that the two job slots end together;
#: table3 waits for nothing (what it shares with distill_table and augment_net is computed by whichever
#: run reaches it first, see :mod:`blojax.runner.reuse`).
START_FIRST = ("table3", "stochastic_bias")
#: The folder of ``OUT`` that holds the computations shared by the runs (:mod:`blojax.runner.reuse`).
REUSE_FOLDER = ".reuse"


def run_group(out: pathlib.Path, names: list[str], *, quick: bool, resume: bool) -> int:
    """The child side of a shared process: ``blojax run NAME --out OUT/NAME --quiet`` for each name in
    turn, each one's output in its own ``OUT/NAME/log.txt``; after each, one line ``GROUP_TAG {json}``
    (name, exit code, wall and CPU seconds) on stdout. Stops at an interruption (exit code 130/143)."""
    import contextlib
    import resource

    from . import cli

    rc_all = 0
    for name in names:
        folder = out / name
        folder.mkdir(parents=True, exist_ok=True)
        argv = (
            ["run", name, "--out", str(folder), "--quiet"]
            + (["--quick"] if quick else [])
            + (["--resume"] if resume else [])
        )
        partial = folder / ".log.txt.running"
        t0 = time.perf_counter()
        ru = resource.getrusage(resource.RUSAGE_SELF)
        with open(partial, "w") as fh, contextlib.redirect_stdout(fh), contextlib.redirect_stderr(fh):
            rc = cli.main(argv)
        ru2 = resource.getrusage(resource.RUSAGE_SELF)
        os.replace(partial, folder / "log.txt")
        lines = [
            line for line in (folder / "log.txt").read_text(errors="replace").splitlines() if line.strip()
        ]
        rec = {
            "name": name,
            "rc": rc,
            "wall": time.perf_counter() - t0,
            "cpu": (ru2.ru_utime + ru2.ru_stime) - (ru.ru_utime + ru.ru_stime),
            "last": lines[-1] if lines else "",
        }
        print(GROUP_TAG + json.dumps(rec), flush=True)
        rc_all = rc_all or rc
        if rc in (130, 143):
            return rc
    return rc_all


def _say(msg: str) -> None:
    print(msg, flush=True)


_CHILDREN: set = set()  # running child processes, ended by the parent on SIGINT/SIGTERM
_CHILDREN_LOCK = threading.Lock()
_STOPPING = threading.Event()


def _end_children(grace: float = 10.0) -> None:
    """SIGTERM every running child (each records ``interrupted`` in its run.json), SIGKILL after ``grace`` s."""
    _STOPPING.set()
    with _CHILDREN_LOCK:
        procs = list(_CHILDREN)
    for p in procs:
        if p.poll() is None:
            p.terminate()
    deadline = time.monotonic() + grace
    for p in procs:
        try:
            p.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            p.kill()


def _run_one(
    cmd: list[str], log: pathlib.Path, timeout: float | None, extra_env: dict | None = None
) -> tuple[int, float, float, str]:
    """Run ``cmd``, its output streamed to a hidden file beside ``log`` (``tail -f`` it to watch a long
    run), renamed to ``log`` at the end. Returns ``(returncode, wall seconds, CPU seconds, output)``;
    returncode 124 when it ran past ``timeout``, 130 when the parent was interrupted before it started."""
    if _STOPPING.is_set():
        return 130, 0.0, 0.0, "not started: interrupted"
    t0 = time.perf_counter()
    from .jaxcache import child_env

    env = dict(child_env(), PYTHONUNBUFFERED="1", **(extra_env or {}))
    log.parent.mkdir(parents=True, exist_ok=True)
    partial = log.with_name(f".{log.name}.running")  # not .tmp: a run cleans those up in its folder
    timed_out = threading.Event()
    with open(partial, "w") as fh:
        with _CHILDREN_LOCK:
            proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, env=env)
            _CHILDREN.add(proc)

        def kill():
            timed_out.set()
            proc.kill()

        timer = threading.Timer(timeout, kill) if timeout else None
        if timer:
            timer.start()
        try:
            _, status, usage = os.wait4(proc.pid, 0)  # this child's own CPU time, even with others running
        finally:
            if timer:
                timer.cancel()
            with _CHILDREN_LOCK:
                _CHILDREN.discard(proc)
        proc.returncode = os.waitstatus_to_exitcode(status)
        rc = 124 if timed_out.is_set() else proc.returncode
        if timed_out.is_set():
            fh.write(f"\ntimed out after {timeout} s\n")
    seconds = time.perf_counter() - t0
    os.replace(partial, log)
    return rc, seconds, usage.ru_utime + usage.ru_stime, log.read_text(errors="replace")


def reproduce(
    out: pathlib.Path,
    *,
    quick=True,
    only=None,
    resume=False,
    demo=True,
    timeout=None,
    argv=None,
    jobs: int | None = None,
) -> bool:
    """Run the experiments (``jobs`` processes at a time; default: 2, or 1 on one core), the demo, the
    report. Returns whether everything succeeded."""
    found, broken = discovery.discover()
    if only:
        unknown = [n for n in only if n not in found]
        if unknown:
            raise UsageError(
                f"--only: unknown experiment(s) {', '.join(unknown)}; available: {', '.join(found) or '(none)'}"
            )
        names = list(only)
    else:
        names = [n for n, path in found.items() if path.startswith("blojax.experiments.")]
    if jobs is None:
        jobs = min(2, os.cpu_count() or 1)
    if jobs < 1:
        raise UsageError(f"--jobs expects a positive integer, got {jobs}")
    mode = "quick" if quick else "full"
    fp = f"reproduce-{mode}"
    claim_folder(out, "reproduce", fp, "reproduce", {"mode": mode})
    out.mkdir(parents=True, exist_ok=True)
    marker = {
        "kind": "reproduce",
        "experiment": "reproduce",
        "fingerprint": fp,
        "config": {"mode": mode},
        "mode": mode,
        "experiments": names,
        "unusable": broken,
        "status": "running",
        "started": now(),
        "argv": argv,
        "runs": {},
        "jobs": jobs,
    }
    files.atomic_write_json(out / "reproduce.json", marker)
    # computations shared by the runs (blojax.runner.reuse): a reproduction starts with none
    store = out / REUSE_FOLDER
    if not resume and store.is_dir():
        shutil.rmtree(store)
    child = {reuse.ENV: str(store.resolve())}
    names = sorted(
        names, key=lambda n: (n not in START_FIRST, START_FIRST.index(n) if n in START_FIRST else 0)
    )
    lock = threading.Lock()
    t_start = time.perf_counter()
    _say(
        f"reproduce ({mode}): {len(names)} experiment(s), {jobs} at a time: {', '.join(names) or '(none)'}"
        + (f"; unusable: {', '.join(broken)}" if broken else "")
    )
    finished = [0]

    def prepare(name: str) -> bool:
        """False when a finished run is kept (``--resume``), else the folder is ready for a run."""
        folder = out / name
        prev = read_json(folder / "run.json")
        if resume and prev and prev.get("status") == "done" and (folder / "results.json").exists():
            with lock:
                finished[0] += 1
                marker["runs"][name] = {"status": "done", "seconds": prev.get("seconds"), "kept": True}
                _say(
                    f"[{finished[0]}/{len(names)}] {name}: done before ({prev.get('seconds', 0):.1f} s), kept"
                )
            return False
        if not resume and folder.is_dir():
            shutil.rmtree(folder)  # a previous reproduction of this experiment: start it afresh
        folder.mkdir(parents=True, exist_ok=True)
        return True

    def one(name: str) -> bool:
        if not prepare(name):
            return True
        folder = out / name
        cmd = [sys.executable, "-m", "blojax.runner.cli", "run", name, "--out", str(folder), "--quiet"]
        cmd += ["--quick"] if quick else []
        cmd += ["--resume"] if resume else []
        rc, seconds, cpu, text = _run_one(cmd, folder / "log.txt", timeout, child)
        return record(name, rc, seconds, cpu, text)

    def group(members: list[str]) -> bool:
        """``members`` one after another in one process (``run-group``): one start-up and import."""
        todo = [n for n in members if prepare(n)]
        if not todo:
            return True
        cmd = [sys.executable, "-m", "blojax.runner.cli", "run-group", "--out", str(out), *todo]
        cmd += ["--quick"] if quick else []
        cmd += ["--resume"] if resume else []
        rc, seconds, cpu, text = _run_one(
            cmd, out / f"group-{todo[0]}.log", timeout * len(todo) if timeout else None, child
        )
        with lock:  # the whole process: its start-up and imports too, which no member's own time includes
            marker.setdefault("shared_processes", []).append(
                {"experiments": todo, "wall_seconds": seconds, "cpu_seconds": cpu, "returncode": rc}
            )
        done = {}
        for line in text.splitlines():
            if line.startswith(GROUP_TAG):
                rec = json.loads(line[len(GROUP_TAG) :])
                done[rec["name"]] = rec
        oks = []
        for n in todo:
            rec = done.get(n)
            if rec is not None:
                oks.append(record(n, rec["rc"], rec["wall"], rec["cpu"], rec.get("last", ""), shared=True))
            else:  # the group process ended (killed, timed out) before this one reported
                log = out / n / ".log.txt.running"
                if log.exists():
                    os.replace(log, out / n / "log.txt")
                last = (
                    (out / n / "log.txt").read_text(errors="replace")
                    if (out / n / "log.txt").exists()
                    else text
                )
                oks.append(record(n, rc if rc != 0 else 1, 0.0, 0.0, last, shared=True))
        return all(oks)

    def record(name: str, rc: int, seconds: float, cpu: float, text: str, shared: bool = False) -> bool:
        folder = out / name
        run = read_json(folder / "run.json") or {}
        status = (
            run.get("status", "failed")
            if rc == 0
            else ("timed out" if rc == 124 else run.get("status", "failed"))
        )
        if rc != 0 and status in ("done", "running"):
            status = "failed"
        if rc != 0:
            last = [line for line in text.strip().splitlines() if line.strip()][-1:] or ["(no output)"]
            if run:
                run.setdefault("error", last[0])
                run["status"] = status
                files.atomic_write_json(folder / "run.json", run)
            else:
                files.atomic_write_json(
                    folder / "run.json",
                    {
                        "kind": "run",
                        "experiment": name,
                        "status": status,
                        "error": last[0],
                        "seconds": seconds,
                    },
                )
        with lock:
            finished[0] += 1
            marker["runs"][name] = {
                "status": status,
                "seconds": run.get("seconds"),
                "wall_seconds": seconds,
                "cpu_seconds": cpu,
                "shared_process": shared,
            }
            files.atomic_write_json(out / "reproduce.json", marker)
            _say(
                f"[{finished[0]}/{len(names)}] {name}: {status} in {seconds:.1f} s (CPU {cpu:.1f} s)"
                + ("" if rc == 0 else f" (see {folder / 'log.txt'})")
            )
        return rc == 0

    def run_demo() -> bool:
        d = out / "demo"
        rc, seconds, cpu, _ = _run_one([sys.executable, "-m", "blojax.demo"], d / "output.txt", timeout)
        files.atomic_write_json(
            d / "demo.json",
            {
                "status": "done" if rc == 0 else "failed",
                "seconds": seconds,
                "cpu_seconds": cpu,
                "returncode": rc,
            },
        )
        with lock:
            _say(f"demo: {'done' if rc == 0 else 'failed'} in {seconds:.1f} s (CPU {cpu:.1f} s)")
        return rc == 0

    groups = [[n for n in g if n in names] for g in QUICK_GROUPS] if quick else []
    groups = [g for g in groups if len(g) > 1]
    grouped = {n for g in groups for n in g}
    tasks = [functools.partial(group, g) for g in groups]
    tasks += [functools.partial(one, n) for n in names if n not in grouped]
    tasks += [run_demo] if demo else []
    _STOPPING.clear()
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=jobs)
    try:
        oks = [f.result() for f in [pool.submit(t) for t in tasks]]
    except BaseException:  # SIGINT / SIGTERM (or a bug): end the children, record it, pass it on
        _end_children()
        pool.shutdown(wait=True, cancel_futures=True)
        marker.update(status="interrupted", finished=now(), total_seconds=time.perf_counter() - t_start)
        files.atomic_write_json(out / "reproduce.json", marker)
        raise
    pool.shutdown(wait=True)
    ok = all(oks)
    total = time.perf_counter() - t_start
    cpu_total = sum(
        (r.get("cpu_seconds") or 0.0) for r in marker["runs"].values() if not r.get("shared_process")
    )
    cpu_total += sum(g["cpu_seconds"] for g in marker.get("shared_processes", []))
    cpu_total += (read_json(out / "demo" / "demo.json") or {}).get("cpu_seconds", 0.0) if demo else 0.0
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    marker.update(
        status="done" if ok else "failed",
        finished=now(),
        total_seconds=total,
        cpu_seconds=cpu_total,
        cpu_count=os.cpu_count(),
        load_average=load,
    )
    files.atomic_write_json(out / "reproduce.json", marker)
    html, md = write_report(out)
    _say(
        f"reproduce: total {total:.1f} s ({total / 60:.1f} min) wall, {cpu_total:.1f} s CPU, {jobs} job(s) on "
        f"{os.cpu_count()} core(s), load average {load:.1f}; wrote {html} and {md}"
    )
    return ok
