r"""E7: cold-start vs full and partial warm-start as projections (PAPER.md §4.8, E7, Fig. 8).

A linear model ``y = w1 x + w2`` (weights ``w`` in the plane) is fitted, one outer step at a time, to one
datapoint ``(x_t, y_t)`` of a fixed cyclic sequence of four: ``f(w; x_t, y_t) = 1/2 (w1 x_t + w2 - y_t)^2``.
Each solution set ``S_t = {w : w1 x_t + w2 = y_t}`` is a line in weight space. The runs use the library's
algorithms with the datapoints as inner batches (the outer parameters stay fixed; the sequence of
solution sets is what the outer iterates would produce):

* cold-start (:class:`blojax.ColdStart`, gradient descent to tolerance from ``w0``): ``P_{S_t}(w0)``;
* full warm-start (:class:`blojax.WarmStart`, to tolerance): ``P_{S_t}(w_{t-1})``, i.e. Kaczmarz /
  alternating projections — they converge to the common point when the four lines share one, and
  settle on a limit cycle of period 4 when they do not;
* partial warm-start (:class:`blojax.WarmStart` with a few steps): moves only part of the way.

Every run is checked against :mod:`blojax.analysis.projections` (projections, Dykstra, cycle detection).
"""

from __future__ import annotations

import dataclasses
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import optax

import blojax as blo
from .claims import Claim
from blojax.analysis import projections

from . import common
from .common import check_field
from .figures import projection_sketch as figures

DESCRIPTION = "E7 projection sketch: cold vs full/partial warm start as projections onto 4 cyclic solution lines (Fig. 8)"


@dataclasses.dataclass(frozen=True)
class Config:
    """Settings of E7 (the paper gives only a sketch; every value here is ours).

    xs: x of the four datapoints (distinct, so the four lines in weight space have distinct slopes).
    w_common: the weights (slope, intercept) every datapoint of the consistent case lies on.
    offsets: added to the y of the datapoints in the inconsistent case (no common point).
    w0: cold-start initialization and start of the warm-start runs.
    sweeps: passes over the four datapoints (40: the alternating projections contract by a fixed
      factor per pass and reach ~1e-13 well before the end; the cycle detector needs the tail).
    partial_steps: inner GD steps per outer step for partial warm-start.
    inner_tol: gradient-norm tolerance of the "to convergence" inner solves.
    lr_scale: inner GD step = lr_scale / max_t (x_t^2 + 1) (the largest curvature of the four problems).
    """

    xs: tuple = (-1.5, -0.4, 0.6, 1.7)
    w_common: tuple = (0.6, 0.4)
    offsets: tuple = (0.5, -0.6, 0.45, -0.55)
    w0: tuple = (-1.2, -1.4)
    sweeps: int = 40
    partial_steps: int = 2
    inner_tol: float = 1e-13
    lr_scale: float = 1.0

    @classmethod
    def quick(cls) -> "Config":
        """Fewer passes (still far past convergence)."""
        return cls(sweeps=25)

    def validate(self) -> None:
        n = "Config"
        check_field(
            len(self.xs) >= 2 and len(set(self.xs)) == len(self.xs),
            n,
            "xs",
            "at least two distinct x values",
            self.xs,
        )
        check_field(
            len(self.offsets) == len(self.xs),
            n,
            "offsets",
            f"one offset per datapoint ({len(self.xs)})",
            self.offsets,
        )
        check_field(len(self.w_common) == 2, n, "w_common", "a pair (slope, intercept)", self.w_common)
        check_field(len(self.w0) == 2, n, "w0", "a pair (slope, intercept)", self.w0)
        check_field(
            isinstance(self.sweeps, int) and self.sweeps >= 4, n, "sweeps", "an integer >= 4", self.sweeps
        )
        check_field(
            isinstance(self.partial_steps, int) and self.partial_steps > 0,
            n,
            "partial_steps",
            "a positive integer (K > 0)",
            self.partial_steps,
        )
        check_field(self.inner_tol > 0, n, "inner_tol", "positive", self.inner_tol)
        check_field(0 < self.lr_scale < 2, n, "lr_scale", "in (0, 2) (stable GD)", self.lr_scale)


#: The three runs of each case, in the order of ``results.json``.
RUNS = ("cold", "warm_full", "warm_partial")


@dataclasses.dataclass(frozen=True)
class Run:
    """One algorithm on one case: its iterates ``w_0 .. w_T`` and the cycle its tail settles on.

    iterates: ``(sweeps * m + 1, 2)``; converged: the tail is one point; period: the tail's period
    (0: none found); cycle_points: ``(period, 2)``, one period of the tail; cycle_gap:
    ``max_t ||w_t - w_{t - period}||`` on the tail; cycle_spread: largest distance between the cycle's
    points; max_inner_steps: the most inner GD steps one outer step took.
    """

    iterates: np.ndarray
    converged: bool
    period: int
    cycle_points: np.ndarray
    cycle_gap: float
    cycle_spread: float
    max_inner_steps: int

    def to_dict(self) -> dict:
        return dict(
            converged=self.converged,
            period=self.period,
            cycle_points=self.cycle_points,
            cycle_gap=self.cycle_gap,
            cycle_spread=self.cycle_spread,
            max_inner_steps=self.max_inner_steps,
        )


@dataclasses.dataclass(frozen=True)
class Case:
    """The three runs on one sequence of ``m`` datapoints, checked against the projections.

    data: ``(m, 2)`` rows ``(x_t, y_t)``; A: ``(m, 1, 2)`` rows ``[x_t, 1]``; b: ``(m, 1)``: the solution
    sets ``S_t = {w : A_t w = b_t}``.
    runs: ``{name: Run}`` for ``name`` in :data:`RUNS`.
    warm_full_vs_projections, cold_vs_projections: largest ``|w_t - reference|`` against alternating
    projections ``P_{S_t}(w_{t-1})`` and against ``P_{S_t}(w_0)``.
    dykstra_point: the point of the intersection nearest ``w_0`` (Dykstra); dykstra_residual:
    ``max_t |A_t w - b_t|`` there; lines_have_common_point: the least-squares solution solves every
    equation (to 1e-12); warm_limit_vs_dykstra: ``||limit of full warm-start - dykstra_point||`` when
    full warm-start converged, else ``None``.
    """

    data: np.ndarray
    A: np.ndarray
    b: np.ndarray
    runs: dict[str, Run]
    warm_full_vs_projections: float
    cold_vs_projections: float
    dykstra_point: np.ndarray
    dykstra_residual: float
    lines_have_common_point: bool
    warm_limit_vs_dykstra: float | None

    def to_dict(self) -> dict:
        out: dict = {name: self.runs[name].to_dict() for name in RUNS}
        out.update(
            warm_full_vs_projections=self.warm_full_vs_projections,
            cold_vs_projections=self.cold_vs_projections,
            dykstra_point=self.dykstra_point,
            dykstra_residual=self.dykstra_residual,
            lines_have_common_point=self.lines_have_common_point,
        )
        if self.warm_limit_vs_dykstra is not None:
            out["warm_limit_vs_dykstra"] = self.warm_limit_vs_dykstra
        return out


@dataclasses.dataclass(frozen=True)
class Result:
    """The two cases: four lines through one point (``consistent``) and four without one
    (``inconsistent``, the y's moved by ``offsets``)."""

    config: Config
    consistent: Case
    inconsistent: Case

    def to_dict(self) -> dict:
        return common.to_jsonable(
            {"consistent": self.consistent.to_dict(), "inconsistent": self.inconsistent.to_dict()}
        )


def _algorithms(cfg: Config):
    """The three algorithms (built once: the datapoints enter as inner batches, so both cases share
    the compiled programs)."""

    def f(u, w, batch):
        a, y = batch
        return 0.5 * (a @ w - y) ** 2

    def F(u, w):
        return 0.0 * jnp.sum(w) + 0.0 * jnp.sum(u)

    problem = blo.Problem(inner=f, outer=F)
    xs = np.asarray(cfg.xs, dtype=float)
    lr = cfg.lr_scale / float(np.max(xs**2 + 1.0))  # largest curvature x_t^2 + 1 of the four problems
    full = blo.InnerLoop(optax.sgd(lr), tol=cfg.inner_tol, max_steps=20_000)
    partial = blo.InnerLoop(optax.sgd(lr), steps=cfg.partial_steps)
    record = lambda u, w: {"w_t": w}  # noqa: E731
    return {
        "cold": blo.ColdStart(problem, full, blo.Identity(lr=1.0), optax.sgd(0.0), record=record),
        "warm_full": blo.WarmStart(problem, full, blo.Identity(lr=1.0), optax.sgd(0.0), record=record),
        "warm_partial": blo.WarmStart(problem, partial, blo.Identity(lr=1.0), optax.sgd(0.0), record=record),
    }


def _run_case(cfg: Config, ys, runs, ctx: common.RunContext, key) -> Case:
    xs = jnp.asarray(cfg.xs)
    m = len(cfg.xs)
    A = jnp.stack([xs, jnp.ones_like(xs)], axis=1)[:, None, :]  # (m, 1, 2): row [x_t, 1]
    b = jnp.asarray(ys)[:, None]
    w0 = jnp.asarray(cfg.w0)
    steps = cfg.sweeps * m
    batches = (A[jnp.arange(steps) % m, 0], b[jnp.arange(steps) % m, 0])
    u = jnp.zeros(1)  # the outer parameters are not optimized here (outer step 0)
    done: dict[str, Run] = {}
    for name in RUNS:  # ctx.run raises blojax.NonFiniteError on NaN/inf
        algo = runs[name]
        _, hist = ctx.run(algo, algo.init(u, w0), steps, key=f"{key}-{name}", inner_batches=batches)
        ws = np.concatenate([np.asarray(w0)[None], np.asarray(hist["w_t"])])
        cyc = projections.detect_cycle(ws, tol=1e-9, max_period=2 * m)
        done[name] = Run(
            iterates=ws,
            converged=cyc.converged,
            period=cyc.period,
            cycle_points=cyc.points,
            cycle_gap=cyc.gap,
            cycle_spread=cyc.spread,
            max_inner_steps=int(np.max(hist["inner_steps"])),
        )
    ref_warm = np.asarray(projections.alternating_projections(A, b, w0, cfg.sweeps))
    ref_cold = np.asarray(projections.cold_start_projections(A, b, w0, cfg.sweeps))
    # nearest point of the intersection (Dykstra) and whether the lines have one
    w_dyk = np.asarray(projections.dykstra(A, b, w0, cfg.sweeps))
    lsq = np.linalg.lstsq(np.asarray(A[:, 0]), np.asarray(b[:, 0]), rcond=None)
    warm = done["warm_full"]
    return Case(
        data=np.stack([np.asarray(xs), np.asarray(ys)], 1),
        A=np.asarray(A),
        b=np.asarray(b),
        runs=done,
        warm_full_vs_projections=float(np.max(np.abs(warm.iterates - ref_warm))),
        cold_vs_projections=float(np.max(np.abs(done["cold"].iterates - ref_cold))),
        dykstra_point=w_dyk,
        dykstra_residual=float(np.max(np.abs(np.asarray(A[:, 0]) @ w_dyk - np.asarray(b[:, 0])))),
        lines_have_common_point=bool(
            np.allclose(np.asarray(A[:, 0]) @ lsq[0], np.asarray(b[:, 0]), atol=1e-12)
        ),
        warm_limit_vs_dykstra=(
            float(np.linalg.norm(warm.cycle_points[0] - w_dyk)) if warm.converged else None
        ),
    )


def run(config: Config, ctx: common.RunContext | None = None) -> Result:
    """The three runs on the consistent and the inconsistent sequence (``ctx.run`` each)."""
    config.validate()
    ctx = common.ensure_context(ctx)
    cfg = config
    with jax.enable_x64(True):
        xs = np.asarray(cfg.xs)
        y_consistent = cfg.w_common[0] * xs + cfg.w_common[1]
        runs = _algorithms(cfg)
        consistent = _run_case(cfg, y_consistent, runs, ctx, "consistent")
        inconsistent = _run_case(cfg, y_consistent + np.asarray(cfg.offsets), runs, ctx, "inconsistent")
    return Result(cfg, consistent, inconsistent)


def plot(result: Result, out_dir) -> list[pathlib.Path]:
    """``projection_sketch.png`` (:func:`blojax.experiments.figures.projection_sketch.plot`)."""
    return figures.plot(result, out_dir)


# ------------------------------------------------------------------------------------ claims ledger

CLAIMS = (
    Claim(
        "S4.8-kaczmarz-converges",
        "§4.8: when the solution sets intersect, full warm-start (alternating projection) converges to their "
        "intersection (distance to Dykstra's point <= 1e-10)",
        "converges to the intersection",
        lambda r: {
            "converged": r["consistent"]["warm_full"]["converged"],
            "distance": r["consistent"]["warm_limit_vs_dykstra"],
        },
        lambda o: o["converged"] is True and o["distance"] <= 1e-10,
        "converged and distance <= 1e-10",
    ),
    Claim(
        "S4.8-limit-cycle-period-4",
        "§4.8: for a cyclic sequence of 4 lines with no common point, full warm-start ends in a limit cycle of "
        "period 4 (spread > 0.1) and cold-start re-projects w0 (period 4)",
        "limit cycle (period of the sequence, 4)",
        lambda r: {
            "common point": r["inconsistent"]["lines_have_common_point"],
            "warm period": r["inconsistent"]["warm_full"]["period"],
            "warm spread": r["inconsistent"]["warm_full"]["cycle_spread"],
            "cold period": r["inconsistent"]["cold"]["period"],
        },
        lambda o: (
            o["common point"] is False
            and o["warm period"] == 4
            and o["cold period"] == 4
            and o["warm spread"] > 0.1
        ),
        "periods exactly 4, spread > 0.1",
    ),
    Claim(
        "S4.8-warm-is-alternating-projection",
        "§4.8: full warm-start iterates equal alternating projections, cold-start iterates the projections of w0 "
        "(<= 1e-10, both cases)",
        "equal (proved)",
        lambda r: {
            c: max(r[c]["warm_full_vs_projections"], r[c]["cold_vs_projections"])
            for c in ("consistent", "inconsistent")
        },
        lambda o: all(v <= 1e-10 for v in o.values()),
        "max deviation <= 1e-10",
    ),
    Claim(
        "S4.5-partial-equals-full",
        "§4.5: partial warm-start (2 inner steps) reaches the same equilibrium as full warm-start where one exists "
        "(the lines intersect): distance <= 1e-8",
        "partial and full warm-start equilibria coincide",
        lambda r: {
            "distance": max(
                abs(a - b)
                for a, b in zip(
                    r["consistent"]["warm_partial"]["cycle_points"][0],
                    r["consistent"]["warm_full"]["cycle_points"][0],
                )
            )
        },
        lambda o: o["distance"] <= 1e-8,
        "distance <= 1e-8",
    ),
)


if __name__ == "__main__":
    from blojax.runner.cli import run_module

    raise SystemExit(run_module(__name__))
