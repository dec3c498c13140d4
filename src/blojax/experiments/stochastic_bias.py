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
"""

from __future__ import annotations

import dataclasses
import functools
import pathlib
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

import blojax as blo
from blojax.stochastic import MinibatchProblem, Shuffle, inverse_power

from . import common
from .common import check_field, check_int_fields
from .figures import stochastic_bias as figures

DESCRIPTION = "S1: stochastic bilevel solvers (SOBA, SABA, AmIGO warm/cold v, StocBiO, F2SA) vs the min-norm solution of a doubly overparameterized quadratic"

__all__ = ["DESCRIPTION", "Config", "Result", "run", "plot", "closed_form"]

SOLVERS = ("SOBA", "SABA", "AmIGO-warm", "AmIGO-cold", "StocBiO", "F2SA")
METRICS = ("dist_mn", "h", "u_null", "inner_dist", "w_null", "v_null")


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

    @classmethod
    def quick(cls) -> "Config":
        """Two batch sizes, one step size, fewer steps and seeds (the qualitative picture holds)."""
        return cls(batch_sizes=(16, 2), step_scales=(1.0,), steps=3000, seeds=2)

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


@dataclasses.dataclass(frozen=True)
class Result:
    """table: one :class:`Row` per (solver, batch, step scale), in the order run; curves: the
    trajectories of the same settings, in the same order; u_mn_norm: ``||u_mn - u0||``."""

    config: Config
    table: tuple[Row, ...]
    curves: tuple[Curves, ...]
    u_mn_norm: float

    def curve(self, solver: str, batch: int, step_scale: float) -> Curves | None:
        """The trajectories of one setting (``None`` if it was not run)."""
        for row, c in zip(self.table, self.curves):
            if (row.solver, row.batch, row.step_scale) == (solver, batch, step_scale):
                return c
        return None

    def to_dict(self) -> dict:
        return common.to_jsonable(
            dict(
                config=self.config,
                table=[dataclasses.asdict(r) for r in self.table],
                u_mn_norm=self.u_mn_norm,
            )
        )


def make_data(cfg: Config):
    """``X (n, p)``, ``Z (m, p)`` with rows ~ N(0, I/p), ``y ~ N(0, I)``, ``u0 ~ N(0, I)`` (float64)."""
    rng = np.random.default_rng(cfg.seed)
    X = rng.normal(size=(cfg.n_train, cfg.n_features)) / np.sqrt(cfg.n_features)
    Z = rng.normal(size=(cfg.n_val, cfg.n_features)) / np.sqrt(cfg.n_features)
    return X, Z, rng.normal(size=cfg.n_val), rng.normal(size=cfg.n_train)


def closed_form(X, Z, y, u0):
    """``A = Z X^+``, ``u_mn = u0 + A^+ (y - A u0)`` and the projectors onto ``null(A)``, ``null(X)``."""
    Xp = np.linalg.pinv(X)
    A = Z @ Xp
    u_mn = u0 + np.linalg.pinv(A) @ (y - A @ u0)
    P_null_A = np.eye(A.shape[1]) - np.linalg.pinv(A) @ A
    P_null_X = np.eye(X.shape[1]) - Xp @ X
    return dict(Xp=Xp, A=A, u_mn=u_mn, P_null_A=P_null_A, P_null_X=P_null_X)


def make_problem(X, Z, y):
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


def make_solver(name, problem, cfg: Config, b: int, scale: float, record):
    ins, outs = Shuffle(cfg.n_train, b), Shuffle(cfg.n_val, cfg.n_val)
    a, c = cfg.lr * scale, cfg.outer_lr * scale
    T = cfg.inner_steps
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


def run(config: Config, ctx: common.RunContext | None = None) -> Result:
    """Every (solver, batch size, step scale), each vmapped over the seeds through ``ctx.scan``."""
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

        table: list[Row] = []
        curves: list[Curves] = []
        keys = jax.random.split(jax.random.PRNGKey(cfg.seed + 1), cfg.seeds)
        w0, v0 = jnp.zeros(cfg.n_features), jnp.zeros(cfg.n_features)
        for name in cfg.solvers:
            for b in cfg.batch_sizes:
                for scale in cfg.step_scales:
                    algo = make_solver(name, problem, cfg, b, scale, record)
                    state = jax.vmap(lambda k: algo.init(u0j, w0, k, v0=v0))(keys)
                    tag = f"{name}|{b}|{scale:g}"

                    # one compiled program per chunk length (vmap alone would re-trace every chunk)
                    @functools.partial(jax.jit, static_argnums=1)
                    def chunk(s, n, algo=algo):
                        return jax.vmap(lambda st: algo.run(st, n, on_nonfinite="stop"))(s)

                    state, hist = ctx.scan(chunk, state, cfg.steps, key=f"s1-{tag}", desc=tag, history_axis=1)
                    hist = {k: np.asarray(hist[k]) for k in METRICS}
                    diverged = bool(np.any(np.asarray(state.diverged_step) >= 0))
                    medians: dict[str, Any] = {
                        k: float(np.nanmedian(hist[k][:, -1]))
                        if not np.all(np.isnan(hist[k][:, -1]))
                        else None
                        for k in METRICS
                    }
                    table.append(Row(solver=name, batch=b, step_scale=scale, diverged=diverged, **medians))
                    stride = max(1, cfg.steps // 300)
                    curves.append(
                        Curves(**{k: hist[k][:, ::stride] for k in ("dist_mn", "h", "u_null", "v_null")})
                    )
    return Result(cfg, tuple(table), tuple(curves), scale_mn)


def plot(result: Result, out_dir) -> list[pathlib.Path]:
    """``stochastic_bias_final.png`` and ``stochastic_bias_trajectories.png``
    (:func:`blojax.experiments.figures.stochastic_bias.plot`)."""
    return figures.plot(result, out_dir)


if __name__ == "__main__":
    from blojax.runner.cli import run_module

    raise SystemExit(run_module(__name__))
