"""Checkpoint/resume: a run killed with SIGKILL mid-way (twice), then resumed, ends bit-identical to an
uninterrupted run with the same seed: final state, per-step metrics and every reported number."""

import json
import os
import pickle
import random
import signal
import subprocess
import sys
import time

import jax.numpy as jnp
import numpy as np
import pytest

from blojax.runner.context import CheckpointError, Context
from blojax.runner import cli

TOY = "toy=exp_toy"
ARGS = [
    "run",
    "toy",
    "--set",
    "steps=300",
    "--set",
    "chunk_delay=0.05",
    "--checkpoint-every",
    "10",
    "--quiet",
    "--no-plots",
]


@pytest.fixture(autouse=True)
def _toy(monkeypatch):
    monkeypatch.setenv("BLOJAX_EXPERIMENTS", TOY)


def _done(ckpt):
    try:
        with open(ckpt, "rb") as fh:
            return int(pickle.load(fh)["done"])
    except (OSError, EOFError, pickle.UnpicklingError, KeyError):
        return 0


def _kill_when(out, at_least, env, resume, timeout=240, jitter=0.0):
    cmd = [sys.executable, "-m", "blojax.runner.cli", *ARGS, "--out", str(out)] + (
        ["--resume"] if resume else []
    )
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    ckpt = out / "checkpoints" / "scan-toy.pkl"
    t0 = time.monotonic()
    try:
        while _done(ckpt) < at_least:
            if proc.poll() is not None:
                pytest.fail(f"run ended before it could be killed: {proc.stderr.read().decode()[-2000:]}")
            if time.monotonic() - t0 > timeout:
                pytest.fail("run made no progress")
            time.sleep(0.01)
        time.sleep(jitter)  # anywhere in the next chunk: while computing, sleeping or writing its checkpoint
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == -signal.SIGKILL
    done = _done(ckpt)
    assert at_least <= done < 300
    return done


def _state(out):
    with open(out / "checkpoints" / "scan-toy.pkl", "rb") as fh:
        return pickle.load(fh)


def test_sigkill_then_resume_is_bit_identical(tmp_path, capsys):
    ref, run = tmp_path / "ref", tmp_path / "killed"
    env = dict(
        os.environ,
        BLOJAX_EXPERIMENTS=TOY,
        JAX_COMPILATION_CACHE_DIR=str(tmp_path / "jax-cache"),
        JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0",
        JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES="0",
    )
    first = _kill_when(run, 60, env, resume=False)
    second = _kill_when(run, first + 60, env, resume=True, jitter=random.Random(0).uniform(0.0, 0.06))
    assert json.loads((run / "run.json").read_text())["status"] == "running"  # killed: never finished
    assert cli.main([*ARGS, "--out", str(run), "--resume"]) == 0
    assert json.loads((run / "run.json").read_text())["resumed"] is True
    assert cli.main([*ARGS, "--out", str(ref)]) == 0  # uninterrupted, same seed

    a, b = _state(ref), _state(run)
    assert a["done"] == b["done"] == 300
    assert (
        a["fingerprint"] == b["fingerprint"] and a["data"] == b["data"] == []
    )  # the same run, no data files
    leaves_a, leaves_b = (__import__("jax").tree_util.tree_leaves((x["carry"], x["history"])) for x in (a, b))
    assert len(leaves_a) == len(leaves_b) > 5
    for x, y in zip(leaves_a, leaves_b):
        x, y = np.asarray(x), np.asarray(y)
        assert x.dtype == y.dtype and x.shape == y.shape
        assert np.array_equal(x, y, equal_nan=True) and x.tobytes() == y.tobytes()  # bit-identical
    ra, rb = (json.loads((p / "results.json").read_text()) for p in (ref, run))
    assert ra["results"] == rb["results"] and ra["config"] == rb["config"]
    assert (ref / "metrics" / "toy.csv").read_bytes() == (run / "metrics" / "toy.csv").read_bytes()
    assert not list(run.rglob(".*.tmp"))
    print(f"killed at {first} and {second} of 300 steps")


# ------------------------------------------------------------------------------------ Context
def test_context_keys_checks_and_stage(tmp_path):
    def chunk(c, n):
        return c + n, jnp.arange(n) + c

    ctx = Context(checkpoint_dir=tmp_path, checkpoint_every=3)
    c1, h1 = ctx.scan(chunk, 0, 10, key="k")
    c2, h2 = ctx.scan(chunk, 100, 4, key="k")  # same key again: its own checkpoint "k#2"
    assert int(c1) == 10 and np.array_equal(h1, np.arange(10)) and int(c2) == 104
    assert sorted(p.name for p in tmp_path.glob("*.pkl")) == ["scan-k.pkl", "scan-k_2.pkl"]
    assert set(ctx.histories) == {"scan-k", "scan-k#2"}
    # resume: everything loaded, nothing recomputed
    calls = []
    again = Context(checkpoint_dir=tmp_path, checkpoint_every=3, resume=True)
    r1 = again.scan(lambda c, n: calls.append(n) or chunk(c, n), 0, 10, key="k")
    assert calls == [] and int(r1[0]) == 10
    # a checkpoint of another length is refused, not silently mixed in
    with pytest.raises(CheckpointError, match="is for 4 steps in chunks of 3"):
        again.scan(chunk, 100, 5, key="k")
    st = Context(checkpoint_dir=tmp_path, resume=True)
    assert float(st.stage("s", lambda: jnp.float32(2.5))) == 2.5
    assert float(Context(checkpoint_dir=tmp_path, resume=True).stage("s", lambda: 1 / 0)) == 2.5
    with pytest.raises(ValueError, match="checkpoint_every must be a positive integer"):
        Context(checkpoint_every=0)
