"""analysis.projections, and warm/cold-start BLO on least-squares inner problems as projections."""

import jax.numpy as jnp
import numpy as np
import optax
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import blojax as blo
from blojax.analysis import projections as pj


def lines(xs, ys):
    """Datapoints (x_t, y_t) of the model y = w1 x + w2 as lines {w : w1 x_t + w2 = y_t}."""
    xs = np.asarray(xs, float)
    A = np.stack([xs, np.ones_like(xs)], 1)[:, None, :]
    return jnp.asarray(A), jnp.asarray(np.asarray(ys, float)[:, None])


def test_project_affine(x64):
    rng = np.random.default_rng(0)
    A = rng.standard_normal((2, 5))
    b = rng.standard_normal(2)
    w = rng.standard_normal(5)
    p = np.asarray(pj.project_affine(w, A, b))
    np.testing.assert_allclose(A @ p, b, atol=1e-12)  # on the set
    np.testing.assert_allclose(
        np.linalg.lstsq(A.T, w - p, rcond=None)[1], 0, atol=1e-20
    )  # w - p in row space
    np.testing.assert_allclose(np.asarray(pj.project_affine(p, A, b)), p, atol=1e-12)  # idempotent
    x, y = A[0], b[0]
    np.testing.assert_allclose(
        np.asarray(pj.project_affine(w, x, y)), w - ((x @ w - y) / (x @ x)) * x, atol=1e-12
    )


def test_cyclic_lines_with_common_point_converge(x64):
    w_c = np.array([0.6, 0.4])
    xs = np.array([-1.5, -0.4, 0.6, 1.7])
    A, b = lines(xs, w_c[0] * xs + w_c[1])
    ws = np.asarray(pj.alternating_projections(A, b, jnp.array([-1.2, -1.4]), sweeps=60))
    cyc = pj.detect_cycle(ws, tol=1e-10)
    assert cyc.converged and cyc.period == 1
    np.testing.assert_allclose(cyc.points[0], w_c, atol=1e-10)
    np.testing.assert_allclose(
        np.asarray(pj.dykstra(A, b, jnp.array([-1.2, -1.4]), sweeps=60)), w_c, atol=1e-10
    )


def test_cyclic_lines_without_common_point_cycle_with_period_4(x64):
    xs = np.array([-1.5, -0.4, 0.6, 1.7])
    A, b = lines(xs, 0.6 * xs + 0.4 + np.array([0.5, -0.6, 0.45, -0.55]))
    ws = np.asarray(pj.alternating_projections(A, b, jnp.array([-1.2, -1.4]), sweeps=60))
    cyc = pj.detect_cycle(ws, tol=1e-10)
    assert not cyc.converged and cyc.period == 4
    assert cyc.spread > 0.1  # four distinct points
    for t, p in enumerate(cyc.points):  # each point of the cycle lies on its line
        assert min(abs(float(A[i, 0] @ p - b[i, 0])) for i in range(4)) < 1e-10
    # a sequence with no repetition is reported as such
    assert pj.detect_cycle(np.arange(30.0)[:, None]).period == 0


def test_dykstra_is_nearest_point_of_intersection(x64):
    rng = np.random.default_rng(1)
    A = rng.standard_normal((2, 1, 4))
    b = rng.standard_normal((2, 1))
    w0 = rng.standard_normal(4)
    nearest = np.asarray(pj.project_affine(w0, A[:, 0], b[:, 0]))  # two hyperplanes in R^4
    np.testing.assert_allclose(
        np.asarray(pj.dykstra(jnp.asarray(A), jnp.asarray(b), w0, sweeps=3000)), nearest, atol=1e-8
    )


def _ls_problem():
    def f(u, w, batch):
        a, y = batch
        return 0.5 * (a @ w - y) ** 2

    return blo.Problem(inner=f, outer=lambda u, w: 0.0 * jnp.sum(w))


def _run(cls, inner, A, b, w0, steps):
    m = A.shape[0]
    idx = jnp.arange(steps) % m
    algo = cls(_ls_problem(), inner, blo.Identity(lr=1.0), optax.sgd(0.0), record=lambda u, w: {"w_t": w})
    _, hist = algo.run(algo.init(jnp.zeros(1), w0), steps, inner_batches=(A[idx, 0], b[idx, 0]))
    return np.concatenate([np.asarray(w0)[None], np.asarray(hist["w_t"])])


def test_full_warm_start_is_projection_of_previous_w_and_cold_start_reprojects_w0(x64):
    xs = np.array([-1.5, -0.4, 0.6, 1.7])
    A, b = lines(xs, 0.6 * xs + 0.4 + np.array([0.5, -0.6, 0.45, -0.55]))
    w0 = jnp.array([-1.2, -1.4])
    lr = 1.0 / float(jnp.max(jnp.sum(A[:, 0] ** 2, axis=1)))
    full = blo.InnerLoop(optax.sgd(lr), tol=1e-13, max_steps=5000)
    warm = _run(blo.WarmStart, full, A, b, w0, 12)
    np.testing.assert_allclose(warm, np.asarray(pj.alternating_projections(A, b, w0, 3)), atol=1e-11)
    for t in range(1, 13):  # step by step: the projection of the previous w onto S_t
        i = (t - 1) % 4
        np.testing.assert_allclose(
            warm[t], np.asarray(pj.project_affine(warm[t - 1], A[i, 0], b[i, 0])), atol=1e-11
        )
    cold = _run(blo.ColdStart, full, A, b, w0, 12)
    np.testing.assert_allclose(cold, np.asarray(pj.cold_start_projections(A, b, w0, 3)), atol=1e-11)
    for t in range(1, 13):
        i = (t - 1) % 4
        np.testing.assert_allclose(cold[t], np.asarray(pj.project_affine(w0, A[i, 0], b[i, 0])), atol=1e-11)
    # partial warm-start (one GD step) is not a projection: it stops short of the line
    partial = _run(blo.WarmStart, blo.InnerLoop(optax.sgd(0.5 * lr), steps=1), A, b, w0, 4)
    assert abs(float(A[0, 0] @ partial[1] - b[0, 0])) > 1e-3


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 10_000))
def test_random_lines_through_a_point_converge_to_it(x64, seed):
    rng = np.random.default_rng(seed)
    point = rng.standard_normal(2)
    angles = np.sort(rng.uniform(0, np.pi, 4))
    angles = angles[0] + np.arange(4) * np.pi / 4 + rng.uniform(-0.2, 0.2, 4)  # well separated
    A, b = pj.lines_through(np.tile(point, (4, 1)), angles)
    ws = np.asarray(
        pj.alternating_projections(jnp.asarray(A), jnp.asarray(b), rng.standard_normal(2), sweeps=80)
    )
    cyc = pj.detect_cycle(ws, tol=1e-9)
    assert cyc.converged
    np.testing.assert_allclose(cyc.points[0], point, atol=1e-8)


def test_errors():
    with pytest.raises(ValueError, match="stacked"):
        pj.alternating_projections(jnp.ones((2, 2)), jnp.ones(2), jnp.zeros(2), 2)
    with pytest.raises(ValueError, match="one angle per point"):
        pj.lines_through(np.zeros((2, 2)), [0.1])
