"""The public API: argument checking, pytrees and batches, vmap over seeds, NaN handling, and
cold- vs warm-start reaching different solutions."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import blojax as blo
from blojax.analysis import quadratic
from conftest import assert_close


def ls_problem():
    X = jnp.asarray(np.random.default_rng(0).standard_normal((4, 3)), jnp.float32)
    f = lambda u, w: 0.5 * jnp.sum((X @ w - u) ** 2)  # noqa: E731
    F = lambda u, w: 0.5 * jnp.sum(w**2) + jnp.sum(u)  # noqa: E731
    return blo.Problem(f, F), jnp.zeros(4), jnp.zeros(3)


# ------------------------------------------------------------------------------------ bad input
@pytest.mark.parametrize(
    "make, exc, words",
    [
        (lambda: blo.Neumann(terms=0, lr=0.1), ValueError, "Neumann.terms must be a positive integer, got 0"),
        (lambda: blo.Neumann(terms=-3, lr=0.1), ValueError, "Neumann.terms"),
        (lambda: blo.Neumann(terms=2.5, lr=0.1), TypeError, "Neumann.terms"),
        (lambda: blo.Neumann(terms=5, lr=0.0), ValueError, "Neumann.lr must be positive"),
        (lambda: blo.Unroll(steps=0), ValueError, "Unroll.steps must be a positive integer"),
        (
            lambda: blo.Unroll(steps=5, max_steps=3),
            ValueError,
            "Unroll.steps (5) must be <= Unroll.max_steps",
        ),
        (lambda: blo.CG(iters=0), ValueError, "CG.iters must be a positive integer"),
        (lambda: blo.CG(iters=3, damping=-1.0), ValueError, "CG.damping must be non-negative"),
        (lambda: blo.Damped(eps=-1e-3), ValueError, "Damped.eps must be non-negative"),
        (lambda: blo.Damped(eps="big"), TypeError, "Damped.eps must be a real number"),
        (lambda: blo.Identity(lr=-1.0), ValueError, "Identity.lr must be positive"),
        (lambda: blo.Exact(max_size=0), ValueError, "Exact.max_size"),
        (lambda: blo.InnerLoop(optax.sgd(0.1)), ValueError, "either steps=T"),
        (lambda: blo.InnerLoop(optax.sgd(0.1), steps=-1), ValueError, "InnerLoop.steps"),
        (lambda: blo.InnerLoop(optax.sgd(0.1), tol=-1.0), ValueError, "InnerLoop.tol must be non-negative"),
        (lambda: blo.InnerLoop("sgd", steps=3), TypeError, "InnerLoop.optimizer must be an optax"),
        (lambda: blo.Problem(inner=3, outer=lambda u, w: 0.0), TypeError, "Problem.inner must be a callable"),
    ],
)
def test_constructors_reject_bad_values(make, exc, words):
    with pytest.raises(exc) as err:
        make()
    assert words in str(err.value)


def test_unroll_without_inner_loop_is_refused():
    problem, u, w = ls_problem()
    with pytest.raises(
        ValueError, match="Unroll differentiates through the inner optimizer's steps: pass inner="
    ):
        blo.hypergradient(problem, u, w, blo.Unroll(3))
    with pytest.raises(ValueError, match=r"Unroll.steps \(5\) must be <= InnerLoop.steps \(2\)"):
        blo.ColdStart(problem, blo.InnerLoop(optax.sgd(0.1), steps=2), blo.Unroll(5), optax.sgd(0.1))


def test_non_scalar_objective_is_refused():
    problem, u, w = ls_problem()
    bad = blo.Problem(lambda u, w: w * 2.0, problem.outer)
    with pytest.raises(
        TypeError, match=rf"Problem.inner must return a real scalar, got {w.dtype}\[3\]"
    ):  # float64 under JAX_ENABLE_X64=1
        blo.hypergradient(bad, u, w, blo.Neumann(3, 0.1))


def test_mismatched_pytrees_are_refused():
    problem, u, w = ls_problem()
    with pytest.raises(TypeError, match=r"Problem.inner could not be evaluated at the given u and w"):
        blo.hypergradient(problem, u, jnp.zeros(5), blo.Neumann(3, 0.1))
    with pytest.raises(TypeError, match="could not be evaluated"):
        blo.WarmStart(problem, blo.InnerLoop(optax.sgd(0.1), steps=2), blo.Exact(), optax.sgd(0.1)).init(
            {"a": u}, w
        )
    with pytest.raises(TypeError, match="floating-point"):
        blo.hypergradient(problem, jnp.zeros(4, jnp.int32), w, blo.Neumann(3, 0.1))


def test_exact_refuses_large_w_until_raised():
    f = lambda u, w: 0.5 * jnp.sum((w - u) ** 2)  # noqa: E731
    problem = blo.Problem(f, lambda u, w: jnp.sum(w**2))
    u = w = jnp.zeros(50)
    with pytest.raises(ValueError, match=r"w has 50 parameters, above Exact.max_size=10"):
        blo.hypergradient(problem, u, w, blo.Exact(max_size=10))
    g, _ = blo.hypergradient(problem, u + 1.0, w, blo.Exact(max_size=50))
    assert_close(
        g, jnp.zeros(50), scale=1.0, ulps=8
    )  # w = 0 makes grad_w F = 0: g is zero up to roundings of size-1 terms


def test_wrong_method_type_and_run_arguments():
    problem, u, w = ls_problem()
    with pytest.raises(TypeError, match="method must be one of"):
        blo.hypergradient(problem, u, w, "neumann")
    algo = blo.ColdStart(problem, blo.InnerLoop(optax.sgd(0.1), steps=3), blo.Exact(), optax.sgd(0.1))
    with pytest.raises(ValueError, match=r"run\(steps=...\) must be a non-negative Python int"):
        algo.run(algo.init(u, w), 2.5)
    with pytest.raises(ValueError, match="outer_batches leaves need a leading axis of length steps=4"):
        algo.run(algo.init(u, w), 4, outer_batches=jnp.zeros((3, 2)))


# ------------------------------------------------------------------------------------ pytrees, batches, jit
def test_pytrees_batches_and_jit_static_method():
    rng = np.random.default_rng(1)
    X = jnp.asarray(rng.standard_normal((20, 3)), jnp.float32)
    y = X @ jnp.asarray([1.0, -2.0, 0.5]) + 0.1 * jnp.asarray(rng.standard_normal(20), jnp.float32)

    def f(u, w, idx):
        r = X[idx] @ w["a"] + w["b"] - y[idx]
        return 0.5 * jnp.mean(r**2) + 0.5 * jnp.exp(u["log_lam"]) * jnp.sum(w["a"] ** 2)

    def F(u, w, idx):
        return 0.5 * jnp.mean((X[idx] @ w["a"] + w["b"] - y[idx]) ** 2)

    problem = blo.Problem(f, F)
    u = {"log_lam": jnp.asarray(0.0)}
    w = {"a": jnp.zeros(3), "b": jnp.asarray(0.0)}
    train, val = jnp.arange(10), jnp.arange(10, 20)
    hg = jax.jit(blo.hypergradient, static_argnames=("problem", "method", "inner"))
    g, info = hg(problem, u, w, blo.CG(5), inner_batch=train, outer_batch=val)
    assert set(g) == {"log_lam"} and np.isfinite(float(g["log_lam"]))
    algo = blo.WarmStart(problem, blo.InnerLoop(optax.sgd(0.3), steps=5), blo.CG(5), optax.sgd(0.5))
    steps = 30
    state, hist = algo.run(
        algo.init(u, w),
        steps,
        inner_batches=jnp.broadcast_to(train, (steps, 10)),
        outer_batches=jnp.broadcast_to(val, (steps, 10)),
    )
    assert hist["F"].shape == (steps,)
    assert float(hist["F"][-1]) < float(hist["F"][0])  # the penalty was tuned for validation loss


def test_method_is_hashable_static_arg_and_pytree():
    m = blo.Neumann(terms=5, lr=0.1)
    assert hash(m) == hash(blo.Neumann(terms=5, lr=0.1)) and m == blo.Neumann(terms=5, lr=0.1)
    leaves, treedef = jax.tree_util.tree_flatten(m)
    assert leaves == [5, 0.1]
    assert jax.tree_util.tree_unflatten(treedef, leaves) == m
    assert jax.tree_util.tree_leaves(blo.CG(3, normal=True)) == [3, 0.0]


# ------------------------------------------------------------------------------------ vmap over seeds
@pytest.mark.parametrize("cls", [blo.ColdStart, blo.WarmStart])
def test_run_under_vmap_equals_separate_runs(cls):
    q = quadratic.random_instance(0, 6, 3, rank=3, dtype=jnp.float32)
    problem = q.problem()
    algo = cls(problem, blo.InnerLoop(optax.sgd(0.1), steps=20), blo.Neumann(10, 0.1), optax.adam(0.05))
    keys = jax.random.split(jax.random.PRNGKey(0), 4)
    u0s = jax.vmap(lambda k: jax.random.normal(k, (3,)))(keys)
    w0s = jax.vmap(lambda k: jax.random.normal(jax.random.fold_in(k, 1), (6,)))(keys)
    states = jax.vmap(algo.init)(u0s, w0s)
    vs, vh = jax.vmap(lambda s: algo.run(s, 25))(states)
    for i in range(4):
        s, h = algo.run(algo.init(u0s[i], w0s[i]), 25)
        # 25 outer x 20 inner float32 steps, batched vs unbatched kernels: at most 27 ulps of each quantity's
        # scale (its largest value over the run) apart with XLA limited to SSE4.2 (--xla_cpu_max_isa=SSE4_2),
        # 2 with AVX-512. 256 ulps leaves a margin; a mixed-up seed moves the numbers by O(1).
        assert_close(vs.u[i], s.u, ulps=256)
        assert_close(vs.w[i], s.w, ulps=256)
        for key in ("F", "f", "hypergrad_norm", "w_dist"):
            assert_close(vh[key][i], h[key], ulps=256, err_msg=key)


# ------------------------------------------------------------------------------------ NaN handling
def test_divergence_stops_with_message_and_keeps_state():
    problem, u, w = ls_problem()
    # an inner step far above 2 / lambda_max: the inner loop blows up after a few outer steps
    algo = blo.WarmStart(problem, blo.InnerLoop(optax.sgd(5.0), steps=3), blo.Identity(0.1), optax.sgd(0.1))
    with pytest.raises(blo.NonFiniteError, match=r"non-finite values \(NaN/inf\) at outer step (\d+)") as err:
        algo.run(algo.init(u + 1.0, w), 200)
    state, hist = err.value.state, err.value.history
    k = int(state.diverged_step)
    assert 0 <= k < 200 and int(state.step) == k
    assert all(np.all(np.isfinite(np.asarray(x))) for x in jax.tree_util.tree_leaves((state.u, state.w)))
    assert np.isfinite(np.asarray(hist["F"][: k - 1])).all() if k > 1 else True
    assert hist["F"].shape == (200,)
    state2, hist2 = algo.run(algo.init(u + 1.0, w), 200, on_nonfinite="stop")
    np.testing.assert_array_equal(state2.u, state.u)


def test_progress_chunks_equal_single_scan():
    problem, u, w = ls_problem()
    algo = blo.ColdStart(problem, blo.InnerLoop(optax.sgd(0.05), steps=10), blo.CG(3), optax.sgd(0.05))
    s1, h1 = algo.run(algo.init(u, w), 23)
    s2, h2 = algo.run(algo.init(u, w), 23, progress=True, chunks=4)
    assert_close(s2.u, s1.u, ulps=64)
    assert_close(h2["F"], h1["F"], ulps=64)


def test_tolerance_inner_loop_and_closed_form(x64):
    q = quadratic.random_instance(2, 6, 2, rank=4)
    u = jnp.ones(2)
    inner = blo.InnerLoop(optax.sgd(1.0 / float(jnp.max(q.inner_eigenvalues()))), tol=1e-10, max_steps=5000)
    w, info = inner.run(q.problem(), u, jnp.zeros(6))
    assert float(info.grad_norm) <= 1e-10 and 0 < int(info.steps) < 5000
    np.testing.assert_allclose(w, q.w_star(u), atol=1e-9)
    capped = blo.InnerLoop(inner.optimizer, tol=0.0, max_steps=7)
    assert int(capped.run(q.problem(), u, jnp.zeros(6))[1].steps) == 7
    closed = blo.ClosedForm(lambda u_, w0: q.w_star(u_))
    np.testing.assert_allclose(closed.run(q.problem(), u, jnp.zeros(6))[0], q.w_star(u), atol=1e-12)
    with pytest.raises(ValueError, match="ClosedForm has no differentiable step"):
        blo.hypergradient(q.problem(), u, jnp.zeros(6), blo.Unroll(2), closed)


# ------------------------------------------------------------------------------------ cold vs warm
def test_cold_and_warm_start_reach_different_outer_solutions(x64):
    """Least-squares distillation: 2 synthetic inputs (u) in 10-D, a linear model (w) fitted to them,
    evaluated on 40 original points. Overparameterized inner problem (2 equations, 10 unknowns).

    Cold-start (every step the min-norm fit from w0 = 0, exact hypergradient) and partial warm-start
    (T = 1 SGD step, Unroll(1)) from the same u0 end at different synthetic points; warm-start fits
    the original data better, and a fresh model re-trained on warm-start's final points (the
    min-norm fit) is worse than the warm model. Measured: F_cold = 0.3290, F_warm = 0.1624,
    F_retrain = 0.1846, ||u_cold - u_warm|| = 7.99 (seed 0)."""
    rng = np.random.default_rng(0)
    d = 10
    X_o = jnp.asarray(rng.standard_normal((40, d)))
    y_o = jnp.tanh(X_o @ rng.standard_normal(d)) + 0.3 * jnp.asarray(rng.standard_normal(40))
    y_s = jnp.asarray([1.0, -1.0])
    f = lambda u, w: 0.5 * jnp.sum((u @ w - y_s) ** 2)  # noqa: E731
    F = lambda u, w: 0.5 * jnp.mean((X_o @ w - y_o) ** 2)  # noqa: E731
    retrain = lambda u: jnp.linalg.pinv(u) @ y_s  # noqa: E731
    problem = blo.Problem(f, F)
    u0, w0 = jnp.asarray(rng.standard_normal((2, d))), jnp.zeros(d)
    cold = blo.ColdStart(problem, blo.ClosedForm(lambda u, w: retrain(u)), blo.Exact(), optax.adam(1e-2))
    warm = blo.WarmStart(problem, blo.InnerLoop(optax.sgd(0.01), steps=1), blo.Unroll(1), optax.adam(1e-2))
    sc, hc = cold.run(cold.init(u0, w0), 3000)
    sw, hw = warm.run(warm.init(u0, w0), 3000)
    F_cold, F_warm = float(hc["F"][-1]), float(hw["F"][-1])
    F_retrain = float(F(sw.u, retrain(sw.u)))
    assert F_warm < 0.6 * F_cold
    assert F_retrain > F_warm * 1.05
    assert float(jnp.linalg.norm(sc.u - sw.u)) > 1.0
    # cold-start's model is the min-norm fit of its own points; warm-start's is not (it has memory)
    np.testing.assert_allclose(sc.w, retrain(sc.u), atol=1e-8)
    assert float(jnp.linalg.norm(sw.w - retrain(sw.u))) > 0.1


def test_vmapped_sweep_over_neumann_terms_equals_separate_runs():
    q = quadratic.random_instance(0, 8, 6, rank=4, outer_rank=1, cond=50.0, dtype=jnp.float32)
    problem, u0, w0 = q.problem(), jnp.zeros(6), jnp.zeros(8)
    a = 1.0 / float(jnp.max(q.inner_eigenvalues()))
    inner = blo.InnerLoop(optax.sgd(a), steps=30)

    def final_u(K):
        algo = blo.ColdStart(problem, inner, blo.Neumann(terms=K, lr=a), optax.sgd(0.01))
        return algo.run(algo.init(u0, w0), 100)[0].u

    Ks = [1, 10, 100]
    us = jax.vmap(final_u)(jnp.asarray(Ks))
    for i, K in enumerate(Ks):
        assert_close(us[i], final_u(K), ulps=512)  # 100 outer x 30 inner float32 steps
    assert float(jnp.linalg.norm(us[0] - us[2])) > 1e-2  # K matters: different outer solutions


@pytest.mark.parametrize("cls", [blo.ColdStart, blo.WarmStart])
@pytest.mark.parametrize("method", [blo.Unroll(2), blo.Neumann(5, 0.1), blo.CG(3)])
def test_diagnostics_off_changes_no_iterate_only_the_costly_metrics(cls, method):
    problem, u, w = ls_problem()
    inner = blo.InnerLoop(optax.sgd(0.05), steps=6)
    on = cls(problem, inner, method, optax.adam(0.05))
    off = cls(problem, inner, method, optax.adam(0.05), diagnostics=False)
    s1, h1 = on.run(on.init(u + 0.3, w), 12)
    s2, h2 = off.run(off.init(u + 0.3, w), 12)
    assert_close(s2.u, s1.u, ulps=64)
    assert_close(s2.w, s1.w, ulps=64)
    for key in ("F", "u_norm", "w_norm", "w_dist", "hypergrad_norm", "inner_steps"):
        assert_close(h2[key], h1[key], ulps=64, err_msg=key)
    assert np.isfinite(h1["f"]).all() and np.isfinite(h1["inner_grad_norm"]).all()
    assert np.isnan(h2["f"]).all() and np.isnan(h2["inner_grad_norm"]).all()
    if isinstance(method, blo.Neumann):
        assert np.isfinite(h1["residual"]).all() and np.isnan(h2["residual"]).all()
    with pytest.raises(TypeError, match="diagnostics must be True or False"):
        cls(problem, inner, method, optax.adam(0.05), diagnostics="no")
