"""Sweep speed: an N-point K sweep of the antidistillation experiment (E5) with ``blojax sweep`` on the
local backend, against N separate ``blojax run`` calls computing the same grid points.

    python benchmarks/sweep_speed.py                      # N = 32, all 32 separate runs timed
    python benchmarks/sweep_speed.py --separate-sample 6  # time 6 separate runs, extrapolate to N
    python benchmarks/sweep_speed.py --experiment toy     # the runner's test experiment (seed sweep)

Grid point i is ``--set ks=[K_i]`` with K_i = 1..N (antidistill, ``--quick``; its quick config skips
the MLP variant). Every command runs as its own process, as a user would type it; separate runs skip
the figures (``--no-plots``), as the sweep does. Timings are wall-clock seconds and include process
start, imports and compilation: that is what a user waits for. On a shared machine wall times are
inflated by other processes, so each command's own CPU time (from ``wait4``) is reported beside it.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import subprocess
import sys
import tempfile
import time


def _blojax(args, env):
    """Wall and CPU seconds (the child's own, from wait4: independent of other load) of one command."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-m", "blojax.runner.cli", *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env=env,
        text=True,
    )
    err = proc.stderr.read()
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - t0
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"blojax {' '.join(args)} failed:\n{err[-3000:]}")
    return seconds, usage.ru_utime + usage.ru_stime


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--experiment", default="antidistill", choices=["antidistill", "toy"])
    p.add_argument("-n", type=int, default=32, help="grid points")
    p.add_argument(
        "--separate-sample",
        type=int,
        default=None,
        metavar="M",
        help="time only M of the N separate runs (evenly spread) and extrapolate their mean to N",
    )
    p.add_argument("--json", default=None, help="also write the numbers to this file")
    args = p.parse_args(argv)

    env = dict(os.environ)
    if args.experiment == "toy":
        # the runner's test experiment lives in tests/exp_toy.py
        tests = str(pathlib.Path(__file__).resolve().parents[1] / "tests")
        env["PYTHONPATH"] = os.pathsep.join(p for p in (tests, env.get("PYTHONPATH", "")) if p)
        env["BLOJAX_EXPERIMENTS"] = "toy=exp_toy"
        points = [["--seed", str(i)] for i in range(args.n)]
        sweep_args = ["sweep", "toy", "--quick", "--seeds", f"0-{args.n - 1}"]
        base = ["run", "toy", "--quick"]
    else:
        points = [["--set", f"ks=[{k}]"] for k in range(1, args.n + 1)]
        sweep_args = [
            "sweep",
            "antidistill",
            "--quick",
            "--grid",
            "ks=" + ",".join(f"[{k}]" for k in range(1, args.n + 1)),
        ]
        base = ["run", "antidistill", "--quick"]

    m = args.separate_sample or args.n
    idx = sorted({round(i * (args.n - 1) / max(1, m - 1)) for i in range(m)})
    with tempfile.TemporaryDirectory() as tmp:
        tmp = pathlib.Path(tmp)
        print(
            f"{args.experiment}: {args.n}-point sweep; cpu_count={os.cpu_count()}, load average {os.getloadavg()[0]:.1f}",
            flush=True,
        )
        t_sweep, c_sweep = _blojax([*sweep_args, "--quiet", "--out", str(tmp / "sweep")], env)
        rows = json.loads((tmp / "sweep" / "results.json").read_text())["rows"]
        assert len(rows) == args.n and all(r["status"] == "done" for r in rows), "sweep incomplete"
        print(
            f"  blojax sweep (local backend): {t_sweep:8.1f} s wall, {c_sweep:7.1f} s CPU for {args.n} points",
            flush=True,
        )
        times, cpus = [], []
        for i in idx:
            t, c = _blojax([*base, *points[i], "--quiet", "--no-plots", "--out", str(tmp / f"run{i}")], env)
            times.append(t)
            cpus.append(c)
            print(f"  blojax run {' '.join(points[i])}: {t:6.1f} s wall, {c:6.1f} s CPU", flush=True)
    mean, mean_cpu = sum(times) / len(times), sum(cpus) / len(cpus)
    total, total_cpu = mean * args.n, mean_cpu * args.n
    how = "measured" if len(times) == args.n else f"extrapolated from {len(times)} timed runs"
    print(f"  {args.n} separate blojax run calls: {total:8.1f} s wall, {total_cpu:7.1f} s CPU ({how})")
    print(
        f"  speed-up: {total / t_sweep:.1f}x wall, {total_cpu / c_sweep:.1f}x CPU   (load average now {os.getloadavg()[0]:.1f})"
    )
    if args.json:
        pathlib.Path(args.json).write_text(
            json.dumps(
                {
                    "experiment": args.experiment,
                    "n": args.n,
                    "sweep_seconds": t_sweep,
                    "sweep_cpu_seconds": c_sweep,
                    "separate_seconds": times,
                    "separate_cpu_seconds": cpus,
                    "separate_total": total,
                    "separate_total_cpu": total_cpu,
                    "separate_how": how,
                    "speedup": total / t_sweep,
                    "speedup_cpu": total_cpu / c_sweep,
                    "cpu_count": os.cpu_count(),
                },
                indent=2,
            )
            + "\n"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
