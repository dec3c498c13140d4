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


# ------------------------------------------------------------------------------------ memory guard
def _guarded(per_step_floats):
    """A scan recording ``per_step_floats`` float32 per step."""

    def chunk(c, n):
        return jax.lax.scan(
            lambda c, _: (c + 1.0, jnp.zeros(per_step_floats, jnp.float32)), c, None, length=n
        )

    return chunk


def _big_step(per_step_floats):
    """The same history, but each step holds a 1000 x 1000 float32 matrix in its carry and builds
    another one (8 MB that the history does not show)."""

    def chunk(carry, n):
        def body(carry, _):
            c, a = carry
            return (c + 1.0 + 0.0 * jnp.sum(jnp.sin(a) @ a), a), jnp.zeros(per_step_floats, jnp.float32)

        return jax.lax.scan(body, carry, None, length=n)

    return chunk


def _fraction_for(history_bytes, share):
    """``memory_fraction`` that makes ``history_bytes`` the given ``share`` of the allowance."""
    from blojax.runner.context import _available_memory

    avail = _available_memory()
    if avail is None:
        pytest.skip("available memory unknown on this system")
    return history_bytes / share / avail


def test_memory_guard_adds_the_compiled_step_when_the_history_is_large(tmp_path):
    from blojax.runner.context import ResourceError

    steps, per = 1001, 2
    frac = _fraction_for(steps * per * 4, 0.5)  # the history alone: half of the allowance
    big = (jnp.float32(0), jnp.ones((1000, 1000), jnp.float32))
    with pytest.raises(ResourceError, match="held by one compiled step .XLA's memory analysis"):
        Context(progress=False, memory_fraction=frac).scan(_big_step(per), big, steps, key="big")
    # the same history without the temporaries fits, and runs
    carry, hist = Context(progress=False, memory_fraction=frac).scan(
        _guarded(per), jnp.float32(0), steps, key="small"
    )
    assert float(carry) == steps and hist.shape == (steps, per)
    # --force skips the guard (a history twice the allowance runs)
    frac2 = _fraction_for(steps * per * 4, 2.0)
    carry, _ = Context(progress=False, memory_fraction=frac2, force=True).scan(
        _guarded(per), jnp.float32(0), steps, key="forced"
    )
    assert float(carry) == steps


def test_memory_guard_compiles_nothing_for_a_small_history(monkeypatch):
    from blojax.runner import context

    def no_compile(*a):
        raise AssertionError("the compiled step was asked for although the history is small")

    monkeypatch.setattr(context, "_step_bytes", no_compile)
    steps, per = 1001, 2
    frac = _fraction_for(steps * per * 4, 0.01)  # history: 1 % of the allowance
    carry, _ = Context(progress=False, memory_fraction=frac).scan(
        _guarded(per), jnp.float32(0), steps, key="k"
    )
    assert float(carry) == steps
    with pytest.raises(context.ResourceError, match="per-step history = .* above"):  # history alone too big
        Context(progress=False, memory_fraction=_fraction_for(steps * per * 4, 2.0)).scan(
            _guarded(per), jnp.float32(0), steps, key="k2"
        )
