r"""S1's second problem: the paper's antidistillation problem (PAPER.md E5, outer overparameterized)
under the stochastic solvers.

E5 (:mod:`blojax.experiments.antidistill`): one original point ``(x_o, y_o) = (0, 2)``, ``n`` synthetic
points at fixed ``x_i`` (linearly spaced in [-2, 2]) whose targets are the outer parameters ``u``
(``u0 = 0``), a linear inner model on Fourier features ``phi(x)`` (:mod:`blojax.data.fourier`,
``2L + 1 > n`` features). In minibatch form (means, so that a minibatch gives unbiased oracles; the
solution sets and the hypergradient are those of E5's sums)::

    f(u, w) = 1/n sum_i 1/2 (phi_i^T w - u_i)^2,      F(u, w) = 1/2 (phi_o^T w - y_o)^2,

``H = Phi^T Phi / n`` is singular, ``w*(u) = Phi^+ u`` and ``h(u) = 1/2 (c^T u - y_o)^2`` with
``c = Phi^{+T} phi_o``: every ``u`` of the hyperplane ``c^T u = y_o`` is an outer solution, and the one
nearest ``u0`` is ``u_mn = u0 + c (y_o - c^T u0) / ||c||^2`` (E5's ``u*``).

**Cold ``v`` with full batches lands at a predicted point.** A cold-``v`` solver rebuilds
``v = -q_J(H) grad_w F`` at every outer step, ``q_J(H) = a sum_{j<J} (I - a H)^j`` (``J`` terms, step
``a``), and ``grad_w F = phi_o (phi_o^T w - y_o)``; its outer direction ``M^T v = -Phi v / n`` is
``d_J (phi_o^T w - y_o)`` with the *fixed* vector ``d_J = Phi q_J(H) phi_o / n``, whatever ``w`` is. So
``u`` moves on the line ``u0 + s d_J`` and, once ``h = 0``, sits at

    u_J = u0 + d_J (y_o - c^T u0) / (c^T d_J)

(E5's end point ``y_o v / (c^T v)`` of a ``J``-term Neumann series). With minibatches ``H_B`` changes
from draw to draw and no direction is fixed; ``dist_pred`` measures how far those runs land from
``u_J``. Warm ``v`` has no such prediction: its ``v`` tends to ``-H^+ grad_w F`` and the outer
direction to ``c (c^T u - y_o)``, the exact hypergradient, but only after a transient.

Step sizes are relative to the problem's scales: ``w`` and ``v`` take ``lr * scale / max_i ||phi_i||^2``
(SGD on one sample is stable below ``2 / ||phi_i||^2``), ``u`` takes ``outer_lr * scale / ||c||^2``
(``||c||^2`` is the curvature of ``h``; E5 normalizes its outer step the same way).
"""

from __future__ import annotations

import dataclasses
from typing import Literal

import jax
import jax.numpy as jnp
import numpy as np

from blojax.data import fourier

from . import common
from ._stochastic_engine import COLD_V, Curves, Row, closed_form, cold_v_terms, make_problem, sweep
from .common import check_field, check_int_fields


@dataclasses.dataclass(frozen=True)
class AntidistillConfig:
    """The antidistillation problem of S1 (E5's defaults: ``n = 12``, ``L = 10``, ``(x_o, y_o) = (0, 2)``,
    ``x_i`` in [-2, 2]). Solvers, step scales, steps, seeds, ``inner_steps`` and the seed come from
    :class:`blojax.experiments.stochastic_bias.Config`.

    basis: ``"inverse"`` (``a_l = 1/l``: ``H`` has condition ~60 on its range, per-sample curvature
      <= 2.55) or ``"exponential"`` (``a_l = 2^(L-l)``: condition ~1e4, per-sample curvature ~3.5e5;
      SGD's slowest rate ``lr lambda_min / max ||phi_i||^2`` is ~160 times smaller than with the
      inverse basis: allowed, not run by default).
    batch_sizes: inner batch sizes (``n`` = full batch); the outer batch is the one original point.
    lr, outer_lr: base steps relative to ``1 / max_i ||phi_i||^2`` and ``1 / ||c||^2`` (module doc).
    """

    n: int = 12
    L: int = 10
    basis: Literal["inverse", "exponential"] = "inverse"
    x_orig: float = 0.0
    y_orig: float = 2.0
    x_min: float = -2.0
    x_max: float = 2.0
    batch_sizes: tuple = (12, 4, 1)
    lr: float = 0.5
    outer_lr: float = 0.05

    def validate(self, name: str = "Config.antidistill") -> None:
        check_int_fields(self, ("n", "L"))
        p = fourier.num_features(self.L)
        check_field(self.n < p, name, "n", f"< 2L + 1 = {p}: an overparameterized inner problem", self.n)
        check_field(self.n >= 2, name, "n", "at least 2 (one outer equation, n unknowns)", self.n)
        check_field(self.basis in fourier.BASES, name, "basis", f"one of {fourier.BASES}", self.basis)
        check_field(self.x_min < self.x_max, name, "x_min", f"< x_max ({self.x_max})", self.x_min)
        check_field(
            len(self.batch_sizes) > 0
            and all(
                isinstance(b, int) and not isinstance(b, bool) and 1 <= b <= self.n for b in self.batch_sizes
            ),
            name,
            "batch_sizes",
            f"integers in [1, n={self.n}]",
            self.batch_sizes,
        )
        check_field(0 < self.lr < 1.5, name, "lr", "in (0, 1.5) (times 1 / max ||phi_i||^2)", self.lr)
        check_field(0 < self.outer_lr <= 1, name, "outer_lr", "in (0, 1] (times 1 / ||c||^2)", self.outer_lr)


@dataclasses.dataclass(frozen=True)
class AntidistillRow(Row):
    """:class:`Row` plus: u_norm ``||u_T||``, w_norm ``||w_T||`` (the solvers' own history; E5: truncated hypergradients reach
    larger-norm ``u`` and smaller-norm ``w``); dist_pred ``||u_T - u_J|| / ||u_mn - u0||`` for the
    cold-``v`` solvers (``u_J``: the full-batch prediction of the module doc; ``None`` otherwise)."""

    u_norm: float | None
    w_norm: float | None
    dist_pred: float | None


@dataclasses.dataclass(frozen=True)
class AntidistillCurves(Curves):
    """:class:`Curves` plus u_final: ``(seeds, n)`` the reached ``u_T`` of every seed."""

    u_final: np.ndarray


@dataclasses.dataclass(frozen=True)
class Prediction:
    """The full-batch landing point ``u_J`` of a cold-``v`` solver at one step scale (``J`` terms)."""

    solver: str
    step_scale: float
    terms: int
    u: np.ndarray
    u_norm: float
    dist_mn: float


@dataclasses.dataclass(frozen=True)
class AntidistillResult:
    """S1 on the antidistillation problem.

    x: the synthetic inputs ``x_i``; u_mn: the outer solution nearest ``u0 = 0``, ``y_o c / ||c||^2``;
    u_mn_norm: ``||u_mn - u0||``; c_norm: ``||c||``; lambda_max, lambda_min_nonzero: the range of
    ``H = Phi^T Phi / n`` on ``range(H)``; max_row_norm2: ``max_i ||phi_i||^2``; dFdw_null_fraction:
    ``||P_null(H) phi_o|| / ||phi_o||`` (the part of ``grad_w F`` that warm ``v`` integrates);
    lr, outer_lr: the absolute base steps (before the step scale); predictions: :class:`Prediction`
    per cold-``v`` solver and step scale; table, curves: as S1's, one entry per setting.
    """

    x: np.ndarray
    u_mn: np.ndarray
    u_mn_norm: float
    c_norm: float
    lambda_max: float
    lambda_min_nonzero: float
    max_row_norm2: float
    dFdw_null_fraction: float
    lr: float
    outer_lr: float
    predictions: tuple[Prediction, ...]
    table: tuple[AntidistillRow, ...]
    curves: tuple[AntidistillCurves, ...]

    def curve(self, solver: str, batch: int, step_scale: float) -> AntidistillCurves | None:
        """The trajectories of one setting (``None`` if it was not run)."""
        for row, c in zip(self.table, self.curves):
            if (row.solver, row.batch, row.step_scale) == (solver, batch, step_scale):
                return c
        return None

    def to_dict(self) -> dict:
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "curves"}
        out["table"] = [dataclasses.asdict(r) for r in self.table]
        out["predictions"] = [dataclasses.asdict(p) for p in self.predictions]
        out["u_final_median"] = [np.median(c.u_final, axis=0) for c in self.curves]
        return common.to_jsonable(out)


def make_data(ad: AntidistillConfig):
    """``Phi (n, 2L+1)``, ``Z = phi_o^T (1, 2L+1)``, ``y = [y_o]``, ``u0 = 0`` and the ``x_i`` (float64)."""
    xs = np.linspace(ad.x_min, ad.x_max, ad.n)
    Phi = np.asarray(fourier.features(jnp.asarray(xs), ad.L, ad.basis), dtype=np.float64)
    phi_o = np.asarray(fourier.features(jnp.asarray(ad.x_orig), ad.L, ad.basis), dtype=np.float64)
    return Phi, phi_o[None, :], np.array([ad.y_orig]), np.zeros(ad.n), xs


def neumann_direction(Phi, phi_o, a: float, terms: int):
    """``d_J = Phi q_J(H) phi_o / n`` with ``q_J(H) = a sum_{j<J} (I - a H)^j``, ``H = Phi^T Phi / n``."""
    n = Phi.shape[0]
    H = Phi.T @ Phi / n
    p, s = phi_o.copy(), np.zeros_like(phi_o)
    for _ in range(terms):
        s = s + p
        p = p - a * (H @ p)
    return Phi @ (a * s) / n


def predicted_landing(Phi, phi_o, y_o: float, u0, a: float, terms: int):
    """``u_J = u0 + d_J (y_o - c^T u0) / (c^T d_J)``: where full-batch cold ``v`` (``J`` terms, step ``a``)
    ends (module doc)."""
    c = np.linalg.pinv(Phi).T @ phi_o
    d = neumann_direction(Phi, phi_o, a, terms)
    return u0 + d * (y_o - c @ u0) / (c @ d)


def run_antidistill(cfg, ctx) -> AntidistillResult:
    """The sweep of :func:`blojax.experiments._stochastic_engine.sweep` on the antidistillation problem
    (``cfg``: S1's Config, with ``cfg.antidistill`` set), metrics against ``u_mn`` and ``u_J``."""
    ad: AntidistillConfig = cfg.antidistill
    with jax.enable_x64(True):
        Phi, Z, y, u0, xs = make_data(ad)
        n, p = Phi.shape
        cf = closed_form(Phi, Z, y, u0)
        phi_o = Z[0]
        c = cf["A"][0]
        H = Phi.T @ Phi / n
        lam = np.linalg.eigvalsh(H)
        Ph = np.eye(p) - np.linalg.pinv(H) @ H
        lr = ad.lr / float(np.max(np.sum(Phi**2, axis=1)))
        outer_lr = ad.outer_lr / float(c @ c)
        scale_mn = float(np.linalg.norm(cf["u_mn"] - u0))
        preds = {
            (name, s): predicted_landing(
                Phi, phi_o, ad.y_orig, u0, lr * s, cold_v_terms(name, cfg.inner_steps)
            )
            for name in cfg.solvers
            if name in COLD_V
            for s in cfg.step_scales
        }
        j = {k: jnp.asarray(cf[k]) for k in ("u_mn", "P_null_A", "P_null_X", "Xp", "A")}
        yj, u0j, Phj = jnp.asarray(y), jnp.asarray(u0), jnp.asarray(Ph)

        def make_record(name, b, scale):
            pred = preds.get((name, scale))
            pj = jnp.asarray(pred) if pred is not None else None

            def record(u, w, v):
                r = j["A"] @ u - yj
                return dict(
                    dist_mn=jnp.linalg.norm(u - j["u_mn"]) / scale_mn,
                    h=0.5 * jnp.mean(r**2),
                    u_null=jnp.linalg.norm(j["P_null_A"] @ (u - u0j)),
                    inner_dist=jnp.linalg.norm(w - j["Xp"] @ u),
                    w_null=jnp.linalg.norm(j["P_null_X"] @ w),
                    v_null=jnp.linalg.norm(Phj @ v) if v is not None else jnp.asarray(jnp.nan),
                    dist_pred=jnp.linalg.norm(u - pj) / scale_mn if pj is not None else jnp.asarray(jnp.nan),
                )

            return record

        rows, curves = sweep(
            ctx,
            make_problem(Phi, Z, y),
            solvers=cfg.solvers,
            batch_sizes=ad.batch_sizes,
            step_scales=cfg.step_scales,
            steps=cfg.steps,
            seeds=cfg.seeds,
            seed=cfg.seed,
            lr=lr,
            outer_lr=outer_lr,
            inner_steps=cfg.inner_steps,
            u0=u0j,
            w0=jnp.zeros(p),
            make_record=make_record,
            key_prefix="s1ad",
            row_cls=AntidistillRow,
            curves_cls=AntidistillCurves,
            final=lambda state: {"u_final": np.asarray(state.u)},
        )
    predictions = tuple(
        Prediction(
            solver=name,
            step_scale=s,
            terms=cold_v_terms(name, cfg.inner_steps),
            u=u,
            u_norm=float(np.linalg.norm(u)),
            dist_mn=float(np.linalg.norm(u - cf["u_mn"]) / scale_mn),
        )
        for (name, s), u in preds.items()
    )
    return AntidistillResult(
        x=xs,
        u_mn=cf["u_mn"],
        u_mn_norm=scale_mn,
        c_norm=float(np.linalg.norm(c)),
        lambda_max=float(lam[-1]),
        lambda_min_nonzero=float(lam[-n]),
        max_row_norm2=float(np.max(np.sum(Phi**2, axis=1))),
        dFdw_null_fraction=float(np.linalg.norm(Ph @ phi_o) / np.linalg.norm(phi_o)),
        lr=lr,
        outer_lr=outer_lr,
        predictions=predictions,
        table=tuple(rows),
        curves=tuple(curves),
    )
