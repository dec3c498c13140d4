"""Smoke tests: the benchmark scripts start and produce sane rows on tiny sizes.

The benchmarks themselves (timings) are not part of the test run: ``make bench`` and
``make bench-peers``. These tests only check that the scripts run end to end and that the counted work
they report follows the documented formulas.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "benchmarks"


def test_hypergrad_cost_quick(tmp_path):
    out = tmp_path / "hc.json"
    res = subprocess.run(
        [
            sys.executable,
            str(BENCH / "hypergrad_cost.py"),
            "--quick",
            "--no-mlp",
            "--methods",
            "CG(20)",
            "Unroll(20)",
            "Identity",
            "--json",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert res.returncode == 0, res.stderr[-2000:]
    data = json.loads(out.read_text())
    rows = {r["method"]: r for r in data["rows"]}
    assert set(rows) == {"CG(20)", "Unroll(20)", "Identity"}
    # Counted work as blojax.hypergradient reports it (documented in the script's docstring).
    assert (rows["CG(20)"]["grads"], rows["CG(20)"]["hvps"]) == (2, 21)
    # Unroll(K): K forward steps (+ K recomputed ones when rematerialized, the CPU default), grad F,
    # the reported stationarity; one reverse product per step.
    import blojax as blo

    import jax.numpy as jnp

    k_fwd = 40 if blo.Unroll(20).uses_remat(jnp.zeros(20)) else 20  # ridge d=20 in --quick
    assert (rows["Unroll(20)"]["grads"], rows["Unroll(20)"]["hvps"]) == (k_fwd + 2, 20)
    assert (rows["Identity"]["grads"], rows["Identity"]["hvps"]) == (2, 2)
    for r in rows.values():
        assert r["time"] > 0 and r["floor"] > 0 and math.isfinite(r["ratio"])
    assert "measured / floor" in res.stdout


def test_hypergrad_cost_solve_table_quick(tmp_path):
    """The transform table: grad through solve with throw=True and throw=False, timed with synchronous
    CPU dispatch (the default of the script); both gradients equal the direct hypergradient."""
    out = tmp_path / "solve.json"
    res = subprocess.run(
        [
            sys.executable,
            str(BENCH / "hypergrad_cost.py"),
            "--quick",
            "--no-mlp",
            "--solve-only",
            "--methods",
            "CG(20)",
            "Unroll(20)",
            "--json",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert res.returncode == 0, res.stderr[-2000:]
    data = json.loads(out.read_text())
    assert data["machine"]["cpu_async_dispatch"] is False
    rows = {r["method"]: r for r in data["solve_rows"]}
    assert set(rows) == {"CG(20)", "Unroll(20)"}
    eps32 = 2.0**-23
    for r in rows.values():
        assert r["solve"] > 0 and r["solve_nothrow"] > 0 and r["direct"] > 0 and r["floor"] > 0
        assert math.isclose(r["nothrow_vs_throw"], r["solve_nothrow"] / r["solve"])
        assert r["rel_diff"] <= 64 * eps32, r
    assert "throw=False / True" in res.stdout


def test_solve_dispatch_quick():
    res = subprocess.run(
        [sys.executable, str(BENCH / "solve_dispatch.py"), "--repeats", "2", "--d", "10"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert res.returncode == 0, res.stderr[-2000:]
    assert "JAX CPU async dispatch: False" in res.stdout
    lines = [ln for ln in res.stdout.splitlines() if ln.startswith("| ") and "ms" in ln]
    assert [ln.split(" | ")[0][2:] for ln in lines] == ["Unroll(20)", "CG(20)", "Identity"]
    assert all(float(ln.rstrip(" |").split(" | ")[-1]) > 0 for ln in lines)


def test_peers_harness_blojax_only(tmp_path):
    """The peer runner starts without the peer libraries (they live in .bench-venv): blojax rows only."""
    out = tmp_path / "peers.json"
    res = subprocess.run(
        [
            sys.executable,
            str(BENCH / "peers" / "run.py"),
            "--quick",
            "--problems",
            "1",
            "2",
            "3",
            "--libs",
            "--json",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert res.returncode == 0, res.stderr[-2000:]
    rows = [r for r in json.loads(out.read_text())["rows"] if r["task"] != "(units)"]
    p1 = [r for r in rows if r["problem"].startswith("1")]
    assert {r["library"] for r in p1} == {"blojax", "blojax grad(solve)"}
    assert len(p1) == 8 and all(r["status"] == "ok" for r in p1), p1
    # jax.grad through blojax.solve: the same hypergradient as the direct row, and its ratios
    solve = [r for r in p1 if r["library"] == "blojax grad(solve)"]
    assert all(r["rel_err"] < 1e-6 and r["solve_over_direct"] > 0 and r["over_floor"] > 0 for r in solve)
    assert "worst grad(solve) / direct" in res.stdout
    ours = [r for r in rows if r["library"] == "blojax"]
    assert len(ours) == 6 and all(r["over_floor"] > 0 and r["time"] > 0 for r in ours), ours
    # problem 2's reference row (plain JAX) is compared with blojax: same iterates, a bound column
    ref = next(r for r in rows if r["library"].startswith("plain JAX"))
    assert ref["rel_err"] < 1e-5 and ref["peer_over_floor"] > 0
    assert "peer / blojax floor" in res.stdout and "unit prices:" in res.stdout


def test_peers_harness_refuses_cuda_without_a_gpu():
    res = subprocess.run(
        [
            sys.executable,
            str(BENCH / "peers" / "run.py"),
            "--quick",
            "--problems",
            "1",
            "--libs",
            "--device",
            "cuda",
        ],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "JAX_PLATFORMS": "cpu"},
    )
    assert res.returncode == 2 and "--device cuda: JAX sees no GPU" in res.stderr
