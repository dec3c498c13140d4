r"""blojax as a JAX transform: differentiate through an inner solve with the strategy you choose.

:func:`solve` returns the inner solution ``w(u)`` of a :class:`blojax.Problem` and is differentiable:
``jax.grad``, ``jax.vjp``, ``jax.jacrev`` of any function of ``w`` with respect to ``u`` (and to the
arrays in ``batch`` or carried by the problem) apply the strategy's pullback through
``jax.custom_vjp``,

    w_bar  ->  J^T w_bar,    J = dw/du,

with ``J^T w_bar = -M^T H^{-1} w_bar`` approximated by the IFT strategies (``Neumann``, ``CG``,
``Damped``, ``Exact``, ``Identity``) at the returned ``w``, and by reverse mode through the last K
steps for ``Unroll(K)`` (the inner loop runs ``T - K`` plain steps, then K differentiated ones).
So for every strategy ``jax.grad(lambda u: F(u, solve(...)))(u)`` is :func:`blojax.hypergradient`'s
``g``. The start ``w0`` gets a zero cotangent: the solution does not depend on where the solve
starts (the IFT's premise; ``Unroll`` holds its start constant too), so ``w0 = u`` (implicit MAML)
needs nothing special.

:func:`implicit_diff` attaches the same pullbacks to a solver of your own.
"""

from __future__ import annotations

import functools
from typing import Any, Callable

import jax
import jax.numpy as jnp
from jax.custom_derivatives import CustomVJPPrimal, SymbolicZero
import numpy as np

from ._tree import tree_all_finite
from .hypergrad import Method, _check_method, check_strategy_at_run_time
from .problem import Problem
from .status import raise_if

__all__ = ["solve", "implicit_diff"]


def _check(problem, inner, method, throw):
    if not isinstance(problem, Problem):
        raise TypeError(f"problem must be a blojax.Problem, got {problem!r}")
    if not (hasattr(inner, "init") and hasattr(inner, "solve")):
        raise TypeError(f"inner must be an InnerLoop (or provide init/solve), got {inner!r}")
    _check_method(method, inner)
    method.presolver(inner)
    if not isinstance(throw, bool):
        raise TypeError(f"throw must be True or False, got {throw!r}")


def solve(problem: Problem, u, w0, *, inner, method: Method, batch=None, throw: bool = True):
    """The inner solution ``w_T = Xi^T(u, w0)``, differentiable in ``u`` with ``method``.

    Args:
      problem: the :class:`blojax.Problem` (only ``f`` is used; its arrays are differentiable inputs).
      u: outer parameters (pytree).
      w0: inner start (pytree); may depend on ``u`` (its cotangent is zero).
      inner: the inner solver (:class:`blojax.InnerLoop`, :class:`blojax.ClosedForm`, ...).
      method: the strategy whose pullback ``jax.grad`` uses.
      batch: data of the inner objective, ``f(u, w, batch)`` (default ``problem.data``);
        differentiable.
      throw: raise (also under ``jit``/``vmap``) when the inner iterate or the cotangent is
        non-finite, or a traced strategy field is out of range.

    Returns:
      ``w``: for ``Unroll(K)`` with ``InnerLoop(steps=T)`` the end of ``T - K`` plain and ``K``
      differentiated steps (``T`` in all); otherwise the inner solver's result.
    """
    _check(problem, inner, method, throw)
    return _solve(inner, throw, problem, method, u, w0, batch)


def _forward(inner, throw, problem, method, u, w0, batch, wrt_data):
    pre = method.presolver(inner)
    w_s, s_s, _ = pre.solve(problem, u, w0, inner.init(w0), batch)
    w, _, pullback = method.linearize(
        problem, inner, u, w_s, s_s, batch, diagnostics=False, wrt_data=wrt_data
    )
    w = raise_if(
        w,
        ~tree_all_finite(w),
        "blojax.solve: non-finite inner solution (NaN/inf); lower the inner step size",
        throw,
    )
    w = check_strategy_at_run_time(w, method, throw)
    return w, pullback


@functools.partial(jax.custom_vjp, nondiff_argnums=(0, 1))
def _solve(inner, throw, problem, method, u, w0, batch):
    return _forward(inner, throw, problem, method, u, w0, batch, False)[0]


def _is_primal(x):
    return isinstance(x, CustomVJPPrimal)


def _values(tree):
    return jax.tree_util.tree_map(lambda x: x.value, tree, is_leaf=_is_primal)


def _perturbed(tree) -> bool:
    return any(x.perturbed for x in jax.tree_util.tree_leaves(tree, is_leaf=_is_primal))


def _instantiate(tree):
    """Symbolic zero cotangents (an output nobody differentiates) as arrays of zeros."""
    return jax.tree_util.tree_map(
        lambda z: jnp.zeros(z.shape, z.dtype) if isinstance(z, SymbolicZero) else z,  # pyright: ignore[reportArgumentType]
        tree,
        is_leaf=lambda z: isinstance(z, SymbolicZero),
    )


def _solve_fwd(inner, throw, problem, method, u, w0, batch):
    # Cotangents for the data only when the data is differentiated: otherwise Unroll's reverse scan
    # would carry (and XLA could not drop) a cotangent of every array the inner objective reads.
    wrt_data = _perturbed(problem) or _perturbed(batch)
    problem, method, u, w0, batch = (_values(t) for t in (problem, method, u, w0, batch))
    w, pullback = _forward(inner, throw, problem, method, u, w0, batch, wrt_data)
    return w, (pullback, problem, method, w0, batch)


def _cotangents(pullback, w_bar, throw, who):
    """``(u_bar, problem_bar, data_bar)`` of the strategy's pullback of ``w_bar``; a non-finite ``u_bar``
    raises under ``throw`` (also under ``jit``/``vmap``)."""
    (u_bar, problem_bar, data_bar), _ = pullback(_instantiate(w_bar))
    u_bar = raise_if(
        u_bar,
        ~tree_all_finite(u_bar),
        f"{who}: non-finite cotangent (NaN/inf) from the strategy's pullback; add damping "
        "(CG(damping=eps), Damped(eps)) or lower the step sizes",
        throw,
    )
    return u_bar, problem_bar, data_bar


def _solve_bwd(inner, throw, res, w_bar):
    pullback, problem, method, w0, batch = res
    u_bar, problem_bar, batch_bar = _cotangents(pullback, w_bar, throw, "blojax.solve")
    problem_bar = _zero_cotangent(problem) if problem_bar is None else problem_bar
    batch_bar = _zero_cotangent(batch) if batch_bar is None else batch_bar
    return problem_bar, _zero_cotangent(method), u_bar, _zero_cotangent(w0), batch_bar


_solve.defvjp(_solve_fwd, _solve_bwd, symbolic_zeros=True)


def _zero_cotangent(tree):
    """Zero cotangents for ``tree`` (``float0`` for integer leaves)."""

    def zero(x):
        if jnp.issubdtype(jnp.result_type(x), jnp.inexact):
            return jnp.zeros_like(x)
        return np.zeros(np.shape(x), dtype=jax.dtypes.float0)

    return jax.tree_util.tree_map(zero, tree)


def _no_outer(u, w, batch):  # implicit_diff's problem has no outer objective
    raise TypeError("implicit_diff differentiates the inner solution only; it has no outer objective")


def implicit_diff(inner_objective: Callable[..., Any], method: Method, *, inner=None, throw: bool = True):
    """Decorator: make a user solver ``solver(u, w0, *args) -> w`` differentiable with ``method``.

    ``inner_objective(u, w, *args)`` is the objective the solver minimizes over ``w`` (the same
    ``args``); the solver itself may be anything JAX can trace (a closed form, a jaxopt or optimistix
    call, a Python loop). Its output is taken as ``w*(u)``; ``jax.grad``/``jax.vjp``/``jax.jacrev``
    then apply the strategy's pullback at it (cotangents also flow to array ``args``; ``w0`` gets
    zero). ``Unroll(K)`` needs ``inner`` (e.g. ``InnerLoop(optax.sgd(alpha), steps=K)``) and returns
    ``K`` more differentiated steps taken from the solver's output.

    Static configuration of the solver (iteration counts, flags) belongs in its closure: ``args``
    are traced. For example::

        @blojax.implicit_diff(ridge_f, blojax.CG(50))
        def ridge_solver(u, w0, X, y):
            return jnp.linalg.solve(X.T @ X / n + jnp.exp(u) * jnp.eye(d), X.T @ y / n)
    """
    if not callable(inner_objective):
        raise TypeError(
            f"implicit_diff: inner_objective must be callable f(u, w, *args), got {inner_objective!r}"
        )
    _check_method(method, inner)
    if not isinstance(throw, bool):
        raise TypeError(f"throw must be True or False, got {throw!r}")
    problem = Problem(lambda u, w, batch: inner_objective(u, w, *batch), _no_outer)

    def decorate(solver):
        if not callable(solver):
            raise TypeError(f"implicit_diff decorates a solver(u, w0, *args) -> w, got {solver!r}")

        @functools.wraps(solver)
        def wrapped(u, w0, *args):
            return _implicit(solver, inner, throw, problem, method, u, w0, tuple(args))

        return wrapped

    return decorate


def _implicit_forward(solver, inner, throw, problem, method, u, w0, args, wrt_data):
    w = solver(u, w0, *args)
    state = inner.init(w) if inner is not None else None
    w, _, pullback = method.linearize(problem, inner, u, w, state, args, diagnostics=False, wrt_data=wrt_data)
    w = raise_if(
        w,
        ~tree_all_finite(w),
        f"implicit_diff({getattr(solver, '__name__', 'solver')}): non-finite solution (NaN/inf)",
        throw,
    )
    w = check_strategy_at_run_time(w, method, throw)
    return w, pullback


@functools.partial(jax.custom_vjp, nondiff_argnums=(0, 1, 2))
def _implicit(solver, inner, throw, problem, method, u, w0, args):
    return _implicit_forward(solver, inner, throw, problem, method, u, w0, args, False)[0]


def _implicit_fwd(solver, inner, throw, problem, method, u, w0, args):
    wrt_data = _perturbed(args)
    problem, method, u, w0, args = (_values(t) for t in (problem, method, u, w0, args))
    w, pullback = _implicit_forward(solver, inner, throw, problem, method, u, w0, args, wrt_data)
    return w, (pullback, problem, method, w0, args)


def _implicit_bwd(solver, inner, throw, res, w_bar):
    pullback, problem, method, w0, args = res
    u_bar, _, args_bar = _cotangents(pullback, w_bar, throw, "implicit_diff")
    args_bar = _zero_cotangent(args) if args_bar is None else args_bar
    return _zero_cotangent(problem), _zero_cotangent(method), u_bar, _zero_cotangent(w0), args_bar


_implicit.defvjp(_implicit_fwd, _implicit_bwd, symbolic_zeros=True)
