r"""Cold-start and warm-start bilevel optimization.

One outer step ``k`` of either algorithm, in this order:

1. **Start the inner problem.** Cold-start: ``w <- w0`` and a fresh inner optimizer state (every
   step). Warm-start: ``w`` and the inner optimizer state carried over from step ``k - 1``.
2. **Inner solve** ``w_T = Xi^T(u_k, w)``: the ``InnerLoop`` (``steps=T``, or to ``tol``).
   With ``Unroll(K)`` only ``T - K`` steps run here (all of them in ``tol`` mode) and the last K
   steps are taken in step 3, differentiated.
3. **Hypergradient** ``g_k`` at ``(u_k, w_T)`` with the chosen strategy (:func:`blojax.hypergradient`).
4. **Outer update** ``u_{k+1} = u_k + outer.update(g_k)`` (an optax optimizer).
5. **Carry** ``w_T`` (warm-start keeps it for step ``k + 1``; cold-start discards it and only
   reports it in ``state.w``).

Every metric of step ``k`` is evaluated at the pair ``(u_k, w_T)`` used for ``g_k``.

Full warm-start = ``WarmStart`` with ``InnerLoop(tol=...)``; partial warm-start = ``WarmStart`` with a
few steps (``steps=1`` with ``Unroll(1)`` is alternating joint training of ``u`` and ``w``).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, NamedTuple

import jax
import jax.core
import jax.numpy as jnp
import optax

from ._tree import tree_all_finite, tree_norm, tree_sub
from .hypergrad import Method, _check_method, any_violation, check_strategy_at_run_time, hypergradient
from .problem import Problem
from .transform import solve

__all__ = ["BilevelState", "ColdStart", "WarmStart", "NonFiniteError"]

HISTORY_KEYS = (
    "F",
    "f",
    "inner_grad_norm",
    "u_norm",
    "w_norm",
    "w_dist",
    "hypergrad_norm",
    "residual",
    "inner_steps",
    "inner_status",
    "solve_status",
)


class BilevelState(NamedTuple):
    """State of a bilevel run.

    u: outer parameters ``u_k``; w: latest inner solution ``w_T`` (the warm start of the next step
    for ``WarmStart``); w0: the inner initialization; inner_state / outer_state: optimizer states;
    step: outer steps taken; diverged_step: the first step whose update was non-finite (-1: none).
    After a non-finite update the state is frozen at the last finite one.
    """

    u: Any
    w: Any
    w0: Any
    inner_state: Any
    outer_state: Any
    step: jax.Array
    diverged_step: jax.Array


class NonFiniteError(FloatingPointError):
    """A run produced NaN/inf. ``.state`` is the last finite state, ``.history`` every metric up to
    and including the failing step."""

    def __init__(self, message, state=None, history=None):
        super().__init__(message)
        self.state = state
        self.history = history


def _is_traced(tree) -> bool:
    return any(isinstance(x, jax.core.Tracer) for x in jax.tree_util.tree_leaves(tree))


@dataclasses.dataclass(frozen=True, eq=False)
class _Bilevel:
    problem: Problem
    inner: Any
    method: Method
    outer: optax.GradientTransformation
    record: Callable[..., dict] | None = None
    diagnostics: bool = True
    throw: bool = True

    cold: bool = dataclasses.field(default=False, init=False)
    _jit_step: Callable = dataclasses.field(init=False, repr=False)
    _jit_scan: Callable = dataclasses.field(init=False, repr=False)
    _outer: Any = dataclasses.field(init=False, repr=False)

    def __post_init__(self):
        name = type(self).__name__
        if not isinstance(self.problem, Problem):
            raise TypeError(f"{name}.problem must be a blojax.Problem, got {self.problem!r}")
        if not (hasattr(self.inner, "init") and hasattr(self.inner, "solve")):
            raise TypeError(f"{name}.inner must be an InnerLoop (or provide init/solve), got {self.inner!r}")
        _check_method(self.method, self.inner)
        if not (hasattr(self.outer, "init") and hasattr(self.outer, "update")):
            raise TypeError(f"{name}.outer must be an optax.GradientTransformation, got {self.outer!r}")
        if not isinstance(self.diagnostics, bool):
            raise TypeError(f"{name}.diagnostics must be True or False, got {self.diagnostics!r}")
        if not isinstance(self.throw, bool):
            raise TypeError(f"{name}.throw must be True or False, got {self.throw!r}")
        if self.record is not None and not callable(self.record):
            raise TypeError(f"{name}.record must be a callable record(u, w) -> dict, got {self.record!r}")
        self.method.presolver(self.inner)  # raises when the strategy cannot split this inner solver
        object.__setattr__(self, "_outer", optax.with_extra_args_support(self.outer))
        object.__setattr__(self, "_jit_step", jax.jit(self._step))
        object.__setattr__(self, "_jit_scan", jax.jit(self._scan, static_argnums=(1,)))

    # ------------------------------------------------------------------ state
    def init(self, u0, w0) -> BilevelState:
        """Initial state at ``(u0, w0)``; ``w0`` is also the cold-start re-initialization."""
        self.problem.check(u0, w0)
        return BilevelState(
            u=u0,
            w=w0,
            w0=w0,
            inner_state=self.inner.init(w0),
            outer_state=self.outer.init(u0),
            step=jnp.asarray(0, jnp.int32),
            diverged_step=jnp.asarray(-1, jnp.int32),
        )

    # ------------------------------------------------------------------ one step
    def _presolver(self):
        return self.method.presolver(self.inner)

    def _step(self, state: BilevelState, inner_batch=None, outer_batch=None):
        problem, u = self.problem, state.u
        if self.cold:
            w_start, s_start = state.w0, self.inner.init(state.w0)
        else:
            w_start, s_start = state.w, state.inner_state
        w_t, s_t, iinfo = self._presolver().solve(problem, u, w_start, s_start, inner_batch)
        g, hinfo = hypergradient(
            problem,
            u,
            w_t,
            self.method,
            self.inner,
            inner_batch=inner_batch,
            outer_batch=outer_batch,
            inner_state=s_t,
            diagnostics=self.diagnostics,
            throw=False,  # a non-finite step freezes the state and is reported by run() (on_nonfinite)
        )
        # the point where F and g were taken (after the strategy's own steps, e.g. Unroll's last K)
        takes_steps = not self.method.implicit
        w_t, s_t = hinfo.w, hinfo.inner_state if takes_steps else s_t
        nan = jnp.full_like(hinfo.F, jnp.nan)
        if takes_steps:
            f_val = problem.f(u, w_t, inner_batch) if self.diagnostics else nan
        else:  # the inner solve's f(w_T) is an extra evaluation: left out without diagnostics (XLA drops it)
            f_val = iinfo.f if self.diagnostics else nan
        n_inner = iinfo.steps + jnp.asarray(self.method.tail_steps, iinfo.steps.dtype)
        if self.throw:
            g = check_strategy_at_run_time(g, self.method)

        def value_fn(u_):  # the bilevel objective u -> F(u, w(u)) from this step's start, for line
            # searches; differentiable with the chosen strategy (blojax.solve)
            w_ = solve(
                problem, u_, w_start, inner=self.inner, method=self.method, batch=inner_batch, throw=False
            )
            return problem.F(u_, w_, outer_batch)

        updates, outer_state = self._outer.update(
            g, state.outer_state, u, value=hinfo.F, grad=g, value_fn=value_fn
        )
        u_new = optax.apply_updates(u, updates)

        metrics = dict(
            F=hinfo.F,
            f=f_val,
            inner_grad_norm=hinfo.inner_grad_norm if self.diagnostics else nan,
            u_norm=tree_norm(u),
            w_norm=tree_norm(w_t),
            w_dist=tree_norm(tree_sub(w_t, state.w0)),
            hypergrad_norm=tree_norm(g),
            residual=hinfo.residual,
            inner_steps=n_inner,
            inner_status=jnp.asarray(iinfo.status, jnp.int32)
            if hasattr(iinfo, "status")
            else jnp.asarray(0, jnp.int32),
            solve_status=hinfo.status,
        )
        if self.record is not None:
            extra = self.record(u, w_t)
            clash = set(extra) & set(metrics)
            if clash:
                raise ValueError(f"record() returned reserved metric names {sorted(clash)}")
            metrics.update(extra)

        finite = tree_all_finite((u_new, w_t, g, hinfo.F))
        if not self.throw:  # no host callback: a traced field out of range rejects the step like NaN
            finite = jnp.logical_and(finite, jnp.logical_not(any_violation(self.method)))
        ok = jnp.logical_and(finite, state.diverged_step < 0)
        proposed = BilevelState(u_new, w_t, state.w0, s_t, outer_state, state.step + 1, state.diverged_step)
        frozen = state._replace(
            diverged_step=jnp.where(state.diverged_step < 0, state.step, state.diverged_step)
        )
        new_state = jax.tree_util.tree_map(lambda a, b: jnp.where(ok, a, b), proposed, frozen)
        return new_state, metrics

    def step(self, state: BilevelState, inner_batch=None, outer_batch=None):
        """One outer step (jit-compiled): ``(state, metrics)``. See the module docstring for the order."""
        return self._jit_step(state, inner_batch, outer_batch)

    # ------------------------------------------------------------------ many steps
    def _scan(self, state, steps, inner_batches=None, outer_batches=None):
        def body(s, xs):
            ib, ob = xs
            return self._step(s, ib, ob)

        return jax.lax.scan(body, state, (inner_batches, outer_batches), length=steps)

    def run(
        self,
        state: BilevelState,
        steps: int,
        *,
        inner_batches=None,
        outer_batches=None,
        progress: bool = False,
        chunks: int = 20,
        on_nonfinite: str = "raise",
    ):
        """Run ``steps`` outer steps as one compiled ``lax.scan``.

        Args:
          state: from :meth:`init` (or a previous run).
          steps: number of outer steps (a Python int).
          inner_batches, outer_batches: optional data for ``f`` and ``F``, pytrees whose leaves have
            a leading axis of length ``steps`` (one slice per outer step).
          progress: show a progress bar; the run is then split into ``chunks`` compiled scans.
          on_nonfinite: ``"raise"`` (default) raises :class:`NonFiniteError` carrying the last finite
            state and the history; ``"stop"`` returns them (the state frozen at the last finite step,
            NaN metrics after it). Checked only when the run is not itself traced (e.g. under vmap).

        Returns:
          ``(state, history)`` with ``history`` a dict of per-step arrays (keys ``F``, ``f``,
          ``inner_grad_norm``, ``u_norm``, ``w_norm``, ``w_dist``, ``hypergrad_norm``, ``residual``,
          ``inner_steps``, ``inner_status`` and ``solve_status`` (:class:`blojax.Status` codes of the
          inner solve and of the hypergradient's linear solve) and whatever ``record`` adds).

        Works under ``jax.vmap`` over a batch of states (e.g. seeds).
        """
        if not isinstance(steps, int) or isinstance(steps, bool) or steps < 0:
            raise ValueError(f"run(steps=...) must be a non-negative Python int, got {steps!r}")
        if on_nonfinite not in ("raise", "stop"):
            raise ValueError(f"on_nonfinite must be 'raise' or 'stop', got {on_nonfinite!r}")
        for name, b in (("inner_batches", inner_batches), ("outer_batches", outer_batches)):
            for leaf in jax.tree_util.tree_leaves(b):
                if jnp.shape(leaf)[:1] != (steps,):
                    raise ValueError(
                        f"{name} leaves need a leading axis of length steps={steps}, got shape {jnp.shape(leaf)}"
                    )
        traced = _is_traced((state, inner_batches, outer_batches, self.method))
        if progress and not traced and steps > 1:
            state, history = self._run_chunked(state, steps, inner_batches, outer_batches, chunks)
        else:
            state, history = self._jit_scan(state, steps, inner_batches, outer_batches)
        traced = traced or _is_traced(state)  # e.g. objectives closing over traced values
        if not traced and on_nonfinite == "raise":
            bad = (
                int(jnp.max(state.diverged_step))
                if jnp.ndim(state.diverged_step)
                else int(state.diverged_step)
            )
            if bad >= 0:
                raise NonFiniteError(
                    f"{type(self).__name__}: non-finite values (NaN/inf) at outer step {bad}; the state is "
                    "frozen at the last finite step (err.state) and err.history holds the metrics. "
                    "Lower the learning rates or use on_nonfinite='stop'.",
                    state,
                    history,
                )
        return state, history

    def _run_chunked(self, state, steps, inner_batches, outer_batches, chunks):
        from .progress import chunk_size, scan_in_chunks

        def chunk(st, n, start):
            sl = lambda t: jax.tree_util.tree_map(lambda x: x[start : start + n], t)  # noqa: E731
            return self._jit_scan(st, n, sl(inner_batches), sl(outer_batches))

        state, history = scan_in_chunks(
            chunk, state, steps, size=chunk_size(steps, chunks), progress=True, desc=type(self).__name__
        )
        return state, jax.tree_util.tree_map(jnp.asarray, history)


@dataclasses.dataclass(frozen=True, eq=False)
class ColdStart(_Bilevel):
    """Cold-start BLO: every outer step re-initializes ``w`` (and the inner optimizer state) to ``w0``,
    runs the inner loop, takes the hypergradient and updates ``u``.

    Its fixed points are cold-start equilibria: ``u* in argmin_u F(u, Xi^T(u, w0))``. With exact
    hypergradients, ``w0 = 0`` and a quadratic inner problem it converges to the outer solution
    nearest ``u0`` (PAPER.md §4.3).

    Args:
      problem: the :class:`blojax.Problem`.
      inner: an :class:`blojax.InnerLoop` (or any inner solver with ``init``/``solve``).
      method: the hypergradient strategy.
      outer: an optax optimizer for ``u``.
      record: optional ``record(u, w) -> dict`` of extra per-step metrics (e.g. ``{"u": u}``).
      diagnostics: compute the metrics that cost evaluations beyond the step itself (default True):
        ``f`` and ``inner_grad_norm`` at ``w_T``, and the solve residual of ``Neumann``/``Identity``
        (one more product). ``False`` reports them as NaN and skips that work: a speed-up where the
        inner batch is as large as the outer one or the model is tiny (one warm-start ``Unroll(1)``
        step spends 1 of its 4 gradient evaluations on ``inner_grad_norm``). ``F``, the norms and
        the CG residual (a by-product of the iteration) are always reported.
      throw: when the strategy has traced fields (e.g. ``Damped(eps)`` under ``vmap`` over ``eps``),
        raise at run time, also under ``jit``/``vmap``, when one is out of range (default True).
        That check is a host callback, and JAX's persistent compilation cache never stores a program
        holding one. ``False`` checks without a callback: a step with a field out of range is
        rejected like a non-finite one (the state freezes and ``diverged_step`` records it; fields
        are only traced inside a traced computation, whose caller checks ``diverged_step``), and the
        compiled program can be cached. Strategies without traced fields add no check either way.
    """

    cold: bool = dataclasses.field(default=True, init=False)


@dataclasses.dataclass(frozen=True, eq=False)
class WarmStart(_Bilevel):
    """Warm-start BLO: ``w`` and the inner optimizer state carry over between outer steps.

    Full warm-start (inner loop to tolerance) seeks ``u* in argmin_u F(u, w*)`` with
    ``w* = Xi^inf(u*, w*)``; partial warm-start (T steps) with ``w* = Xi^T(u*, w*)``. Which inner
    solution is reached depends on the whole history of ``u``. Arguments as :class:`ColdStart`.
    """

    cold: bool = dataclasses.field(default=False, init=False)
