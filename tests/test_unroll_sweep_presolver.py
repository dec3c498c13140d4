"""hypergrad.sweep_presolver: a vmapped sweep over Unroll's K takes T inner steps in all, like a static K.

Inner problem: a random strongly convex quadratic ``f(u, w) = 1/2 w^T A w - w^T B u`` with SGD at step
``alpha``; outer ``F(u, w) = 1/2 ||w - t||^2``. ``Unroll(K)`` with ``InnerLoop(steps=T)`` runs
``T - K`` plain steps and differentiates the last K; ``sweep_presolver`` must give the same for every
entry of a traced K (float64, to round-off), and the plain ``Unroll.presolver`` under a traced K must
not (it takes ``T - K_max + K`` steps: the reason the function exists).
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import blojax as blo
from blojax.hypergrad import sweep_presolver

from conftest import assert_close

T, KMAX = 12, 6
KS = (1, 3, 6)


def quadratic(seed, n=4, m=3):
    rng = np.random.default_rng(seed)
    Q, _ = np.linalg.qr(rng.standard_normal((n, n)))
    A = jnp.asarray((Q * rng.uniform(0.5, 2.0, n)) @ Q.T)
    B = jnp.asarray(rng.standard_normal((n, m)))
    t = jnp.asarray(rng.standard_normal(n))
    problem = blo.Problem(
        inner=lambda u, w: 0.5 * w @ A @ w - w @ B @ u, outer=lambda u, w: 0.5 * jnp.sum((w - t) ** 2)
    )
    u = jnp.asarray(rng.standard_normal(m))
    return problem, u, jnp.zeros(n), 0.4  # alpha < 2 / lambda_max(A) = 1


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 10_000))
def test_sweep_matches_static_unroll(x64, seed):
    problem, u, w0, alpha = quadratic(seed)
    inner = blo.InnerLoop(optax.sgd(alpha), steps=T)

    def swept(K):
        method = blo.Unroll(steps=K, max_steps=KMAX)
        pre = sweep_presolver(inner, method)
        w_s, s_s, info = pre.solve(problem, u, w0, pre.init(w0))
        g, _ = blo.hypergradient(problem, u, w_s, method, pre, inner_state=s_s)
        return w_s, g, info.steps

    W, G, steps = jax.jit(jax.vmap(swept))(jnp.asarray(KS))
    for i, K in enumerate(KS):
        static = blo.Unroll(K)
        w_ref = static.presolver(inner).run(problem, u, w0)[0]  # T - K plain steps
        g_ref, _ = blo.hypergradient(problem, u, w_ref, static, inner)
        # a few roundings of a size-1 iterate: the masked and the plain loop apply the same updates
        assert_close(W[i], w_ref, ulps=8, err_msg=f"start, K={K}")
        assert_close(G[i], g_ref, ulps=64, err_msg=f"hypergradient, K={K}")
        assert int(steps[i]) == T - K
    # the strategy's own presolver under a traced K starts T - K_max steps in: a different point
    w_plain = blo.Unroll(KMAX).presolver(inner).run(problem, u, w0)[0]
    assert float(jnp.linalg.norm(w_plain - W[0])) > 1e-6


def test_cold_start_sweep_equals_runs_per_k(x64):
    """A ColdStart K sweep as one vmap equals one ColdStart run per static K (T inner steps each)."""
    problem, u0, w0, alpha = quadratic(3)
    inner = blo.InnerLoop(optax.sgd(alpha), steps=T)

    def run(K):
        method = blo.Unroll(steps=K, max_steps=KMAX)
        algo = blo.ColdStart(problem, sweep_presolver(inner, method), method, optax.sgd(0.1))
        state, hist = algo.run(algo.init(u0, w0), 5)
        return state.u, hist["F"]

    U, F = jax.vmap(run)(jnp.asarray(KS))
    for i, K in enumerate(KS):
        algo = blo.ColdStart(problem, inner, blo.Unroll(K), optax.sgd(0.1))
        state, hist = algo.run(algo.init(u0, w0), 5)
        assert_close(U[i], state.u, ulps=64, err_msg=f"u, K={K}")
        assert_close(F[i], hist["F"], ulps=64, err_msg=f"F history, K={K}")


def test_bad_arguments_are_named():
    inner = blo.InnerLoop(optax.sgd(0.1), steps=T)
    with pytest.raises(TypeError, match="method must be Unroll"):
        sweep_presolver(inner, blo.Unroll(3))  # no max_steps: nothing to pad
    with pytest.raises(TypeError, match="method must be Unroll"):
        sweep_presolver(inner, blo.Neumann(3, 0.1))
    with pytest.raises(TypeError, match="inner must be an InnerLoop with steps=T"):
        sweep_presolver(blo.InnerLoop(optax.sgd(0.1), tol=1e-6), blo.Unroll(3, max_steps=4))
    with pytest.raises(ValueError, match=r"max_steps \(20\) must be <= InnerLoop.steps \(12\)"):
        sweep_presolver(inner, blo.Unroll(3, max_steps=20))
