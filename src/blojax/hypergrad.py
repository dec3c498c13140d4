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

All six implement one protocol (:class:`Method`): ``linearize(problem, inner, u, w, state, batch)``
returns the point where ``F`` is taken (``w`` itself for the IFT strategies, ``Xi^K(u, w)`` for
``Unroll``) and a *pullback* ``w_bar -> (J^T w_bar, stats)``; :func:`hypergradient` and
:func:`blojax.solve` are both written on it. The IFT strategies are also linear solvers with one
signature, ``solve(matvec, b, x0=None) -> (v, SolveStats)``.

Every strategy is a frozen dataclass and a pytree: instances with Python-number fields are hashable
(valid ``jit`` static arguments) and numeric fields may be arrays/tracers, so a sweep over K or eps can
run as one ``vmap``.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree

from . import linalg
from ._tree import (
    check_fields,
    is_traced_or_array,
    pytree_dataclass,
    runtime_violations,
    tree_all_finite,
    tree_norm,
    tree_size,
    tree_sub,
)
from .status import Status, combine, raise_if

__all__ = [
    "Method",
    "Unroll",
    "Neumann",
    "CG",
    "Damped",
    "Exact",
    "Identity",
    "HypergradInfo",
    "PullbackInfo",
    "hypergradient",
    "sweep_presolver",
]


class HypergradInfo(NamedTuple):
    """Diagnostics of one hypergradient; the same fields for every strategy (NaN where one does not apply).

    F: ``F(u, w_out)``; inner_grad_norm: ``||grad_w f(u, w_out)||`` (NaN for ``Unroll`` with
    ``diagnostics=False``); residual: ``||H v - dF/dw||`` (NaN for ``Unroll`` and where not computed);
    residual_min, residual_growth (``residual / residual_min``, >> 1 flags a diverging solve);
    hvps: Hessian-vector products (the mixed product ``M^T v`` counts as one; an ``Unroll`` step's
    reverse pass as one); grads: gradient evaluations; solve_iters: iterations (``K`` for ``Unroll``);
    solve_breakdown: CG met a direction of ~zero curvature; status: a :class:`blojax.Status` code
    (int32); w, inner_state: the point ``w_out`` where ``F`` and the gradients are taken (``Xi^K(u, w)``
    and its optimizer state for ``Unroll``; the given ``w`` and ``inner_state`` otherwise).

    Indexing by name (``info["F"]``) works as for the dict this used to be.
    """

    F: jax.Array
    inner_grad_norm: jax.Array
    residual: jax.Array
    residual_min: jax.Array
    residual_growth: jax.Array
    hvps: jax.Array
    grads: jax.Array
    solve_iters: jax.Array
    solve_breakdown: jax.Array
    status: jax.Array
    w: Any = None
    inner_state: Any = None

    def __getitem__(self, key):
        if isinstance(key, str):
            try:
                return getattr(self, key)
            except AttributeError:
                raise KeyError(key) from None
        return tuple.__getitem__(self, key)

    def keys(self):
        return self._fields

    def items(self):
        return zip(self._fields, self)

    def get(self, key, default=None):
        return getattr(self, key, default)


class PullbackInfo(NamedTuple):
    """What a strategy's pullback reports: the linear solve's :class:`blojax.linalg.SolveStats`, its
    cost (``hvps``, ``grads``: products and gradient evaluations beyond ``F``'s gradient) and
    ``grad_norm`` = ``||grad_w f(u, w_out)||`` (NaN where not computed)."""

    stats: linalg.SolveStats
    hvps: Any
    grads: Any
    grad_norm: Any


#: ``Unroll(remat=None)`` rematerializes on CPU when ``K * size(w)`` reaches this (benchmarks/unroll_remat.py).
REMAT_MIN_WORK = 10_000


def _nan_like(tree):
    return jnp.asarray(jnp.nan, linalg.res_dtype(tree))


def _i32(x):
    return jnp.asarray(x, jnp.int32)


class Method:
    """The strategy protocol.

    A strategy maps a cotangent ``w_bar`` at the inner solution to ``J^T w_bar``, ``J = dw/du`` (and to
    the cotangents of the data the inner objective reads). Everything in blojax that differentiates
    an inner solve (:func:`hypergradient`, :func:`blojax.solve`, :func:`blojax.implicit_diff`, the
    bilevel algorithms, the spectral analysis) goes through ``linearize``:

    * ``presolver(inner)``: the inner solver to run *before* the strategy (``Unroll(K)`` takes the
      last K of T steps itself, so it returns the solver for ``T - K`` steps; the others ``inner``);
    * ``linearize(problem, inner, u, w, state, batch, *, diagnostics, wrt_data)`` ->
      ``(w_out, state_out, pullback)``, ``pullback(w_bar) -> ((u_bar, problem_bar, batch_bar),
      PullbackInfo)``; ``problem_bar``/``batch_bar`` are ``None`` unless ``wrt_data``;
    * ``solve(matvec, b, x0=None) -> (v, SolveStats)``: the linear solver ``v ~ H^{-1} b`` of the IFT
      strategies (``Unroll`` has none);
    * ``tail_steps``: inner steps the strategy takes itself (``K`` for ``Unroll``, else 0);
    * ``violations()``: ``[(pred, message)]`` for traced fields out of range (checked at run time);
    * ``response(lam, ...)``: the spectral map ``h(lambda)`` (:mod:`blojax.analysis.spectral`).
    """

    #: True for strategies that use the implicit function theorem at the given ``w``.
    implicit: bool = True
    #: (field, "int" | "float", rule): validation of the numeric fields (see ``_tree.check_fields``).
    _specs: tuple = ()

    def _validate(self):
        check_fields(type(self).__name__, self._specs, self)

    def violations(self):
        """``[(pred, message)]``: traced fields out of range, as run-time predicates."""
        return runtime_violations(type(self).__name__, self._specs, self)

    @property
    def tail_steps(self):
        return 0

    def check_inner(self, inner):
        """Raise if this strategy cannot work with ``inner``."""

    def presolver(self, inner):
        return inner

    def solve(self, matvec, b, x0=None, *, residual=True):
        """Approximate ``H^{-1} b`` from ``x0``; returns ``(v, SolveStats)``."""
        raise NotImplementedError

    def response(self, lam, *, lr=None, H=None, b=None):
        raise TypeError(f"response() does not know {self!r}")

    # -- the IFT pullback shared by Neumann, CG, Damped, Exact, Identity
    def linearize(self, problem, inner, u, w, state, batch=None, *, diagnostics=True, wrt_data=False):
        """IFT: ``w_out = w``; the pullback solves ``H v = w_bar`` and returns ``-M^T v`` (and, with
        ``wrt_data``, the cotangents of the problem's arrays and of ``batch``). The pullback is a
        ``jax.tree_util.Partial`` (a pytree), so it can be carried out of ``jit`` or stored."""
        fn = functools.partial(_ift_pullback, diagnostics=diagnostics, wrt_data=wrt_data)
        return w, state, jax.tree_util.Partial(fn, self, problem, u, w, batch)


def _ift_pullback(method, problem, u, w, batch, w_bar, *, diagnostics, wrt_data):
    def grad_w(w_):
        return jax.grad(problem.f, argnums=1)(u, w_, batch)

    gw, hvp = linalg.hvp_at(grad_w, w)
    v, stats = method.solve(hvp, w_bar, residual=diagnostics)
    neg_v = jax.tree_util.tree_map(jnp.negative, v)
    if wrt_data:
        _, vjp = jax.vjp(lambda u_, P, b_: jax.grad(P.f, argnums=1)(u_, w, b_), u, problem, batch)
        cots = tuple(vjp(neg_v))
    else:
        _, vjp = jax.vjp(lambda u_: jax.grad(problem.f, argnums=1)(u_, w, batch), u)
        cots = (vjp(neg_v)[0], None, None)
    return cots, PullbackInfo(stats, stats.hvps + 1, _i32(1), tree_norm(gw))


def _unroll_pullback(vjp, info, w_bar, *, wrt_data):
    cots = vjp(w_bar)
    return (tuple(cots) if wrt_data else (cots[0], None, None)), info


def _with_x0(solver, matvec, b, x0, residual):
    """``v = x0 + S (b - H x0)`` for a linear approximation ``S ~ H^{-1}`` (one more product)."""
    if x0 is None:
        return solver(b)
    r0 = tree_sub(b, matvec(x0))
    v, stats = solver(r0)
    return jax.tree_util.tree_map(jnp.add, x0, v), stats._replace(hvps=stats.hvps + 1)


@pytree_dataclass(data_fields=("steps",))
class Unroll(Method):
    """Iterative differentiation: reverse mode through K steps of the inner optimizer from ``w``.

    Args:
      steps: K, the number of differentiated inner steps (positive).
      max_steps: only when ``steps`` is an array/tracer (a vmapped sweep over K): the static scan
        length; steps ``k >= K`` are masked out.
      remat: rematerialize each step in the backward pass (``jax.checkpoint``): memory O(1) in K at
        the price of one more forward sweep. ``None`` (default): on when the default backend is the
        CPU and ``K * size(w) >= REMAT_MIN_WORK`` (10_000), off otherwise. Chosen from
        ``benchmarks/unroll_remat.py`` (docs/benchmarks.md): on XLA:CPU the reverse scan over stored
        per-step residuals is up to 6x slower than recomputing them once K and w are large (MLP
        1377 parameters, K = 100), while below about 10^4 stored scalars storing is up to 1.35x faster.
    """

    steps: Any
    max_steps: int | None = None
    remat: bool | None = None
    implicit = False
    _specs = (("steps", "int", 1),)

    def __post_init__(self):
        self._validate()
        if self.max_steps is not None:
            check_fields("Unroll", (("max_steps", "int", 1),), self)
            if not is_traced_or_array(self.steps) and self.steps > self.max_steps:
                raise ValueError(
                    f"Unroll.steps ({self.steps}) must be <= Unroll.max_steps ({self.max_steps})"
                )
        if self.remat is not None and not isinstance(self.remat, bool):
            raise TypeError(f"Unroll.remat must be True, False or None, got {self.remat!r}")

    @property
    def rematerialize(self) -> bool:
        """Whether the backward pass recomputes each step for a large ``w`` (``remat``, or its
        backend default); :meth:`uses_remat` decides for a given ``w``."""
        return jax.default_backend() == "cpu" if self.remat is None else bool(self.remat)

    def uses_remat(self, w) -> bool:
        """Whether the backward pass recomputes each step when unrolling from ``w``."""
        if self.remat is not None:
            return bool(self.remat)
        return jax.default_backend() == "cpu" and self.length * tree_size(w) >= REMAT_MIN_WORK

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

    @property
    def tail_steps(self):
        return self.steps

    def check_inner(self, inner):
        if inner is None:
            raise ValueError(
                "Unroll differentiates through the inner optimizer's steps: pass inner=InnerLoop(...)"
            )
        if not hasattr(inner, "step"):
            raise TypeError(f"inner must provide step() to be unrolled, got {inner!r}")

    def presolver(self, inner):
        """The solver for the first ``T - K`` steps (all of a tolerance loop's steps)."""
        T = getattr(inner, "steps", None)
        if T is None:
            return inner
        if self.length > T:
            raise ValueError(
                f"Unroll.steps ({self.length}) must be <= InnerLoop.steps ({T}): "
                "the unrolled steps are the last K of the T inner steps"
            )
        return inner.with_steps(T - self.length)

    def solve(self, matvec, b, x0=None, *, residual=True):
        raise TypeError(
            "Unroll differentiates through inner steps and has no linear solve; its equivalent at a "
            "stationary point with SGD step alpha is Neumann(K, alpha)"
        )

    def response(self, lam, *, lr=None, H=None, b=None):
        from .analysis import spectral

        if lr is None:
            raise TypeError(
                "response(Unroll(K)) needs lr, the SGD step of the unrolled steps "
                "(equivalently spectral.unroll(lam, K, alpha))"
            )
        return spectral.unroll(lam, self.steps, lr)

    def linearize(self, problem, inner, u, w, state, batch=None, *, diagnostics=True, wrt_data=False):
        self.check_inner(inner)
        state = inner.init(w) if state is None else state
        if wrt_data:

            def run(u_, P, b_):
                return unrolled_steps(P, inner, u_, w, state, self, b_)

            w_k, vjp, s_k = jax.vjp(run, u, problem, batch, has_aux=True)
        else:

            def run_u(u_):
                return unrolled_steps(problem, inner, u_, w, state, self, batch)

            w_k, vjp, s_k = jax.vjp(run_u, u, has_aux=True)
        k = _i32(self.steps)
        if diagnostics:
            gn = tree_norm(problem.grad_w_f(u, w_k, batch))
        else:
            gn = _nan_like(w_k)
        nan = _nan_like(w_k)
        stats = linalg.SolveStats(nan, nan, k, k, jnp.asarray(False), _i32(0))
        info = PullbackInfo(stats, k, k * (2 if self.uses_remat(w) else 1) + int(diagnostics), gn)
        pullback = jax.tree_util.Partial(functools.partial(_unroll_pullback, wrt_data=wrt_data), vjp, info)
        return w_k, s_k, pullback


@pytree_dataclass(data_fields=("terms", "lr"))
class Neumann(Method):
    """IFT with the K-term Neumann series ``H^{-1} ~ lr * sum_{j=0}^{K-1} (I - lr H)^j``.

    Args:
      terms: K (positive). K terms equal K unrolled SGD steps at a stationary point.
      lr: alpha (positive); the series converges on range(H) when ``alpha < 2 / lambda_max(H)``.
    """

    terms: Any
    lr: Any
    _specs = (("terms", "int", 1), ("lr", "float", "positive"))

    def __post_init__(self):
        self._validate()

    def solve(self, matvec, b, x0=None, *, residual=True):
        return _with_x0(
            lambda r: linalg.neumann(matvec, r, self.terms, self.lr, residual=residual),
            matvec,
            b,
            x0,
            residual,
        )

    def response(self, lam, *, lr=None, H=None, b=None):
        from .analysis import spectral

        return spectral.neumann(lam, self.terms, self.lr)


@pytree_dataclass(data_fields=("iters", "damping"))
class CG(Method):
    """IFT with K conjugate-gradient iterations from zero on ``(H + damping I) v = dF/dw``.

    Args:
      iters: K (positive).
      damping: added to the diagonal (non-negative).
      normal: solve the normal equations instead (CGLS: two products per iteration). On a singular,
        inconsistent system (``dF/dw`` not in range(H), the usual overparameterized case) plain CG
        does not converge — ``info.status`` is ``INCONSISTENT`` and ``info.residual_growth`` shows
        it — while CGLS converges to the pseudoinverse answer ``H^+ dF/dw``.
      stop_at_breakdown: stop at the first direction of negative or zero curvature and return the
        iterate before it (the last descent iterate) instead of going on (default False: the
        textbook iteration). The status is reported either way (``BREAKDOWN``/``INCONSISTENT``).
    """

    iters: Any
    damping: Any = 0.0
    normal: bool = False
    stop_at_breakdown: bool = False
    _specs = (("iters", "int", 1), ("damping", "float", "nonneg"))

    def __post_init__(self):
        self._validate()
        for name in ("normal", "stop_at_breakdown"):
            if not isinstance(getattr(self, name), bool):
                raise TypeError(f"CG.{name} must be True or False, got {getattr(self, name)!r}")

    def solve(self, matvec, b, x0=None, *, residual=True):
        if self.normal:
            return linalg.cgls(matvec, b, self.iters, self.damping, x0=x0)
        return linalg.cg(matvec, b, self.iters, self.damping, x0=x0, stop_at_breakdown=self.stop_at_breakdown)

    def response(self, lam, *, lr=None, H=None, b=None):
        from .analysis import spectral

        if H is None or b is None:
            raise ValueError("response(CG(...)) depends on the right-hand side: pass H and b")
        if self.normal or self.damping:
            raise ValueError("response() covers plain CG without damping")
        return spectral.cg(lam, spectral.ritz_values(H, b, int(self.iters)))


@pytree_dataclass(data_fields=("eps",))
class Damped(Method):
    """IFT with the damped Hessian ``(H + eps I)^{-1}``, solved by CG to tolerance.

    This is exactly the response of the proximal inner problem ``f(u, w) + eps/2 ||w - w'||^2`` with
    ``w'`` held constant (PAPER.md §4.7). With ``eps > |lambda_min(H)|`` the damped system is positive
    definite even where ``H`` is indefinite (a non-convex inner problem away from a minimum).

    Args:
      eps: damping (non-negative; with ``eps = 0`` and a singular ``H`` the solve may not converge).
      rtol, atol: CG stops when ``||r|| <= max(rtol ||dF/dw||, atol)``.
      max_iters: bound on CG iterations (status ``MAX_STEPS`` when reached first).
    """

    eps: Any
    rtol: float = 1e-6
    atol: float = 0.0
    max_iters: int = 1000
    _specs = (("eps", "float", "nonneg"),)

    def __post_init__(self):
        self._validate()
        check_fields(
            "Damped",
            (("rtol", "float", "nonneg"), ("atol", "float", "nonneg"), ("max_iters", "int", 1)),
            self,
        )

    def solve(self, matvec, b, x0=None, *, residual=True):
        return linalg.cg(matvec, b, self.max_iters, self.eps, x0=x0, rtol=self.rtol, atol=self.atol)

    def response(self, lam, *, lr=None, H=None, b=None):
        from .analysis import spectral

        return spectral.damped(lam, self.eps)


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
        check_fields("Exact", (("max_size", "int", 1),), self)
        if self.rtol is not None:
            check_fields("Exact", (("rtol", "float", "nonneg"),), self)

    def solve(self, matvec, b, x0=None, *, residual=True):
        """``H^+ b`` (``x0`` is not needed and ignored)."""
        n = tree_size(b)
        if n > self.max_size:
            raise ValueError(
                f"Exact() materializes the {n}x{n} Hessian: w has {n} parameters, above "
                f"Exact.max_size={self.max_size}. Raise max_size deliberately, or use CG(normal=True), "
                "Damped or Neumann"
            )
        H, unravel = linalg.dense_hessian(matvec, b)
        b_flat = ravel_pytree(b)[0]
        v_flat = linalg.pinv_solve(H, b_flat, rtol=self.rtol)
        res = jnp.linalg.norm(H @ v_flat - b_flat)
        nn = _i32(n)
        status = jnp.where(jnp.all(jnp.isfinite(v_flat)), 0, int(Status.NONFINITE)).astype(jnp.int32)
        return unravel(v_flat), linalg.SolveStats(res, res, nn, _i32(1), jnp.asarray(False), status)

    def response(self, lam, *, lr=None, H=None, b=None):
        from .analysis import spectral

        return spectral.inverse(lam)


@pytree_dataclass(data_fields=("lr",))
class Identity(Method):
    """IFT with ``H^{-1} ~ lr * I`` (the T1–T2 approximation of Luketina et al.).

    Args:
      lr: alpha (positive).
    """

    lr: Any
    _specs = (("lr", "float", "positive"),)

    def __post_init__(self):
        self._validate()

    def solve(self, matvec, b, x0=None, *, residual=True):
        def apply(r):
            v = jax.tree_util.tree_map(lambda x: self.lr * x, r)
            status = jnp.where(tree_all_finite(v), 0, int(Status.NONFINITE)).astype(jnp.int32)
            if residual:
                res = tree_norm(tree_sub(matvec(v), r))
                return v, linalg.SolveStats(res, res, _i32(1), _i32(0), jnp.asarray(False), status)
            nan = _nan_like(r)
            return v, linalg.SolveStats(nan, nan, _i32(0), _i32(0), jnp.asarray(False), status)

        return _with_x0(apply, matvec, b, x0, residual)

    def response(self, lam, *, lr=None, H=None, b=None):
        from .analysis import spectral

        return spectral.identity(lam, self.lr)


def _check_method(method, inner):
    if not isinstance(method, Method):
        raise TypeError(
            f"method must be one of blojax.Unroll, Neumann, CG, Damped, Exact, Identity; got {method!r}"
        )
    method.check_inner(inner)


def unrolled_steps(problem, inner, u, w, state, method: Unroll, batch=None):
    """``Xi^K(u, w)``: K differentiable steps of ``inner`` from ``(w, state)`` (masked beyond K when
    ``method.steps`` is traced). Returns ``(w_K, state_K)``."""
    length = method.length
    masked = method.max_steps is not None

    def one(carry, k):
        w_, s_ = carry
        w_new, s_new = inner.step(problem, u, w_, s_, batch)
        if masked:
            w_new, s_new = _keep_if(k < method.steps, (w_new, s_new), (w_, s_))
        return (w_new, s_new), None

    if method.uses_remat(w):
        one = jax.checkpoint(one)
    (w, state), _ = jax.lax.scan(one, (w, state), jnp.arange(length))
    return w, state


def _keep_if(keep, new, old):
    """``new`` where ``keep`` else ``old``, leaf by leaf: a masked inner step."""
    return jax.tree_util.tree_map(lambda a, b: jnp.where(keep, a, b), new, old)


@dataclasses.dataclass(frozen=True, eq=False)
class _SweepPresolver:
    """The first ``T - K`` of ``T`` inner steps for a traced K (see :func:`sweep_presolver`)."""

    inner: Any
    method: Unroll

    def init(self, w):
        return self.inner.init(w)

    def step(self, problem, u, w, state, batch=None):
        return self.inner.step(problem, u, w, state, batch)

    def solve(self, problem, u, w, state, batch=None):
        from .inner import InnerInfo

        T, kmax, K = self.inner.steps, self.method.length, self.method.steps
        w, state, _ = self.inner.with_steps(T - kmax).solve(problem, u, w, state, batch)

        def body(k, carry):  # K_max - K more steps: T - K in all
            return _keep_if(k < kmax - K, self.inner.step(problem, u, *carry, batch), carry)

        w, state = jax.lax.fori_loop(0, kmax, body, (w, state))
        fval, g = jax.value_and_grad(problem.f, argnums=1)(u, w, batch)
        gn = tree_norm(g)
        status = jnp.where(tree_all_finite(w) & jnp.isfinite(gn), 0, int(Status.NONFINITE))
        return w, state, InnerInfo(_i32(T - K), fval, gn, status.astype(jnp.int32))


def sweep_presolver(inner, method: Unroll):
    """The inner solver for the first ``T - K`` of ``T`` steps when ``method = Unroll(K, max_steps=K_max)``
    sweeps a traced K (``jax.vmap`` over K) on ``inner = InnerLoop(..., steps=T)``.

    ``method.presolver(inner)`` runs ``T - K_max`` steps (the strategy's masked scan of length ``K_max``
    then takes K), so a sweep entry sees ``T - K_max + K`` steps in all. This solver runs ``T - K_max``
    steps, then ``K_max - K`` more in a masked loop of length ``K_max``: with the K unrolled steps every
    entry takes ``T`` steps, the last K of them differentiated, as ``Unroll(K)`` with a static K does.
    Pass it where the inner solver goes (``ColdStart(problem, sweep_presolver(inner, method), method,
    ...)``, :func:`blojax.hypergradient`); its ``step`` is ``inner``'s, so ``method`` unrolls the same
    update.
    """
    if not isinstance(method, Unroll) or method.max_steps is None:
        raise TypeError(f"sweep_presolver: method must be Unroll(steps=K, max_steps=K_max), got {method!r}")
    T = getattr(inner, "steps", None)
    if T is None or not hasattr(inner, "with_steps"):
        raise TypeError(f"sweep_presolver: inner must be an InnerLoop with steps=T, got {inner!r}")
    if method.max_steps > T:
        raise ValueError(
            f"sweep_presolver: Unroll.max_steps ({method.max_steps}) must be <= InnerLoop.steps ({T}): "
            "the unrolled steps are the last K of the T inner steps"
        )
    return _SweepPresolver(inner, method)


def any_violation(method):
    """``True`` (a traced boolean) when a traced field of ``method`` is out of range; ``False`` when
    it has none. The callback-free counterpart of :func:`check_strategy_at_run_time`."""
    preds = [jnp.asarray(pred) for pred, _ in method.violations()]
    return jnp.any(jnp.stack(preds)) if preds else jnp.asarray(False)


def check_strategy_at_run_time(x, method, throw: bool = True):
    """Attach the run-time range checks of ``method``'s traced fields to ``x`` (see ``throw``)."""
    for pred, msg in method.violations():
        x = raise_if(x, pred, msg, throw)
    return x


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
    throw: bool = True,
):
    """Approximate hypergradient ``dF/du + J^T dF/dw`` at ``(u, w)``.

    IFT strategies evaluate everything at the given ``w`` (they do not re-solve the inner problem):
    ``g = dF/du(u, w) - M^T v`` with ``v ~ H^{-1} dF/dw(u, w)``. ``Unroll(K)`` runs K steps of
    ``inner`` from ``w`` and differentiates through them; its ``F`` and gradients are taken at the
    end point ``w_K``, which ``info.w`` returns (with ``info.inner_state``).

    Args:
      problem: a :class:`blojax.Problem`.
      u, w: outer and inner parameters (pytrees).
      method: a strategy (``Unroll``, ``Neumann``, ``CG``, ``Damped``, ``Exact``, ``Identity``).
      inner: the inner solver; required by ``Unroll``.
      inner_batch, outer_batch: data arguments of ``f`` and ``F`` (optional).
      inner_state: inner optimizer state to unroll from (``Unroll`` only; default fresh).
      diagnostics: spend the extra products needed to report the residual (Neumann, Identity) and
        the inner stationarity after unrolling.
      throw: raise (also under ``jit``/``vmap``) when the result is non-finite (status ``NONFINITE``)
        or a traced strategy field is out of range; other statuses are only reported.

    Returns:
      ``(grad_u, info)`` with ``info`` a :class:`HypergradInfo` (same fields for every strategy;
      ``info.status`` a :class:`blojax.Status` code).
    """
    _check_method(method, inner)
    if not isinstance(throw, bool):
        raise TypeError(f"throw must be True or False, got {throw!r}")
    problem.check(u, w, inner_batch, outer_batch)

    w_out, s_out, pullback = method.linearize(
        problem, inner, u, w, inner_state, inner_batch, diagnostics=diagnostics
    )
    Fval, (dF_du, dF_dw) = jax.value_and_grad(problem.F, argnums=(0, 1))(u, w_out, outer_batch)
    (u_bar, _, _), pb = pullback(dF_dw)
    g = jax.tree_util.tree_map(jnp.add, dF_du, u_bar)
    stats = pb.stats
    finite = tree_all_finite(g) & jnp.isfinite(Fval)
    status = combine(stats.status, jnp.where(finite, 0, int(Status.NONFINITE)))
    g = raise_if(
        g,
        status == int(Status.NONFINITE),
        f"hypergradient ({type(method).__name__}): non-finite result (NaN/inf); lower the step "
        "sizes or add damping, or pass throw=False to get status NONFINITE",
        throw,
    )
    g = check_strategy_at_run_time(g, method, throw)
    tiny = jnp.finfo(Fval.dtype).tiny
    info = HypergradInfo(
        F=Fval,
        inner_grad_norm=jnp.asarray(pb.grad_norm, Fval.dtype),
        residual=jnp.asarray(stats.residual, Fval.dtype),
        residual_min=jnp.asarray(stats.residual_min, Fval.dtype),
        residual_growth=jnp.asarray(stats.residual / jnp.maximum(stats.residual_min, tiny), Fval.dtype),
        hvps=_i32(pb.hvps),
        grads=_i32(pb.grads + 1),
        solve_iters=_i32(stats.iters),
        solve_breakdown=jnp.asarray(stats.breakdown),
        status=status,
        w=w_out,
        inner_state=s_out,
    )
    return g, info
