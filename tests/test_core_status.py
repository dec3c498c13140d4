"""Typed results and failure codes: Status on every path, throw= under jit and vmap, validation of
array-valued strategy fields, and the Problem's data argument."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from hypothesis import example, HealthCheck, Phase, given, settings
from hypothesis import strategies as st

import blojax as blo
from blojax.analysis import quadratic

pytestmark = pytest.mark.usefixtures("x64")
SETTINGS = settings(
    max_examples=5,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
    phases=[Phase.explicit, Phase.reuse, Phase.generate],
)

S = blo.Status


def ridge_problem(seed=0, n=40, d=6):
    rng = np.random.default_rng(seed)
    X = jnp.asarray(rng.standard_normal((n, d)))
    y = jnp.asarray(rng.standard_normal(n))
    f = lambda u, w: 0.5 * jnp.mean((X @ w - y) ** 2) + 0.5 * jnp.exp(u) * jnp.sum(w**2)  # noqa: E731
    F = lambda u, w: 0.5 * jnp.mean((X @ w - y) ** 2)  # noqa: E731
    return blo.Problem(f, F), jnp.asarray(-1.0), jnp.zeros(d)


def test_info_has_the_same_fields_on_every_path(x64):
    P, u, w = ridge_problem()
    inner = blo.InnerLoop(optax.sgd(0.1), steps=3)
    fields = None
    for m in (blo.Unroll(2), blo.Neumann(3, 0.1), blo.CG(3), blo.Damped(0.1), blo.Exact(), blo.Identity(0.1)):
        g, info = blo.hypergradient(P, u, w, m, inner)
        assert isinstance(info, blo.HypergradInfo)
        fields = fields or info._fields
        assert info._fields == fields
        assert info["F"] is info.F and int(info.status) == S.CONVERGED
        for name in ("F", "residual", "residual_min", "residual_growth", "inner_grad_norm"):
            assert jnp.shape(info[name]) == ()  # NaN where not applicable, never missing
    assert np.isnan(float(blo.hypergradient(P, u, w, blo.Unroll(2), inner)[1].residual))


def test_inner_loop_statuses(x64):
    P, u, w = ridge_problem()
    _, info = blo.InnerLoop(optax.sgd(0.5), tol=1e-10, max_steps=5000).run(P, u, w)
    assert int(info.status) == S.CONVERGED and float(info.grad_norm) <= 1e-10
    _, info = blo.InnerLoop(optax.sgd(0.5), tol=1e-10, max_steps=7).run(P, u, w)
    assert int(info.status) == S.MAX_STEPS and int(info.steps) == 7
    # SGD with a step far above 2 / lambda_max: ||grad|| grows geometrically; stopped, not silent
    lam_max = float(jnp.max(jnp.linalg.eigvalsh(jax.hessian(P.f, argnums=1)(u, w))))
    w_T, info = blo.InnerLoop(optax.sgd(5.0 / lam_max), tol=1e-10, max_steps=500).run(P, u, w)
    assert int(info.status) == S.BREAKDOWN and int(info.steps) < 500
    assert np.all(np.isfinite(np.asarray(w_T)))
    # under vmap over u: one status per lane
    infos = jax.vmap(lambda u_: blo.InnerLoop(optax.sgd(0.5), tol=1e-10, max_steps=40).run(P, u_, w)[1])(
        jnp.array([-1.0, 3.0])
    )
    assert infos.status.shape == (2,)


def test_nonfinite_raises_under_jit_and_vmap_and_reports_without_throw(x64):
    P, u, w = ridge_problem()
    inner = blo.InnerLoop(optax.sgd(1e3), steps=400)  # overflows to inf/NaN
    with pytest.raises(Exception, match="non-finite"):
        jax.jit(lambda u_: inner.run(P, u_, w)[0])(u)
    with pytest.raises(Exception, match="non-finite"):
        jax.jit(jax.vmap(lambda u_: inner.run(P, u_, w)[0]))(jnp.array([u, u]))
    _, info = jax.jit(lambda u_: inner.run(P, u_, w, throw=False))(u)
    assert int(info.status) == S.NONFINITE
    bad_w = jnp.full_like(w, jnp.nan)
    with pytest.raises(Exception, match="non-finite"):
        jax.jit(lambda w_: blo.hypergradient(P, u, w_, blo.CG(3))[0])(bad_w)
    _, info = blo.hypergradient(P, u, bad_w, blo.CG(3), throw=False)
    assert int(info.status) == S.NONFINITE
    with pytest.raises(Exception, match="non-finite"):
        jax.grad(lambda u_: P.F(u_, blo.solve(P, u_, w, inner=inner, method=blo.CG(3))))(u)


@pytest.mark.parametrize(
    "make, field",
    [
        (lambda: blo.Identity(lr=jnp.array(-0.1)), "Identity.lr"),
        (lambda: blo.Neumann(jnp.array(-3), 0.1), "Neumann.terms"),
        (lambda: blo.Neumann(3, jnp.array([0.1, -0.2])), "Neumann.lr"),
        (lambda: blo.CG(iters=jnp.array(-2)), "CG.iters"),
        (lambda: blo.CG(iters=2, damping=np.array(-1.0)), "CG.damping"),
        (lambda: blo.Damped(eps=jnp.array(-1.0)), "Damped.eps"),
        (lambda: blo.Unroll(jnp.array([2, 0]), max_steps=3), "Unroll.steps"),
        (lambda: blo.Identity(lr=jnp.array(jnp.nan)), "Identity.lr"),
    ],
)
def test_concrete_array_fields_validated_eagerly(x64, make, field):
    with pytest.raises(ValueError, match=field.replace(".", r"\.")):
        make()


def test_traced_fields_validated_at_run_time(x64):
    P, u, w = ridge_problem()
    inner = blo.InnerLoop(optax.sgd(0.1), steps=5)
    with pytest.raises(Exception, match=r"Identity\.lr"):
        jax.jit(lambda a: blo.hypergradient(P, u, w, blo.Identity(a))[0])(-0.1)
    with pytest.raises(Exception, match=r"Neumann\.terms"):
        jax.jit(jax.vmap(lambda K: blo.hypergradient(P, u, w, blo.Neumann(K, 0.1))[0]))(jnp.array([3, -3]))
    with pytest.raises(Exception, match=r"Damped\.eps"):
        jax.jit(lambda e: blo.solve(P, u, w, inner=inner, method=blo.Damped(e)))(-1.0)
    # in range: no error, and the values match the eager ones
    g = jax.jit(lambda a: blo.hypergradient(P, u, w, blo.Identity(a))[0])(0.1)
    np.testing.assert_allclose(g, blo.hypergradient(P, u, w, blo.Identity(0.1))[0], rtol=1e-12)


@SETTINGS
@given(seed=st.integers(0, 2**31 - 1), rank=st.integers(1, 5))
@example(seed=9333923, rank=1)  # b mostly in the null space: round-off once read as negative curvature
def test_cg_inconsistent_singular_system_is_flagged(x64, seed, rank):
    """H singular and dF/dw with a null-space part: plain CG past rank(H) iterations reports
    INCONSISTENT; with stop_at_breakdown it returns the last iterate before the zero-curvature step."""
    q = quadratic.random_instance(seed, 7, 3, rank)
    rng = np.random.default_rng(seed)
    u, w = jnp.asarray(rng.standard_normal(3)), jnp.asarray(rng.standard_normal(7))
    b = q.P @ w + q.q
    assert float(jnp.linalg.norm(b - q.A @ (q.A_pinv @ b))) > 1e-3
    _, info = blo.hypergradient(q.problem(), u, w, blo.CG(rank + 3))
    assert int(info.status) == S.INCONSISTENT
    g, info = blo.hypergradient(q.problem(), u, w, blo.CG(rank + 3, stop_at_breakdown=True))
    assert int(info.status) == S.INCONSISTENT and int(info.solve_iters) <= rank + 1
    assert np.all(np.isfinite(np.asarray(g)))
    # consistent right-hand side: CONVERGED
    v, stats = blo.CG(rank + 3).solve(lambda x: q.A @ x, q.A @ b)
    assert int(stats.status) == S.CONVERGED


@SETTINGS
@given(seed=st.integers(0, 2**31 - 1), neg=st.floats(0.05, 1.0))
def test_cg_negative_curvature_is_breakdown_and_damping_cures_it(x64, seed, neg):
    rng = np.random.default_rng(seed)
    Q = np.linalg.qr(rng.standard_normal((6, 6)))[0]
    lam = np.array([-neg, 0.5, 1.0, 1.5, 2.0, 3.0])
    H = jnp.asarray(Q @ np.diag(lam) @ Q.T)
    b = jnp.asarray(rng.standard_normal(6))
    _, stats = blo.CG(6).solve(lambda x: H @ x, b)
    assert int(stats.status) == S.BREAKDOWN
    v, stats = blo.CG(6, stop_at_breakdown=True).solve(lambda x: H @ x, b)
    assert int(stats.status) == S.BREAKDOWN and np.all(np.isfinite(np.asarray(v)))
    eps = 1.5 * neg  # damping above |lambda_min|: positive definite, CG converges
    v, stats = blo.Damped(eps, rtol=1e-12).solve(lambda x: H @ x, b)
    assert int(stats.status) == S.CONVERGED
    np.testing.assert_allclose(v, jnp.linalg.solve(H + eps * jnp.eye(6), b), rtol=1e-8)
    _, stats = blo.Damped(eps, rtol=1e-14, max_iters=2).solve(lambda x: H @ x, b)
    assert int(stats.status) == S.MAX_STEPS


@SETTINGS
@given(seed=st.integers(0, 2**31 - 1))
def test_linear_solvers_share_solve_with_x0(x64, seed):
    """solve(matvec, b, x0): CG and Damped from a warm start reach the same solution; the linear
    approximations apply v = x0 + S (b - H x0)."""
    rng = np.random.default_rng(seed)
    Q = np.linalg.qr(rng.standard_normal((5, 5)))[0]
    H = jnp.asarray(Q @ np.diag(rng.uniform(0.5, 2.0, 5)) @ Q.T)
    b, x0 = jnp.asarray(rng.standard_normal(5)), jnp.asarray(rng.standard_normal(5))
    mv = lambda x: H @ x  # noqa: E731
    exact = jnp.linalg.solve(H, b)
    for m in (blo.CG(5), blo.Damped(0.0, rtol=1e-13), blo.Exact(), blo.CG(40, normal=True)):
        v, _ = m.solve(mv, b, x0)
        np.testing.assert_allclose(v, exact, rtol=1e-8, atol=1e-10)
    a = 0.4
    for m, S_ in (
        (blo.Identity(a), a * np.eye(5)),
        (
            blo.Neumann(4, a),
            sum(np.linalg.matrix_power(np.eye(5) - a * np.asarray(H), j) for j in range(4)) * a,
        ),
    ):
        v, _ = m.solve(mv, b, x0)
        np.testing.assert_allclose(v, x0 + S_ @ (b - H @ x0), rtol=1e-10, atol=1e-12)


def test_problem_data_argument_is_explicit(x64):
    calls = []

    def f(u, w, scale=1.0):
        calls.append(scale)
        return scale * jnp.sum((w - u) ** 2)

    P = blo.Problem(f, lambda u, w: jnp.sum(w**2))
    P.f(jnp.ones(2), jnp.zeros(2))
    assert calls == [1.0]  # the default, never a batch
    with pytest.raises(TypeError, match="batch"):
        P.f(jnp.ones(2), jnp.zeros(2), {"x": jnp.ones(3)})
    with pytest.raises(TypeError, match="batch"):
        blo.hypergradient(P, jnp.ones(2), jnp.zeros(2), blo.CG(2), inner_batch=jnp.ones(3))
    # f(u, w, batch) with and without a default, and Problem.data used when no batch is given
    Pb = blo.Problem(
        lambda u, w, batch: jnp.sum((w - batch) ** 2), lambda u, w, batch=None: jnp.sum(w), data=jnp.ones(2)
    )
    np.testing.assert_allclose(Pb.f(0.0, jnp.zeros(2)), 2.0)
    np.testing.assert_allclose(Pb.f(0.0, jnp.zeros(2), 2 * jnp.ones(2)), 8.0)
    with pytest.raises(TypeError, match="Problem.data"):
        blo.Problem(f, lambda u, w: 0.0, data=jnp.ones(2))
    # a Problem is a pytree of its arrays: jit sees the data as an input (no recompilation per data)
    traces = []

    @jax.jit
    def value(P_):
        traces.append(1)
        return P_.f(0.0, jnp.zeros(2))

    value(Pb)
    value(blo.Problem(Pb.inner, Pb.outer, data=3 * jnp.ones(2)))
    assert len(traces) == 1 and len(jax.tree_util.tree_leaves(Pb)) == 1


def test_unroll_remat_default_follows_problem_size(x64):
    """remat=None: on CPU rematerialize when K * size(w) >= REMAT_MIN_WORK (docs/benchmarks.md §5);
    the reported gradient count follows the choice, and the hypergradient does not depend on it."""
    from blojax.hypergrad import REMAT_MIN_WORK

    small, large = jnp.zeros(10), jnp.zeros(REMAT_MIN_WORK // 10)
    cpu = jax.default_backend() == "cpu"
    assert blo.Unroll(9).uses_remat(small) is False
    assert blo.Unroll(10).uses_remat(large) is cpu
    assert blo.Unroll(1, remat=True).uses_remat(small) and not blo.Unroll(50, remat=False).uses_remat(large)
    P, u, w = ridge_problem(d=6)
    inner = blo.InnerLoop(optax.sgd(0.1), steps=5)
    g0, i0 = blo.hypergradient(P, u, w, blo.Unroll(4), inner)
    g1, i1 = blo.hypergradient(P, u, w, blo.Unroll(4, remat=True), inner)
    assert int(i0.grads) == 4 + 2 and int(i1.grads) == 8 + 2
    np.testing.assert_allclose(g0, g1, rtol=1e-12)


def _has_host_callback(fn, *args) -> bool:
    """Whether the lowered program of ``fn(*args)`` holds a host callback (a custom call whose target
    names a callback), which keeps JAX's persistent cache from storing it."""
    text = jax.jit(fn).lower(*args).as_text()
    return "callback" in text


def test_algorithm_throw_false_checks_traced_fields_without_a_callback(x64):
    """ColdStart/WarmStart(throw=False): no host callback in the compiled run, and a traced strategy
    field out of range rejects the step (state frozen at step 0, diverged_step = 0) instead of raising;
    in range, the states equal throw=True's (to round-off)."""
    P, u, w = ridge_problem()
    inner = blo.InnerLoop(optax.sgd(0.1), steps=5)

    def run(eps, throw, cls=blo.ColdStart):
        algo = cls(P, inner, blo.Damped(eps), optax.sgd(0.05), throw=throw)
        return algo.run(algo.init(u, w), 4)[0]

    for cls in (blo.ColdStart, blo.WarmStart):
        assert _has_host_callback(lambda e: run(e, True, cls), 0.1)
        assert not _has_host_callback(lambda e: run(e, False, cls), 0.1)
        good_t = jax.jit(lambda e: run(e, True, cls))(0.1)
        good_f = jax.jit(lambda e: run(e, False, cls))(0.1)
        assert int(good_f.diverged_step) == -1 and int(good_f.step) == 4
        for a, b in zip(jax.tree_util.tree_leaves(good_t), jax.tree_util.tree_leaves(good_f)):
            # the two programs differ by the check only (bit-identical here; another CPU may fuse
            # them differently, hence a float64 round-off tolerance)
            np.testing.assert_allclose(
                np.asarray(a), np.asarray(b), rtol=64 * np.finfo(np.float64).eps, atol=0
            )
        # out of range under vmap: only that entry is rejected, at its first step
        states = jax.jit(jax.vmap(lambda e: run(e, False, cls)))(jnp.array([0.1, -1.0]))
        assert np.asarray(states.diverged_step).tolist() == [-1, 0]
        assert np.asarray(states.step).tolist() == [4, 0]
        np.testing.assert_array_equal(np.asarray(states.u)[1], np.asarray(u))
    with pytest.raises(Exception, match=r"Damped\.eps"):
        jax.jit(lambda e: run(e, True))(-1.0)
    with pytest.raises(TypeError, match="throw"):
        blo.ColdStart(P, inner, blo.CG(3), optax.sgd(0.1), throw="no")
