"""The one chunked loop (:mod:`blojax.progress`) behind ``ColdStart/WarmStart.run(progress=True)``,
the experiments' in-memory context and the runner's checkpointing context."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import blojax as blo
from blojax.experiments import common
from blojax.progress import chunk_size, scan_in_chunks
from blojax.runner.context import Context


def _counter(carry, n, start):
    """``n`` steps of ``c -> c + 1`` recording ``start + i`` and the carry (exact integers)."""
    steps = jnp.arange(start, start + n)
    return carry + n, {"step": steps, "carry": carry + jnp.arange(1, n + 1)}


@pytest.mark.parametrize("steps, size", [(1, 1), (7, 3), (20, 7), (20, 20), (5, 100)])
def test_chunks_concatenate_to_the_whole_loop(steps, size):
    calls = []

    def chunk(c, n, start):
        calls.append((start, n))
        return _counter(c, n, start)

    carry, hist = scan_in_chunks(chunk, jnp.int32(0), steps, size=size, progress=False)
    assert int(carry) == steps
    np.testing.assert_array_equal(hist["step"], np.arange(steps))
    np.testing.assert_array_equal(hist["carry"], np.arange(1, steps + 1))
    assert isinstance(hist["step"], np.ndarray)
    # chunk boundaries depend only on steps and size
    assert [s for s, _ in calls] == list(range(0, steps, size))
    assert sum(n for _, n in calls) == steps and all(n <= size for _, n in calls)


def test_resume_from_a_chunk_boundary_gives_the_same_history():
    whole = scan_in_chunks(_counter, jnp.int32(0), 10, size=3, progress=False)
    seen = []
    first = scan_in_chunks(
        _counter, jnp.int32(0), 6, size=3, progress=False, after_chunk=lambda c, h, d: seen.append(d)
    )
    assert seen == [3, 6]
    again = scan_in_chunks(_counter, first[0], 10, size=3, progress=False, done=6, history=first[1])
    assert int(again[0]) == int(whole[0])
    for k in whole[1]:
        np.testing.assert_array_equal(again[1][k], whole[1][k])


def test_history_axis_one_for_vmapped_loops():
    def chunk(c, n, start):
        return c + n, jnp.broadcast_to(jnp.arange(start, start + n), (2, n))

    _, hist = scan_in_chunks(chunk, 0, 5, size=2, progress=True, history_axis=1)
    np.testing.assert_array_equal(hist, np.tile(np.arange(5), (2, 1)))


def test_chunk_size():
    assert [chunk_size(s, c) for s, c in [(100, 20), (101, 20), (3, 20), (1, 1), (0, 5)]] == [5, 6, 1, 1, 1]


def _algo():
    X = jnp.asarray(np.random.default_rng(0).standard_normal((4, 3)), jnp.float32)
    problem = blo.Problem(
        lambda u, w: 0.5 * jnp.sum((X @ w - u) ** 2), lambda u, w: 0.5 * jnp.sum(w**2) + jnp.sum(u)
    )
    algo = blo.WarmStart(problem, blo.InnerLoop(optax.sgd(0.05), steps=5), blo.CG(3), optax.sgd(0.05))
    return algo, algo.init(jnp.zeros(4), jnp.zeros(3))


def test_algorithm_progress_and_contexts_run_the_same_chunks():
    """``algo.run(progress=True, chunks=4)``, the in-memory context and the runner's context (with
    checkpoints) run the same compiled chunks: bit-identical states and histories; the algorithm
    keeps returning JAX arrays."""
    algo, s0 = _algo()
    s1, h1 = algo.run(s0, 23, progress=True, chunks=4)
    assert isinstance(h1["F"], jax.Array)
    s2, h2 = common.LoopContext(progress=True, chunks=4).run(algo, s0, 23, key="a")
    np.testing.assert_array_equal(np.asarray(s2.u), np.asarray(s1.u))
    for k in h1:
        np.testing.assert_array_equal(np.asarray(h2[k]), np.asarray(h1[k]))


def test_runner_context_resumes_bit_identical(tmp_path):
    algo, s0 = _algo()
    s1, h1 = common.LoopContext(progress=False).run(algo, s0, 12, key="a")
    s2, h2 = Context(checkpoint_dir=tmp_path, checkpoint_every=12).run(algo, s0, 12, key="a")
    s3, h3 = Context(checkpoint_dir=tmp_path, checkpoint_every=12, resume=True).run(algo, s0, 12, key="a")
    for s, h in ((s2, h2), (s3, h3)):
        np.testing.assert_array_equal(np.asarray(s.u), np.asarray(s1.u))
        np.testing.assert_array_equal(np.asarray(h["F"]), np.asarray(h1["F"]))


def test_ensure_context_is_in_memory_and_keeps_the_given_one():
    ctx = common.ensure_context(None)
    assert isinstance(ctx, common.LoopContext) and not isinstance(ctx, Context)
    given = Context(progress=False)
    assert common.ensure_context(given) is given
    assert common.Context is common.LoopContext
    with pytest.raises(ValueError, match="chunks must be a positive integer"):
        common.LoopContext(chunks=0)


def test_experiments_run_without_importing_the_runner():
    """Importing every experiment and running one with no context loads nothing of blojax.runner."""
    import subprocess
    import sys

    code = (
        "import pkgutil, importlib, sys, blojax.experiments as p\n"
        "for m in pkgutil.iter_modules(p.__path__): importlib.import_module('blojax.experiments.' + m.name)\n"
        "from blojax.experiments import spectral\n"
        "spectral.run(spectral.Config(trials=1, ks=(1,), cg_ks=(1,), eps=(1.0,)))\n"
        "print(sorted(m for m in sys.modules if m.startswith('blojax.runner')))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr
