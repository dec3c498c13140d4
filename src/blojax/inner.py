"""Inner solvers: ``w_T = Xi^T(u, w_0)``, T steps of an optax optimizer on ``w -> f(u, w)``.

With plain SGD at step ``alpha`` one step is the paper's update operator

    Xi(u, w) = w - alpha * grad_w f(u, w).

``InnerLoop`` runs a fixed number of steps with ``lax.scan`` (``steps=T``), or until
``||grad_w f(u, w)|| <= tol`` with ``lax.while_loop`` (bounded by ``max_steps``). Both are pure and
``jit``/``vmap``-able. Any object with the same ``init`` / ``solve`` methods (see :class:`InnerSolver`)
is accepted wherever an ``InnerLoop`` is, e.g. :class:`ClosedForm` for a closed-form inner solution.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, NamedTuple, Protocol

import jax
import jax.numpy as jnp
import optax

from ._tree import check_float, check_int, tree_norm

__all__ = ["InnerLoop", "ClosedForm", "InnerSolver", "InnerInfo"]


class InnerInfo(NamedTuple):
    """Diagnostics of one inner solve: steps taken, ``f(u, w_T)`` and ``||grad_w f(u, w_T)||``."""

    steps: jax.Array
    f: jax.Array
    grad_norm: jax.Array


class InnerSolver(Protocol):
    """What the bilevel algorithms need from an inner solver.

    ``init(w) -> state``; ``solve(problem, u, w, state, batch) -> (w_T, state_T, InnerInfo)``.
    ``step(problem, u, w, state, batch) -> (w', state')`` (one differentiable update) is only needed
    by :class:`blojax.Unroll`.
    """

    def init(self, w) -> Any: ...

    def solve(self, problem, u, w, state, batch=None): ...


@dataclasses.dataclass(frozen=True, eq=False)
class InnerLoop:
    """Run an optax optimizer on the inner objective ``f(u, .)``.

    Args:
      optimizer: an ``optax.GradientTransformation`` (e.g. ``optax.sgd(alpha)``).
      steps: fixed number of inner steps T (``lax.scan``). Give either ``steps`` or ``tol``.
      tol: stop when ``||grad_w f(u, w)|| <= tol`` (``lax.while_loop``).
      max_steps: upper bound on the number of steps in ``tol`` mode (default 10_000).

    Steps, tolerances and the optimizer are static: changing them recompiles.
    """

    optimizer: optax.GradientTransformation
    steps: int | None = None
    tol: float | None = None
    max_steps: int | None = None

    def __post_init__(self):
        opt = self.optimizer
        if not (hasattr(opt, "init") and hasattr(opt, "update")):
            raise TypeError(
                f"InnerLoop.optimizer must be an optax.GradientTransformation (with init/update), got {opt!r}"
            )
        if self.steps is None and self.tol is None:
            raise ValueError("InnerLoop needs either steps=T (fixed) or tol=... (run to stationarity)")
        if self.steps is not None and self.tol is not None:
            raise ValueError("InnerLoop takes steps or tol, not both (use tol with max_steps)")
        if self.steps is not None:
            check_int("InnerLoop", "steps", self.steps, minimum=0)
            if self.max_steps is not None:
                raise ValueError("InnerLoop.max_steps only applies with tol; with steps=T the count is fixed")
        else:
            check_float("InnerLoop", "tol", self.tol, nonneg=True)
            if self.max_steps is None:
                object.__setattr__(self, "max_steps", 10_000)
            check_int("InnerLoop", "max_steps", self.max_steps)

    @property
    def bound(self) -> int:
        """The most steps one solve may take."""
        return self.steps if self.steps is not None else self.max_steps  # pyright: ignore[reportReturnType]

    def init(self, w):
        """Fresh optimizer state for inner parameters ``w``."""
        return self.optimizer.init(w)

    def step(self, problem, u, w, state, batch=None):
        """One update ``w <- Xi(u, w)``; differentiable in ``u`` and ``w``."""
        g = jax.grad(problem.f, argnums=1)(u, w, batch)
        updates, state = self.optimizer.update(g, state, w)
        return optax.apply_updates(w, updates), state

    def solve(self, problem, u, w, state, batch=None):
        """Run the inner loop from ``(w, state)``; returns ``(w_T, state_T, InnerInfo)``."""
        if self.steps is not None:
            def body(carry, _):
                w_, s_ = carry
                return self.step(problem, u, w_, s_, batch), None

            (w, state), _ = jax.lax.scan(body, (w, state), None, length=self.steps)
            n = jnp.asarray(self.steps)
            fval, g = jax.value_and_grad(problem.f, argnums=1)(u, w, batch)
            return w, state, InnerInfo(n, fval, tree_norm(g))

        def grad_norm(w_):
            return tree_norm(jax.grad(problem.f, argnums=1)(u, w_, batch))

        def cond(carry):
            _, _, k, gn = carry
            return jnp.logical_and(k < self.max_steps, gn > self.tol)

        def body(carry):
            w_, s_, k, _ = carry
            w_, s_ = self.step(problem, u, w_, s_, batch)
            return w_, s_, k + 1, grad_norm(w_)

        w, state, k, gn = jax.lax.while_loop(cond, body, (w, state, jnp.asarray(0), grad_norm(w)))
        return w, state, InnerInfo(k, problem.f(u, w, batch), gn)

    def run(self, problem, u, w, batch=None):
        """The inner solve on its own from a fresh optimizer state: ``(w_T, info)``; jit-able."""
        w, _, info = self.solve(problem, u, w, self.init(w), batch)
        return w, info


@dataclasses.dataclass(frozen=True, eq=False)
class ClosedForm:
    """An inner "solver" given by a formula: ``w_T = solution(u, w0)`` (optionally ``(u, w0, batch)``).

    Use it when the inner problem has a known solution that gradient descent cannot reach in
    practice, e.g. the minimum-norm least-squares fit of an ill-conditioned problem. ``Unroll``
    needs a differentiable step and does not accept it; pass ``step_optimizer`` to give one.
    """

    solution: Callable[..., Any]
    step_optimizer: optax.GradientTransformation | None = None

    def __post_init__(self):
        if not callable(self.solution):
            raise TypeError(f"ClosedForm.solution must be callable solution(u, w0), got {self.solution!r}")

    @property
    def bound(self) -> int:
        return 1

    def init(self, w):
        return () if self.step_optimizer is None else self.step_optimizer.init(w)

    def step(self, problem, u, w, state, batch=None):
        if self.step_optimizer is None:
            raise ValueError("ClosedForm has no differentiable step: pass step_optimizer=optax.sgd(alpha) to Unroll through it")
        g = jax.grad(problem.f, argnums=1)(u, w, batch)
        updates, state = self.step_optimizer.update(g, state, w)
        return optax.apply_updates(w, updates), state

    def solve(self, problem, u, w, state, batch=None):
        w = self.solution(u, w) if batch is None else self.solution(u, w, batch)
        fval, g = jax.value_and_grad(problem.f, argnums=1)(u, w, batch)
        return w, state, InnerInfo(jnp.asarray(1), fval, tree_norm(g))

    def run(self, problem, u, w, batch=None):
        w, _, info = self.solve(problem, u, w, self.init(w), batch)
        return w, info
