"""PAPER.md §4, results 1–7, in float64 over random problem instances (hypothesis).

Instances come from :func:`blojax.analysis.quadratic.random_instance`: the inner Hessian ``A`` is PSD
and, unless stated otherwise, singular (rank < n_w: an overparameterized inner problem).
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

import blojax as blo
from blojax.analysis import quadratic

pytestmark = pytest.mark.usefixtures("x64")

SETTINGS = settings(
    max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
# runs of whole algorithms compile a scan per instance: fewer examples
RUN_SETTINGS = settings(
    max_examples=5,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.filter_too_much],
)
seeds = st.integers(0, 2**31 - 1)


def instance(seed, n_w, n_u, rank, **kw):
    return quadratic.random_instance(seed, n_w, n_u, rank, **kw)


def alpha_of(q):
    return 1.0 / float(jnp.max(q.inner_eigenvalues()))


# ------------------------------------------------------------------------------------- result 1
@SETTINGS
@given(seed=seeds, rank=st.integers(1, 6))
def test_gd_reaches_minimum_displacement_solution(x64, seed, rank):
    """GD on 1/2 w^T A w + b^T w from w0 converges to -A^+ b + (I - A^+ A) w0."""
    q = instance(seed, 6, 2, rank, cond=4.0)
    rng = np.random.default_rng(seed)
    u = jnp.asarray(rng.standard_normal(2))
    w0 = jnp.asarray(rng.standard_normal(6))
    inner = blo.InnerLoop(optax.sgd(1.5 * alpha_of(q)), tol=1e-12, max_steps=20_000)
    w, info = jax.jit(lambda u_, w_: inner.run(q.problem(), u_, w_))(u, w0)
    expected = quadratic.gd_limit(q.A, q.B @ u + q.d, w0)
    assert float(info.grad_norm) <= 1e-12
    np.testing.assert_allclose(w, expected, rtol=0, atol=1e-10)
    # and it is *not* the minimum-norm solution unless w0 happens to lie in range(A)
    if rank < 6:
        assert float(jnp.linalg.norm(w - q.w_star(u))) > 1e-6


# ------------------------------------------------------------------------------------- result 2
@SETTINGS
@given(seed=seeds, rank=st.integers(1, 6), n_u=st.integers(1, 4))
def test_outer_objective_is_the_stated_quadratic(x64, seed, rank, n_u):
    """F*(u) = F(u, w*(u)) has Hessian B^T A^+ P A^+ B; its gradient is the exact hypergradient."""
    q = instance(seed, 6, n_u, rank)
    u = jnp.asarray(np.random.default_rng(seed).standard_normal(n_u))
    H = jax.hessian(q.F_star)(u)
    np.testing.assert_allclose(H, q.outer_hessian(), rtol=1e-9, atol=1e-9)
    grad = jax.grad(q.F_star)(u)
    np.testing.assert_allclose(grad, q.outer_hessian() @ u + q.outer_linear(), rtol=1e-9, atol=1e-9)
    g, _ = blo.hypergradient(q.problem(), u, q.w_star(u), blo.Exact())
    np.testing.assert_allclose(g, grad, rtol=1e-8, atol=1e-9)
    np.testing.assert_allclose(g, q.exact_hypergradient(u), rtol=1e-8, atol=1e-9)


# ------------------------------------------------------------------------------------- result 3
@RUN_SETTINGS
@given(seed=seeds, rank=st.integers(2, 5))
def test_cold_start_exact_converges_to_nearest_outer_solution(x64, seed, rank):
    """Cold-start BLO, exact hypergradients, w0 = 0: u -> argmin_{u in argmin F*} ||u - u0||."""
    n_w, n_u = 6, 4
    q = instance(seed, n_w, n_u, rank, outer_rank=1, cond=3.0)
    G = q.outer_hessian()
    lam = np.linalg.eigvalsh(np.asarray(G))
    nz = lam[lam > 1e-9 * lam.max()]
    beta = 1.0 / lam.max()
    steps = int(min(40 * lam.max() / nz.min(), 4000)) + 50
    rng = np.random.default_rng(seed + 1)
    u0 = jnp.asarray(rng.standard_normal(n_u))
    inner = blo.InnerLoop(optax.sgd(alpha_of(q)), tol=1e-12, max_steps=5000)
    algo = blo.ColdStart(q.problem(), inner, blo.Exact(), optax.sgd(beta))
    state, hist = algo.run(algo.init(u0, jnp.zeros(n_w)), steps)
    target = q.min_norm_outer_solution(u0)
    # F* is minimal at target, the run reached the minimum, and it is the minimizer nearest u0
    assert float(q.F_star(state.u) - q.F_star(target)) <= 1e-10
    np.testing.assert_allclose(state.u, target, rtol=0, atol=1e-7)
    if nz.size < n_u:  # an overparameterized outer problem: other minimizers exist, farther from u0
        assert float(jnp.linalg.norm(target - u0)) <= float(jnp.linalg.norm(state.u - u0)) + 1e-7


# ------------------------------------------------------------------------------------- result 4
@RUN_SETTINGS
@given(seed=seeds)
def test_full_warm_equals_cold_when_inner_strongly_convex(x64, seed):
    q = instance(seed, 5, 3, rank=5, cond=3.0)  # A positive definite
    rng = np.random.default_rng(seed)
    u0 = jnp.asarray(rng.standard_normal(3))
    w0 = jnp.asarray(rng.standard_normal(5))
    inner = blo.InnerLoop(optax.sgd(alpha_of(q)), tol=1e-13, max_steps=10_000)
    runs = []
    for cls in (blo.ColdStart, blo.WarmStart):
        algo = cls(q.problem(), inner, blo.Exact(), optax.sgd(0.05))
        runs.append(algo.run(algo.init(u0, w0), 60))
    (sc, hc), (sw, hw) = runs
    np.testing.assert_allclose(sc.u, sw.u, rtol=0, atol=1e-10)
    np.testing.assert_allclose(hc["F"], hw["F"], rtol=0, atol=1e-10)
    # the warm-started inner loops needed fewer steps after the first outer step
    assert int(hw["inner_steps"][1:].sum()) < int(hc["inner_steps"][1:].sum())


# ------------------------------------------------------------------------------------- result 5
@RUN_SETTINGS
@given(seed=seeds, rank=st.integers(2, 5))
def test_partial_and_full_warm_start_equilibria_coincide(x64, seed, rank):
    """Partial warm-start (T = 1) converges to a point that is also a full warm-start equilibrium:
    w stationary and u optimal (zero exact hypergradient), so one full warm-start step leaves it."""
    q = instance(seed, 6, 3, rank, cond=3.0)
    rng = np.random.default_rng(seed)
    u0, w0 = jnp.asarray(rng.standard_normal(3)), jnp.asarray(rng.standard_normal(6))
    a = alpha_of(q)
    lam = np.linalg.eigvalsh(np.asarray(q.outer_hessian()))
    nz = lam[lam > 1e-9 * lam.max()]
    assume(lam.max() / nz.min() < 100)
    beta = 0.5 / lam.max()
    steps = int(80 * lam.max() / nz.min()) + 500
    partial = blo.WarmStart(q.problem(), blo.InnerLoop(optax.sgd(a), steps=1), blo.Exact(), optax.sgd(beta))
    state, hist = partial.run(partial.init(u0, w0), steps)
    assert float(hist["inner_grad_norm"][-1]) <= 1e-8
    g, _ = blo.hypergradient(q.problem(), state.u, state.w, blo.Exact())
    assert float(jnp.linalg.norm(g)) <= 1e-7
    full = blo.WarmStart(
        q.problem(), blo.InnerLoop(optax.sgd(a), tol=1e-12, max_steps=10_000), blo.Exact(), optax.sgd(beta)
    )
    s2, _ = full.step(state._replace(inner_state=full.inner.init(state.w)))
    np.testing.assert_allclose(s2.u, state.u, rtol=0, atol=1e-8)
    np.testing.assert_allclose(s2.w, state.w, rtol=0, atol=1e-8)


# ------------------------------------------------------------------------------------- result 6
@SETTINGS
@given(seed=seeds, rank=st.integers(1, 6), K=st.integers(1, 40), stationary=st.booleans())
def test_unroll_equals_neumann(x64, seed, rank, K, stationary):
    """K unrolled SGD steps equal K Neumann terms with the same step: exactly at a stationary w, and
    for quadratic f from any start (the Hessian is constant) when both are taken at the end point."""
    q = instance(seed, 6, 3, rank)
    rng = np.random.default_rng(seed)
    u = jnp.asarray(rng.standard_normal(3))
    a = alpha_of(q)
    inner = blo.InnerLoop(optax.sgd(a), steps=K)
    if stationary:
        w = q.w_star(u) + (jnp.eye(6) - q.A_pinv @ q.A) @ jnp.asarray(rng.standard_normal(6))
        g_u, info = blo.hypergradient(q.problem(), u, w, blo.Unroll(K), inner)
        np.testing.assert_allclose(info["w"], w, atol=1e-10)
        g_n, _ = blo.hypergradient(q.problem(), u, w, blo.Neumann(K, a))
    else:
        w = jnp.asarray(rng.standard_normal(6))
        g_u, info = blo.hypergradient(q.problem(), u, w, blo.Unroll(K), inner)
        # the unrolled trajectory's response Jacobian is the Neumann sum whatever the start, so
        # Unroll equals Neumann evaluated at the point where unrolling ended
        g_n, _ = blo.hypergradient(q.problem(), u, info["w"], blo.Neumann(K, a))
    np.testing.assert_allclose(g_u, g_n, rtol=1e-9, atol=1e-10)


# ------------------------------------------------------------------------------------- result 7
@SETTINGS
@given(seed=seeds, rank=st.integers(1, 6), log_eps=st.floats(-3, 1))
def test_damped_equals_proximal_hypergradient(x64, seed, rank, log_eps):
    """Damped(eps) = hypergradient of the proximal inner problem f + eps/2 ||w - w'||^2 (w' fixed),
    both as its IFT hypergradient and as the true derivative of its solution map."""
    eps = 10.0**log_eps
    q = instance(seed, 6, 3, rank)
    rng = np.random.default_rng(seed)
    u = jnp.asarray(rng.standard_normal(3))
    w_prime = jnp.asarray(rng.standard_normal(6))

    def prox_inner(u_, w_):
        return q.inner(u_, w_) + 0.5 * eps * jnp.sum((w_ - w_prime) ** 2)

    prox = blo.Problem(prox_inner, q.outer)

    def w_eps(u_):  # argmin of the proximal inner problem, in closed form
        return jnp.linalg.solve(q.A + eps * jnp.eye(6), eps * w_prime - q.B @ u_ - q.d)

    w = w_eps(u)
    g_damped, info = blo.hypergradient(q.problem(), u, w, blo.Damped(eps, rtol=1e-13, max_iters=200))
    g_prox_ift, _ = blo.hypergradient(prox, u, w, blo.Exact())
    g_true = jax.grad(lambda u_: q.outer(u_, w_eps(u_)))(u)
    np.testing.assert_allclose(g_damped, g_prox_ift, rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(g_damped, g_true, rtol=1e-8, atol=1e-10)
    assert float(info["residual"]) <= 1e-12 * max(1.0, float(jnp.linalg.norm(q.P @ w + q.q)))
