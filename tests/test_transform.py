"""blojax as a JAX transform (float64): ``jax.grad`` through ``blojax.solve`` and ``implicit_diff``
equals ``blojax.hypergradient`` for every strategy, on random quadratic instances and a small MLP,
under jit/vmap/jacrev, with ``w0 = u``, and for gradients to data; closed forms where they exist."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

import blojax as blo
from blojax.analysis import quadratic

pytestmark = pytest.mark.usefixtures("x64")
SETTINGS = settings(
    max_examples=4,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
    phases=[Phase.explicit, Phase.reuse, Phase.generate],
)  # no shrinking: each example compiles
seeds = st.integers(0, 2**31 - 1)


def strategies(alpha):
    return {
        "Unroll": blo.Unroll(6),
        "Unroll-noremat": blo.Unroll(6, remat=False),
        "Neumann": blo.Neumann(15, alpha),
        "CG": blo.CG(8),
        "CG-normal": blo.CG(8, normal=True),
        "Damped": blo.Damped(0.1, rtol=1e-12),
        "Exact": blo.Exact(),
        "Identity": blo.Identity(alpha),
    }


def start_of_strategy(problem, inner, method, u, w0):
    """Where ``hypergradient`` must be taken to match ``solve``: ``w_T`` for the IFT strategies, the
    end of the first ``T - K`` steps for ``Unroll(K)`` (it takes the last K itself)."""
    return method.presolver(inner).run(problem, u, w0)[0]


def kappa(problem, u, w):
    """Condition number |lambda|_max / |lambda|_min of the inner Hessian at ``w`` (dense; small tests)."""
    flat_w, unravel = jax.flatten_util.ravel_pytree(w)
    H = jax.hessian(lambda x: problem.f(u, unravel(x)))(flat_w)
    lam = np.abs(np.linalg.eigvalsh(np.asarray(H)))
    return float(lam.max() / max(lam.min(), np.finfo(np.float64).tiny))


def assert_solve_matches_hypergradient(problem, inner, u, w0, alpha, tol=1e-10):
    for name, m in strategies(alpha).items():

        def loss(u_, m=m):
            return problem.F(u_, blo.solve(problem, u_, w0, inner=inner, method=m))

        g_solve = jax.grad(loss)(u)
        g_jit = jax.jit(jax.grad(loss))(u)
        start = start_of_strategy(problem, inner, m, u, w0)
        g_ref, info = blo.hypergradient(problem, u, start, m, inner)
        g_ref_jit = jax.jit(lambda u_, w_, m=m: blo.hypergradient(problem, u_, w_, m, inner)[0])(u, start)
        flat = lambda t: jax.flatten_util.ravel_pytree(t)[0]  # noqa: E731
        scale = max(1.0, float(jnp.max(jnp.abs(flat(g_ref)))))
        # eager against eager: the two paths round differently, and a Krylov solve amplifies rounding by
        # the condition number of the system it solves (kappa(H) for CG, kappa(H)^2 for the normal
        # equations); ill-conditioned random instances get that much room, well-conditioned ones 1e-10
        amplification = {"CG": kappa(problem, u, start), "CG-normal": kappa(problem, u, start) ** 2}.get(
            name, 1.0
        )
        eager_tol = max(tol, 100 * np.finfo(np.float64).eps * amplification)
        np.testing.assert_allclose(flat(g_solve), flat(g_ref), rtol=0, atol=eager_tol * scale, err_msg=name)
        # compiled against compiled (XLA's fusions round differently from eager mode; on an indefinite
        # H, CG amplifies that difference past 1e-10)
        np.testing.assert_allclose(flat(g_jit), flat(g_ref_jit), rtol=0, atol=tol * scale, err_msg=name)
        # the same number whatever the status (an MLP's H at w_T may be indefinite: CG reports BREAKDOWN)
        assert int(info.status) != blo.Status.NONFINITE, name


def _quadratic_case(seed, n_w, n_u):
    q = quadratic.random_instance(seed, n_w, n_u)
    alpha = 1.0 / float(jnp.max(q.inner_eigenvalues()))
    rng = np.random.default_rng(seed)
    u = jnp.asarray(rng.standard_normal(n_u))
    inner = blo.InnerLoop(optax.sgd(alpha), steps=40)
    assert_solve_matches_hypergradient(q.problem(), inner, u, jnp.zeros(n_w), alpha)


# Each example runs the eight strategies eagerly and compiled (about 17 s): two in the default suite,
# twelve more under the slow marker (`pytest -m slow`).
@settings(SETTINGS, max_examples=2)
@given(seed=seeds, n_w=st.integers(2, 7), n_u=st.integers(1, 4))
def test_grad_through_solve_equals_hypergradient_quadratic(x64, seed, n_w, n_u):
    _quadratic_case(seed, n_w, n_u)


@pytest.mark.slow
@settings(SETTINGS, max_examples=12)
@given(seed=seeds, n_w=st.integers(2, 7), n_u=st.integers(1, 4))
def test_grad_through_solve_equals_hypergradient_quadratic_more(x64, seed, n_w, n_u):
    _quadratic_case(seed, n_w, n_u)


def mlp_problem(seed):
    rng = np.random.default_rng(seed)
    X = jnp.asarray(rng.standard_normal((16, 3)))
    y = jnp.asarray(np.sin(rng.standard_normal(16)))
    Xv = jnp.asarray(rng.standard_normal((12, 3)))
    yv = jnp.asarray(np.sin(rng.standard_normal(12)))

    def apply(w, x):
        return jnp.tanh(x @ w["W1"] + w["b1"]) @ w["w2"]

    def f(u, w):  # per-layer log weight decay u = {"W1", "w2"}
        return (
            jnp.mean((apply(w, X) - y) ** 2)
            + 0.5 * jnp.exp(u["W1"]) * jnp.sum(w["W1"] ** 2)
            + 0.5 * jnp.exp(u["w2"]) * jnp.sum(w["w2"] ** 2)
        )

    def F(u, w):
        return jnp.mean((apply(w, Xv) - yv) ** 2)

    w0 = {
        "W1": jnp.asarray(0.5 * rng.standard_normal((3, 4))),
        "b1": jnp.zeros(4),
        "w2": jnp.asarray(0.5 * rng.standard_normal(4)),
    }
    u = {"W1": jnp.asarray(rng.uniform(-3, -1)), "w2": jnp.asarray(rng.uniform(-3, -1))}
    return blo.Problem(f, F), u, w0


def _mlp_case(seed):
    problem, u, w0 = mlp_problem(seed)
    inner = blo.InnerLoop(optax.sgd(0.1), steps=30)
    assert_solve_matches_hypergradient(problem, inner, u, w0, 0.1)


# about 36 s per example: one in the default suite, four more under the slow marker
@settings(SETTINGS, max_examples=1)
@given(seed=seeds)
def test_grad_through_solve_equals_hypergradient_mlp(x64, seed):
    _mlp_case(seed)


@pytest.mark.slow
@settings(SETTINGS, max_examples=4)
@given(seed=seeds)
def test_grad_through_solve_equals_hypergradient_mlp_more(x64, seed):
    _mlp_case(seed)


@SETTINGS
@given(seed=seeds, n_w=st.integers(2, 6), n_u=st.integers(1, 4))
def test_exact_solve_gives_closed_form_jacobian_and_hypergradient(x64, seed, n_w, n_u):
    """Full-rank quadratic solved to convergence: jacrev of solve is J = -A^{-1} B, grad is the
    closed-form hypergradient; also under vmap over u."""
    q = quadratic.random_instance(seed, n_w, n_u)
    rng = np.random.default_rng(seed)
    U = jnp.asarray(rng.standard_normal((3, n_u)))
    inner = blo.ClosedForm(lambda u, w0: q.w_star(u))
    solve = lambda u: blo.solve(q.problem(), u, jnp.zeros(n_w), inner=inner, method=blo.Exact())  # noqa: E731
    J = jax.jacrev(solve)(U[0])
    np.testing.assert_allclose(J, q.jacobian(), rtol=1e-9, atol=1e-11)
    G = jax.jit(jax.vmap(jax.grad(lambda u: q.outer(u, solve(u)))))(U)
    ref = jnp.stack([q.exact_hypergradient(u_) for u_ in U])
    np.testing.assert_allclose(G, ref, rtol=1e-9, atol=1e-11)


def test_vmap_over_strategy_fields_and_unroll_sweep(x64):
    q = quadratic.random_instance(3, 5, 2)
    alpha = 1.0 / float(jnp.max(q.inner_eigenvalues()))
    u, w0 = jnp.array([0.3, -0.2]), jnp.zeros(5)
    inner = blo.InnerLoop(optax.sgd(alpha), steps=30)
    P = q.problem()

    def g_neumann(a):
        return jax.grad(lambda u_: P.F(u_, blo.solve(P, u_, w0, inner=inner, method=blo.Neumann(10, a))))(u)

    lrs = jnp.array([0.5, 1.0]) * alpha
    w_T = inner.run(P, u, w0)[0]
    G = jax.vmap(g_neumann)(lrs)
    for a, g in zip(lrs, G):
        np.testing.assert_allclose(g, blo.hypergradient(P, u, w_T, blo.Neumann(10, a))[0], atol=1e-12)

    # Unroll with a traced K (a sweep): the masked scan of length max_steps
    def g_unroll(K):
        m = blo.Unroll(K, max_steps=5)
        return jax.grad(lambda u_: P.F(u_, blo.solve(P, u_, w0, inner=inner, method=m)))(u)

    Ks = jnp.array([2, 5])
    G = jax.vmap(g_unroll)(Ks)
    start = blo.Unroll(5).presolver(inner).run(P, u, w0)[0]  # T - max_steps plain steps
    for K, g in zip([2, 5], G):
        ref = blo.hypergradient(P, u, start, blo.Unroll(jnp.asarray(K), max_steps=5), inner)[0]
        np.testing.assert_allclose(g, ref, atol=1e-12)


def test_implicit_maml_w0_equals_u(x64):
    """Implicit MAML toy: f(u, w) = 1/2 (w - c)^T A (w - c) + lam/2 ||w - u||^2, start w0 = u.
    w*(u) = (A + lam I)^{-1} (A c + lam u), so dw*/du = lam (A + lam I)^{-1}; the start does not
    enter (its cotangent is zero)."""
    rng = np.random.default_rng(1)
    Q = np.linalg.qr(rng.standard_normal((4, 4)))[0]
    A = jnp.asarray(Q @ np.diag([0.5, 1.0, 2.0, 3.0]) @ Q.T)
    c, t, lam = jnp.asarray(rng.standard_normal(4)), jnp.asarray(rng.standard_normal(4)), 0.7
    P = blo.Problem(
        lambda u, w: 0.5 * (w - c) @ A @ (w - c) + 0.5 * lam * jnp.sum((w - u) ** 2),
        lambda u, w: 0.5 * jnp.sum((w - t) ** 2),
    )
    inner = blo.InnerLoop(optax.sgd(0.25), tol=1e-13, max_steps=5000)
    u = jnp.asarray(rng.standard_normal(4))
    M = A + lam * jnp.eye(4)
    w_star = jnp.linalg.solve(M, A @ c + lam * u)
    ref = lam * jnp.linalg.solve(M, w_star - t)
    for m in (blo.CG(4), blo.Exact(), blo.Damped(0.0, rtol=1e-13)):
        g = jax.grad(lambda u_: P.F(u_, blo.solve(P, u_, u_, inner=inner, method=m)))(u)
        np.testing.assert_allclose(g, ref, rtol=1e-9, atol=1e-11)
        J = jax.jacrev(lambda u_: blo.solve(P, u_, u_, inner=inner, method=m))(u)
        np.testing.assert_allclose(J, lam * jnp.linalg.inv(M), rtol=1e-9, atol=1e-11)


def ridge(seed=0, n=30, d=5):
    rng = np.random.default_rng(seed)
    X = jnp.asarray(rng.standard_normal((n, d)))
    y = jnp.asarray(rng.standard_normal(n))
    Xv = jnp.asarray(rng.standard_normal((20, d)))
    yv = jnp.asarray(rng.standard_normal(20))

    def f(u, w, batch):
        Xb, yb = batch
        return 0.5 * jnp.mean((Xb @ w - yb) ** 2) + 0.5 * jnp.sum(jnp.exp(u) * w**2)

    def F(u, w, batch=None):
        return 0.5 * jnp.mean((Xv @ w - yv) ** 2)

    def w_star(u, X_=X, y_=y):
        return jnp.linalg.solve(X_.T @ X_ / n + jnp.diag(jnp.exp(u)), X_.T @ y_ / n)

    u = jnp.asarray(rng.uniform(-2, 0, d))
    return f, F, w_star, X, y, u


def test_gradients_to_data_in_batch_and_carried_by_problem(x64):
    f, F, w_star, X, y, u = ridge()
    inner = blo.ClosedForm(lambda u_, w0, batch: w_star(u_, *batch))
    ref = jax.grad(lambda X_: F(u, w_star(u, X_, y)))(X)
    P = blo.Problem(f, F)
    gX = jax.grad(
        lambda X_: F(u, blo.solve(P, u, jnp.zeros(5), inner=inner, method=blo.Exact(), batch=(X_, y)))
    )(X)
    np.testing.assert_allclose(gX, ref, rtol=1e-9, atol=1e-12)
    # the same data carried by the Problem: a pytree whose arrays are traced by jit/grad
    Pd = blo.Problem(f, F, data=(X, y))
    gP = jax.jit(jax.grad(lambda P_: F(u, blo.solve(P_, u, jnp.zeros(5), inner=inner, method=blo.CG(5)))))(Pd)
    np.testing.assert_allclose(gP.data[0], ref, rtol=1e-9, atol=1e-12)
    # vmap over data sets carried by the Problem
    Xs = jnp.stack([X, 2 * X])
    ws = jax.vmap(
        lambda X_: blo.solve(
            blo.Problem(f, F, data=(X_, y)), u, jnp.zeros(5), inner=inner, method=blo.Exact()
        )
    )(Xs)
    np.testing.assert_allclose(ws[1], w_star(u, 2 * X, y), rtol=1e-10)


def test_lbfgs_inner_and_outer(x64):
    """Ridge solved by L-BFGS (a line search) gives the closed-form hypergradient; L-BFGS also runs
    as the outer optimizer of ColdStart."""
    f, F, w_star, X, y, u = ridge()
    P = blo.Problem(f, F, data=(X, y))
    inner = blo.InnerLoop(optax.lbfgs(), tol=1e-11, max_steps=300)
    w_T, info = jax.jit(lambda u_: inner.run(P, u_, jnp.zeros(5)))(u)
    assert int(info.status) == blo.Status.CONVERGED
    ref = jax.grad(lambda u_: F(u_, w_star(u_)))(u)
    for m in (blo.Exact(), blo.CG(5)):
        g, _ = blo.hypergradient(P, u, w_T, m)
        np.testing.assert_allclose(g, ref, rtol=1e-8, atol=1e-12)
        g2 = jax.grad(lambda u_: F(u_, blo.solve(P, u_, jnp.zeros(5), inner=inner, method=m)))(u)
        np.testing.assert_allclose(g2, ref, rtol=1e-8, atol=1e-12)
    algo = blo.ColdStart(P, inner, blo.Exact(), outer=optax.lbfgs())
    state, hist = algo.run(algo.init(u, jnp.zeros(5)), steps=5)
    F_star = lambda u_: F(u_, w_star(u_))  # noqa: E731
    assert float(F_star(state.u)) < float(F_star(u))
    assert np.all(np.asarray(hist["inner_status"]) == int(blo.Status.CONVERGED))


def test_implicit_diff_user_solver_all_strategies(x64):
    f, F, w_star, X, y, u = ridge()

    def ridge_f(u_, w, X_, y_):
        return f(u_, w, (X_, y_))

    ref_u = jax.grad(lambda u_: F(u_, w_star(u_)))(u)
    ref_X = jax.grad(lambda X_: F(u, w_star(u, X_, y)))(X)
    for m in (blo.Exact(), blo.CG(5), blo.Damped(0.0, rtol=1e-13), blo.CG(20, normal=True)):

        @blo.implicit_diff(ridge_f, m)
        def solver(u_, w0, X_, y_):
            return w_star(u_, X_, y_)

        np.testing.assert_allclose(jax.grad(lambda u_: F(u_, solver(u_, None, X, y)))(u), ref_u, rtol=1e-8)
        np.testing.assert_allclose(
            jax.grad(lambda X_: F(u, solver(u, None, X_, y)))(X), ref_X, rtol=1e-7, atol=1e-12
        )
    # Neumann / Identity / Unroll: the same numbers as hypergradient at the solver's output
    inner = blo.InnerLoop(optax.sgd(0.2), steps=4)
    P = blo.Problem(f, F, data=(X, y))
    w = w_star(u)
    for m in (blo.Neumann(10, 0.2), blo.Identity(0.2), blo.Unroll(4)):

        @blo.implicit_diff(ridge_f, m, inner=inner)
        def solver2(u_, w0, X_, y_):
            return w_star(u_, X_, y_)

        g = jax.grad(lambda u_: F(u_, solver2(u_, None, X, y)))(u)
        np.testing.assert_allclose(g, blo.hypergradient(P, u, w, m, inner)[0], atol=1e-12)
