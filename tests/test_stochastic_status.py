"""The stochastic solvers report failures as the core does: ``state.status`` / ``state.info``
(:class:`blojax.Status` codes), a per-step ``status`` in the history, and ``run(throw=...)`` raising
on non-finite values eagerly, under ``jit`` and under ``vmap``."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import blojax as blo
from blojax import Status as S
from blojax.stochastic import MinibatchProblem, Shuffle, StochasticInfo, WithReplacement, inverse_power


def _problem(n=12, m=8, d=3, seed=0):
    rng = np.random.default_rng(seed)
    X, y = rng.normal(size=(n, d)), rng.normal(size=n)
    Xv, yv = rng.normal(size=(m, d)), rng.normal(size=m)

    def f(u, w, B):
        A, t = B
        return 0.5 * jnp.mean((A @ w - t) ** 2) + 0.5 * jnp.exp(u[0]) * jnp.sum(w**2)

    def F(u, w, B):
        A, t = B
        return 0.5 * jnp.mean((A @ w - t) ** 2)

    return MinibatchProblem(
        f, F, inner_data=(jnp.asarray(X), jnp.asarray(y)), outer_data=(jnp.asarray(Xv), jnp.asarray(yv))
    )


SOLVERS = {
    "SOBA": lambda p, lr: blo.SOBA(p, Shuffle(12, 4), Shuffle(8, 4), inner_lr=lr, outer_lr=lr),
    "SABA": lambda p, lr: blo.SABA(p, Shuffle(12, 4), Shuffle(8, 4), inner_lr=lr, outer_lr=lr),
    "AmIGO": lambda p, lr: blo.AmIGO(
        p, Shuffle(12, 4), Shuffle(8, 4), inner_lr=lr, outer_lr=lr, inner_steps=2
    ),
    "StocBiO": lambda p, lr: blo.StocBiO(
        p, Shuffle(12, 4), Shuffle(8, 4), inner_lr=lr, outer_lr=lr, inner_steps=2, neumann_steps=2
    ),
    "F2SA": lambda p, lr: blo.F2SA(
        p, Shuffle(12, 4), Shuffle(8, 4), inner_lr=lr, z_lr=lr, outer_lr=lr, inner_steps=2
    ),
}
U0, W0 = jnp.zeros(1), jnp.zeros(3)


@pytest.mark.parametrize("name", sorted(SOLVERS))
def test_finite_run_is_converged_and_diverging_run_is_nonfinite(name):
    p = _problem()
    good = SOLVERS[name](p, 0.05)
    s, h = good.run(good.init(U0, W0), 40)
    assert isinstance(s.info, StochasticInfo)
    assert int(s.status) == S.CONVERGED and int(s.info.steps) == 40 and int(s.info.diverged_step) == -1
    assert np.all(np.asarray(h["status"]) == S.CONVERGED)

    bad = SOLVERS[name](p, 1e4)  # overflows within a few steps
    with pytest.raises(blo.NonFiniteError, match=rf"{name}: non-finite values .* outer step \d+") as err:
        bad.run(bad.init(U0, W0), 40)
    st = err.value.state
    k = int(st.info.diverged_step)
    assert int(st.status) == S.NONFINITE and 0 <= k < 40
    assert bool(jnp.all(jnp.isfinite(st.u))) and bool(jnp.all(jnp.isfinite(st.w)))
    # every part of the state is frozen, SABA's memory tables included (frozen row by row)
    assert all(bool(jnp.all(jnp.isfinite(x))) for x in jax.tree_util.tree_leaves((st.v, st.memory, st.aux)))
    # throw=False returns the same frozen state; the per-step status switches at the bad step
    s2, h2 = bad.run(bad.init(U0, W0), 40, throw=False)
    assert int(s2.status) == S.NONFINITE and int(s2.info.diverged_step) == k and int(s2.step) == k
    codes = np.asarray(h2["status"])
    assert np.all(codes[:k] == S.CONVERGED) and np.all(codes[k:] == S.NONFINITE)
    np.testing.assert_array_equal(np.asarray(s2.u), np.asarray(st.u))
    if name == "SABA":  # the frozen state is exactly the state after the k finite steps, tables included
        sk, _ = bad.run(bad.init(U0, W0), k)
        assert int(sk.status) == S.CONVERGED
        for a, b in zip(
            jax.tree_util.tree_leaves(sk._replace(diverged_step=0)),
            jax.tree_util.tree_leaves(s2._replace(diverged_step=0)),
        ):
            np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_throw_under_jit_and_vmap():
    p = _problem()
    bad = SOLVERS["SOBA"](p, 1e4)
    s0 = bad.init(U0, W0)
    with pytest.raises(Exception, match="SOBA: non-finite"):
        jax.block_until_ready(jax.jit(lambda s: bad.run(s, 40)[0].u)(s0))
    keys = jax.random.split(jax.random.PRNGKey(1), 3)
    with pytest.raises(Exception, match="SOBA: non-finite"):
        jax.block_until_ready(jax.vmap(lambda k: bad.run(bad.init(U0, W0, k), 40)[0].u)(keys))
    # throw=False under jit and vmap: one status per lane
    st = jax.jit(jax.vmap(lambda k: bad.run(bad.init(U0, W0, k), 40, throw=False)[0]))(keys)
    assert st.status.shape == (3,) and np.all(np.asarray(st.status) == S.NONFINITE)


def test_run_argument_errors():
    p = _problem()
    algo = SOLVERS["SABA"](p, 0.05)
    s0 = algo.init(U0, W0)
    with pytest.raises(TypeError, match=r"SABA.run\(throw=...\) must be True or False"):
        algo.run(s0, 3, throw="yes")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="on_nonfinite=.* must be 'raise' or 'stop'"):
        algo.run(s0, 3, on_nonfinite="ignore")
    with pytest.raises(ValueError, match="contradicts"):
        algo.run(s0, 3, throw=True, on_nonfinite="stop")
    with pytest.raises(ValueError, match=r"steps=.*non-negative Python int"):
        algo.run(s0, -1)
    bad = SOLVERS["SABA"](p, 1e4)
    s, _ = bad.run(bad.init(U0, W0), 40, on_nonfinite="stop")  # the older spelling still works
    assert int(s.status) == S.NONFINITE
    with pytest.raises(ValueError, match="reserved metric names"):
        blo.SOBA(p, Shuffle(12, 4), Shuffle(8, 4), record=lambda u, w, v: {"status": u[0]}).run(s0, 2)


def test_freeze_false_detects_the_same_step_without_freezing():
    p = _problem()
    bad = SOLVERS["SOBA"](p, 1e4)
    s1, _ = bad.run(bad.init(U0, W0), 40, throw=False)
    s2, _ = bad.run(bad.init(U0, W0), 40, throw=False, freeze=False)
    assert int(s2.status) == S.NONFINITE and int(s2.info.diverged_step) == int(s1.info.diverged_step)
    assert int(s2.step) == 40 and not bool(jnp.all(jnp.isfinite(s2.u)))  # not frozen
    with pytest.raises(blo.NonFiniteError, match=r"freeze=False"):
        bad.run(bad.init(U0, W0), 40, freeze=False)
    good = SOLVERS["SOBA"](p, 0.05)  # on a finite run both modes give the same iterates
    a, _ = good.run(good.init(U0, W0), 40, history=False)
    b, h = good.run(good.init(U0, W0), 40, history=False, freeze=False)
    assert h is None and int(b.status) == S.CONVERGED
    np.testing.assert_array_equal(np.asarray(a.u), np.asarray(b.u))
    with pytest.raises(TypeError, match=r"run\(freeze=...\) must be True or False"):
        good.run(good.init(U0, W0), 3, freeze=None)  # type: ignore[arg-type]


def _direct_rows(algo):
    object.__setattr__(algo, "_DEFER_ROW_WRITES", False)
    return algo


GUARD_CASES = {
    **SOLVERS,
    # v is not carried (a fresh v every step): the unguarded chunks check it at every step
    "AmIGO-cold": lambda p, lr: blo.AmIGO(
        p, Shuffle(12, 4), Shuffle(8, 4), inner_lr=lr, outer_lr=lr, inner_steps=2, warm_v=False
    ),
    # SABA writing each table row in the step that reads it (instead of deferring it to the next step)
    "SABA-direct": lambda p, lr: _direct_rows(SOLVERS["SABA"](p, lr)),
    # decaying step sizes: the unguarded loops take a / (k + 1)^e from a table computed before them
    "SOBA-decay": lambda p, lr: blo.SOBA(
        p, Shuffle(12, 4), Shuffle(8, 4), inner_lr=inverse_power(lr, 0.5), outer_lr=inverse_power(lr, 0.5)
    ),
    "F2SA-decay": lambda p, lr: blo.F2SA(
        p,
        Shuffle(12, 5),  # an overlapping last block
        Shuffle(8, 4),
        inner_lr=inverse_power(lr, 5 / 7),
        z_lr=inverse_power(lr, 4 / 7),
        outer_lr=inverse_power(lr, 4 / 7),
        lam_lr=inverse_power(0.1, 1 / 7),
        inner_steps=2,
    ),
    # a sampler without draws(): drawn in the step
    "AmIGO-replacement": lambda p, lr: blo.AmIGO(
        p, WithReplacement(12, 4), WithReplacement(8, 4), inner_lr=lr, outer_lr=lr, inner_steps=2
    ),
    # only v overflows (u and w stay finite): the chunk must still be replayed and frozen
    "StocBiO-v": lambda p, lr: blo.StocBiO(
        p,
        Shuffle(12, 4),
        Shuffle(8, 4),
        inner_lr=0.05,
        outer_lr=0.05,
        v_lr=lr,
        inner_steps=2,
        neumann_steps=2,
    ),
}


# In the default suite (the rest under the slow marker): the plain solvers and the two cases with a v
# that matters to the guard (AmIGO-cold, StocBiO-v) diverging (lr = 1e4: the replay), and the cases
# whose unguarded step differs from the plain solvers' (decaying step sizes from a table, a sampler
# without draws(), SABA's direct row writes) finite (lr = 0.05: the unguarded result kept).
_VARIANTS = ("SOBA-decay", "F2SA-decay", "AmIGO-replacement", "SABA-direct")
GUARD_PARAMS = [
    pytest.param(n, lr, id=f"{lr}-{n}", marks=() if (n in _VARIANTS) == (lr < 1) else pytest.mark.slow)
    for lr in (0.05, 1e4)
    for n in sorted(GUARD_CASES)
]


@pytest.mark.parametrize("name,lr", GUARD_PARAMS)
def test_guard_per_chunk_equals_guard_per_step(name, lr):
    """Eagerly, run() executes the whole call unguarded and replays it with the guard only when it
    went non-finite; under jit it checks finiteness once per chunk of _GUARD_EVERY steps and replays a
    chunk step by step when it went non-finite. Both must give the per-step guard's result (state,
    history, diverged step)."""
    p = _problem()
    chunked, per_step = GUARD_CASES[name](p, lr), GUARD_CASES[name](p, lr)
    object.__setattr__(per_step, "_GUARD_EVERY", 0)  # the per-step guard
    object.__setattr__(chunked, "_GUARD_EVERY", 16)  # short chunks: several in a short run
    steps = 3 * 16 + 5  # whole chunks and a remainder
    a, ha = chunked.run(chunked.init(U0, W0), steps, throw=False)  # eager: host-decided replay
    c, hc = jax.jit(lambda s: chunked.run(s, steps, throw=False))(chunked.init(U0, W0))  # in-graph chunks
    b, hb = per_step.run(per_step.init(U0, W0), steps, throw=False)
    assert int(a.info.diverged_step) == int(b.info.diverged_step) == int(c.info.diverged_step)
    assert (int(a.info.diverged_step) >= 0) == (lr > 1)  # both branches of the chunk are exercised
    ref = jax.tree_util.tree_leaves((b, hb))
    for got in (jax.tree_util.tree_leaves((a, ha)), jax.tree_util.tree_leaves((c, hc))):
        assert len(got) == len(ref)
        for x, y in zip(got, ref):
            assert x.dtype == y.dtype
            np.testing.assert_allclose(
                np.asarray(x), np.asarray(y), rtol=64 * np.finfo(np.float32).eps, atol=0
            )


def _count_guarded_calls(algo):
    """Wraps ``algo``'s guarded program (the replay) to count its calls."""
    calls, guarded = [], algo._jit_scan

    def counted(*args):
        calls.append(args[1])
        return guarded(*args)

    object.__setattr__(algo, "_jit_scan", counted)
    return calls


@pytest.mark.parametrize("name", ["SOBA-decay", pytest.param("SABA", marks=pytest.mark.slow), "StocBiO-v"])
def test_eager_run_replays_only_a_non_finite_call(name):
    """An eager run() reads one flag of its unguarded program on the host and calls the guarded one
    only when that flag says a step was non-finite (or the state came in frozen): a finite call runs
    one program; a diverging one still raises NonFiniteError with the frozen state, as the per-step
    guard gives it."""
    p = _problem()
    good = GUARD_CASES[name](p, 0.05)
    calls = _count_guarded_calls(good)
    s, h = good.run(good.init(U0, W0), 30)
    s, h2 = good.run(s, 7, history=False)
    assert calls == [] and h2 is None and int(s.step) == 37 and int(s.status) == S.CONVERGED

    bad, per_step = GUARD_CASES[name](p, 1e4), GUARD_CASES[name](p, 1e4)
    object.__setattr__(per_step, "_GUARD_EVERY", 0)
    calls = _count_guarded_calls(bad)
    with pytest.raises(blo.NonFiniteError, match=r"non-finite values .* outer step \d+") as err:
        bad.run(bad.init(U0, W0), 40)
    assert calls == [40]  # the replay, once
    ref, ref_h = per_step.run(per_step.init(U0, W0), 40, throw=False)
    for x, y in zip(
        jax.tree_util.tree_leaves((err.value.state, err.value.history)),
        jax.tree_util.tree_leaves((ref, ref_h)),
    ):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=64 * np.finfo(np.float32).eps, atol=0)
    # a frozen state stays frozen: the unguarded program reports it, the guarded one keeps it
    frozen = err.value.state
    again, h3 = bad.run(frozen, 5, throw=False)
    assert calls == [40, 5]
    ref2, ref2_h = per_step.run(ref, 5, throw=False)
    assert np.all(np.asarray(h3["status"]) == S.NONFINITE)
    for x, y, z in zip(
        jax.tree_util.tree_leaves(again), jax.tree_util.tree_leaves(frozen), jax.tree_util.tree_leaves(ref2)
    ):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
        np.testing.assert_allclose(np.asarray(x), np.asarray(z), rtol=64 * np.finfo(np.float32).eps, atol=0)
    with pytest.raises(blo.NonFiniteError):
        bad.run(frozen, 1)


def test_eager_run_under_an_outer_jit_with_a_closed_over_state():
    """A concrete state closed over by an outer jit: run() cannot read the flag on the host there and
    raises through the in-graph check, as under jit with a traced state."""
    p = _problem()
    bad = SOLVERS["SOBA"](p, 1e4)
    s0 = bad.init(U0, W0)
    with pytest.raises(Exception, match="SOBA: non-finite"):
        jax.block_until_ready(jax.jit(lambda: bad.run(s0, 40)[0].u)())
    good = SOLVERS["SOBA"](p, 0.05)
    g0 = good.init(U0, W0)
    a = jax.jit(lambda: good.run(g0, 40, throw=False)[0].u)()
    b = good.run(g0, 40)[0].u
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=64 * np.finfo(np.float32).eps, atol=0)
