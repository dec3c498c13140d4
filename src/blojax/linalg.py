"""Matrix-free linear solves on pytrees for the IFT system ``H v = b``.

``H = d^2 f / dw dw`` is only ever touched through Hessian-vector products ``v -> H v``, built once per
point by :func:`hvp_at` (forward-over-reverse: ``jax.linearize`` of ``grad_w f``, so the reverse pass is
traced once and every product costs one forward-mode sweep). Each solver returns ``(v, SolveStats)``
with the number of products it took, so that callers can compare measured cost against the floor.

All iteration counts may be Python ints or traced integers (``lax.fori_loop``), which lets a sweep over
K run as one ``vmap``.
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree

from ._tree import tree_axpy, tree_norm, tree_scale, tree_sq_norm, tree_sub, tree_vdot, tree_zeros_like

__all__ = [
    "SolveStats",
    "hvp_at",
    "neumann",
    "cg",
    "cgls",
    "cg_to_tol",
    "dense_hessian",
    "pinv_solve",
]

Matvec = Callable[[object], object]


class SolveStats(NamedTuple):
    """Diagnostics of one linear solve.

    Attributes:
      residual: ``||A v - b||`` at the returned ``v`` (NaN where not computed).
      residual_min: the smallest residual norm seen along the iterations.
      hvps: Hessian-vector products taken (an int32 scalar).
      iters: iterations run.
      breakdown: (CG) a search direction with curvature ``p^T A p <= 1e-10 max_k p_k^T A p_k / ||p_k||^2``
        times ``||p||^2`` was met, i.e. the iteration reached the (numerical) null space of ``A``: the
        system is singular and, if the residual then grows, inconsistent.
    """

    residual: jax.Array
    residual_min: jax.Array
    hvps: jax.Array
    iters: jax.Array
    breakdown: jax.Array | bool = False


def hvp_at(grad_fn: Callable, w):
    """Linearize ``grad_fn`` (= ``grad_w f(u, .)``) at ``w``: returns ``(grad_fn(w), v -> H v)``.

    Forward-over-reverse: the returned product is a JVP through the gradient, evaluated with the
    linearization computed once here.
    """
    g, hvp = jax.linearize(grad_fn, w)
    return g, hvp


def _damped(matvec: Matvec, damping):
    if isinstance(damping, (int, float)) and damping == 0:
        return matvec
    return lambda v: tree_axpy(damping, v, matvec(v))


def _i32(x):
    return jnp.asarray(x, dtype=jnp.int32)


def neumann(matvec: Matvec, b, terms, lr, *, residual: bool = True):
    """K-term Neumann series ``v = alpha * sum_{j=0}^{K-1} (I - alpha H)^j b``.

    With ``p_j = alpha (I - alpha H)^j b`` the partial sums satisfy ``H v - b = -p_K / alpha``, so the
    residual costs one more product (``residual=True``: K products, else K - 1).
    """
    p0 = tree_scale(lr, b)

    def body(_, carry):
        p, acc = carry
        acc = jax.tree_util.tree_map(jnp.add, acc, p)
        p = tree_sub(p, tree_scale(lr, matvec(p)))
        return p, acc

    p, acc = jax.lax.fori_loop(0, terms - 1, body, (p0, tree_zeros_like(b)))
    v = jax.tree_util.tree_map(jnp.add, acc, p)
    if residual:
        pk = tree_sub(p, tree_scale(lr, matvec(p)))
        res = tree_norm(pk) / lr
        return v, SolveStats(res, res, _i32(terms), _i32(terms))
    nan = jnp.asarray(jnp.nan, dtype=res_dtype(b))
    return v, SolveStats(nan, nan, _i32(terms - 1), _i32(terms))


def res_dtype(tree):
    leaves = jax.tree_util.tree_leaves(tree)
    return jnp.result_type(*leaves) if leaves else jnp.float32


def cg(matvec: Matvec, b, iters, damping=0.0):
    """K iterations of conjugate gradients from ``v = 0`` on ``(H + damping I) v = b``.

    If the system is inconsistent (``b`` has a component in the null space of ``H``) plain CG does not
    converge and its iterates can grow without bound; the residual norms along the way are tracked so
    that ``residual / residual_min`` exposes the growth, and ``breakdown`` flags a search direction of
    ~zero curvature. Once the residual reaches round-off level (``100 eps ||b||``) the iterate is kept
    fixed. The residual reported is the recursively updated one (no extra products).
    """
    A = _damped(matvec, damping)
    x0 = tree_zeros_like(b)
    r0 = b
    rs0 = tree_sq_norm(r0)
    dtype = res_dtype(b)
    tiny = jnp.finfo(dtype).tiny
    zero = jnp.asarray(0.0, dtype)
    # Converged (relative residual at round-off level): further steps would only amplify round-off.
    done_at = (100 * jnp.finfo(dtype).eps) ** 2 * rs0

    def body(_, carry):
        x, r, p, rs, rmin, cmax, brk = carry
        active = rs > done_at
        Ap = A(p)
        pAp = tree_vdot(p, Ap)
        pp = tree_sq_norm(p)
        curv = pAp / jnp.maximum(pp, tiny)
        cmax = jnp.maximum(cmax, jnp.where(pp > 0, curv, zero))
        brk = jnp.logical_or(brk, active & (pp > 0) & (curv <= 1e-10 * cmax))
        alpha = rs / jnp.where(pAp == 0, tiny, pAp)
        alpha = jnp.where(active, alpha, 0.0)
        x = tree_axpy(alpha, p, x)
        r = tree_axpy(-alpha, Ap, r)
        rs_new = tree_sq_norm(r)
        beta = jnp.where(active, rs_new / jnp.where(rs == 0, tiny, rs), 1.0)
        p = jax.tree_util.tree_map(lambda pn, po: jnp.where(active, pn, po), tree_axpy(beta, p, r), p)
        return x, r, p, rs_new, jnp.minimum(rmin, jnp.sqrt(rs_new)), cmax, brk

    init = (x0, r0, r0, rs0, jnp.sqrt(rs0), zero, jnp.asarray(False))
    x, r, _, rs, rmin, _, brk = jax.lax.fori_loop(0, iters, body, init)
    return x, SolveStats(jnp.sqrt(rs), rmin, _i32(iters), _i32(iters), brk)


def cgls(matvec: Matvec, b, iters, damping=0.0):
    """K iterations of CG on the normal equations ``A^2 v = A b`` (CGLS, ``A = H + damping I``
    symmetric), from ``v = 0``.

    The iterates stay in ``range(A)``, so on an inconsistent singular system they converge to the
    minimum-norm least-squares solution ``A^+ b`` — the answer ``Exact`` gives — where plain CG
    diverges. Two products per iteration. The residual reported is ``||A v - b||``.
    """
    A = _damped(matvec, damping)
    x = tree_zeros_like(b)
    r = b  # r = b - A x
    s = A(r)
    gamma = tree_sq_norm(s)
    dtype = res_dtype(b)
    tiny = jnp.finfo(dtype).tiny
    eps2 = (100 * jnp.finfo(dtype).eps) ** 2
    r0 = tree_norm(r)
    # ||A|| estimate for the round-off floor of ||A r|| (converged once A r is at round-off level)
    lam0 = jnp.sqrt(gamma) / jnp.maximum(r0, tiny)
    gamma0 = gamma

    def body(_, carry):
        x, r, p, gamma, rmin, lam = carry
        active = gamma > eps2 * jnp.maximum(gamma0, (lam * tree_norm(r)) ** 2)
        q = A(p)
        qq = tree_sq_norm(q)
        lam = jnp.maximum(lam, jnp.sqrt(qq / jnp.maximum(tree_sq_norm(p), tiny)))
        alpha = jnp.where(active, gamma / jnp.where(qq == 0, tiny, qq), 0.0)
        x = tree_axpy(alpha, p, x)
        r = tree_axpy(-alpha, q, r)
        s = A(r)
        gamma_new = jnp.where(active, tree_sq_norm(s), gamma)
        beta = gamma_new / jnp.where(gamma == 0, tiny, gamma)
        p = jax.tree_util.tree_map(lambda pn, po: jnp.where(active, pn, po), tree_axpy(beta, p, s), p)
        return x, r, p, gamma_new, jnp.minimum(rmin, tree_norm(r)), lam

    x, r, _, _, rmin, _ = jax.lax.fori_loop(0, iters, body, (x, r, s, gamma, r0, lam0))
    return x, SolveStats(tree_norm(r), rmin, _i32(2 * iters + 1), _i32(iters))


def cg_to_tol(matvec: Matvec, b, damping, *, rtol, atol, max_iters):
    """Conjugate gradients on ``(H + damping I) v = b`` until ``||r|| <= max(rtol ||b||, atol)`` or
    ``max_iters`` iterations (``lax.while_loop``)."""
    A = _damped(matvec, damping)
    rs0 = tree_sq_norm(b)
    bound = jnp.maximum(rtol * jnp.sqrt(rs0), atol) ** 2
    tiny = jnp.finfo(res_dtype(b)).tiny

    def cond(carry):
        _, _, _, rs, k, _ = carry
        return jnp.logical_and(k < max_iters, rs > bound)

    def body(carry):
        x, r, p, rs, k, rmin = carry
        Ap = A(p)
        pAp = tree_vdot(p, Ap)
        alpha = rs / jnp.where(pAp == 0, tiny, pAp)
        x = tree_axpy(alpha, p, x)
        r = tree_axpy(-alpha, Ap, r)
        rs_new = tree_sq_norm(r)
        p = tree_axpy(rs_new / jnp.where(rs == 0, tiny, rs), p, r)
        return x, r, p, rs_new, k + 1, jnp.minimum(rmin, jnp.sqrt(rs_new))

    init = (tree_zeros_like(b), b, b, rs0, _i32(0), jnp.sqrt(rs0))
    x, _, _, rs, k, rmin = jax.lax.while_loop(cond, body, init)
    return x, SolveStats(jnp.sqrt(rs), rmin, k, k)


def dense_hessian(matvec: Matvec, w):
    """Materialize ``H`` (n x n, n = number of scalars in ``w``) from n batched products.

    Returns ``(H, unravel)`` where ``unravel`` maps a flat vector back to the structure of ``w``.
    """
    flat, unravel = ravel_pytree(w)
    n = flat.shape[0]

    def col(e):
        return ravel_pytree(matvec(unravel(e)))[0]

    H = jax.vmap(col)(jnp.eye(n, dtype=flat.dtype))
    return 0.5 * (H + H.T), unravel


def pinv_solve(H, b_flat, *, rtol=None):
    """``H^+ b`` for a symmetric ``H`` via its eigendecomposition (Moore–Penrose pseudoinverse).

    Eigenvalues with ``|lambda| <= rtol * max|lambda|`` are treated as zero; the default ``rtol`` is
    ``n * eps`` of the dtype, as in ``numpy.linalg.pinv``.
    """
    lam, Q = jnp.linalg.eigh(H)
    n = H.shape[0]
    if rtol is None:
        rtol = n * jnp.finfo(H.dtype).eps
    cutoff = rtol * jnp.max(jnp.abs(lam))
    keep = jnp.abs(lam) > cutoff
    inv = jnp.where(keep, 1.0 / jnp.where(keep, lam, 1.0), 0.0)
    return Q @ (inv * (Q.T @ b_flat))
