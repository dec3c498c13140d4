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

from ._tree import (
    tree_all_finite,
    tree_axpy,
    tree_norm,
    tree_scale,
    tree_sq_norm,
    tree_sub,
    tree_vdot,
    tree_zeros_like,
)

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
      residual: ``||A v - b||`` at the returned ``v`` (NaN where not computed);
      residual_min: the smallest residual norm seen along the iterations;
      hvps: Hessian-vector products taken (an int32 scalar);
      iters: iterations run;
      breakdown: (CG) a search direction with curvature ``p^T A p <= 1e-10 max_k p_k^T A p_k / ||p_k||^2``
        times ``||p||^2`` was met, i.e. the iteration reached the (numerical) null space of ``A``: the
        system is singular and, if the residual then grows, inconsistent;
      status: a :class:`blojax.Status` code (int32): CONVERGED, MAX_STEPS (a tolerance solve stopped at
        its bound), BREAKDOWN (negative curvature), INCONSISTENT (zero curvature with a residual left,
        or the residual grew more than ``GROWTH_LIMIT`` times its minimum), NONFINITE.
    """

    residual: jax.Array
    residual_min: jax.Array
    hvps: jax.Array
    iters: jax.Array
    breakdown: jax.Array | bool = False
    status: jax.Array | int = 0


#: CG reports INCONSISTENT when its final residual exceeds this multiple of the smallest one seen.
GROWTH_LIMIT = 100.0


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
        return v, SolveStats(res, res, _i32(terms), _i32(terms), False, _finite_status(v))
    nan = jnp.asarray(jnp.nan, dtype=res_dtype(b))
    return v, SolveStats(nan, nan, _i32(terms - 1), _i32(terms), False, _finite_status(v))


def _finite_status(v):
    """CONVERGED (0) or NONFINITE (4)."""
    return jnp.where(tree_all_finite(v), 0, 4).astype(jnp.int32)


def res_dtype(tree):
    leaves = jax.tree_util.tree_leaves(tree)
    return jnp.result_type(*leaves) if leaves else jnp.float32


def cg(matvec: Matvec, b, iters, damping=0.0, *, x0=None, rtol=0.0, atol=0.0, stop_at_breakdown=False):
    """Conjugate gradients on ``(H + damping I) v = b`` from ``x0`` (default 0): at most ``iters``
    iterations, stopping early once ``||r|| <= max(rtol ||b||, atol)`` (and, always, once the residual
    reaches round-off level ``100 eps ||b||``, where further steps would only amplify round-off).

    The one CG of blojax: plain (``CG(K)``), damped (``CG(K, damping)``) and to tolerance
    (``Damped(eps)``: ``rtol``/``atol`` with ``iters`` the bound). The residual reported is the
    recursively updated one (no extra products); ``hvps`` counts the products actually taken.

    Status (see :class:`blojax.Status`): CONVERGED (the tolerance was met, or, without a tolerance,
    the ``iters`` iterations ran); MAX_STEPS (a tolerance was given and not met within ``iters``);
    BREAKDOWN (a direction of negative curvature ``p^T A p < 0``: ``A`` is indefinite and CG's iterate
    is meaningless past it); INCONSISTENT (a direction of zero curvature, ``|p^T A p| <= 100 eps
    max_k ||A p_k|| / ||p_k|| ||p||^2``, with a residual left, or a final residual above ``GROWTH_LIMIT`` times
    the smallest one: ``A`` singular and ``b`` not in its range). By default the iteration goes on
    past these events (the textbook method, whose behaviour on such systems PAPER.md studies);
    ``stop_at_breakdown=True`` stops at the first one and returns the last iterate before it (the
    last descent iterate). The cure is damping: ``damping > |lambda_min(H)|``.
    """
    A = _damped(matvec, damping)
    dtype = res_dtype(b)
    eps = jnp.finfo(dtype).eps
    tiny = jnp.finfo(dtype).tiny
    zero = jnp.asarray(0.0, dtype)
    bnorm2 = tree_sq_norm(b)
    to_tol = not (_is_zero(rtol) and _is_zero(atol))
    bound = jnp.maximum(jnp.maximum(rtol * jnp.sqrt(bnorm2), atol) ** 2, (100 * eps) ** 2 * bnorm2)
    if x0 is None:
        x0, r0 = tree_zeros_like(b), b
        k0 = 0
    else:
        r0 = tree_sub(b, A(x0))
        k0 = 1
    rs0 = tree_sq_norm(r0)
    # carry: x, r, p, rs, k, rmin, cmax, brk, event (0 none, 2 negative, 3 zero curvature), stopped
    init = (x0, r0, r0, rs0, _i32(0), jnp.sqrt(rs0), zero, jnp.asarray(False), _i32(0), jnp.asarray(False))

    def body(carry):
        x, r, p, rs, k, rmin, cmax, brk, event, stopped = carry
        active = (rs > bound) & ~stopped
        Ap = A(p)
        pAp = tree_vdot(p, Ap)
        pp = tree_sq_norm(p)
        curv = pAp / jnp.maximum(pp, tiny)
        # largest scale of A seen: ||A p|| / ||p|| bounds |p^T A p| / ||p||^2 from above and is the
        # size of the round-off in p^T A p (a Rayleigh quotient alone underestimates it when p lies
        # mostly in a null space, and round-off there would be taken for negative curvature)
        gain = jnp.sqrt(tree_sq_norm(Ap) / jnp.maximum(pp, tiny))
        cmax_new = jnp.maximum(cmax, jnp.where(pp > 0, jnp.maximum(jnp.abs(curv), gain), zero))
        brk = brk | (active & (pp > 0) & (curv <= 1e-10 * jnp.maximum(cmax, curv)))
        scale = 100 * eps * cmax_new
        neg = active & (pp > 0) & (curv < -scale)
        flat = active & (pp > 0) & (jnp.abs(curv) <= scale)
        new_event = jnp.where(neg, 2, jnp.where(flat, 3, 0)).astype(jnp.int32)
        event = jnp.where(event > 0, event, new_event)
        halt = stopped | (stop_at_breakdown & (new_event > 0))
        step = active & ~halt
        alpha = rs / jnp.where(pAp == 0, tiny, pAp)
        alpha = jnp.where(step, alpha, 0.0)
        x = tree_axpy(alpha, p, x)
        r = tree_axpy(-alpha, Ap, r)
        rs_new = jnp.where(step, tree_sq_norm(r), rs)
        beta = jnp.where(step, rs_new / jnp.where(rs == 0, tiny, rs), 1.0)
        p = jax.tree_util.tree_map(lambda pn, po: jnp.where(step, pn, po), tree_axpy(beta, p, r), p)
        k = k + active.astype(jnp.int32)
        return x, r, p, rs_new, k, jnp.minimum(rmin, jnp.sqrt(rs_new)), cmax_new, brk, event, halt

    static_iters = isinstance(iters, int) and not to_tol and not stop_at_breakdown
    if static_iters:
        # fixed count: a scan (reverse-differentiable, as the iteration count is known)
        out = jax.lax.fori_loop(0, iters, lambda _, c: body(c), init)
    else:

        def cond(carry):
            _, _, _, rs, k, *_, stopped = carry
            return (k < iters) & (rs > bound) & ~stopped

        out = jax.lax.while_loop(cond, body, init)
    x, _, _, rs, k, rmin, _, brk, event, _ = out
    res = jnp.sqrt(rs)
    met = rs <= bound
    status = jnp.where(event > 0, event, 0)
    status = jnp.where((status == 0) & (res > GROWTH_LIMIT * jnp.maximum(rmin, tiny)), 3, status)
    if to_tol:
        status = jnp.where((status == 0) & ~met, 1, status)
    status = jnp.where(tree_all_finite(x), status, 4).astype(jnp.int32)
    hvps = _i32(iters) if static_iters else k  # a scan takes every product, even once converged
    return x, SolveStats(res, rmin, hvps + k0, k, brk, status)


def _is_zero(x) -> bool:
    return isinstance(x, (int, float)) and x == 0


def cgls(matvec: Matvec, b, iters, damping=0.0, *, x0=None):
    """K iterations of CG on the normal equations ``A^2 v = A b`` (CGLS, ``A = H + damping I``
    symmetric), from ``v = 0``.

    The iterates stay in ``range(A)``, so on an inconsistent singular system they converge to the
    minimum-norm least-squares solution ``A^+ b`` — the answer ``Exact`` gives — where plain CG
    diverges. Two products per iteration. The residual reported is ``||A v - b||``.
    """
    A = _damped(matvec, damping)
    if x0 is None:
        x, r, k0 = tree_zeros_like(b), b, 0  # r = b - A x
    else:
        x, r, k0 = x0, tree_sub(b, A(x0)), 1
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
    status = jnp.where(tree_all_finite(x), 0, 4).astype(jnp.int32)
    return x, SolveStats(tree_norm(r), rmin, _i32(2 * iters + 1 + k0), _i32(iters), False, status)


def cg_to_tol(matvec: Matvec, b, damping, *, rtol, atol, max_iters, x0=None):
    """Conjugate gradients on ``(H + damping I) v = b`` until ``||r|| <= max(rtol ||b||, atol)`` or
    ``max_iters`` iterations: :func:`cg` with a tolerance (kept as a name for the ``Damped`` solve)."""
    return cg(matvec, b, max_iters, damping, x0=x0, rtol=rtol, atol=atol)


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
