r"""Hypergradient strategies and :func:`hypergradient`.

The hypergradient of ``u -> F(u, w*(u))`` is

    dF/du = dF/du|_w + J^T dF/dw,      J = dw*/du.

By the implicit function theorem (IFT) ``H J = -M`` with ``H = d2f/dw dw`` and ``M = d2f/dw du``; every
IFT strategy below picks an approximation ``v ~ H^{-1} dF/dw`` and returns ``dF/du - M^T v``:

==============  ==========================================================  ============================
strategy        ``v``                                                       products of ``H``
==============  ==========================================================  ============================
``Neumann(K,a)`` ``a * sum_{j=0}^{K-1} (I - a H)^j dF/dw``                   K - 1 (+1 for the residual)
``CG(K, d)``     K CG steps from 0 on ``(H + d I) v = dF/dw``                K (2K + 1 with ``normal``)
``Damped(eps)``  ``(H + eps I)^{-1} dF/dw``, CG to tolerance                 as many as CG needs
``Exact()``      ``H^+ dF/dw`` (Moore–Penrose, dense)                        n (= size of w), batched
``Identity(a)``  ``a dF/dw``                                                 0 (+1 for the residual)
==============  ==========================================================  ============================

``Unroll(K)`` instead differentiates ``u -> F(u, Xi^K(u, w))`` in reverse mode through K steps of the
inner optimizer started at ``w`` (the start is held constant). From a stationary ``w`` with SGD at
step ``a`` it equals ``Neumann(K, a)`` exactly (PAPER.md §4.6).

Spectrally, for an eigenvalue ``lambda`` of ``H``: ``H^+`` applies ``1/lambda`` (0 on the null space),
``Damped`` ``1/(lambda + eps)``, ``Neumann`` ``(1 - (1 - a lambda)^K) / lambda`` (``a K`` at 0).

Every strategy is a frozen dataclass and a pytree: instances with Python-number fields are hashable
(valid ``jit`` static arguments) and numeric fields may be arrays/tracers, so a sweep over K or eps can
run as one ``vmap``.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree

from . import linalg
from ._tree import (
    check_float,
    check_int,
    is_traced_or_array,
    pytree_dataclass,
    tree_norm,
    tree_size,
    tree_sub,
)

__all__ = [
    "Method",
    "Unroll",
    "Neumann",
    "CG",
    "Damped",
    "Exact",
    "Identity",
    "hypergradient",
]


class Method:
    """Base class of hypergradient strategies."""

    #: True for strategies that use the implicit function theorem at the given ``w``.
    implicit: bool = True

    def solve(self, matvec, b, w, residual=True):
        """Approximate ``H^{-1} b``; returns ``(v, SolveStats)`` (``residual``: also measure the residual)."""
        raise NotImplementedError


@pytree_dataclass(data_fields=("steps",))
class Unroll(Method):
    """Iterative differentiation: reverse mode through K steps of the inner optimizer from ``w``.

    Args:
      steps: K, the number of differentiated inner steps (positive).
      max_steps: only when ``steps`` is an array/tracer (a vmapped sweep over K): the static scan
        length; steps ``k >= K`` are masked out.
      remat: rematerialize each step in the backward pass (``jax.checkpoint``): memory O(1) in K at
        the price of one more forward sweep. ``None`` (default): on when the default backend is the
        CPU, where XLA's reverse scan over stored per-step residuals measured slower than recomputing
        them (2x for a small MLP, equal for ridge regression; docs/benchmarks.md), off elsewhere.
    """

    steps: Any
    max_steps: int | None = None
    remat: bool | None = None
    implicit = False

    def __post_init__(self):
        check_int("Unroll", "steps", self.steps)
        if self.max_steps is not None:
            check_int("Unroll", "max_steps", self.max_steps)
            if not is_traced_or_array(self.steps) and self.steps > self.max_steps:
                raise ValueError(f"Unroll.steps ({self.steps}) must be <= Unroll.max_steps ({self.max_steps})")

    @property
    def rematerialize(self) -> bool:
        """Whether the backward pass recomputes each step (``remat``, or its backend default)."""
        return jax.default_backend() == "cpu" if self.remat is None else bool(self.remat)

    @property
    def length(self) -> int:
        if self.max_steps is not None:
            return self.max_steps
        if is_traced_or_array(self.steps):
            raise ValueError(
                "Unroll.steps is an array or traced value (a sweep over K): give Unroll.max_steps, "
                "the static scan length"
            )
        return int(self.steps)


@pytree_dataclass(data_fields=("terms", "lr"))
class Neumann(Method):
    """IFT with the K-term Neumann series ``H^{-1} ~ lr * sum_{j=0}^{K-1} (I - lr H)^j``.

    Args:
      terms: K (positive). K terms equal K unrolled SGD steps at a stationary point.
      lr: alpha (positive); the series converges on range(H) when ``alpha < 2 / lambda_max(H)``.
    """

    terms: Any
    lr: Any

    def __post_init__(self):
        check_int("Neumann", "terms", self.terms)
        check_float("Neumann", "lr", self.lr, positive=True)

    def solve(self, matvec, b, w, residual=True):
        return linalg.neumann(matvec, b, self.terms, self.lr, residual=residual)


@pytree_dataclass(data_fields=("iters", "damping"))
class CG(Method):
    """IFT with K conjugate-gradient iterations from zero on ``(H + damping I) v = dF/dw``.

    Args:
      iters: K (positive).
      damping: added to the diagonal (non-negative).
      normal: solve the normal equations instead (CGLS: two products per iteration). On a singular,
        inconsistent system (``dF/dw`` not in range(H), the usual overparameterized case) plain CG
        does not converge — ``info['residual_growth']`` shows it — while CGLS converges to the
        pseudoinverse answer ``H^+ dF/dw``.
    """

    iters: Any
    damping: Any = 0.0
    normal: bool = False

    def __post_init__(self):
        check_int("CG", "iters", self.iters)
        check_float("CG", "damping", self.damping, nonneg=True)

    def solve(self, matvec, b, w, residual=True):
        if self.normal:
            return linalg.cgls(matvec, b, self.iters, self.damping)
        return linalg.cg(matvec, b, self.iters, self.damping)


@pytree_dataclass(data_fields=("eps",))
class Damped(Method):
    """IFT with the damped Hessian ``(H + eps I)^{-1}``, solved by CG to tolerance.

    This is exactly the response of the proximal inner problem ``f(u, w) + eps/2 ||w - w'||^2`` with
    ``w'`` held constant (PAPER.md §4.7).

    Args:
      eps: damping (non-negative; with ``eps = 0`` and a singular ``H`` the solve may not converge).
      rtol, atol: CG stops when ``||r|| <= max(rtol ||dF/dw||, atol)``.
      max_iters: bound on CG iterations.
    """

    eps: Any
    rtol: float = 1e-6
    atol: float = 0.0
    max_iters: int = 1000

    def __post_init__(self):
        check_float("Damped", "eps", self.eps, nonneg=True)
        check_float("Damped", "rtol", self.rtol, nonneg=True)
        check_float("Damped", "atol", self.atol, nonneg=True)
        check_int("Damped", "max_iters", self.max_iters)

    def solve(self, matvec, b, w, residual=True):
        return linalg.cg_to_tol(
            matvec, b, self.eps, rtol=self.rtol, atol=self.atol, max_iters=self.max_iters
        )


@pytree_dataclass
class Exact(Method):
    """IFT with the Moore–Penrose pseudoinverse: ``J = -H^+ M`` (the canonical, minimum-Frobenius-norm
    response Jacobian). Dense: materializes ``H`` (n x n) from n batched products.

    Args:
      max_size: refuse ``w`` with more than this many scalars (raise it deliberately).
      rtol: relative eigenvalue cut-off of the pseudoinverse (default ``n * eps``).
    """

    max_size: int = 4096
    rtol: float | None = None

    def __post_init__(self):
        check_int("Exact", "max_size", self.max_size)
        if self.rtol is not None:
            check_float("Exact", "rtol", self.rtol, nonneg=True)

    def solve(self, matvec, b, w, residual=True):
        n = tree_size(w)
        if n > self.max_size:
            raise ValueError(
                f"Exact() materializes the {n}x{n} Hessian: w has {n} parameters, above "
                f"Exact.max_size={self.max_size}. Raise max_size deliberately, or use CG(normal=True), "
                "Damped or Neumann"
            )
        H, unravel = linalg.dense_hessian(matvec, w)
        b_flat = ravel_pytree(b)[0]
        v_flat = linalg.pinv_solve(H, b_flat, rtol=self.rtol)
        res = jnp.linalg.norm(H @ v_flat - b_flat)
        nn = jnp.asarray(n, jnp.int32)
        return unravel(v_flat), linalg.SolveStats(res, res, nn, jnp.asarray(1, jnp.int32))


@pytree_dataclass(data_fields=("lr",))
class Identity(Method):
    """IFT with ``H^{-1} ~ lr * I`` (the T1–T2 approximation of Luketina et al.).

    Args:
      lr: alpha (positive).
    """

    lr: Any

    def __post_init__(self):
        check_float("Identity", "lr", self.lr, positive=True)

    def solve(self, matvec, b, w, residual=True):
        v = jax.tree_util.tree_map(lambda x: self.lr * x, b)
        if residual:
            res = tree_norm(tree_sub(matvec(v), b))
            return v, linalg.SolveStats(res, res, jnp.asarray(1, jnp.int32), jnp.asarray(0, jnp.int32))
        nan = jnp.asarray(jnp.nan, linalg.res_dtype(b))
        return v, linalg.SolveStats(nan, nan, jnp.asarray(0, jnp.int32), jnp.asarray(0, jnp.int32))


def _check_method(method, inner):
    if not isinstance(method, Method):
        raise TypeError(
            "method must be one of blojax.Unroll, Neumann, CG, Damped, Exact, Identity; "
            f"got {method!r}"
        )
    if isinstance(method, Unroll):
        if inner is None:
            raise ValueError(
                "Unroll differentiates through the inner optimizer's steps: pass inner=InnerLoop(...)"
            )
        if not hasattr(inner, "step"):
            raise TypeError(f"inner must provide step() to be unrolled, got {inner!r}")


def unrolled_steps(problem, inner, u, w, state, method: Unroll, batch=None):
    """``Xi^K(u, w)``: K differentiable steps of ``inner`` from ``(w, state)`` (masked beyond K when
    ``method.steps`` is traced). Returns ``(w_K, state_K)``."""
    length = method.length
    masked = method.max_steps is not None

    def one(carry, k):
        w_, s_ = carry
        w_new, s_new = inner.step(problem, u, w_, s_, batch)
        if masked:
            keep = k < method.steps
            w_new = jax.tree_util.tree_map(lambda a, b: jnp.where(keep, a, b), w_new, w_)
            s_new = jax.tree_util.tree_map(lambda a, b: jnp.where(keep, a, b), s_new, s_)
        return (w_new, s_new), None

    if method.rematerialize:
        one = jax.checkpoint(one)
    (w, state), _ = jax.lax.scan(one, (w, state), jnp.arange(length))
    return w, state


def hypergradient(
    problem,
    u,
    w,
    method: Method,
    inner=None,
    *,
    inner_batch=None,
    outer_batch=None,
    inner_state=None,
    diagnostics: bool = True,
):
    """Approximate hypergradient ``dF/du + J^T dF/dw`` at ``(u, w)``.

    IFT strategies evaluate everything at the given ``w`` (they do not re-solve the inner problem):
    ``g = dF/du(u, w) - M^T v`` with ``v ~ H^{-1} dF/dw(u, w)``. ``Unroll(K)`` runs K steps of
    ``inner`` from ``w`` and differentiates through them; its ``F`` and gradients are taken at the
    end point ``w_K``, which ``info['w']`` returns (with ``info['inner_state']``).

    Args:
      problem: a :class:`blojax.Problem`.
      u, w: outer and inner parameters (pytrees).
      method: a strategy (``Unroll``, ``Neumann``, ``CG``, ``Damped``, ``Exact``, ``Identity``).
      inner: the inner solver; required by ``Unroll``.
      inner_batch, outer_batch: data arguments of ``f`` and ``F`` (optional).
      inner_state: inner optimizer state to unroll from (``Unroll`` only; default fresh).
      diagnostics: spend the extra products needed to report the residual (Neumann, Identity) and
        the inner stationarity after unrolling.

    Returns:
      ``(grad_u, info)``; ``info`` is a dict with ``F`` (outer value), ``inner_grad_norm``
      (``||grad_w f||`` at the point where ``F`` is taken), ``residual`` (``||H v - dF/dw||``, NaN for
      Unroll), ``residual_min``, ``residual_growth`` (``residual / residual_min``, >> 1 flags a diverging
      solve), ``hvps`` (Hessian-vector products, counting the mixed product ``M^T v`` as one),
      ``grads`` (gradient evaluations), ``solve_iters`` and ``solve_breakdown`` (CG met a direction of
      ~zero curvature: ``H`` is singular along the Krylov space, the hallmark of an inconsistent system).
    """
    _check_method(method, inner)
    problem.check(u, w, inner_batch, outer_batch)

    if isinstance(method, Unroll):
        state = inner.init(w) if inner_state is None else inner_state  # pyright: ignore[reportOptionalMemberAccess]

        def objective(u_):
            w_k, s_k = unrolled_steps(problem, inner, u_, w, state, method, inner_batch)
            return problem.F(u_, w_k, outer_batch), (w_k, s_k)

        (Fval, (w_k, s_k)), g = jax.value_and_grad(objective, has_aux=True)(u)
        k = jnp.asarray(method.steps, jnp.int32)
        if diagnostics:
            gn = tree_norm(problem.grad_w_f(u, w_k, inner_batch))
        else:
            gn = jnp.asarray(jnp.nan, Fval.dtype)
        nan = jnp.asarray(jnp.nan, Fval.dtype)
        info = dict(
            F=Fval,
            inner_grad_norm=gn,
            residual=nan,
            residual_min=nan,
            residual_growth=nan,
            hvps=k,
            grads=k * (2 if method.rematerialize else 1) + 1 + int(diagnostics),
            solve_iters=k,
            solve_breakdown=jnp.asarray(False),
            w=w_k,
            inner_state=s_k,
        )
        return g, info

    Fval, (dF_du, dF_dw) = jax.value_and_grad(problem.F, argnums=(0, 1))(u, w, outer_batch)

    def grad_w(w_):
        return jax.grad(problem.f, argnums=1)(u, w_, inner_batch)

    gw, hvp = linalg.hvp_at(grad_w, w)
    v, stats = method.solve(hvp, dF_dw, w, residual=diagnostics)

    def grad_w_of_u(u_):
        return jax.grad(problem.f, argnums=1)(u_, w, inner_batch)

    _, vjp_u = jax.vjp(grad_w_of_u, u)
    (Mt_v,) = vjp_u(v)
    g = jax.tree_util.tree_map(jnp.subtract, dF_du, Mt_v)
    tiny = jnp.finfo(Fval.dtype).tiny
    info = dict(
        F=Fval,
        inner_grad_norm=tree_norm(gw),
        residual=stats.residual,
        residual_min=stats.residual_min,
        residual_growth=stats.residual / jnp.maximum(stats.residual_min, tiny),
        hvps=stats.hvps + 1,
        grads=jnp.asarray(2, jnp.int32),
        solve_iters=stats.iters,
        solve_breakdown=jnp.asarray(stats.breakdown),
    )
    return g, info
