r"""S1: where stochastic amortized bilevel solvers land when both levels are overparameterized.

A finite-sum least-squares bilevel problem with a closed form. Training inputs ``x_i in R^p``
(``i < n``, ``n < p``: the inner Hessian is singular), learnable training targets ``u in R^n`` (one per
training sample, as in dataset distillation), validation pairs ``(z_j, y_j)`` (``j < m``, ``m < n``:
the outer problem is overparameterized too)::

    f(u, w) = 1/n sum_i 1/2 (x_i^T w - u_i)^2          H = X^T X / n   (rank n < p)
    F(u, w) = 1/m sum_j 1/2 (z_j^T w - y_j)^2

From ``w0 = 0`` gradient descent on ``f`` reaches the minimum-norm inner solution ``w = X^+ u``; the
canonical response is ``J = X^+`` and ``h(u) = F(u, X^+ u) = 1/(2m) ||A u - y||^2`` with ``A = Z X^+``
(``m x n``, rank ``m``): a whole affine set of outer solutions. Cold-start BLO with exact
hypergradients from ``u0`` converges to the one nearest ``u0`` (PAPER.md §4.3)::

    u_mn = u0 + A^+ (y - A u0).

Every solver runs from ``(u0, w0 = 0, v0 = 0)``; at the end we report, per solver, batch size and step
size (median over seeds): the distance to ``u_mn`` (relative to ``||u_mn - u0||``), the outer
suboptimality ``h(u) - h*`` (``h* = 0``), the part of ``u - u0`` in ``null(A)`` (the drift along the
solution set, invisible to ``h``), the inner distance ``||w - X^+ u||``, the part of ``w`` in
``null(X)``, and the part of ``v`` in ``null(H)`` (warm ``v`` accumulates it; cold ``v`` does not).
AmIGO runs twice: warm ``v`` (carried) and cold ``v`` (reset to 0 every outer step).

A second problem, the paper's antidistillation problem (E5: one original point, Fourier features, the
outer problem overparameterized), runs the same solvers, step scales and metrics when
``Config.antidistill`` is set (the default; ``quick()`` leaves it out). It has a second closed-form
reference: where full-batch cold ``v`` lands (``_stochastic_antidistill.py``).

The shared engine (problem, solvers, sweep) lives in ``_stochastic_engine.py``.
"""

from __future__ import annotations

import dataclasses
import pathlib

import jax
import jax.numpy as jnp
import numpy as np

from . import common
from ._stochastic_antidistill import (
    AntidistillConfig,
    AntidistillCurves,
    AntidistillResult,
    AntidistillRow,
    Prediction,
    run_antidistill,
)
from ._stochastic_engine import METRICS, SOLVERS, Curves, Row, build_solver, closed_form, make_problem, sweep
from .common import check_field, check_int_fields
from .figures import stochastic_bias as figures

DESCRIPTION = "S1: stochastic bilevel solvers (SOBA, SABA, AmIGO warm/cold v, StocBiO, F2SA) vs the min-norm solution of a doubly overparameterized quadratic"

__all__ = [
    "DESCRIPTION",
    "METRICS",
    "SOLVERS",
    "AntidistillConfig",
    "AntidistillCurves",
    "AntidistillResult",
    "AntidistillRow",
    "build_solver",
    "Config",
    "Curves",
    "Prediction",
    "Result",
    "Row",
    "closed_form",
    "make_data",
    "make_problem",
    "make_solver",
    "plot",
    "run",
]


@dataclasses.dataclass(frozen=True)
class Config:
    """Settings of S1 (no paper gives them; every value is ours, chosen so the runs converge).

    n_train, n_features, n_val: ``n < p`` (singular inner Hessian) and ``m < n`` (many outer solutions).
    solvers: from ``SOLVERS``.
    batch_sizes: inner batch sizes (``n_train`` = full batch); the outer batch is the whole
      validation set, so the noise studied is that of the inner oracles.
    step_scales: multiply every base step size (inner/v base ``lr``, outer base ``outer_lr``).
    lr: base step of ``w`` and ``v`` (rows of X have norm ~1, so every ``H_B`` has norm <~ 1).
    outer_lr: base step of ``u`` (ten times smaller than ``lr``: the two-timescale regime the single-loop
      solvers need).
    steps: outer steps. seeds: runs per setting (vmapped), different minibatch streams.
    inner_steps: T of AmIGO, StocBiO (and K of StocBiO's Neumann series), F2SA.
    seed: the problem instance and the minibatch streams.
    antidistill: the second problem (:class:`AntidistillConfig`, its own batch sizes and relative base
      steps; solvers, step scales, steps, seeds, inner_steps and seed from here); ``None`` skips it.
    """

    n_train: int = 16
    n_features: int = 64
    n_val: int = 4
    solvers: tuple = SOLVERS
    batch_sizes: tuple = (16, 4, 1)
    step_scales: tuple = (1.0, 0.25)
    lr: float = 0.5
    outer_lr: float = 0.05
    steps: int = 6000
    seeds: int = 4
    inner_steps: int = 5
    seed: int = 0
    antidistill: AntidistillConfig | None = dataclasses.field(default_factory=AntidistillConfig)

    @classmethod
    def quick(cls) -> "Config":
        """Two batch sizes, one step size, fewer steps and seeds (the qualitative picture holds); the
        quadratic problem only."""
        return cls(batch_sizes=(16, 2), step_scales=(1.0,), steps=3000, seeds=2, antidistill=None)

    def validate(self) -> None:
        n = "Config"
        check_int_fields(
            self, ("n_train", "n_features", "n_val", "steps", "seeds", "inner_steps", ("seed", 0))
        )
        check_field(
            self.n_train < self.n_features,
            n,
            "n_train",
            f"< n_features ({self.n_features}): a singular inner Hessian",
            self.n_train,
        )
        check_field(
            self.n_val < self.n_train,
            n,
            "n_val",
            f"< n_train ({self.n_train}): an overparameterized outer problem",
            self.n_val,
        )
        check_field(
            len(self.solvers) > 0 and all(s in SOLVERS for s in self.solvers),
            n,
            "solvers",
            f"a non-empty subset of {SOLVERS}",
            self.solvers,
        )
        check_field(
            len(self.batch_sizes) > 0
            and all(isinstance(b, int) and 1 <= b <= self.n_train for b in self.batch_sizes),
            n,
            "batch_sizes",
            f"integers in [1, n_train={self.n_train}]",
            self.batch_sizes,
        )
        check_field(
            len(self.step_scales) > 0 and all(0 < s <= 1.5 for s in self.step_scales),
            n,
            "step_scales",
            "numbers in (0, 1.5]",
            self.step_scales,
        )
        check_field(
            0 < self.lr < 1.5, n, "lr", "in (0, 1.5) (stable SGD: per-sample curvature <~ 1)", self.lr
        )
        check_field(self.outer_lr > 0, n, "outer_lr", "positive", self.outer_lr)
        check_field(
            self.antidistill is None or isinstance(self.antidistill, AntidistillConfig),
            n,
            "antidistill",
            "an AntidistillConfig or None",
            self.antidistill,
        )
        if self.antidistill is not None:
            self.antidistill.validate()


@dataclasses.dataclass(frozen=True)
class Result:
    """table: one :class:`Row` per (solver, batch, step scale), in the order run; curves: the
    trajectories of the same settings, in the same order; u_mn_norm: ``||u_mn - u0||``;
    antidistill: the second problem's result (``None`` when ``config.antidistill`` is ``None``)."""

    config: Config
    table: tuple[Row, ...]
    curves: tuple[Curves, ...]
    u_mn_norm: float
    antidistill: AntidistillResult | None = None

    def curve(self, solver: str, batch: int, step_scale: float) -> Curves | None:
        """The trajectories of one setting (``None`` if it was not run)."""
        for row, c in zip(self.table, self.curves):
            if (row.solver, row.batch, row.step_scale) == (solver, batch, step_scale):
                return c
        return None

    def to_dict(self) -> dict:
        """The quadratic problem's numbers under ``table`` / ``u_mn_norm`` and, when it ran, the
        antidistillation problem's under ``antidistill`` (a run without it writes neither that key nor
        ``config.antidistill``: the layout of the quadratic-only runs)."""
        config = common.to_jsonable(self.config)
        if self.antidistill is None:
            config.pop("antidistill")
        out = dict(
            config=config,
            table=[dataclasses.asdict(r) for r in self.table],
            u_mn_norm=self.u_mn_norm,
        )
        if self.antidistill is not None:
            out["antidistill"] = self.antidistill.to_dict()
        return common.to_jsonable(out)


def make_data(cfg: Config):
    """``X (n, p)``, ``Z (m, p)`` with rows ~ N(0, I/p), ``y ~ N(0, I)``, ``u0 ~ N(0, I)`` (float64)."""
    rng = np.random.default_rng(cfg.seed)
    X = rng.normal(size=(cfg.n_train, cfg.n_features)) / np.sqrt(cfg.n_features)
    Z = rng.normal(size=(cfg.n_val, cfg.n_features)) / np.sqrt(cfg.n_features)
    return X, Z, rng.normal(size=cfg.n_val), rng.normal(size=cfg.n_train)


def make_solver(name, problem, cfg: Config, b: int, scale: float, record):
    """Solver ``name`` on the quadratic problem: inner batch ``b``, steps ``cfg.lr * scale`` (``w``,
    ``v``) and ``cfg.outer_lr * scale`` (``u``), the whole validation set as outer batch."""
    return build_solver(
        name,
        problem,
        n_inner=cfg.n_train,
        n_outer=cfg.n_val,
        batch=b,
        lr=cfg.lr * scale,
        outer_lr=cfg.outer_lr * scale,
        inner_steps=cfg.inner_steps,
        record=record,
    )


def run(config: Config, ctx: common.RunContext | None = None) -> Result:
    """Every (solver, batch size, step scale), each vmapped over the seeds through ``ctx.scan``; then
    the antidistillation problem (when ``config.antidistill`` is set)."""
    config.validate()
    ctx = common.ensure_context(ctx)
    cfg = config
    with jax.enable_x64(True):
        X, Z, y, u0 = make_data(cfg)
        cf = closed_form(X, Z, y, u0)
        problem = make_problem(X, Z, y)
        u_mn, Pa, Px = (jnp.asarray(cf[k]) for k in ("u_mn", "P_null_A", "P_null_X"))
        Xp, A = jnp.asarray(cf["Xp"]), jnp.asarray(cf["A"])
        H = jnp.asarray(X.T @ X / cfg.n_train)
        Ph = jnp.eye(cfg.n_features) - jnp.linalg.pinv(H) @ H
        yj, u0j = jnp.asarray(y), jnp.asarray(u0)
        scale_mn = float(jnp.linalg.norm(u_mn - u0j))

        def record(u, w, v):
            r = A @ u - yj
            out = dict(
                dist_mn=jnp.linalg.norm(u - u_mn) / scale_mn,
                h=0.5 * jnp.mean(r**2),
                u_null=jnp.linalg.norm(Pa @ (u - u0j)),
                inner_dist=jnp.linalg.norm(w - Xp @ u),
                w_null=jnp.linalg.norm(Px @ w),
            )
            out["v_null"] = jnp.linalg.norm(Ph @ v) if v is not None else jnp.asarray(jnp.nan)
            return out

        table, curves = sweep(
            ctx,
            problem,
            solvers=cfg.solvers,
            batch_sizes=cfg.batch_sizes,
            step_scales=cfg.step_scales,
            steps=cfg.steps,
            seeds=cfg.seeds,
            seed=cfg.seed,
            lr=cfg.lr,
            outer_lr=cfg.outer_lr,
            inner_steps=cfg.inner_steps,
            u0=u0j,
            w0=jnp.zeros(cfg.n_features),
            make_record=lambda name, b, scale: record,
            key_prefix="s1",
        )
    ad = run_antidistill(cfg, ctx) if cfg.antidistill is not None else None
    return Result(cfg, tuple(table), tuple(curves), scale_mn, ad)


def plot(result: Result, out_dir) -> list[pathlib.Path]:
    """``stochastic_bias_final.png``, ``stochastic_bias_trajectories.png`` and, with the antidistillation
    problem, ``stochastic_bias_antidistill_{final,trajectories,points}.png``
    (:func:`blojax.experiments.figures.stochastic_bias.plot`)."""
    return figures.plot(result, out_dir)


if __name__ == "__main__":
    from blojax.runner.cli import run_module

    raise SystemExit(run_module(__name__))
