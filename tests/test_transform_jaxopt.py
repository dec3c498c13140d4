"""blojax against jaxopt's ``custom_root`` on the same problem and the same solver (float64).

jaxopt is not a dependency of blojax: these tests run in the benchmark venv (``make bench-peers``
builds it; docs/transform.md gives the command and the recorded result) and are skipped elsewhere.

The solver is shared: one function computes ``w(u)`` and is decorated twice, by
``jaxopt.implicit_diff.custom_root(grad_w f, solve=...)`` and by ``blojax.implicit_diff(f, method)``
(and the same inner solve runs inside ``blojax.solve``). Both then solve the IFT system
``H v = dF/dw`` at that ``w`` and return ``-M^T v``; the linear solvers are paired so that they compute
the same iterate in exact arithmetic:

| blojax | jaxopt ``solve=`` |
|---|---|
| ``CG(K)`` | ``solve_cg(maxiter=K, tol=0)`` (K CG iterations from 0; K < n is a truncated Krylov iterate) |
| ``CG(K, damping=eps)``, ``Damped(eps)`` | ``solve_cg(ridge=eps, ...)`` |
| ``CG(K, normal=True)`` | ``solve_normal_cg(maxiter=K, tol=0)`` (CG on ``H^2 v = H b``) |
| ``Exact()`` | ``solve_lu`` (dense) |

The gradients to ``u`` and to the data (arrays passed as solver arguments) must agree to round-off,
amplified by the condition number of the system a Krylov method solves (``kappa(H)``, or
``kappa(H)^2`` for the normal equations). Each test also checks that the comparison can fail: a
different pairing (``CG(1)`` against jaxopt's K-step CG, or the gradient with the implicit term
dropped) is far outside the tolerance, and on the quadratic both equal the closed form.
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from hypothesis import HealthCheck, Phase, example, given, settings
from hypothesis import strategies as st

import blojax as blo
from blojax.analysis import quadratic

jaxopt = pytest.importorskip("jaxopt", reason="jaxopt is installed in the benchmark venv (make bench-peers)")

pytestmark = pytest.mark.usefixtures("x64")
SETTINGS = settings(
    max_examples=3,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
    phases=[Phase.explicit, Phase.reuse, Phase.generate],
)  # no shrinking: each example compiles
seeds = st.integers(0, 2**31 - 1)
EPS64 = np.finfo(np.float64).eps


def flat(tree):
    return np.asarray(jax.flatten_util.ravel_pytree(tree)[0])


def rel_diff(a, b):
    a, b = flat(a), flat(b)
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(b), np.finfo(np.float64).tiny))


def pairs(n):
    """(name, blojax strategy, jaxopt linear solve, amplification exponent of kappa(H))."""
    lo = jaxopt.linear_solve
    K = max(1, n // 2)  # a truncated Krylov iterate: both must stop at the same point
    return [
        ("CG(n)", blo.CG(n), lambda mv, b: lo.solve_cg(mv, b, maxiter=n, tol=0.0), 1),
        ("CG(n/2)", blo.CG(K), lambda mv, b: lo.solve_cg(mv, b, maxiter=K, tol=0.0), 1),
        (
            "CG(n, damping)",
            blo.CG(n, damping=0.3),
            lambda mv, b: lo.solve_cg(mv, b, ridge=0.3, maxiter=n, tol=0.0),
            1,
        ),
        (
            "Damped",
            blo.Damped(0.3, rtol=1e-14),
            lambda mv, b: lo.solve_cg(mv, b, ridge=0.3, maxiter=10 * n, tol=1e-14),
            1,
        ),
        (
            "CG(n, normal)",
            blo.CG(n, normal=True),
            lambda mv, b: lo.solve_normal_cg(mv, b, maxiter=n, tol=0.0),
            2,
        ),
        ("Exact", blo.Exact(), dense_lu, 1),
    ]


def dense_lu(matvec, b):
    """jaxopt's ``solve_lu`` (arrays only) on the flattened pytree system."""
    b_flat, unravel = jax.flatten_util.ravel_pytree(b)
    mv = lambda x: jax.flatten_util.ravel_pytree(matvec(unravel(x)))[0]  # noqa: E731
    return unravel(jaxopt.linear_solve.solve_lu(mv, b_flat))


def hessian_kappa(f, u, w, args):
    flat_w, unravel = jax.flatten_util.ravel_pytree(w)
    H = jax.hessian(lambda x: f(u, unravel(x), *args))(flat_w)
    lam = np.abs(np.linalg.eigvalsh(np.asarray(H)))
    return float(lam.max() / max(lam.min(), np.finfo(np.float64).tiny)), np.linalg.eigvalsh(np.asarray(H))


def compare(f, F, solver, u, w0, args, kappa, *, wrt=(0,), check_solve=None, skip=()):
    """For every pairing: grad of ``F(solver(u, w0, *args))`` with respect to ``u`` (and to the args
    listed in ``wrt``, positions in ``(u, *args)``) through blojax and through jaxopt.

    Returns the largest relative difference seen and the jaxopt gradients by pairing."""
    n = flat(solver(u, w0, *args)).size

    def optimality(w, u_, *a):  # jaxopt's convention: optimality_fun(params, *args) = grad_w f
        return jax.grad(f, argnums=1)(u_, w, *a)

    worst, theirs_by_name = 0.0, {}
    for name, method, lin_solve, power in pairs(n):
        if name in skip:
            continue
        theirs = jaxopt.implicit_diff.custom_root(optimality, solve=lin_solve)(
            lambda w0_, u_, *a: solver(u_, w0_, *a)
        )
        ours = blo.implicit_diff(lambda u_, w, *a: f(u_, w, *a), method)(solver)

        def loss_theirs(u_, *a, theirs=theirs):
            return F(u_, theirs(w0, u_, *a))

        def loss_ours(u_, *a, ours=ours):
            return F(u_, ours(u_, w0, *a))

        g_theirs = jax.jit(jax.grad(loss_theirs, argnums=wrt))(u, *args)
        g_ours = jax.jit(jax.grad(loss_ours, argnums=wrt))(u, *args)
        tol = tolerance(kappa, power)
        for i, (a, b) in enumerate(zip(g_ours, g_theirs)):
            d = rel_diff(a, b)
            assert d <= tol, f"{name}, argument {wrt[i]}: blojax vs jaxopt rel. diff {d:.2e} > {tol:.1e}"
            worst = max(worst, d)
        theirs_by_name[name] = g_theirs
        if check_solve is not None:  # blojax.solve with the same inner solve (its inner loop or closed form)
            g_solve = check_solve(method)
            d = rel_diff(g_solve, g_theirs[0])
            assert d <= tol, f"{name}: grad(blojax.solve) vs jaxopt rel. diff {d:.2e} > {tol:.1e}"
    return worst, theirs_by_name


def tolerance(kappa, power=1):
    """Round-off of two evaluations of the same Krylov iterate: ``1e4 eps kappa^power`` (at least 1e-10)."""
    return max(1e-10, 1e4 * EPS64 * kappa**power)


def assert_discriminates(f, F, solver, u, w0, args, theirs_by_name, tol):
    """The comparison can fail: blojax's CG(1) against jaxopt's dense solve, and the gradient without the
    implicit term (the solution held constant), are both far outside the tolerance."""
    ours1 = blo.implicit_diff(lambda u_, w, *a: f(u_, w, *a), blo.CG(1))(solver)
    g1 = jax.grad(lambda u_: F(u_, ours1(u_, w0, *args)))(u)
    g_ref = theirs_by_name["Exact"][0]
    assert rel_diff(g1, g_ref) > 1e3 * tol
    frozen = jax.lax.stop_gradient(solver(u, w0, *args))
    g0 = jax.grad(lambda u_: F(u_, frozen))(u)
    assert rel_diff(g0, g_ref) > 1e3 * tol


# ------------------------------------------------------------------------------------------------ quadratic
def quad_functions():
    """``f(u, w; A, B, d) = 1/2 w^T A w + w^T B u + d^T w``, ``F(u, w) = 1/2 w^T P w + q^T w + ||u||^2/2``:
    the data A, B, d are solver arguments (differentiated too)."""

    def f(u, w, A, B, d):
        return 0.5 * w @ A @ w + w @ B @ u + d @ w

    def solver(u, w0, A, B, d):
        return jnp.linalg.solve(A, -(B @ u + d))

    return f, solver


@SETTINGS
@given(seed=seeds, n_w=st.integers(3, 7), n_u=st.integers(1, 4), cond=st.floats(2.0, 100.0))
def test_quadratic_matches_jaxopt_custom_root(x64, seed, n_w, n_u, cond):
    q = quadratic.random_instance(seed, n_w, n_u, cond=cond)
    rng = np.random.default_rng(seed)
    u = jnp.asarray(rng.standard_normal(n_u))
    f, solver = quad_functions()
    F = lambda u_, w: q.outer(u_, w) + 0.5 * jnp.sum(u_**2)  # noqa: E731 - a direct term in u too
    args = (q.A, q.B, q.d)
    kappa, _ = hessian_kappa(f, u, solver(u, None, *args), args)

    P = blo.Problem(lambda u_, w, batch: f(u_, w, *batch), lambda u_, w, batch=None: F(u_, w), data=args)
    closed = blo.ClosedForm(lambda u_, w0, batch: solver(u_, w0, *batch))

    def via_solve(method):
        return jax.jit(jax.grad(lambda u_: F(u_, blo.solve(P, u_, None, inner=closed, method=method))))(u)

    worst, theirs = compare(f, F, solver, u, None, args, kappa, wrt=(0, 1, 2), check_solve=via_solve)
    # the exact pairings also equal the closed form dF/du - B^T A^{-1} dF/dw
    ref = q.exact_hypergradient(u) + u
    for name in ("CG(n)", "Exact"):
        np.testing.assert_allclose(theirs[name][0], ref, rtol=1e-8 * kappa, atol=1e-10, err_msg=name)
    assert_discriminates(f, F, solver, u, None, args, theirs, tolerance(kappa))


# ------------------------------------------------------------------------------------------------ small MLP
def mlp_case(seed):
    """A 3-4-1 tanh MLP regression (16 points) with per-layer log weight decay ``u``; the solver is
    T plain gradient steps (a ``fori_loop``), shared by jaxopt, ``implicit_diff`` and, as
    ``InnerLoop(optax.sgd(lr), steps=T)``, by ``blojax.solve``."""
    rng = np.random.default_rng(seed)
    X = jnp.asarray(rng.standard_normal((16, 3)))
    y = jnp.asarray(np.sin(rng.standard_normal(16)))
    Xv = jnp.asarray(rng.standard_normal((12, 3)))
    yv = jnp.asarray(np.sin(rng.standard_normal(12)))

    def apply(w, x):
        return jnp.tanh(x @ w["W1"] + w["b1"]) @ w["w2"]

    def f(u, w, X_, y_):
        return (
            jnp.mean((apply(w, X_) - y_) ** 2)
            + 0.5 * jnp.exp(u["W1"]) * (jnp.sum(w["W1"] ** 2) + jnp.sum(w["b1"] ** 2))
            + 0.5 * jnp.exp(u["w2"]) * jnp.sum(w["w2"] ** 2)
        )

    def F(u, w):
        return jnp.mean((apply(w, Xv) - yv) ** 2)

    lr, T = 0.3, 400

    def solver(u, w0, X_, y_):
        g = jax.grad(f, argnums=1)
        return jax.lax.fori_loop(
            0, T, lambda _, w: jax.tree_util.tree_map(lambda a, b: a - lr * b, w, g(u, w, X_, y_)), w0
        )

    w0 = {
        "W1": jnp.asarray(0.5 * rng.standard_normal((3, 4))),
        "b1": jnp.zeros(4),
        "w2": jnp.asarray(0.5 * rng.standard_normal(4)),
    }
    u = {"W1": jnp.asarray(rng.uniform(-1.5, -0.5)), "w2": jnp.asarray(rng.uniform(-1.5, -0.5))}
    inner = blo.InnerLoop(optax.sgd(lr), steps=T)
    return f, F, solver, u, w0, (X, y), inner


@settings(SETTINGS, max_examples=2)
@given(seed=seeds)
@example(seed=0)  # H positive definite at w_T (lambda_min 0.066, kappa 12.5): every pairing runs
@example(seed=156)  # H indefinite at w_T (lambda_min -0.010): the stable pairings only
def test_mlp_matches_jaxopt_custom_root(x64, seed):
    """Where ``H`` at ``w_T`` is positive definite every pairing must agree. Where it is indefinite (T
    steps of a tanh MLP may stop near a saddle) or nearly singular (kappa > 1e3), the full-length plain
    CG and the normal-equation CG have no round-off bound (CG past negative curvature; CGLS with
    kappa^2): both libraries' answers then move by 1e-6 relative under reordered arithmetic, so those
    two pairings are compared only on positive definite instances; the truncated, damped and dense
    ones on all."""
    f, F, solver, u, w0, args, inner = mlp_case(seed)
    kappa, lam = hessian_kappa(f, u, solver(u, w0, *args), args)
    stable = lam[0] > 0 and kappa < 1e3
    P = blo.Problem(lambda u_, w, batch: f(u_, w, *batch), lambda u_, w, batch=None: F(u_, w), data=args)

    def via_solve(method):  # blojax's own inner loop (optax.sgd): the same T steps as the solver
        return jax.jit(jax.grad(lambda u_: F(u_, blo.solve(P, u_, w0, inner=inner, method=method))))(u)

    w_ours = jax.jit(lambda u_: blo.solve(P, u_, w0, inner=inner, method=blo.CG(1)))(u)
    np.testing.assert_allclose(flat(w_ours), flat(solver(u, w0, *args)), rtol=1e-12, atol=1e-14)
    skip = () if stable else ("CG(n)", "CG(n, normal)")
    _, theirs = compare(f, F, solver, u, w0, args, kappa, wrt=(0, 1), check_solve=via_solve, skip=skip)
    assert_discriminates(f, F, solver, u, w0, args, theirs, tolerance(kappa))
