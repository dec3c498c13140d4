"""Inner solvers: ``w_T = Xi^T(u, w_0)``, T steps of an optax optimizer on ``w -> f(u, w)``.

With plain SGD at step ``alpha`` one step is the paper's update operator

    Xi(u, w) = w - alpha * grad_w f(u, w).

``InnerLoop`` runs a fixed number of steps with ``lax.scan`` (``steps=T``), or until
``||grad_w f(u, w)|| <= tol`` with ``lax.while_loop`` (bounded by ``max_steps``). Both are pure and
``jit``/``vmap``-able. Every step passes ``value``, ``grad`` and ``value_fn`` (``w -> f(u, w)``) to
the optimizer, so optax's line-search optimizers (``optax.lbfgs()``,
``optax.scale_by_backtracking_linesearch``) work as inner solvers. Any object with the same ``init`` / ``solve`` methods (see :class:`InnerSolver`)
is accepted wherever an ``InnerLoop`` is, e.g. :class:`ClosedForm` for a closed-form inner solution.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, NamedTuple, Protocol

import jax
import jax.numpy as jnp
import optax

from ._tree import check_float, check_int, tree_all_finite, tree_norm
from .status import Status, raise_if

__all__ = ["InnerLoop", "ClosedForm", "InnerSolver", "InnerInfo"]


class InnerInfo(NamedTuple):
    """Diagnostics of one inner solve: steps taken, ``f(u, w_T)``, ``||grad_w f(u, w_T)||`` and
    ``status`` (a :class:`blojax.Status` code: CONVERGED, MAX_STEPS when a tolerance loop stopped at
    ``max_steps``, BREAKDOWN when it diverged, NONFINITE). Indexing by name (``info["f"]``) works."""

    steps: jax.Array
    f: jax.Array
    grad_norm: jax.Array
    status: jax.Array | int = 0

    def __getitem__(self, key):
        if isinstance(key, str):
            try:
                return getattr(self, key)
            except AttributeError:
                raise KeyError(key) from None
        return tuple.__getitem__(self, key)


def _final_status(w, gn):
    """NONFINITE (4) if ``w`` or ``gn`` is not finite, else CONVERGED (0)."""
    return jnp.where(tree_all_finite(w) & jnp.isfinite(gn), 0, int(Status.NONFINITE)).astype(jnp.int32)


def _nonfinite_message(owner):
    return (
        f"{owner}: non-finite inner iterate (NaN/inf); lower the inner step size, or pass "
        "throw=False to get status NONFINITE"
    )


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
      max_steps: upper bound on the number of steps in ``tol`` mode (default 10_000); reaching it
        before the tolerance gives status ``MAX_STEPS``.
      diverge: ``tol`` mode stops with status ``BREAKDOWN`` once ``||grad_w f||`` exceeds ``diverge``
        times ``max(||grad_w f(u, w_0)||, tol)`` (a run diverging without NaN yet; default 1e6).

    The optimizer may be any optax transformation, line searches included: each update receives
    ``value``, ``grad`` and ``value_fn`` as extra arguments (ignored by optimizers that take none).
    Steps, tolerances and the optimizer are static: changing them recompiles.
    """

    optimizer: optax.GradientTransformation
    steps: int | None = None
    tol: float | None = None
    max_steps: int | None = None
    diverge: float = 1e6
    _opt: Any = dataclasses.field(init=False, repr=False)

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
        check_float("InnerLoop", "diverge", self.diverge, positive=True)
        object.__setattr__(self, "_opt", optax.with_extra_args_support(opt))

    @property
    def bound(self) -> int:
        """The most steps one solve may take."""
        return self.steps if self.steps is not None else self.max_steps  # pyright: ignore[reportReturnType]

    def init(self, w):
        """Fresh optimizer state for inner parameters ``w``."""
        return self.optimizer.init(w)

    def with_steps(self, steps: int) -> "InnerLoop":
        """The same loop with a fixed number of steps (e.g. the ``T - K`` steps before ``Unroll(K)``)."""
        return InnerLoop(self.optimizer, steps=steps)

    def step(self, problem, u, w, state, batch=None):
        """One update ``w <- Xi(u, w)``; differentiable in ``u`` and ``w``."""
        return _opt_step(self._opt, problem, u, w, state, batch)

    def solve(self, problem, u, w, state, batch=None):
        """Run the inner loop from ``(w, state)``; returns ``(w_T, state_T, InnerInfo)``."""
        if self.steps is not None:

            def body(carry, _):
                w_, s_ = carry
                return self.step(problem, u, w_, s_, batch), None

            (w, state), _ = jax.lax.scan(body, (w, state), None, length=self.steps)
            n = jnp.asarray(self.steps)
            fval, g = jax.value_and_grad(problem.f, argnums=1)(u, w, batch)
            gn = tree_norm(g)
            return w, state, InnerInfo(n, fval, gn, _final_status(w, gn))

        def grad_norm(w_):
            return tree_norm(jax.grad(problem.f, argnums=1)(u, w_, batch))

        assert self.tol is not None  # tol mode
        gn0 = grad_norm(w)
        limit = self.diverge * jnp.maximum(gn0, self.tol)

        def cond(carry):
            _, _, k, gn = carry
            return (k < self.max_steps) & (gn > self.tol) & (gn <= limit)  # NaN stops too

        def body(carry):
            w_, s_, k, _ = carry
            w_, s_ = self.step(problem, u, w_, s_, batch)
            return w_, s_, k + 1, grad_norm(w_)

        w, state, k, gn = jax.lax.while_loop(cond, body, (w, state, jnp.asarray(0), gn0))
        fval = problem.f(u, w, batch)
        status = jnp.where(
            gn <= self.tol,
            int(Status.CONVERGED),
            jnp.where(gn > limit, int(Status.BREAKDOWN), int(Status.MAX_STEPS)),
        )
        status = jnp.where(
            tree_all_finite(w) & jnp.isfinite(gn) & jnp.isfinite(fval), status, int(Status.NONFINITE)
        ).astype(jnp.int32)
        return w, state, InnerInfo(k, fval, gn, status)

    def run(self, problem, u, w, batch=None, *, throw: bool = True):
        """The inner solve on its own from a fresh optimizer state: ``(w_T, info)``; jit-able.

        ``throw``: raise (also under ``jit``/``vmap``) when the result is non-finite; the other
        statuses (``MAX_STEPS``, ``BREAKDOWN``) are reported in ``info.status``."""
        w, _, info = self.solve(problem, u, w, self.init(w), batch)
        # checked on w alone, so that a caller using only w pays no final gradient evaluation
        w = raise_if(w, ~tree_all_finite(w), _nonfinite_message("InnerLoop"), throw)
        return w, info


def _opt_step(opt, problem, u, w, state, batch):
    """One optax update on ``w -> f(u, w, batch)`` passing ``value``, ``grad`` and ``value_fn``."""
    value, g = jax.value_and_grad(problem.f, argnums=1)(u, w, batch)
    updates, state = opt.update(g, state, w, value=value, grad=g, value_fn=lambda w_: problem.f(u, w_, batch))
    return optax.apply_updates(w, updates), state


@dataclasses.dataclass(frozen=True, eq=False)
class ClosedForm:
    """An inner "solver" given by a formula: ``w_T = solution(u, w0)``, or ``solution(u, w0, batch)``
    when there is data (the call's batch, else ``Problem.data``).

    Use it when the inner problem has a known solution that gradient descent cannot reach in
    practice, e.g. the minimum-norm least-squares fit of an ill-conditioned problem. ``Unroll``
    needs a differentiable step and does not accept it; pass ``step_optimizer`` to give one.
    """

    solution: Callable[..., Any]
    step_optimizer: optax.GradientTransformation | None = None
    _opt: Any = dataclasses.field(init=False, repr=False)

    def __post_init__(self):
        if self.step_optimizer is not None:
            object.__setattr__(self, "_opt", optax.with_extra_args_support(self.step_optimizer))
        if not callable(self.solution):
            raise TypeError(f"ClosedForm.solution must be callable solution(u, w0), got {self.solution!r}")

    @property
    def bound(self) -> int:
        return 1

    def init(self, w):
        return () if self.step_optimizer is None else self.step_optimizer.init(w)

    def step(self, problem, u, w, state, batch=None):
        if self.step_optimizer is None:
            raise ValueError(
                "ClosedForm has no differentiable step: pass step_optimizer=optax.sgd(alpha) to Unroll through it"
            )
        return _opt_step(self._opt, problem, u, w, state, batch)

    def solve(self, problem, u, w, state, batch=None):
        data = getattr(problem, "data", None) if batch is None else batch
        w = self.solution(u, w) if data is None else self.solution(u, w, data)
        fval, g = jax.value_and_grad(problem.f, argnums=1)(u, w, batch)
        gn = tree_norm(g)
        return w, state, InnerInfo(jnp.asarray(1), fval, gn, _final_status(w, gn))

    def run(self, problem, u, w, batch=None, *, throw: bool = True):
        """``(w, info)`` from the formula; ``throw`` as :meth:`InnerLoop.run`."""
        w, _, info = self.solve(problem, u, w, self.init(w), batch)
        w = raise_if(w, info.status == int(Status.NONFINITE), _nonfinite_message("ClosedForm"), throw)
        return w, info
