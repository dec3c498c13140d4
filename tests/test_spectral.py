"""analysis.spectral: the maps lambda -> h(lambda) against the matrices the library's strategies apply."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import blojax as blo
from blojax.analysis import spectral


def random_psd(seed, n, rank, cond=50.0):
    rng = np.random.default_rng(seed)
    Q, _ = np.linalg.qr(rng.standard_normal((n, n)))
    s = np.zeros(n)
    s[:rank] = np.exp(rng.uniform(0, np.log(cond), rank))
    return (Q * s) @ Q.T, rng


N = 6
KMAX = 40


@jax.jit
def applied_matrices(H, alpha, eps, K):
    """The matrices Neumann, Damped, Exact, Identity and Unroll apply (K and eps traced: one compile)."""
    methods = [
        blo.Neumann(terms=K, lr=alpha),
        blo.Damped(eps=eps, rtol=1e-14, max_iters=100),
        blo.Exact(),
        blo.Identity(lr=alpha),
        blo.Unroll(steps=K, max_steps=KMAX),
    ]
    return [spectral.operator_matrix(m, H, lr=alpha) for m in methods]


@jax.jit
def cg_solve(H, b, K):
    return blo.linalg.cg(lambda v: H @ v, b, K)[0]


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    seed=st.integers(0, 10_000),
    rank=st.integers(1, N),
    K=st.integers(1, KMAX),
    eps=st.floats(1e-2, 1e2),
    scale=st.floats(0.1, 1.9),
)
def test_maps_match_applied_matrices(x64, seed, rank, K, eps, scale):
    H, _ = random_psd(seed, N, rank)
    lam, Q = np.linalg.eigh(H)
    alpha = scale / lam.max()
    maps = [
        spectral.neumann(lam, K, alpha),
        spectral.damped(lam, eps),
        spectral.inverse(lam),
        spectral.identity(lam, alpha),
        spectral.unroll(lam, K, alpha),
    ]
    names = ["Neumann", "Damped", "Exact", "Identity", "Unroll"]
    mats = applied_matrices(jnp.asarray(H), alpha, eps, K)
    for method, S, h in zip(names, mats, maps):
        S = np.asarray(S)
        h = np.asarray(h)
        ref = (Q * h) @ Q.T
        tol = 1e-9 * np.max(np.abs(h))
        np.testing.assert_allclose(S, ref, atol=tol, err_msg=method)
        # the eigenvalues of the applied matrix are h(lambda_i)
        np.testing.assert_allclose(np.sort(np.linalg.eigvalsh(0.5 * (S + S.T))), np.sort(h), atol=tol)
    # response() dispatches to the same maps
    np.testing.assert_allclose(
        spectral.response(blo.Neumann(terms=K, lr=alpha), lam), spectral.neumann(lam, K, alpha)
    )


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 10_000), K=st.integers(1, N))
def test_cg_map_matches_cg(x64, seed, K):
    H, rng = random_psd(seed, N, N, cond=20.0)  # positive definite: a consistent system
    b = rng.standard_normal(N)
    lam, Q = np.linalg.eigh(H)
    x = cg_solve(jnp.asarray(H), jnp.asarray(b), K)
    h = spectral.response(blo.CG(iters=K), lam, H=H, b=b)
    np.testing.assert_allclose(np.asarray(x), Q @ (h * (Q.T @ b)), rtol=1e-8, atol=1e-10)
    theta = spectral.ritz_values(H, b, K)
    assert theta.shape == (K,)
    assert lam.min() - 1e-9 <= theta.min() and theta.max() <= lam.max() + 1e-9  # interlacing bounds


def test_closed_forms_and_limits(x64):
    lam = np.array([0.0, 1e-12, 1e-3, 0.5, 1.0, 1.9])
    K, a = 7, 1.0
    h = np.asarray(spectral.neumann(lam, K, a))
    direct = np.array([a * sum((1 - a * l) ** j for j in range(K)) for l in lam])
    np.testing.assert_allclose(h, direct, rtol=1e-12)
    assert h[0] == pytest.approx(a * K)
    np.testing.assert_allclose(spectral.damped(lam, 0.5), 1 / (lam + 0.5))
    inv = np.asarray(spectral.inverse(np.array([0.0, 2.0, 4.0])))
    np.testing.assert_allclose(inv, [0.0, 0.5, 0.25])
    # CG with K = n on a positive definite matrix is the inverse at the eigenvalues
    H, rng = random_psd(3, 4, 4)
    b = rng.standard_normal(4)
    lam4 = np.linalg.eigvalsh(H)
    np.testing.assert_allclose(spectral.cg(lam4, spectral.ritz_values(H, b, 4)), 1 / lam4, rtol=1e-8)
    # small-lambda branch of the CG map: sum of 1/theta at 0
    theta = np.array([1.0, 4.0])
    assert spectral.cg(np.array([0.0]), theta)[0] == pytest.approx(1.25)
    # Neumann ~ damping with eps = 1/(alpha K) at small lambda
    assert spectral.neumann(np.array([0.0]), 100, 0.01)[0] == pytest.approx(
        1 / spectral.damped(np.array([0.0]), 1.0)[0]
    )


def test_errors():
    with pytest.raises(ValueError, match="pass H and b"):
        spectral.response(blo.CG(iters=2), np.ones(3))
    with pytest.raises(TypeError, match="Unroll"):
        spectral.response(blo.Unroll(steps=2), np.ones(3))
    with pytest.raises(TypeError, match="depends on b"):
        spectral.operator_matrix(blo.CG(iters=2), jnp.eye(2))
    with pytest.raises(ValueError, match="lr"):
        spectral.operator_matrix(blo.Unroll(steps=2), jnp.eye(2))
    with pytest.raises(ValueError, match="K must be"):
        spectral.ritz_values(np.eye(2), np.ones(2), 0)
