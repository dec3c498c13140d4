r"""S1's engine, shared by its two problems (:mod:`blojax.experiments.stochastic_bias`): the finite-sum
least-squares bilevel problem, its min-norm closed form, the solver set and the sweep over
(solver, inner batch size, step scale), each setting vmapped over seeds.

Both problems have the form (``Phi`` the ``n x p`` inner inputs, ``n < p``; ``(Z, y)`` the ``m``
outer pairs)::

    f(u, w) = 1/n sum_i 1/2 (phi_i^T w - u_i)^2,    F(u, w) = 1/m sum_j 1/2 (z_j^T w - y_j)^2,

with ``w*(u) = Phi^+ u`` (gradient descent from ``w0 = 0``), ``h(u) = 1/(2m) ||A u - y||^2``,
``A = Z Phi^+``, and the outer solution nearest ``u0``, ``u_mn = u0 + A^+ (y - A u0)`` (PAPER.md §4.3).
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

import blojax as blo
from blojax.stochastic import MinibatchProblem, Shuffle, inverse_power

SOLVERS = ("SOBA", "SABA", "AmIGO-warm", "AmIGO-cold", "StocBiO", "F2SA")
METRICS = ("dist_mn", "h", "u_null", "inner_dist", "w_null", "v_null")
#: The solvers whose ``v`` is rebuilt from 0 at every outer step (a fixed-length Neumann series).
COLD_V = ("AmIGO-cold", "StocBiO")


@dataclasses.dataclass(frozen=True)
class Row:
    """One setting (solver, inner batch size, step scale): medians over the seeds at the last step.

    dist_mn: ``||u_T - u_mn|| / ||u_mn - u0||``; h: ``h(u_T) - h* = 1/(2m) ||A u_T - y||^2``; u_null:
    ``||P_null(A) (u_T - u0)||`` (drift along the solution set); inner_dist: ``||w_T - X^+ u_T||``;
    w_null: ``||P_null(X) w_T||``; v_null: ``||P_null(H) v_T||`` (``None`` for solvers without ``v``,
    F2SA). diverged: some seed went non-finite; its metrics are left out of the medians (a solver that
    diverges at a step size is a finding of S1, reported here, not an error).
    """

    solver: str
    batch: int
    step_scale: float
    diverged: bool
    dist_mn: float | None
    h: float | None
    u_null: float | None
    inner_dist: float | None
    w_null: float | None
    v_null: float | None


@dataclasses.dataclass(frozen=True)
class Curves:
    """Per-seed trajectories of one setting, every ``max(1, steps // 300)``-th outer step: arrays
    ``(seeds, points)`` of the metrics of :class:`Row` with the same names."""

    dist_mn: np.ndarray
    h: np.ndarray
    u_null: np.ndarray
    v_null: np.ndarray


def closed_form(X, Z, y, u0):
    """``A = Z X^+``, ``u_mn = u0 + A^+ (y - A u0)`` and the projectors onto ``null(A)``, ``null(X)``."""
    Xp = np.linalg.pinv(X)
    A = Z @ Xp
    u_mn = u0 + np.linalg.pinv(A) @ (y - A @ u0)
    P_null_A = np.eye(A.shape[1]) - np.linalg.pinv(A) @ A
    P_null_X = np.eye(X.shape[1]) - Xp @ X
    return dict(Xp=Xp, A=A, u_mn=u_mn, P_null_A=P_null_A, P_null_X=P_null_X)


def make_problem(X, Z, y):
    """The minibatch problem: inner batches ``(x_i, i)`` (``f`` reads ``u_i``), outer batches ``(z_j, y_j)``."""
    n = X.shape[0]

    def f(u, w, batch):
        x, idx = batch
        return 0.5 * jnp.mean((x @ w - u[idx]) ** 2)

    def F(u, w, batch):
        z, t = batch
        return 0.5 * jnp.mean((z @ w - t) ** 2)

    return MinibatchProblem(
        f, F, inner_data=(jnp.asarray(X), jnp.arange(n)), outer_data=(jnp.asarray(Z), jnp.asarray(y))
    )


def build_solver(name, problem, *, n_inner, n_outer, batch, lr, outer_lr, inner_steps, record):
    """Solver ``name`` of :data:`SOLVERS` with steps ``lr`` (``w`` and ``v``) and ``outer_lr`` (``u``),
    inner batches of ``batch`` samples, the whole outer data as outer batch; ``inner_steps`` = T of
    AmIGO, StocBiO (also K of its Neumann series), F2SA."""
    ins, outs = Shuffle(n_inner, batch), Shuffle(n_outer, n_outer)
    a, c, T = lr, outer_lr, inner_steps
    if name == "SOBA":  # constant steps here (a decay would stop it before it converges)
        return blo.SOBA(problem, ins, outs, inner_lr=a, outer_lr=c, record=record)
    if name == "SABA":
        return blo.SABA(problem, ins, outs, inner_lr=a, outer_lr=c, record=record)
    if name in ("AmIGO-warm", "AmIGO-cold"):
        return blo.AmIGO(
            problem,
            ins,
            outs,
            inner_lr=a,
            outer_lr=c,
            inner_steps=T,
            warm_v=name == "AmIGO-warm",
            record=record,
        )
    if name == "StocBiO":
        return blo.StocBiO(
            problem, ins, outs, inner_lr=a, outer_lr=c, inner_steps=T, neumann_steps=T, record=record
        )
    # F2SA: its own decays (the penalty lam grows); bases scaled like the others
    return blo.F2SA(
        problem,
        ins,
        outs,
        inner_lr=inverse_power(0.2 * a, 5 / 7),
        z_lr=inverse_power(a, 4 / 7),
        outer_lr=inverse_power(c, 4 / 7),
        lam_lr=inverse_power(0.1, 1 / 7),
        inner_steps=T,
        record=record,
    )


def cold_v_terms(name: str, inner_steps: int) -> int:
    """Terms of the Neumann series a cold-``v`` solver builds per outer step: AmIGO-cold's ``T_v = T``
    SGD steps from 0 give ``T``, StocBiO's ``K = T`` products give ``K + 1``."""
    return inner_steps if name == "AmIGO-cold" else inner_steps + 1


def sweep(
    ctx,
    problem,
    *,
    solvers,
    batch_sizes,
    step_scales,
    steps: int,
    seeds: int,
    seed: int,
    lr: float,
    outer_lr: float,
    inner_steps: int,
    u0,
    w0,
    make_record: Callable[[str, int, float], Callable],
    key_prefix: str,
    row_cls: type = Row,
    curve_fields: tuple = ("dist_mn", "h", "u_null", "v_null"),
    curves_cls: type = Curves,
    final: Callable[[Any], dict] | None = None,
) -> tuple[list, list]:
    """Every (solver, batch, step scale) from ``(u0, w0, v0 = 0)``, vmapped over ``seeds`` minibatch
    streams, through ``ctx.scan`` (key ``f"{key_prefix}-{solver}|{batch}|{scale}"``). Steps: ``lr * scale``
    and ``outer_lr * scale``. ``make_record(solver, batch, scale)`` gives the per-step metrics; each
    field of ``row_cls`` past ``diverged`` is the median over seeds of the recorded metric of that name
    at the last step (``None`` if all NaN); ``curves_cls`` gets ``curve_fields`` every
    ``max(1, steps // 300)`` steps and the entries of ``final(state)`` (per-seed final values)."""
    n_inner, n_outer = problem.n_inner, problem.n_outer
    metrics = [f.name for f in dataclasses.fields(row_cls)][4:]
    rows, curves = [], []
    keys = jax.random.split(jax.random.PRNGKey(seed + 1), seeds)
    v0 = jnp.zeros_like(w0)
    for name in solvers:
        for b in batch_sizes:
            for scale in step_scales:
                algo = build_solver(
                    name,
                    problem,
                    n_inner=n_inner,
                    n_outer=n_outer,
                    batch=b,
                    lr=lr * scale,
                    outer_lr=outer_lr * scale,
                    inner_steps=inner_steps,
                    record=make_record(name, b, scale),
                )
                state = jax.vmap(lambda k, algo=algo: algo.init(u0, w0, k, v0=v0))(keys)
                tag = f"{name}|{b}|{scale:g}"

                # one compiled program per chunk length (vmap alone would re-trace every chunk)
                @functools.partial(jax.jit, static_argnums=1)
                def chunk(s, n, algo=algo):
                    return jax.vmap(lambda st: algo.run(st, n, on_nonfinite="stop"))(s)

                state, hist = ctx.scan(
                    chunk, state, steps, key=f"{key_prefix}-{tag}", desc=tag, history_axis=1
                )
                hist = {k: np.asarray(hist[k]) for k in set(metrics) | set(curve_fields)}
                diverged = bool(np.any(np.asarray(state.diverged_step) >= 0))
                medians: dict[str, Any] = {
                    k: float(np.nanmedian(hist[k][:, -1])) if not np.all(np.isnan(hist[k][:, -1])) else None
                    for k in metrics
                }
                rows.append(row_cls(solver=name, batch=b, step_scale=scale, diverged=diverged, **medians))
                stride = max(1, steps // 300)
                extra = final(state) if final is not None else {}
                curves.append(curves_cls(**{k: hist[k][:, ::stride] for k in curve_fields}, **extra))
    return rows, curves
