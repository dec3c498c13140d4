"""The persistent compilation cache and the shared process of ``blojax reproduce`` change times only,
never numbers: a run with a warm cache, and experiments run one after another in one process
(``run-group``), report exactly what a fresh process with no cache reports."""

import json
import os
import subprocess
import sys

import pytest

from blojax.runner import jaxcache


def _run(out, cache, *extra):
    env = dict(os.environ, BLOJAX_EXPERIMENTS="toy=exp_toy", BLOJAX_JAX_CACHE=str(cache))
    subprocess.run(
        [
            sys.executable,
            "-m",
            "blojax.runner.cli",
            "run",
            "toy",
            "--quick",
            "--set",
            "steps=40",
            "--quiet",
            "--no-plots",
            "--out",
            str(out),
            *extra,
        ],
        env=env,
        check=True,
        capture_output=True,
        timeout=600,
    )
    return json.loads((out / "results.json").read_text())["results"]


def test_warm_cache_gives_the_same_numbers(tmp_path):
    cache = tmp_path / "jax-cache"
    cold = _run(tmp_path / "a", cache)
    assert cache.is_dir() and len(list(cache.iterdir())) > 0  # compiled programs were stored
    warm = _run(tmp_path / "b", cache)
    off = _run(tmp_path / "c", "off")
    assert (
        json.dumps(cold, sort_keys=True)
        == json.dumps(warm, sort_keys=True)
        == json.dumps(off, sort_keys=True)
    )


def test_cache_folder_choice(monkeypatch, tmp_path):
    monkeypatch.setenv("BLOJAX_JAX_CACHE", "off")
    assert jaxcache.cache_dir() is None and "JAX_COMPILATION_CACHE_DIR" not in jaxcache.child_env({})
    monkeypatch.setenv("BLOJAX_JAX_CACHE", str(tmp_path / "c"))
    assert jaxcache.cache_dir() == tmp_path / "c"
    assert jaxcache.child_env({})["JAX_COMPILATION_CACHE_DIR"] == str(tmp_path / "c")
    monkeypatch.delenv("BLOJAX_JAX_CACHE")
    monkeypatch.setenv("BLOJAX_CACHE", str(tmp_path / "d"))
    assert jaxcache.cache_dir() == tmp_path / "d" / "jax"


def _cli(args, env, timeout):
    subprocess.run(
        [sys.executable, "-m", "blojax.runner.cli", *args],
        env=env,
        check=True,
        capture_output=True,
        timeout=timeout,
    )


@pytest.mark.slow
@pytest.mark.parametrize("index", [0, 1])
def test_shared_process_gives_the_numbers_of_separate_processes(tmp_path, index):
    """Each group of the quick reproduction in one process (as ``make reproduce`` runs it, with its
    shared computations, blojax.runner.reuse) vs each experiment in its own process with nothing
    shared: identical results.json numbers."""
    from blojax.runner.reproduce import QUICK_GROUPS
    from blojax.runner.reuse import ENV

    members = QUICK_GROUPS[index]
    env = dict(os.environ, BLOJAX_JAX_CACHE="off")
    env.pop(ENV, None)
    group = tmp_path / "group"
    _cli(
        ["run-group", "--out", str(group), "--quick", *members],
        dict(env, **{ENV: str(tmp_path / "store")}),
        1800,
    )
    for name in members:
        alone = tmp_path / name
        _cli(["run", name, "--quick", "--quiet", "--no-plots", "--out", str(alone)], env, 900)
        a = json.loads((group / name / "results.json").read_text())["results"]
        b = json.loads((alone / "results.json").read_text())["results"]
        assert json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True), name
