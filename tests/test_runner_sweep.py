"""Sweeps on the local backend: points that differ only in BATCH_FIELDS run as one vmapped computation
with results equal to separate runs; after an interruption, completed points are never recomputed.
(The Ray backend: tests/test_runner_ray.py, marked slow.)"""

import json

import numpy as np
import pytest

import exp_toy as toy
from blojax.runner import cli

TOY = "toy=exp_toy"
BASE = ["--checkpoint-every", "10", "--quiet"]


@pytest.fixture(autouse=True)
def _toy(monkeypatch):
    monkeypatch.setenv("BLOJAX_EXPERIMENTS", TOY)


def _numbers(d):
    return np.concatenate(
        [np.ravel(np.asarray(d[k], dtype=float)) for k in ("final_F", "min_F", "u_norm", "w_norm", "u", "w")]
    )


def test_vmapped_sweep_equals_separate_runs_and_resumes(tmp_path, monkeypatch, capsys):
    out = tmp_path / "sweep"
    argv = [
        "sweep",
        "toy",
        "--grid",
        "steps=20,30",
        "--grid",
        "lr=0.01,0.03",
        "--seeds",
        "0-1",
        *BASE,
        "--out",
        str(out),
    ]

    # interrupt the sweep during its second vmapped group
    calls = []
    real = toy.run_batch

    def interrupted(configs, ctx=None):
        calls.append([(c.steps, c.lr, c.seed) for c in configs])
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(configs, ctx)

    monkeypatch.setattr(toy, "run_batch", interrupted)
    assert cli.main(argv) == 130
    assert calls[0] == [
        (20, 0.01, 0),
        (20, 0.01, 1),
        (20, 0.03, 0),
        (20, 0.03, 1),
    ]  # one group of shared shapes
    done_before = {p.parent.name: p.stat().st_mtime_ns for p in (out / "points").glob("*/results.json")}
    assert len(done_before) == 4

    # rerun: only the 4 unfinished points are computed, in one vmapped batch
    calls.clear()
    monkeypatch.setattr(
        toy, "run_batch", lambda configs, ctx=None: calls.append(len(configs)) or real(configs, ctx)
    )
    assert cli.main(argv) == 0
    assert calls == [4]
    after = {p.parent.name: p.stat().st_mtime_ns for p in (out / "points").glob("*/results.json")}
    assert all(after[k] == v for k, v in done_before.items())
    table = json.loads((out / "results.json").read_text())["rows"]
    assert len(table) == 8 and all(r["status"] == "done" for r in table)
    csv = (out / "results.csv").read_text().splitlines()
    assert csv[0].startswith("point,steps,lr,seed,status,seconds,final_F") and len(csv) == 9

    # every point equals a separate `blojax run` of the same config
    for row in table:
        point = json.loads(next((out / "points").glob(f"{row['point']:04d}_*/results.json")).read_text())
        assert point["how"] == "vmapped batch of 4"
        single = tmp_path / f"single{row['point']}"
        assert (
            cli.main(
                [
                    "run",
                    "toy",
                    "--set",
                    f"steps={row['steps']}",
                    "--set",
                    f"lr={row['lr']}",
                    "--seed",
                    str(row["seed"]),
                    *BASE,
                    "--no-plots",
                    "--out",
                    str(single),
                ]
            )
            == 0
        )
        ref = json.loads((single / "results.json").read_text())["results"]
        np.testing.assert_allclose(_numbers(point["results"]), _numbers(ref), rtol=1e-12, atol=1e-14)
    # the grid really changed the results
    assert len({r["final_F"] for r in table}) == 8
