"""Every hypergradient strategy against its closed form (float64, random instances), Unroll against
finite differences, and the inconsistent-system behaviour of CG."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import blojax as blo
from blojax.analysis import quadratic

pytestmark = pytest.mark.usefixtures("x64")
SETTINGS = settings(
    max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
seeds = st.integers(0, 2**31 - 1)


def setup(seed, rank, n_w=7, n_u=3):
    q = quadratic.random_instance(seed, n_w, n_u, rank)
    rng = np.random.default_rng(seed)
    u = jnp.asarray(rng.standard_normal(n_u))
    w = jnp.asarray(rng.standard_normal(n_w))
    b = q.P @ w + q.q  # dF/dw
    return q, u, w, b


def ift(q, v):
    """dF/du - M^T v for the quadratic: dF/du = 0 and M^T = B^T."""
    return -q.B.T @ v


@SETTINGS
@given(seed=seeds, rank=st.integers(1, 7), K=st.integers(1, 30), scale=st.floats(0.1, 1.9))
def test_neumann_matches_matrix_formula(x64, seed, rank, K, scale):
    q, u, w, b = setup(seed, rank)
    a = scale / float(jnp.max(q.inner_eigenvalues()))
    S = sum(np.linalg.matrix_power(np.eye(7) - a * np.asarray(q.A), j) for j in range(K))
    g, info = blo.hypergradient(q.problem(), u, w, blo.Neumann(K, a))
    np.testing.assert_allclose(g, ift(q, a * S @ b), rtol=1e-9, atol=1e-10)
    # residual identity H v - b = -(I - aH)^K b
    res = np.linalg.norm(np.linalg.matrix_power(np.eye(7) - a * np.asarray(q.A), K) @ np.asarray(b))
    np.testing.assert_allclose(info["residual"], res, rtol=1e-8, atol=1e-12)
    assert int(info["hvps"]) == K + 1  # K products (K - 1 for the series, 1 for the residual) + M^T v


@SETTINGS
@given(seed=seeds, rank=st.integers(1, 7), log_eps=st.floats(-4, 2))
def test_damped_matches_matrix_formula(x64, seed, rank, log_eps):
    eps = 10.0**log_eps
    q, u, w, b = setup(seed, rank)
    g, _ = blo.hypergradient(q.problem(), u, w, blo.Damped(eps, rtol=1e-13, max_iters=500))
    np.testing.assert_allclose(g, ift(q, np.linalg.solve(q.A + eps * np.eye(7), b)), rtol=1e-7, atol=1e-9)


@SETTINGS
@given(seed=seeds, rank=st.integers(1, 7), a=st.floats(1e-3, 1.0))
def test_identity_matches_formula(x64, seed, rank, a):
    q, u, w, b = setup(seed, rank)
    g, info = blo.hypergradient(q.problem(), u, w, blo.Identity(a))
    np.testing.assert_allclose(g, ift(q, a * b), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(info["residual"], np.linalg.norm(a * q.A @ b - b), rtol=1e-10)


@SETTINGS
@given(seed=seeds, rank=st.integers(1, 7))
def test_exact_matches_pinv(x64, seed, rank):
    q, u, w, b = setup(seed, rank)
    g, _ = blo.hypergradient(q.problem(), u, w, blo.Exact())
    np.testing.assert_allclose(
        g, ift(q, np.linalg.pinv(np.asarray(q.A), hermitian=True) @ b), rtol=1e-8, atol=1e-9
    )
    np.testing.assert_allclose(g, q.exact_hypergradient(u, w), rtol=1e-8, atol=1e-9)


@SETTINGS
@given(seed=seeds, rank=st.integers(1, 6), extra=st.integers(0, 5))
def test_cg_with_rank_iterations_reaches_pinv_on_consistent_system(x64, seed, rank, extra):
    """K >= rank(H) CG iterations give H^+ dF/dw when dF/dw lies in range(H)."""
    q, u, w, _ = setup(seed, rank)
    # an outer objective whose gradient lies in range(A): F = 1/2 ||A w - t||^2
    t = jnp.asarray(np.random.default_rng(seed + 7).standard_normal(7))
    problem = blo.Problem(q.inner, lambda u_, w_: 0.5 * jnp.sum((q.A @ w_ - t) ** 2))
    b = q.A @ (q.A @ w - t)
    g, info = blo.hypergradient(problem, u, w, blo.CG(rank + extra))
    np.testing.assert_allclose(
        g, ift(q, np.linalg.pinv(np.asarray(q.A), hermitian=True) @ b), rtol=1e-7, atol=1e-8
    )
    assert not bool(info["solve_breakdown"])
    assert float(info["residual"]) <= 1e-9 * max(1.0, float(jnp.linalg.norm(b)))


@SETTINGS
@given(seed=seeds, rank=st.integers(1, 5))
def test_inconsistent_system_plain_cg_flagged_and_cgls_converges(x64, seed, rank):
    """Overparameterized case: dF/dw has a null-space component, H v = dF/dw is inconsistent. Plain CG
    past rank(H) iterations meets zero curvature and blows up (flagged); CG on the normal equations
    converges to the pseudoinverse answer."""
    q, u, w, b = setup(seed, rank)
    null = b - q.A @ (q.A_pinv @ b)
    assert float(jnp.linalg.norm(null)) > 1e-3  # really inconsistent
    g_exact, _ = blo.hypergradient(q.problem(), u, w, blo.Exact())
    g_cg, info = blo.hypergradient(q.problem(), u, w, blo.CG(rank + 3))
    assert bool(info["solve_breakdown"])
    assert not np.allclose(g_cg, g_exact, rtol=1e-3)
    g_ls, info_ls = blo.hypergradient(q.problem(), u, w, blo.CG(4 * rank + 10, normal=True))
    np.testing.assert_allclose(g_ls, g_exact, rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(info_ls["residual"], np.linalg.norm(null), rtol=1e-6)
    assert not bool(info_ls["solve_breakdown"])


def test_unroll_matches_finite_differences(x64):
    """Unroll(K) on a non-quadratic problem with Adam inner steps: reverse mode through the K steps
    equals central finite differences of u -> F(u, Xi^K(u, w))."""
    rng = np.random.default_rng(0)
    X = jnp.asarray(rng.standard_normal((12, 5)))
    y = jnp.asarray(rng.standard_normal(12))

    def f(u, w):  # weighted, L2-regularized logistic-ish regression; u = (log weights, log penalty)
        z = jnp.tanh(X @ w["a"] + w["b"])
        return jnp.mean(jnp.exp(u["logc"]) * (z - y) ** 2) + jnp.exp(u["lam"]) * jnp.sum(w["a"] ** 2)

    def F(u, w):
        return jnp.mean((jnp.tanh(X @ w["a"] + w["b"]) - 0.5 * y) ** 2) + 0.1 * jnp.sum(u["logc"] ** 2)

    problem = blo.Problem(f, F)
    u = {"logc": jnp.asarray(0.3 * rng.standard_normal(12)), "lam": jnp.asarray(-1.0)}
    w = {"a": jnp.asarray(rng.standard_normal(5)), "b": jnp.asarray(0.1)}
    inner = blo.InnerLoop(optax.adam(0.05), steps=7)
    g, info = blo.hypergradient(problem, u, w, blo.Unroll(5), inner)

    @jax.jit
    def objective(u_):
        w_, s_ = w, inner.init(w)
        for _ in range(5):
            w_, s_ = inner.step(problem, u_, w_, s_)
        return F(u_, w_)

    flat, unravel = jax.flatten_util.ravel_pytree(u)
    h = 1e-6
    fd = np.array(
        [
            (objective(unravel(flat + h * e)) - objective(unravel(flat - h * e))) / (2 * h)
            for e in np.eye(flat.size)
        ]
    )
    np.testing.assert_allclose(jax.flatten_util.ravel_pytree(g)[0], fd, rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(info["F"], objective(u), rtol=1e-12)


def test_unroll_masked_sweep_equals_separate_runs(x64):
    """A vmapped sweep over K (Unroll with traced steps, Neumann with traced terms) equals
    separate calls."""
    q, u, w, _ = setup(3, 4)
    a = 1.0 / float(jnp.max(q.inner_eigenvalues()))
    inner = blo.InnerLoop(optax.sgd(a), steps=20)
    Ks = jnp.asarray([1, 3, 8, 20])

    def sweep(K):
        gu, _ = blo.hypergradient(q.problem(), u, w, blo.Unroll(K, max_steps=20), inner)
        gn, _ = blo.hypergradient(q.problem(), u, w, blo.Neumann(K, a))
        return gu, gn

    gu, gn = jax.jit(jax.vmap(sweep))(Ks)
    for i, K in enumerate([1, 3, 8, 20]):
        np.testing.assert_allclose(
            gu[i], blo.hypergradient(q.problem(), u, w, blo.Unroll(K), inner)[0], rtol=1e-12, atol=1e-13
        )
        np.testing.assert_allclose(
            gn[i], blo.hypergradient(q.problem(), u, w, blo.Neumann(K, a))[0], rtol=1e-12, atol=1e-13
        )


def test_remat_unroll_is_identical(x64):
    q, u, w, _ = setup(5, 3)
    inner = blo.InnerLoop(optax.sgd(0.05), steps=30)
    g1, _ = blo.hypergradient(q.problem(), u, w, blo.Unroll(30, remat=False), inner)
    g2, _ = blo.hypergradient(q.problem(), u, w, blo.Unroll(30, remat=True), inner)
    np.testing.assert_allclose(g1, g2, rtol=1e-13, atol=1e-14)
