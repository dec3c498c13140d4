"""The Ray backend on a local cluster with 2 CPUs: grid points as Ray tasks, one results table, equal
to the local backend. Needs the optional extra (``pip install 'blojax[ray]'``); slow (cluster start)."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

pytest.importorskip("ray")
pytestmark = pytest.mark.slow

TOY = "toy=exp_toy"


def _blojax(*args, timeout=600):
    env = dict(os.environ, BLOJAX_EXPERIMENTS=TOY, RAY_AUTH_MODE="disabled")
    return subprocess.run(
        [sys.executable, "-m", "blojax.runner.cli", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
    )


def test_ray_sweep_matches_local(tmp_path):
    grid = ["--grid", "lr=0.01,0.03", "--seeds", "0-1", "--set", "steps=40", "--quiet"]
    ray_out, local_out = tmp_path / "ray", tmp_path / "local"
    proc = _blojax("sweep", "toy", *grid, "--backend", "ray", "--ray-cpus", "2", "--out", str(ray_out))
    assert proc.returncode == 0, proc.stderr[-3000:]
    proc = _blojax("sweep", "toy", *grid, "--out", str(local_out))
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows_ray = json.loads((ray_out / "results.json").read_text())["rows"]
    rows_local = json.loads((local_out / "results.json").read_text())["rows"]
    assert len(rows_ray) == len(rows_local) == 4
    for a, b in zip(rows_ray, rows_local):
        assert (a["lr"], a["seed"], a["status"]) == (b["lr"], b["seed"], "done")
        np.testing.assert_allclose(
            [a[k] for k in ("final_F", "u_norm", "w_norm")],
            [b[k] for k in ("final_F", "u_norm", "w_norm")],
            rtol=1e-12,
        )
    hosts = {json.loads(p.read_text())["pid"] for p in (ray_out / "points").glob("*/results.json")}
    assert len(hosts) >= 1  # ran in Ray worker processes
    # a rerun finds every point done and computes nothing
    before = {p: p.stat().st_mtime_ns for p in (ray_out / "points").glob("*/results.json")}
    proc = _blojax("sweep", "toy", *grid[:-1], "--backend", "ray", "--ray-cpus", "2", "--out", str(ray_out))
    assert proc.returncode == 0 and "4 already done, 0 to run" in proc.stderr
    assert {p: p.stat().st_mtime_ns for p in (ray_out / "points").glob("*/results.json")} == before


def test_unreachable_ray_address_is_one_line(tmp_path):
    proc = _blojax(
        "sweep",
        "toy",
        "--seeds",
        "0-1",
        "--backend",
        "ray",
        "--address",
        "127.0.0.1:9",
        "--out",
        str(tmp_path),
        timeout=120,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().startswith("blojax: error: cannot reach a Ray cluster at 127.0.0.1:9")
    assert len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in proc.stderr
