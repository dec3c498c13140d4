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


def _compilations(folder):
    return json.loads((folder / "run.json").read_text())["compilations"]


def test_second_run_compiles_nothing(tmp_path):
    """Every program of a run is stored in the persistent cache, so a second process compiles none:
    no program holds a host callback (which JAX never stores; the experiments call the library with
    throw=False inside compiled code, toolkit NaN policy). hypergrad_field's programs held a
    throw=True hypergradient before."""
    env = dict(os.environ, BLOJAX_JAX_CACHE=str(tmp_path / "cache"))
    runs = []
    for name in ("a", "b"):
        _cli(
            ["run", "hypergrad_field", "--quick", "--quiet", "--no-plots", "--out", str(tmp_path / name)],
            env,
            600,
        )
        runs.append(_compilations(tmp_path / name))
    assert runs[0]["compiled"] > 0
    assert runs[1] == {"compiled": 0, "from_cache": runs[0]["compiled"] + runs[0]["from_cache"]}
    a, b = (json.loads((tmp_path / n / "results.json").read_text())["results"] for n in "ab")
    assert json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)


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


@pytest.mark.slow
@pytest.mark.parametrize("index", [0, 1])
def test_second_reproduction_compiles_nothing(tmp_path, index):
    """Each group of the quick reproduction run twice on one cache folder: the second run of every
    member compiles no program (all of them come from JAX's persistent cache)."""
    from blojax.runner.reproduce import QUICK_GROUPS
    from blojax.runner.reuse import ENV

    members = QUICK_GROUPS[index]
    env = dict(os.environ, BLOJAX_JAX_CACHE=str(tmp_path / "cache"))
    env.pop(ENV, None)
    for out in ("first", "second"):
        _cli(["run-group", "--out", str(tmp_path / out), "--quick", *members], env, 1800)
    for name in members:
        assert _compilations(tmp_path / "second" / name)["compiled"] == 0, name
