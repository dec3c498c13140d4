r"""Warm-start as projections (PAPER.md §4.8, Fig. 8).

For a least-squares inner objective ``f(u, w) = 1/2 ||A w - b||^2`` whose data ``(A, b)`` are set by the
outer parameters ``u``, the solution set is the affine set ``S(u) = {w : A w = b}`` (when consistent)
and gradient descent from ``w`` reaches the point of ``S(u)`` nearest ``w``: the Euclidean projection

    P_S(w) = w - A^+ (A w - b)          (one datapoint: w - ((x^T w - y) / (x^T x)) x).

Cold-start re-projects the fixed ``w0`` onto every new ``S(u_t)``; full warm-start projects the previous
``w``. For a cyclic sequence of solution sets the warm-start iterates are Kaczmarz / alternating
projections: they converge to a point of the intersection if it is non-empty, and settle on a limit
cycle otherwise. :func:`dykstra` finds the nearest point of the intersection (when non-empty), and
:func:`detect_cycle` tells convergence from a limit cycle and reports its period.

Sets are given as stacked arrays: ``A`` of shape ``(m, k, d)`` and ``b`` of shape ``(m, k)`` for ``m``
affine sets of ``k`` equations each in ``R^d`` (a line in the plane: ``k = 1, d = 2``).
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

__all__ = [
    "project_affine",
    "project_hyperplane",
    "alternating_projections",
    "cold_start_projections",
    "dykstra",
    "CycleInfo",
    "detect_cycle",
    "lines_through",
]


def project_affine(w, A, b):
    """Projection of ``w`` onto ``{w : A w = b}``: ``w - A^+ (A w - b)`` (``A``: ``(k, d)`` or a single
    row ``(d,)``). For an inconsistent system this is the projection onto the least-squares set
    ``{w : A^T A w = A^T b}``, the minimum-displacement minimizer of ``1/2 ||A w - b||^2``."""
    w = jnp.asarray(w)
    A = jnp.asarray(A)
    b = jnp.asarray(b)
    if A.ndim == 1:
        return project_hyperplane(w, A, b)
    return w - jnp.linalg.pinv(A) @ (A @ w - b)


def project_hyperplane(w, x, y):
    """Projection of ``w`` onto ``{w : x^T w = y}``: ``w - ((x^T w - y) / (x^T x)) x``."""
    return w - ((x @ w - y) / (x @ x)) * x


def _check_sets(A, b):
    A = jnp.asarray(A)
    b = jnp.asarray(b)
    if A.ndim != 3 or b.shape != A.shape[:2]:
        raise ValueError(
            f"sets must be stacked as A: (m, k, d) and b: (m, k); got A {A.shape} and b {b.shape}"
        )
    return A, b


def _project_stacked(w, A, b):
    return w - jnp.linalg.pinv(A) @ (A @ w - b)


@functools.partial(jax.jit, static_argnames="sweeps")
def alternating_projections(A, b, w0, sweeps: int):
    """Cyclic (Kaczmarz) projections ``w_{t+1} = P_{S_{t mod m}}(w_t)`` for ``sweeps`` passes over the
    ``m`` sets: the full warm-start iterates. Returns ``(sweeps * m + 1, d)`` iterates, ``w0`` first."""
    A, b = _check_sets(A, b)
    m = A.shape[0]
    idx = jnp.arange(sweeps * m) % m

    def step(w, i):
        w = _project_stacked(w, A[i], b[i])
        return w, w

    _, ws = jax.lax.scan(step, jnp.asarray(w0, A.dtype), idx)
    return jnp.concatenate([jnp.asarray(w0, A.dtype)[None], ws])


@functools.partial(jax.jit, static_argnames="sweeps")
def cold_start_projections(A, b, w0, sweeps: int):
    """Cold-start iterates: ``w_{t+1} = P_{S_{t mod m}}(w0)`` (every set re-projects the fixed ``w0``).
    Same layout as :func:`alternating_projections`."""
    A, b = _check_sets(A, b)
    m = A.shape[0]
    w0 = jnp.asarray(w0, A.dtype)
    per_set = jax.vmap(lambda Ai, bi: _project_stacked(w0, Ai, bi))(A, b)
    ws = per_set[jnp.arange(sweeps * m) % m]
    return jnp.concatenate([w0[None], ws])


@functools.partial(jax.jit, static_argnames="sweeps")
def dykstra(A, b, w0, sweeps: int):
    """Dykstra's algorithm: the projection of ``w0`` onto the intersection of the ``m`` sets (when it is
    non-empty). Returns the final iterate after ``sweeps`` passes. For affine sets the correction terms
    stay in the row spaces and the iterates coincide with alternating projections after every pass,
    which also converge to the nearest point (von Neumann); the two differ for general convex sets."""
    A, b = _check_sets(A, b)
    m = A.shape[0]
    w0 = jnp.asarray(w0, A.dtype)

    def sweep(carry, _):
        w, incr = carry

        def one(c, i):
            w_, inc_ = c
            y = w_ + inc_[i]
            p = _project_stacked(y, A[i], b[i])
            return (p, inc_.at[i].set(y - p)), None

        (w, incr), _ = jax.lax.scan(one, (w, incr), jnp.arange(m))
        return (w, incr), None

    (w, _), _ = jax.lax.scan(sweep, (w0, jnp.zeros((m,) + w0.shape, w0.dtype)), None, length=sweeps)
    return w


class CycleInfo(NamedTuple):
    """Result of :func:`detect_cycle`.

    converged: the tail is constant (period 1); period: the smallest period found (0: none within
    ``max_period``); points: one period of the tail (``(period, d)``; the limit point when converged);
    gap: ``max_t ||w_t - w_{t - period}||`` over the checked tail (the evidence); spread: the largest
    distance between the points of the cycle (0 when converged)."""

    converged: bool
    period: int
    points: np.ndarray
    gap: float
    spread: float


def detect_cycle(
    iterates, *, tol: float = 1e-9, max_period: int | None = None, repeats: int = 3
) -> CycleInfo:
    """Find the smallest ``p`` with ``||w_t - w_{t-p}|| <= tol * scale`` over the last ``repeats * p``
    iterates (``scale = max(1, max_t ||w_t||)``). ``p = 1`` means convergence; ``p > 1`` a limit cycle
    of period ``p``; none found gives ``period = 0``."""
    X = np.asarray(iterates, dtype=np.float64)
    if X.ndim == 1:
        X = X[:, None]
    T = X.shape[0]
    scale = max(1.0, float(np.max(np.linalg.norm(X, axis=1))))
    max_period = max_period or max(1, T // (repeats + 1))
    for p in range(1, max_period + 1):
        n = repeats * p
        if n + p > T:
            break
        tail = X[T - n :]
        prev = X[T - n - p : T - p]
        gap = float(np.max(np.linalg.norm(tail - prev, axis=1)))
        if gap <= tol * scale:
            pts = X[T - p :]
            spread = float(np.max(np.linalg.norm(pts[:, None] - pts[None], axis=-1))) if p > 1 else 0.0
            return CycleInfo(p == 1, p, pts, gap, spread)
    return CycleInfo(False, 0, X[-1:], float("nan"), float("nan"))


def lines_through(points, angles):
    """Lines ``{w : x_i^T w = y_i}`` in the plane through ``points[i]`` with normal direction at
    ``angles[i]`` (radians): returns ``(A, b)`` stacked as ``(m, 1, 2)`` and ``(m, 1)``."""
    P = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    th = np.asarray(angles, dtype=np.float64).reshape(-1)
    if P.shape[0] != th.shape[0]:
        raise ValueError(f"need one angle per point, got {P.shape[0]} points and {th.shape[0]} angles")
    X = np.stack([np.cos(th), np.sin(th)], axis=1)
    y = np.sum(X * P, axis=1)
    return X[:, None, :], y[:, None]
