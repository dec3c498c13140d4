r"""The finite-sum bilevel quadratic of the stochastic bilevel benchmarks, and its exact solution.

Each sample ``i`` carries ``(H_i, C_i, X_i, a_i, c_i)`` and the per-sample objective::

    q_i(u, w) = 1/2 w^T H_i w + 1/2 u^T C_i u + u^T X_i w + a_i^T w + c_i^T u

Inner ``f = mean_i q_i`` over the inner data, outer ``F = mean_j q_j`` over the outer data (each
with its own matrices). With the means ``H = mean H_i`` etc. (inner) and ``H', C', X', a', c'``
(outer), and ``H`` invertible::

    w*(u) = -H^{-1} (X^T u + a),    v*(u) = -H^{-1} grad_w F(u, w*(u)),
    grad h(u) = grad_u F(u, w*(u)) + X v*(u),   h(u) = F(u, w*(u)).

The benchmark's metric is ``||grad h(u)||^2``.
"""

from __future__ import annotations

import jax.numpy as jnp

from .oracles import MinibatchProblem

__all__ = ["quadratic_objective", "quadratic_problem", "quadratic_metrics"]


def quadratic_objective(u, w, batch):
    """``mean_i q_i(u, w)`` over the samples of ``batch = dict(H, C, X, a, c)``."""
    H, C, X, a, c = batch["H"], batch["C"], batch["X"], batch["a"], batch["c"]
    per = (
        0.5 * jnp.einsum("i,bij,j->b", w, H, w)
        + 0.5 * jnp.einsum("i,bij,j->b", u, C, u)
        + jnp.einsum("i,bij,j->b", u, X, w)
        + a @ w
        + c @ u
    )
    return jnp.mean(per)


def quadratic_problem(inner_data: dict, outer_data: dict) -> MinibatchProblem:
    """The :class:`MinibatchProblem` with :func:`quadratic_objective` on both levels."""
    return MinibatchProblem(
        quadratic_objective, quadratic_objective, inner_data=inner_data, outer_data=outer_data
    )


def quadratic_metrics(inner_data: dict, outer_data: dict):
    """``metrics(u, w) -> dict(value=||grad h(u)||^2, h=h(u), inner_distance=||w - w*(u)||^2)``
    from the full-batch means (dense solves; small dimensions)."""
    mi = {k: jnp.mean(v, axis=0) for k, v in inner_data.items()}
    mo = {k: jnp.mean(v, axis=0) for k, v in outer_data.items()}

    def metrics(u, w):
        w_star = -jnp.linalg.solve(mi["H"], mi["X"].T @ u + mi["a"])
        Fw = mo["H"] @ w_star + mo["X"].T @ u + mo["a"]
        Fu = mo["C"] @ u + mo["X"] @ w_star + mo["c"]
        v_star = -jnp.linalg.solve(mi["H"], Fw)
        g = Fu + mi["X"] @ v_star
        h = (
            0.5 * w_star @ mo["H"] @ w_star
            + 0.5 * u @ mo["C"] @ u
            + u @ mo["X"] @ w_star
            + mo["a"] @ w_star
            + mo["c"] @ u
        )
        return dict(value=g @ g, h=h, inner_distance=jnp.sum((w - w_star) ** 2))

    return metrics
