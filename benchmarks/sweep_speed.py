"""Sweep speed: an N-point K sweep of the antidistillation experiment (E5) with ``blojax sweep`` on the
local backend, against N separate ``blojax run`` calls computing the same grid points.

    python benchmarks/sweep_speed.py                      # N = 32, all 32 separate runs timed
    python benchmarks/sweep_speed.py --separate-sample 6  # time 6 separate runs, extrapolate to N
    python benchmarks/sweep_speed.py --experiment toy     # the runner's test experiment (seed sweep)

Grid point i is ``--set ks=[K_i]`` with K_i = 1..N (antidistill, ``--quick``; its quick config skips
the MLP variant). Every command runs as its own process, as a user would type it; separate runs skip
the figures (``--no-plots``), as the sweep does. Timings are wall-clock seconds and include process
start, imports and compilation: that is what a user waits for. On a shared machine they are inflated
by other processes; the ratio is what matters (both sides measured back to back).
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
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "blojax.runner.cli", *args], capture_output=True, text=True, env=env)
    seconds = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"blojax {' '.join(args)} failed:\n{proc.stderr[-3000:]}")
    return seconds


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--experiment", default="antidistill", choices=["antidistill", "toy"])
    p.add_argument("-n", type=int, default=32, help="grid points")
    p.add_argument("--separate-sample", type=int, default=None, metavar="M",
                   help="time only M of the N separate runs (evenly spread) and extrapolate their mean to N")
    p.add_argument("--json", default=None, help="also write the numbers to this file")
    args = p.parse_args(argv)

    env = dict(os.environ)
    if args.experiment == "toy":
        env["BLOJAX_EXPERIMENTS"] = "toy=blojax.runner.toy"
        points = [["--seed", str(i)] for i in range(args.n)]
        sweep_args = ["sweep", "toy", "--quick", "--seeds", f"0-{args.n - 1}"]
        base = ["run", "toy", "--quick"]
    else:
        points = [["--set", f"ks=[{k}]"] for k in range(1, args.n + 1)]
        sweep_args = ["sweep", "antidistill", "--quick", "--grid", "ks=" + ",".join(f"[{k}]" for k in range(1, args.n + 1))]
        base = ["run", "antidistill", "--quick"]

    m = args.separate_sample or args.n
    idx = sorted({round(i * (args.n - 1) / max(1, m - 1)) for i in range(m)})
    with tempfile.TemporaryDirectory() as tmp:
        tmp = pathlib.Path(tmp)
        print(f"{args.experiment}: {args.n}-point sweep; cpu_count={os.cpu_count()}, load average {os.getloadavg()[0]:.1f}", flush=True)
        t_sweep = _blojax([*sweep_args, "--quiet", "--out", str(tmp / "sweep")], env)
        rows = json.loads((tmp / "sweep" / "results.json").read_text())["rows"]
        assert len(rows) == args.n and all(r["status"] == "done" for r in rows), "sweep incomplete"
        print(f"  blojax sweep (local backend): {t_sweep:8.1f} s for {args.n} points", flush=True)
        times = []
        for i in idx:
            t = _blojax([*base, *points[i], "--quiet", "--no-plots", "--out", str(tmp / f"run{i}")], env)
            times.append(t)
            print(f"  blojax run {' '.join(points[i])}: {t:6.1f} s", flush=True)
    mean = sum(times) / len(times)
    total = mean * args.n
    how = "measured" if len(times) == args.n else f"extrapolated from {len(times)} timed runs (mean {mean:.1f} s)"
    print(f"  {args.n} separate blojax run calls: {total:8.1f} s ({how})")
    print(f"  speed-up: {total / t_sweep:.1f}x   (load average now {os.getloadavg()[0]:.1f})")
    if args.json:
        pathlib.Path(args.json).write_text(json.dumps({
            "experiment": args.experiment, "n": args.n, "sweep_seconds": t_sweep, "separate_seconds": times,
            "separate_total": total, "separate_how": how, "speedup": total / t_sweep, "cpu_count": os.cpu_count(),
        }, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
