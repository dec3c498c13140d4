"""Computations shared by the runs of a reproduction (blojax.runner.reuse, ``ctx.reuse``)."""

from __future__ import annotations

import dataclasses
import json
import os
import pickle
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

import exp_reuse  # tests/ is on sys.path (conftest.py)

from blojax.data import download
from blojax.experiments import common
from blojax.runner import reuse
from blojax.runner.context import Context


@dataclasses.dataclass(frozen=True)
class Cfg:
    n: int = 3
    seed: int = 0


def _counting():
    calls = []

    def compute():
        calls.append(1)
        return {"value": np.arange(len(calls) + 2.0)}

    return calls, compute


def test_store_computes_once_and_loads_after(tmp_path):
    store = reuse.Store(tmp_path)
    calls, compute = _counting()
    first, reused1 = store.get_or_compute("x", Cfg(), compute, who="a")
    again, reused2 = store.get_or_compute("x", Cfg(), compute, who="b")
    assert (reused1, reused2) == (False, True) and len(calls) == 1
    np.testing.assert_array_equal(again["value"], first["value"])
    assert again["computed_by"] == "a" and again["seconds"] >= 0
    # another config, or another name, is another computation
    store.get_or_compute("x", Cfg(seed=1), compute)
    store.get_or_compute("y", Cfg(), compute)
    assert len(calls) == 3
    assert not list(tmp_path.glob("*.lock"))


def test_key_covers_name_config_and_float64():
    import jax

    k = reuse.computation_key("x", Cfg())
    assert k == reuse.computation_key("x", Cfg())
    assert k != reuse.computation_key("x", Cfg(n=4)) != reuse.computation_key("y", Cfg())
    with jax.enable_x64(True):
        assert reuse.computation_key("x", Cfg()) != k


def test_a_stale_lock_is_taken_over_and_a_bad_entry_recomputed(tmp_path):
    store = reuse.Store(tmp_path)
    path = store._entry("x", Cfg())
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    path.with_name(path.name + ".lock").write_text(str(dead.pid))
    calls, compute = _counting()
    _, reused1 = store.get_or_compute("x", Cfg(), compute)
    assert not reused1 and len(calls) == 1
    path.write_bytes(b"not a pickle")
    _, reused2 = store.get_or_compute("x", Cfg(), compute)
    assert not reused2 and len(calls) == 2
    path.write_bytes(pickle.dumps({"format": -1, "value": 0}))  # another format: not trusted
    _, reused3 = store.get_or_compute("x", Cfg(), compute)
    assert not reused3 and len(calls) == 3
    # a lock left by this very process (an earlier run of a shared process) is a leftover, not a wait
    path.unlink()
    path.with_name(path.name + ".lock").write_text(str(os.getpid()))
    _, reused4 = store.get_or_compute("x", Cfg(), compute)
    assert not reused4 and len(calls) == 4


def test_a_live_lock_is_waited_for(tmp_path):
    """While another live process holds the lock, the value it leaves is loaded, not recomputed."""
    store = reuse.Store(tmp_path, poll=0.05)
    path = store._entry("x", Cfg())
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        path.with_name(path.name + ".lock").write_text(str(holder.pid))

        def finish():
            time.sleep(0.5)
            path.write_bytes(pickle.dumps({"format": 1, "value": "theirs", "seconds": 1.0}))

        t = threading.Thread(target=finish)
        t.start()
        calls, compute = _counting()
        entry, reused_ = store.get_or_compute("x", Cfg(), compute)
        t.join()
    finally:
        holder.kill()
        holder.wait()
    assert reused_ and entry["value"] == "theirs" and not calls


def test_in_memory_context_always_computes():
    ctx = common.ensure_context(None)
    calls, compute = _counting()
    ctx.reuse("x", Cfg(), lambda: compute()["value"])
    ctx.reuse("x", Cfg(), lambda: compute()["value"])
    assert len(calls) == 2
    ctx2 = Context(progress=False)  # the runner's context without a store: the same
    ctx2.reuse("x", Cfg(), lambda: compute()["value"])
    assert len(calls) == 3 and ctx2.reused == []


def test_runner_context_loads_value_histories_and_data_files(tmp_path):
    cfg = Cfg(n=4)
    download.reset_files_used()
    first = Context(progress=False, reuse_dir=tmp_path, fingerprint="run-a")
    v1 = first.reuse("toy.work", cfg, lambda: exp_reuse._work(first, cfg.n))
    assert first.reused == [] and "scan-loop" in first.histories
    assert [e["dataset"] for e in download.files_used()] == ["toydata"]

    download.reset_files_used()
    second = Context(progress=False, reuse_dir=tmp_path, fingerprint="run-b")
    ran = []
    v2 = second.reuse("toy.work", cfg, lambda: ran.append(1) or exp_reuse._work(second, cfg.n))
    assert not ran and v2 == v1
    assert [e["dataset"] for e in download.files_used()] == ["toydata"]
    np.testing.assert_array_equal(
        second.histories["scan-loop"]["history"], first.histories["scan-loop"]["history"]
    )
    (rec,) = second.reused
    assert rec["name"] == "toy.work" and rec["computed_by"] == "run-a"
    download.reset_files_used()


def test_run_json_lists_what_was_reused(tmp_path, monkeypatch):
    """Two runs of one experiment in a 'reproduction' (the store's environment variable set): the
    second loads the computation, writes the same results and metrics, and says so in run.json."""
    from blojax.runner import rundir

    monkeypatch.setenv(reuse.ENV, str(tmp_path / "store"))
    cfg = exp_reuse.Config(n=5)
    rundir.execute(exp_reuse, "reuse_fixture", cfg, tmp_path / "a", progress=False, plots=False)
    rundir.execute(exp_reuse, "reuse_fixture", cfg, tmp_path / "b", progress=False, plots=False)
    a, b = (json.loads((tmp_path / d / "run.json").read_text()) for d in ("a", "b"))
    assert "reused" not in a and [r["name"] for r in b["reused"]] == ["exp_reuse.work"]
    ra, rb = (json.loads((tmp_path / d / "results.json").read_text()) for d in ("a", "b"))
    assert ra["results"] == rb["results"] and ra["data"] == rb["data"] != []
    assert ra["metrics"] == rb["metrics"] != []


@pytest.mark.parametrize("quick", [True, False])
def test_the_image_experiments_share_their_defaults(quick):
    """The reuse wiring only pays when the configs coincide: distill_table's 1-sample run is
    canvas_distill's, and table3's runs on the experiments' own dataset are theirs (quick and full)."""
    from blojax.experiments import augment_net, canvas_distill, distill_table, table3

    D, A, C = distill_table.Config, augment_net.Config, canvas_distill.Config
    if quick:
        d, a = table3._configs(table3.Config.quick(), "digits")
        assert d == D.quick() and a == A.quick() and D.quick().for_size(1) == C.quick()
    else:
        d, a = table3._configs(table3.Config(), "fashion_mnist")
        assert d == D() and a == A() and D().for_size(1) == C()
