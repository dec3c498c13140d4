r"""Spectral picture of the hypergradient approximations (PAPER.md §3, Fig. 5).

Every IFT strategy replaces ``H^{-1}`` (``H = d2f/dw dw``, symmetric PSD) by a matrix function
``h(H) = Q diag(h(lambda)) Q^T`` acting eigenvalue by eigenvalue:

=====================  ==================================================================
method                 ``lambda -> h(lambda)``
=====================  ==================================================================
inverse (``Exact``)    ``1 / lambda`` (``0`` on the null space: the pseudoinverse)
damped (``eps``)       ``1 / (lambda + eps)``
Neumann (K, alpha)     ``alpha sum_{j<K} (1 - alpha lambda)^j = (1 - (1 - alpha lambda)^K) / lambda``
unroll (K, alpha)      the same as Neumann: K SGD steps at step alpha on a quadratic (or from a
                       stationary ``w``) differentiate to the K-term series (PAPER.md §4.6)
identity (alpha)       ``alpha``
CG (K steps from 0)    ``(1 - prod_j (1 - lambda / theta_j)) / lambda`` with ``theta_j`` the K Ritz
                       values of ``(H, b)``: CG's map depends on the right-hand side ``b``
=====================  ==================================================================

At ``lambda = 0`` the limits are ``alpha K`` (Neumann), ``1 / eps`` (damped) and ``sum_j 1/theta_j`` (CG).
Neumann and damping both invert the high-curvature directions and shrink the low-curvature ones; they
behave alike for ``eps ~ 1 / (alpha K)``.

:func:`operator_matrix` builds the matrix a :mod:`blojax` strategy actually applies (from its
solver, column by column), so the maps can be checked against the code.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

__all__ = [
    "inverse",
    "damped",
    "neumann",
    "unroll",
    "identity",
    "cg",
    "ritz_values",
    "response",
    "operator_matrix",
]


def _lam(lam):
    lam = jnp.asarray(lam)
    return lam.astype(jnp.result_type(lam, float))


def inverse(lam, rtol=None):
    """``1 / lambda`` and ``0`` where ``|lambda| <= rtol * max|lambda|`` (the pseudoinverse; default
    ``rtol = n * eps`` of the dtype with ``n`` eigenvalues, as :func:`blojax.linalg.pinv_solve`)."""
    lam = _lam(lam)
    if rtol is None:
        rtol = max(1, lam.size) * jnp.finfo(lam.dtype).eps
    cut = rtol * jnp.max(jnp.abs(lam))
    keep = jnp.abs(lam) > cut
    return jnp.where(keep, 1.0 / jnp.where(keep, lam, 1.0), 0.0)


def damped(lam, eps):
    """``1 / (lambda + eps)``."""
    return 1.0 / (_lam(lam) + eps)


def neumann(lam, K, alpha):
    """``alpha sum_{j=0}^{K-1} (1 - alpha lambda)^j = (1 - (1 - alpha lambda)^K) / lambda`` (``alpha K``
    at ``lambda = 0``), evaluated without cancellation for small ``alpha lambda``."""
    lam = _lam(lam)
    x = alpha * lam
    safe_x = jnp.where(x == 0, 1.0, x)
    # 1 - (1 - x)^K: expm1/log1p while 1 - x > 0, the plain power otherwise.
    small = -jnp.expm1(K * jnp.log1p(-jnp.minimum(safe_x, 0.5)))
    one_minus_pow = jnp.where(safe_x <= 0.5, small, 1.0 - (1.0 - safe_x) ** K)
    return jnp.where(x == 0, alpha * K * jnp.ones_like(lam), alpha * one_minus_pow / safe_x)


def unroll(lam, K, alpha):
    """K unrolled SGD steps (step ``alpha``) on a quadratic, or from a stationary point: identical to
    :func:`neumann` (PAPER.md §4.6)."""
    return neumann(lam, K, alpha)


def identity(lam, alpha):
    """``alpha`` for every eigenvalue."""
    return alpha * jnp.ones_like(_lam(lam))


def ritz_values(H, b, K):
    """The Ritz values ``theta_1..theta_k`` (``k <= K``) of ``H`` on the Krylov space
    ``span{b, H b, ..., H^{K-1} b}``: eigenvalues of the K x K Lanczos tridiagonal matrix (float64
    NumPy, full reorthogonalization). Fewer than K when the Krylov space is exhausted earlier."""
    H = np.asarray(H, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    n = H.shape[0]
    if H.shape != (n, n) or b.shape != (n,):
        raise ValueError(f"H must be square and b a matching vector, got {H.shape} and {b.shape}")
    if not (isinstance(K, (int, np.integer)) and K >= 1):
        raise ValueError(f"K must be a positive integer, got {K!r}")
    nb = np.linalg.norm(b)
    if nb == 0:
        return np.zeros(0)
    normH = np.linalg.norm(H, 2)
    Q = [b / nb]
    alphas, betas = [], []
    for k in range(min(K, n)):
        z = H @ Q[k]
        a = Q[k] @ z
        alphas.append(a)
        for q in Q:  # full reorthogonalization (twice is enough)
            z = z - (q @ z) * q
        for q in Q:
            z = z - (q @ z) * q
        beta = np.linalg.norm(z)
        if k == min(K, n) - 1 or beta <= 1e-12 * normH:
            break
        betas.append(beta)
        Q.append(z / beta)
    m = len(alphas)
    T = np.diag(alphas) + np.diag(betas[: m - 1], 1) + np.diag(betas[: m - 1], -1)
    return np.linalg.eigvalsh(T)


def cg(lam, ritz):
    """CG's map after K steps from 0: ``x_K = p(H) b`` with ``p(lambda) = (1 - prod_j (1 - lambda /
    theta_j)) / lambda``, ``theta_j`` = :func:`ritz_values` ``(H, b, K)`` (the residual polynomial of
    CG vanishes at the Ritz values). At ``lambda = 0``: ``sum_j 1/theta_j``."""
    lam = np.asarray(lam, dtype=np.float64)
    theta = np.asarray(ritz, dtype=np.float64)
    ratio = lam[..., None] / theta
    resid = np.prod(1.0 - ratio, axis=-1)
    # Small lambda: 1 - prod(1 - r_j) = sum_j r_j - ..., use the series to avoid cancellation.
    small = np.abs(ratio).sum(-1) < 1e-8
    safe = np.where(lam == 0, 1.0, lam)
    return np.where(small, (1.0 / theta).sum() * (1.0 - 0.5 * ratio.sum(-1)), (1.0 - resid) / safe)


def response(method, lam, *, H=None, b=None):
    """``h(lambda)`` of a :mod:`blojax` strategy object (``Exact``, ``Damped``, ``Neumann``,
    ``Identity``, ``CG`` — which also needs ``H`` and ``b`` — or ``Unroll`` given as
    ``Neumann``-equivalent: pass ``Unroll`` together with an SGD step via :func:`unroll`).
    Each strategy knows its own map (``method.response``)."""
    respond = getattr(method, "response", None)
    if respond is None:
        raise TypeError(f"response() knows the blojax strategies; got {method!r}")
    return respond(lam, H=H, b=b)


def operator_matrix(method, H, *, lr=None):
    """The matrix ``S`` a :mod:`blojax` strategy applies in place of ``H^{-1}``, built from the
    library's own solver column by column: ``S e_i = method.solve(v -> H v, e_i)``.

    For ``Unroll(K)`` (``lr``: the SGD step) it is the response Jacobian of K SGD steps on
    ``f(u, w) = 1/2 w^T H w - u^T w`` (so ``M = -I`` and ``J = S``), differentiated by the library's
    strategy's own pullback (the protocol of :class:`blojax.Method`). CG is not a fixed matrix (it depends on ``b``)."""
    import optax

    from .. import hypergrad as hg
    from ..inner import InnerLoop
    from ..problem import Problem

    if isinstance(method, hg.CG):
        raise TypeError(
            "CG applies a polynomial that depends on b, not a fixed matrix: use response(CG, H=, b=)"
        )
    H = jnp.asarray(H)
    n = H.shape[0]
    eye = jnp.eye(n, dtype=H.dtype)
    inner = None
    if not method.implicit:
        if lr is None:
            raise ValueError(
                f"operator_matrix({type(method).__name__}(...)) needs lr, the SGD step of the unrolled steps"
            )
        inner = InnerLoop(optax.sgd(lr), steps=1)
    # f(u, w) = 1/2 w^T H w - u^T w: M = -I, so the strategy's pullback maps e_i to S e_i (S = J).
    problem = Problem(inner=lambda u, w: 0.5 * w @ H @ w - u @ w, outer=lambda u, w: 0.0 * jnp.sum(w))
    zero = jnp.zeros(n, H.dtype)
    _, _, pullback = method.linearize(problem, inner, zero, zero, None, None, diagnostics=False)
    rows = jax.vmap(lambda e: pullback(e)[0][0])(eye)
    return rows.T
