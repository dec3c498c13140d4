"""Kill/resume soak (``slow``; run in CI): SIGKILL at 5 random moments across 3 experiments (the toy
experiment and two paper experiments at quick settings), each resumed with ``--resume`` until done;
the resumed run's reported numbers and per-step metrics are byte-identical to an uninterrupted run's.

The moments are drawn uniformly over the uninterrupted run's wall time (start-up, compilation, any
chunk, any checkpoint write), from a seed printed with the result so a failure can be replayed:
``BLOJAX_SOAK_SEED=<seed> pytest -m slow tests/test_reliability_soak.py``.
"""

import json
import os
import pathlib
import random
import signal
import subprocess
import sys
import time

import pytest

pytestmark = pytest.mark.slow

TOY = "toy=exp_toy"
# (experiment, extra arguments, kills)
CASES = [
    ("toy", ["--set", "steps=300", "--set", "chunk_delay=0.02"], 2),
    ("hypergrad_field", ["--quick"], 2),
    ("antidistill", ["--quick"], 1),
]


def _cmd(name, extra, out, resume):
    return [
        sys.executable,
        "-m",
        "blojax.runner.cli",
        "run",
        name,
        *extra,
        "--checkpoint-every",
        "5",
        "--quiet",
        "--no-plots",
        "--out",
        str(out),
    ] + (["--resume"] if resume else [])


def _fingerprint_of_results(out: pathlib.Path):
    res = json.loads((out / "results.json").read_text())
    metrics = {p.name: p.read_bytes() for p in sorted((out / "metrics").glob("*"))}
    return json.dumps(res["results"], sort_keys=True).encode(), metrics


@pytest.mark.parametrize("name, extra, kills", CASES, ids=[c[0] for c in CASES])
def test_sigkill_at_random_moments_then_resume_is_byte_identical(tmp_path, name, extra, kills):
    seed = int(os.environ.get("BLOJAX_SOAK_SEED", random.randrange(10**6)))
    rng = random.Random(f"{seed}-{name}")
    env = dict(os.environ, BLOJAX_EXPERIMENTS=TOY)
    ref = tmp_path / "ref"
    t0 = time.monotonic()
    subprocess.run(_cmd(name, extra, ref, False), env=env, check=True, capture_output=True, timeout=900)
    wall = time.monotonic() - t0
    out = tmp_path / "killed"
    moments, resumed = [], 0
    while len(moments) < kills:
        at = rng.uniform(0.05, 0.95) * wall
        proc = subprocess.Popen(
            _cmd(name, extra, out, resume=out.exists()),
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        try:
            proc.wait(timeout=at)
            # it finished before the moment: start over so each kill lands inside a run
            assert proc.returncode == 0, proc.stderr.read().decode()[-2000:]
            for p in sorted(out.rglob("*"), reverse=True):
                p.rmdir() if p.is_dir() else p.unlink()
            continue
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)
        finally:
            proc.stderr.close()
        moments.append(round(at, 2))
    while True:  # resume until done (a resume is never killed)
        resumed += 1
        r = subprocess.run(_cmd(name, extra, out, True), env=env, capture_output=True, text=True, timeout=900)
        assert r.returncode == 0, r.stderr[-2000:]
        if json.loads((out / "run.json").read_text())["status"] == "done":
            break
    a_res, a_metrics = _fingerprint_of_results(ref)
    b_res, b_metrics = _fingerprint_of_results(out)
    print(f"{name}: seed {seed}, uninterrupted {wall:.1f} s, SIGKILL at {moments} s, {resumed} resume(s)")
    assert a_res == b_res
    assert a_metrics.keys() == b_metrics.keys() and a_metrics == b_metrics
    assert not list(out.rglob(".*.tmp"))
