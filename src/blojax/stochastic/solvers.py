r"""Stochastic and amortized bilevel solvers: SOBA, SABA, AmIGO, StocBiO, F2SA.

Notation: ``u`` outer, ``w`` inner, ``v`` linear-system variable (``H v = -grad_w F`` at the
solution), ``B`` an inner batch, ``B'`` an outer batch, ``a_k, c_k, b_k`` the step sizes of ``w``,
``v`` and ``u`` at outer step ``k``. Every solver is a frozen dataclass with ``init`` / ``step`` /
``run`` (see :class:`blojax.stochastic.base.StochasticSolver`).

Defaults are those of the reference implementations of benchopt's ``benchmark_bilevel``
(step size 0.1, ``outer_ratio`` 1, 10 inner / Neumann steps; F2SA 0.01 with its decays).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

import jax
import jax.numpy as jnp

from .._tree import tree_zeros_like
from .base import StochasticSolver
from .schedules import inverse_power

__all__ = ["SOBA", "SABA", "AmIGO", "StocBiO", "F2SA"]


def _step(x, lr, g):
    """``x - lr * g`` leaf by leaf."""
    return jax.tree_util.tree_map(lambda xi, gi: xi - lr * gi, x, g)


def _add(a, b):
    return jax.tree_util.tree_map(jnp.add, a, b)


def _sub(a, b):
    return jax.tree_util.tree_map(jnp.subtract, a, b)


# ---------------------------------------------------------------------------------------- SOBA
@dataclasses.dataclass(frozen=True, eq=False)
class SOBA(StochasticSolver):
    r"""Stochastic Bilevel Algorithm (Dagréou, Ablin, Vaiter, Moreau, NeurIPS 2022).

    One batch ``B`` (inner) and ``B'`` (outer) per step; all directions at the current
    ``(u_k, w_k, v_k)``, then the three variables move together::

        w_{k+1} = w_k - a_k grad_w f_B(u_k, w_k)
        v_{k+1} = v_k - c_k (H_B v_k + grad_w F_B'(u_k, w_k))
        u_{k+1} = u_k - b_k (M_B^T v_k + grad_u F_B'(u_k, w_k))

    ``grad_w f_B``, ``H_B v_k`` and ``M_B^T v_k`` come from one ``jax.vjp`` of ``grad_w f_B``.

    Args:
      problem: a :class:`MinibatchProblem`; inner_sampler / outer_sampler: samplers over its inner
        and outer data.
      inner_lr: ``a_k`` (default ``0.1 / sqrt(k + 1)``); v_lr: ``c_k`` (default: ``inner_lr``);
      outer_lr: ``b_k`` (default ``0.1 / sqrt(k + 1)``). Floats or optax schedules.
      record: optional ``record(u, w, v) -> dict`` of extra per-step metrics (after the step).
    """

    inner_lr: Any = dataclasses.field(default_factory=lambda: inverse_power(0.1, 0.5))
    outer_lr: Any = dataclasses.field(default_factory=lambda: inverse_power(0.1, 0.5))
    v_lr: Any = None
    record: Callable | None = None

    _LR_FIELDS = ("inner_lr", "outer_lr", "v_lr")

    @property
    def draws_per_step(self):
        return (1, 1)

    @property
    def oracle_calls(self):
        return dict(grad_f=1, hvp=1, cross=1, grad_F=1, grad_f_u=0)

    def _v_lr(self, lr):
        return lr["v_lr"] if "v_lr" in lr else lr["inner_lr"]

    def _directions(self, state):
        """Fresh stochastic directions at ``(u_k, w_k, v_k)`` and the drawn blocks."""
        u, w, v = state.u, state.w, state.v
        bi, Bi, si = self._draw_inner(state.inner_sampler)
        gw, hv, cross = self._grad_f_vjp(u, w, Bi, v)
        bo, Bo, so = self._draw_outer(state.outer_sampler)
        Fw, Fu = self._grad_F(u, w, Bo)
        return (bi, bo, si, so), dict(inner_grad=gw, hvp=hv, cross_v=cross, grad_F_w=Fw, grad_F_u=Fu)

    def _apply(self, state, lr, g, si, so, memory):
        w = _step(state.w, lr["inner_lr"], g["inner_grad"])
        v = _step(state.v, self._v_lr(lr), _add(g["hvp"], g["grad_F_w"]))
        d = _add(g["cross_v"], g["grad_F_u"])
        u = _step(state.u, lr["outer_lr"], d)
        return u, w, v, memory, state.aux, si, so, d

    def _update(self, state, lr, guard=True):
        (_, _, si, so), g = self._directions(state)
        return self._apply(state, lr, g, si, so, None)


# ---------------------------------------------------------------------------------------- SABA
_INNER_KEYS = ("inner_grad", "hvp", "cross_v")
_OUTER_KEYS = ("grad_F_w", "grad_F_u")


# Row ``j`` of a memory table (``0 <= j < N`` always: a block index from a sampler). ``lax``'s dynamic
# slices, not ``t[j]`` / ``t.at[j].set``: those add a bounds check (negative indices, out-of-range
# updates dropped) that is a select over the whole table, so XLA could not update the table in place
# and copied all N rows at every step.
def _row(t, j):
    return jax.lax.dynamic_index_in_dim(t, j, 0, keepdims=False)


def _set_row(t, j, q):
    return jax.lax.dynamic_update_index_in_dim(t, q, j, 0)


def _flush(table, pending):
    """``table`` with the pending row write ``pending = (rows, j)`` done (leaf by leaf)."""
    rows, j = pending
    return jax.tree_util.tree_map(lambda t, q: _set_row(t, j, q), table, rows)


@dataclasses.dataclass(frozen=True, eq=False)
class SABA(SOBA):
    r"""Stochastic Average Bilevel Algorithm (Dagréou et al., NeurIPS 2022): SOBA with SAGA memory.

    Each of the five stochastic terms ``q in {grad_w f_B, H_B v, M_B^T v}`` (inner blocks) and
    ``{grad_w F_B', grad_u F_B'}`` (outer blocks) keeps a table ``m[j]`` (its last value on block
    ``j``) and the average ``m_bar = (1/N) sum_j m[j]`` over the ``N`` blocks of its data. With the
    fresh value ``q_j`` on the drawn block ``j``, the variance-reduced estimate is::

        D(q) = q_j - m[j] + m_bar;   then  m_bar += (q_j - m[j]) / N,  m[j] = q_j

    and SOBA's three updates use ``D``: ``w -= a D(grad_w f)``, ``v -= c (D(H v) + D(grad_w F))``,
    ``u -= b (D(M^T v) + D(grad_u F))`` -- SAGA memory on all three directions. Step sizes are
    constant by default (0.1), as in the paper.

    Args as :class:`SOBA`, plus ``memory_init``: ``"zero"`` (tables start at 0, benchmark_bilevel's
    default) or ``"full"`` (one pass over every block at ``(u0, w0, v0)`` in ``init``).
    """

    inner_lr: Any = 0.1
    outer_lr: Any = 0.1
    v_lr: Any = None
    record: Callable | None = None
    memory_init: str = "zero"

    def _check_fields(self):
        if self.memory_init not in ("zero", "full"):
            raise ValueError(f"SABA.memory_init must be 'zero' or 'full', got {self.memory_init!r}")

    def _init_memory(self, u, w, v):
        ni, no = self.inner_sampler.n_blocks, self.outer_sampler.n_blocks
        shapes = dict(inner_grad=w, hvp=w, cross_v=u, grad_F_w=w, grad_F_u=u)
        if self.memory_init == "zero":

            def table(k):
                n = ni if k in _INNER_KEYS else no
                return jax.tree_util.tree_map(
                    lambda x: jnp.zeros((n,) + jnp.shape(x), jnp.result_type(x)), shapes[k]
                )

            tables = {k: table(k) for k in shapes}
        else:

            def inner_terms(j):
                B = self.problem.inner_batch(j, self.inner_sampler.batch_size)
                gw, hv, cross = self._grad_f_vjp(u, w, B, v)
                return dict(inner_grad=gw, hvp=hv, cross_v=cross)

            def outer_terms(j):
                Fw, Fu = self._grad_F(u, w, self.problem.outer_batch(j, self.outer_sampler.batch_size))
                return dict(grad_F_w=Fw, grad_F_u=Fu)

            tables = {**jax.lax.map(inner_terms, jnp.arange(ni)), **jax.lax.map(outer_terms, jnp.arange(no))}
        avgs = {k: jax.tree_util.tree_map(lambda t: jnp.mean(t, axis=0), tables[k]) for k in tables}
        return {k: (tables[k], avgs[k]) for k in tables}

    # the memory tables are frozen here, row by row (see _update), not by the base's whole-state select:
    # selecting whole tables every step would copy them (O(N d) per step instead of O(d))
    _FREEZES_MEMORY = True

    # In the unguarded chunks of base._scan the row write of a step is deferred to the start of the
    # next step (memory[k] = (table, avg, (pending rows, pending block)) there): the step then writes
    # the previous row before it reads ``m[j]``, so XLA can update the table in place. Written the
    # other way round (read m[j], then write it), the write does not depend on every read of the
    # table, and XLA copied each whole table twice per step (O(N d) per step instead of O(d)).
    _DEFER_ROW_WRITES = True

    def _fast_begin(self, state):
        if not self._DEFER_ROW_WRITES:
            return state

        def pend(table):  # writing row 0 with its own value: a no-op
            return jax.tree_util.tree_map(lambda t: _row(t, 0), table), jnp.zeros((), jnp.int32)

        return state._replace(memory={k: (t, a, pend(t)) for k, (t, a) in state.memory.items()})

    def _fast_end(self, state):
        if not self._DEFER_ROW_WRITES:
            return state
        return state._replace(memory={k: (_flush(t, p), a) for k, (t, a, p) in state.memory.items()})

    def _update(self, state, lr, guard=True):
        (bi, bo, si, so), g = self._directions(state)
        pending, direction = {}, {}
        for k in g:
            block, n = (
                (bi, self.inner_sampler.n_blocks) if k in _INNER_KEYS else (bo, self.outer_sampler.n_blocks)
            )
            if guard or not self._DEFER_ROW_WRITES:
                table, avg = state.memory[k]
            else:  # the previous step's row first (see _fast_begin)
                table, avg, p = state.memory[k]
                table = _flush(table, p)
            diff = jax.tree_util.tree_map(lambda q, t: q - _row(t, block), g[k], table)  # noqa: B023 - used now
            direction[k] = _add(diff, avg)
            new_avg = jax.tree_util.tree_map(lambda a, d: a + d / n, avg, diff)  # noqa: B023 - used now
            pending[k] = (block, table, avg, new_avg)
        u, w, v, _, aux, si, so, d = self._apply(state, lr, direction, si, so, None)
        if not guard:  # an unguarded chunk (base._scan): discarded as a whole if a step was non-finite
            if self._DEFER_ROW_WRITES:
                memory = {k: (t, a, (g[k], j)) for k, (j, t, _, a) in pending.items()}
            else:
                memory = {k: (_flush(t, (g[k], j)), a) for k, (j, t, _, a) in pending.items()}
            return u, w, v, memory, aux, si, so, d
        # the base freezes the state when this step is non-finite; the tables follow the same rule
        ok = self._step_ok(state, u, w, v, d, aux)
        memory = {}
        for k, (block, table, avg, new_avg) in pending.items():
            table = jax.tree_util.tree_map(
                lambda t, q: _set_row(t, block, jnp.where(ok, q, _row(t, block))),  # noqa: B023 - used now
                table,
                g[k],
            )
            avg = jax.tree_util.tree_map(lambda a, b: jnp.where(ok, b, a), avg, new_avg)
            memory[k] = (table, avg)
        return u, w, v, memory, aux, si, so, d


# ---------------------------------------------------------------------------------------- AmIGO
def _sgd_w(solver, u, w, si, lr, steps):
    """``steps`` SGD steps on the inner problem: ``w <- w - lr grad_w f_B(u, w)``, a fresh ``B`` each."""

    def body(_, carry):
        w, si = carry
        _, B, si = solver._draw_inner(si)
        return _step(w, lr, solver._grad_f_w(u, w, B)), si

    return jax.lax.fori_loop(0, steps, body, (w, si))


@dataclasses.dataclass(frozen=True, eq=False)
class AmIGO(StochasticSolver):
    r"""Amortized Implicit Gradient Optimization (Arbel & Mairal, ICLR 2022).

    Per outer step::

        w   <- T SGD steps on f from w_k (a fresh inner batch each, step a_k)       -> w_{k+1}
        grad_w F_B', grad_u F_B'   at (u_k, w_{k+1})
        v   <- T_v SGD steps on  1/2 v^T H v + <grad_w F_B', v>  from v_k (warm) or 0 (cold):
               v <- v - c_k (H_B v + grad_w F_B'),  H_B at (u_k, w_{k+1}), a fresh batch each
        u_{k+1} = u_k - b_k (grad_u F_B' + M_B^T v_{k+1})   (one more inner batch)

    With ``warm_v=False`` the ``v`` iteration restarts from 0 every step: ``v`` is then a
    ``T_v``-term stochastic Neumann series (a cold start of the linear system).

    Args as :class:`SOBA`; ``inner_steps`` = ``T`` (10), ``v_steps`` = ``T_v`` (default ``T``),
    ``warm_v`` (True). Step sizes constant 0.1 by default.
    """

    inner_lr: Any = 0.1
    outer_lr: Any = 0.1
    v_lr: Any = None
    inner_steps: int = 10
    v_steps: int | None = None
    warm_v: bool = True
    record: Callable | None = None

    _LR_FIELDS = ("inner_lr", "outer_lr", "v_lr")

    def _check_fields(self):
        self._check_int("inner_steps")
        if self.v_steps is not None:
            self._check_int("v_steps")
        if not isinstance(self.warm_v, bool):
            raise ValueError(f"AmIGO.warm_v must be True or False, got {self.warm_v!r}")

    @property
    def _tv(self):
        return self.inner_steps if self.v_steps is None else self.v_steps

    @property
    def _v_carried(self):
        return self.warm_v

    @property
    def draws_per_step(self):
        return (self.inner_steps + self._tv + 1, 1)

    @property
    def oracle_calls(self):
        return dict(grad_f=self.inner_steps, hvp=self._tv, cross=1, grad_F=1, grad_f_u=0)

    def _update(self, state, lr, guard=True):
        u = state.u
        c = lr.get("v_lr", lr["inner_lr"])
        w, si = _sgd_w(self, u, state.w, state.inner_sampler, lr["inner_lr"], self.inner_steps)
        _, Bo, so = self._draw_outer(state.outer_sampler)
        Fw, Fu = self._grad_F(u, w, Bo)

        def v_body(_, carry):
            v, si = carry
            _, B, si = self._draw_inner(si)
            return _step(v, c, _add(self._hvp(u, w, B, v), Fw)), si

        v0 = state.v if self.warm_v else tree_zeros_like(state.v)
        v, si = jax.lax.fori_loop(0, self._tv, v_body, (v0, si))
        _, B, si = self._draw_inner(si)
        d = _add(Fu, self._cross(u, w, B, v))
        return _step(u, lr["outer_lr"], d), w, v, None, None, si, so, d


# ---------------------------------------------------------------------------------------- StocBiO
@dataclasses.dataclass(frozen=True, eq=False)
class StocBiO(StochasticSolver):
    r"""Stochastic Bilevel Optimizer (Ji, Yang, Liang, ICML 2021).

    Per outer step: ``T`` SGD steps on ``w`` from ``w_k`` (warm ``w``), then a fresh stochastic
    Neumann series for ``v`` (cold ``v``): with ``p_0 = grad_w F_B'(u_k, w_{k+1})``,
    ``p_{j+1} = p_j - c_k H_{B_j} p_j`` for ``j < K``::

        v_{k+1} = -c_k sum_{j=0}^{K} p_j          (K Hessian-vector products, K + 1 terms)
        u_{k+1} = u_k - b_k (grad_u F_B' + M_B^T v_{k+1})

    Args as :class:`SOBA`; ``inner_steps`` = ``T`` (10), ``neumann_steps`` = ``K`` (10). Step sizes
    constant 0.1 by default. ``state.v`` reports ``v_{k+1}``; it is not carried.
    """

    inner_lr: Any = 0.1
    outer_lr: Any = 0.1
    v_lr: Any = None
    inner_steps: int = 10
    neumann_steps: int = 10
    record: Callable | None = None

    _LR_FIELDS = ("inner_lr", "outer_lr", "v_lr")

    def _check_fields(self):
        self._check_int("inner_steps")
        self._check_int("neumann_steps")

    @property
    def _v_carried(self):
        return False  # v is a fresh Neumann series every step

    @property
    def draws_per_step(self):
        return (self.inner_steps + self.neumann_steps + 1, 1)

    @property
    def oracle_calls(self):
        return dict(grad_f=self.inner_steps, hvp=self.neumann_steps, cross=1, grad_F=1, grad_f_u=0)

    def _update(self, state, lr, guard=True):
        u = state.u
        c = lr.get("v_lr", lr["inner_lr"])
        w, si = _sgd_w(self, u, state.w, state.inner_sampler, lr["inner_lr"], self.inner_steps)
        _, Bo, so = self._draw_outer(state.outer_sampler)
        Fw, Fu = self._grad_F(u, w, Bo)

        def body(_, carry):
            p, s, si = carry
            _, B, si = self._draw_inner(si)
            p = _step(p, c, self._hvp(u, w, B, p))
            return p, _add(s, p), si

        _, s, si = jax.lax.fori_loop(0, self.neumann_steps, body, (Fw, Fw, si))
        v = jax.tree_util.tree_map(lambda x: -(c * x), s)
        _, B, si = self._draw_inner(si)
        d = _add(Fu, self._cross(u, w, B, v))
        return _step(u, lr["outer_lr"], d), w, v, None, None, si, so, d


# ---------------------------------------------------------------------------------------- F2SA
@dataclasses.dataclass(frozen=True, eq=False)
class F2SA(StochasticSolver):
    r"""Fully First-order Stochastic Approximation (Kwon, Kwon, Wright, Nowak, ICML 2023).

    No second derivatives: the penalty ``L_lam(u, w) = F(u, w) + lam (f(u, w) - f(u, z*(u)))``
    with ``z*(u) = argmin_z f(u, z)`` and ``lam`` growing. Per outer step, ``T`` steps of::

        w <- w - a_k (lam grad_w f_B1(u, w) + grad_w F_B'(u, w))
        z <- z - a'_k grad_w f_B2(u, z)

    (fresh ``B1``, ``B2``, ``B'`` each), then with fresh ``B'``, ``B1``, ``B2``::

        u_{k+1} = u_k - b_k (grad_u F_B'(u, w) + lam (grad_u f_B1(u, w) - grad_u f_B2(u, z)))
        lam    <- lam + delta_k

    ``w`` (the penalized inner variable) is ``state.w``; ``z`` and ``lam`` are in ``state.aux``.

    Args: ``inner_lr`` ``a_k`` (``0.01/(k+1)^{5/7}``), ``z_lr`` ``a'_k`` (``0.01/(k+1)^{4/7}``),
    ``outer_lr`` ``b_k`` (``0.01/(k+1)^{4/7}``), ``lam_lr`` ``delta_k`` (``0.1/(k+1)^{1/7}``),
    ``lam0`` (1.0), ``inner_steps`` ``T`` (10).
    """

    inner_lr: Any = dataclasses.field(default_factory=lambda: inverse_power(0.01, 5 / 7))
    z_lr: Any = dataclasses.field(default_factory=lambda: inverse_power(0.01, 4 / 7))
    outer_lr: Any = dataclasses.field(default_factory=lambda: inverse_power(0.01, 4 / 7))
    lam_lr: Any = dataclasses.field(default_factory=lambda: inverse_power(0.1, 1 / 7))
    lam0: float = 1.0
    inner_steps: int = 10
    record: Callable | None = None

    _LR_FIELDS = ("inner_lr", "z_lr", "outer_lr", "lam_lr")

    def _check_fields(self):
        self._check_int("inner_steps")
        if isinstance(self.lam0, bool) or not isinstance(self.lam0, (int, float)) or not self.lam0 > 0:
            raise ValueError(f"F2SA.lam0 must be a positive number, got {self.lam0!r}")

    @property
    def draws_per_step(self):
        return (2 * self.inner_steps + 2, self.inner_steps + 1)

    @property
    def oracle_calls(self):
        return dict(grad_f=2 * self.inner_steps, hvp=0, cross=0, grad_F=self.inner_steps + 1, grad_f_u=2)

    def _init_v(self, v):
        return None

    def _init_aux(self, u, w):
        dtype = jnp.result_type(*jax.tree_util.tree_leaves(u))
        return dict(z=w, lam=jnp.asarray(self.lam0, dtype))

    def _update(self, state, lr, guard=True):
        u, lam = state.u, state.aux["lam"]
        grad_F_w = lambda u_, w_, B: jax.grad(self.problem.F, argnums=1)(u_, w_, B)  # noqa: E731
        grad_f_u = lambda u_, w_, B: jax.grad(self.problem.f, argnums=0)(u_, w_, B)  # noqa: E731
        grad_F_u = lambda u_, w_, B: jax.grad(self.problem.F, argnums=0)(u_, w_, B)  # noqa: E731

        def body(_, carry):
            w, z, si, so = carry
            _, B1, si = self._draw_inner(si)
            _, B2, si = self._draw_inner(si)
            _, Bo, so = self._draw_outer(so)
            dw = jax.tree_util.tree_map(
                lambda a, b: lam * a + b, self._grad_f_w(u, w, B1), grad_F_w(u, w, Bo)
            )
            return _step(w, lr["inner_lr"], dw), _step(z, lr["z_lr"], self._grad_f_w(u, z, B2)), si, so

        w, z, si, so = jax.lax.fori_loop(
            0, self.inner_steps, body, (state.w, state.aux["z"], state.inner_sampler, state.outer_sampler)
        )
        _, Bo, so = self._draw_outer(so)
        _, B1, si = self._draw_inner(si)
        _, B2, si = self._draw_inner(si)
        pen = _sub(grad_f_u(u, w, B1), grad_f_u(u, z, B2))
        d = jax.tree_util.tree_map(lambda a, p: a + lam * p, grad_F_u(u, w, Bo), pen)
        aux = dict(z=z, lam=lam + lr["lam_lr"])
        return _step(u, lr["outer_lr"], d), w, None, None, aux, si, so, d
