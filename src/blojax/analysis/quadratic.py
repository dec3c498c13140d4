r"""Closed forms for the quadratic setting of PAPER.md §4 (use float64).

Inner objective (``A`` PSD, possibly singular):

    f(u, w) = 1/2 [w; u]^T [[A, B], [B^T, C]] [w; u] + d^T w + e^T u

Outer objective:

    F(u, w) = 1/2 w^T P w + q^T w

(the paper writes the linear term as ``f^T w``; it is ``q`` here to keep ``f`` for the inner objective).
For every ``u`` the inner problem is bounded below iff ``B u + d`` lies in range(A);
:func:`random_instance` builds instances with ``range(B), d in range(A)``.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

__all__ = [
    "gd_limit",
    "QuadraticBilevel",
    "random_instance",
    "nearest_minimizer",
]


def _pinv(A, rtol=None):
    A = jnp.asarray(A)
    if rtol is None:
        rtol = max(A.shape) * jnp.finfo(A.dtype).eps * 10
    return jnp.linalg.pinv(A, rtol=rtol, hermitian=bool(A.shape[0] == A.shape[1]))


def gd_limit(A, b, w0):
    """Limit of gradient descent on ``g(w) = 1/2 w^T A w + b^T w`` from ``w0`` (A PSD, b in range(A),
    step ``alpha < 2 / lambda_max``): ``-A^+ b + (I - A^+ A) w0``, the minimizer nearest ``w0``
    (PAPER.md §4.1)."""
    Ap = _pinv(A)
    n = A.shape[0]
    return -Ap @ b + (jnp.eye(n, dtype=Ap.dtype) - Ap @ A) @ w0


def nearest_minimizer(G, c, u0):
    """Minimizer of the convex quadratic ``1/2 u^T G u + c^T u`` nearest ``u0``:
    ``u0 - G^+ (G u0 + c)`` (requires ``c in range(G)``)."""
    return u0 - _pinv(G) @ (G @ u0 + c)


@dataclasses.dataclass(frozen=True, eq=False)
class QuadraticBilevel:
    """A quadratic bilevel problem with its closed forms (see the module docstring)."""

    A: jax.Array
    B: jax.Array
    C: jax.Array
    d: jax.Array
    e: jax.Array
    P: jax.Array
    q: jax.Array

    # -------------------------------------------------------------- the objectives
    def inner(self, u, w):
        """``f(u, w)``."""
        return 0.5 * w @ self.A @ w + w @ self.B @ u + 0.5 * u @ self.C @ u + self.d @ w + self.e @ u

    def outer(self, u, w):
        """``F(u, w)``."""
        return 0.5 * w @ self.P @ w + self.q @ w

    def problem(self):
        from ..problem import Problem

        return Problem(inner=self.inner, outer=self.outer)

    # -------------------------------------------------------------- closed forms
    @property
    def A_pinv(self):
        return _pinv(self.A)

    def w_star(self, u, w0=None):
        """Minimum-displacement inner solution ``-A^+(B u + d) + (I - A^+ A) w0`` (``w0 = 0``: the
        minimum-norm one, ``-A^+(B u + d)``)."""
        b = self.B @ u + self.d
        if w0 is None:
            return -self.A_pinv @ b
        return gd_limit(self.A, b, w0)

    def jacobian(self):
        """Canonical (minimum-Frobenius-norm) response Jacobian ``J = -A^+ B``."""
        return -self.A_pinv @ self.B

    def exact_hypergradient(self, u, w=None):
        """Hypergradient with the canonical Jacobian at ``(u, w)`` (default ``w = w*(u)``):
        ``dF/du + J^T dF/dw = -B^T A^+ (P w + q)``."""
        if w is None:
            w = self.w_star(u)
        return self.jacobian().T @ (self.P @ w + self.q)

    def outer_hessian(self):
        """Hessian of ``F*(u) = F(u, w*(u))``: ``B^T A^+ P A^+ B``."""
        Ap = self.A_pinv
        return self.B.T @ Ap @ self.P @ Ap @ self.B

    def outer_linear(self):
        """Linear term ``c`` of ``F*(u) = 1/2 u^T G u + c^T u + const``:
        ``c = B^T A^+ (P A^+ d - q)``."""
        Ap = self.A_pinv
        return self.B.T @ Ap @ (self.P @ Ap @ self.d - self.q)

    def F_star(self, u):
        """``F*(u) = F(u, w*(u))`` with the minimum-norm inner solution."""
        return self.outer(u, self.w_star(u))

    def min_norm_outer_solution(self, u0):
        """``argmin_{u in argmin F*} ||u - u0||``, where cold-start BLO with exact hypergradients and
        ``w0 = 0`` converges (PAPER.md §4.3)."""
        return nearest_minimizer(self.outer_hessian(), self.outer_linear(), u0)

    # -------------------------------------------------------------- spectral helpers
    def inner_eigenvalues(self):
        return jnp.linalg.eigvalsh(self.A)


def random_instance(
    seed: int,
    n_w: int,
    n_u: int,
    rank: int | None = None,
    *,
    outer_rank: int | None = None,
    cond: float = 10.0,
    dtype=jnp.float64,
) -> QuadraticBilevel:
    """A random quadratic bilevel instance (NumPy RNG ``seed``).

    ``A = U diag(s) U^T`` has ``rank`` eigenvalues in ``[1, cond]`` (the rest 0: an overparameterized,
    singular inner problem when ``rank < n_w``); ``B = U_r X`` and ``d = U_r y`` lie in range(A) so the
    inner problem is bounded for every ``u``. ``P`` is PSD of rank ``outer_rank`` (default ``n_w``).
    """
    rng = np.random.default_rng(seed)
    rank = n_w if rank is None else rank
    if not 1 <= rank <= n_w:
        raise ValueError(f"rank must be in [1, n_w={n_w}], got {rank}")
    U, _ = np.linalg.qr(rng.standard_normal((n_w, n_w)))
    Ur = U[:, :rank]
    s = rng.uniform(1.0, cond, size=rank)
    A = (Ur * s) @ Ur.T
    B = Ur @ rng.standard_normal((rank, n_u))
    d = Ur @ rng.standard_normal(rank)
    C = np.eye(n_u)
    e = rng.standard_normal(n_u)
    outer_rank = n_w if outer_rank is None else outer_rank
    R = rng.standard_normal((n_w, outer_rank))
    P = R @ R.T / n_w
    q = rng.standard_normal(n_w)
    # Keep the outer problem bounded: q in range(P) ...
    q = P @ q
    A = 0.5 * (A + A.T)
    arrs = [jnp.asarray(x, dtype=dtype) for x in (A, B, C, d, e, P, q)]
    return QuadraticBilevel(*arrs)
