r"""E6: the hypergradient field of an overparameterized outer problem (PAPER.md E6, Fig. 11c).

One original point ``(x_o, y_o) = (1, 1)``; two synthetic points at ``x = 0`` and ``x = 2`` whose
targets ``u = (u1, u2)`` are learned from ``u0 = (0, 0)``; linear model ``y = w1 x + w2``. The inner
problem ``f(u, w) = 1/2 ||Phi w - u||^2`` (``Phi = [[0, 1], [2, 1]]``, invertible) has the unique
solution ``w*(u) = Phi^{-1} u``; the outer ``F(u, w) = 1/2 (w1 x_o + w2 - y_o)^2`` gives
``F*(u) = 1/2 ((u1 + u2)/2 - 1)^2``: every point of the line ``u1 + u2 = 2`` is an outer solution.

With IFT hypergradients the direction is fixed, ``g(u) = v (c^T u - y_o)`` with ``c = (1/2, 1/2)`` and
``v = Phi h(H) phi_o`` (``h``: the method's spectral map), so cold-start walks the straight line from
``u0`` along ``v`` to the solution line: Exact (``v ~ c``) reaches ``(1, 1)``, the point nearest ``u0``;
K-term Neumann with ``v = alpha Phi sum_{j<K} (I - alpha H)^j phi_o`` reaches other points (K = 1:
``v ~ Phi phi_o = (1, 3)``, ending at ``(1/2, 3/2)``), approaching ``(1, 1)`` as K grows.

Each outer step is the cold-start iteration: the inner problem is re-solved from ``w0`` (closed form,
:class:`blojax.ClosedForm`), the hypergradient taken with :func:`blojax.hypergradient`, and ``u`` moved
by SGD; all methods run as one ``vmap`` (Exact and Neumann selected per entry).
"""

from __future__ import annotations

import dataclasses
import math
import pathlib

import jax
import jax.numpy as jnp
import numpy as np

import blojax as blo

from .claims import Claim, monotone
from . import common, toolkit
from .common import check_field
from .figures import hypergrad_field as figures

DESCRIPTION = "E6 hypergradient field: 2 synthetic points, linear model; Exact vs K-term Neumann outer trajectories (Fig. 11c)"


@dataclasses.dataclass(frozen=True)
class Config:
    """Settings of E6.

    x_orig, y_orig: the original point (paper: (1, 1)).
    x_synth: x of the two synthetic points (paper: 0 and 2).
    u0: start of the learned targets (paper: (0, 0)).
    neumann_ks: K of the Neumann runs (paper: 1, 100, 200).
    alpha: Neumann step (paper silent). The eigenvalues of H = Phi^T Phi are 3 -+ sqrt(5) = 0.76, 5.24;
      alpha = 0.01 makes (1 - alpha lambda_min)^K = 0.47 and 0.22 for K = 100, 200, so those runs end
      visibly apart from each other and from Exact, as in the paper's figure.
    outer_steps: outer SGD steps (each method's step is outer_eta / kappa, kappa = c^T v the curvature
      of F* along its direction, so every run contracts its residual by (1 - outer_eta) per step).
    outer_eta: the relative outer step (0.2: trajectories with visible steps; 150 steps reach F ~ 1e-30).
    grid: resolution of the contour / field grid of the plot.
    """

    x_orig: float = 1.0
    y_orig: float = 1.0
    x_synth: tuple = (0.0, 2.0)
    u0: tuple = (0.0, 0.0)
    neumann_ks: tuple = (1, 100, 200)
    alpha: float = 0.01
    outer_steps: int = 150
    outer_eta: float = 0.2
    grid: int = 41

    @classmethod
    def quick(cls) -> "Config":
        """The same runs with fewer steps (80 steps still reach F ~ 1e-16)."""
        return cls(outer_steps=80, grid=21)

    def validate(self) -> None:
        n = "Config"
        check_field(
            len(self.x_synth) == 2 and self.x_synth[0] != self.x_synth[1],
            n,
            "x_synth",
            "two distinct x values",
            self.x_synth,
        )
        check_field(len(self.u0) == 2, n, "u0", "a pair (u1, u2)", self.u0)
        check_field(
            len(self.u0) != 2 or abs(sum(self.u0) - 2 * self.y_orig) > 1e-12 or self.x_orig != 1.0,
            n,
            "u0",
            "off the solution line u1 + u2 = 2 y_o (else there is nothing to learn)",
            self.u0,
        )
        check_field(
            len(self.neumann_ks) > 0
            and all(isinstance(k, int) and not isinstance(k, bool) and k > 0 for k in self.neumann_ks),
            n,
            "neumann_ks",
            "a non-empty tuple of positive integers (K > 0)",
            self.neumann_ks,
        )
        lam_max = 3.0 + math.sqrt(5.0) if tuple(self.x_synth) == (0.0, 2.0) else None
        check_field(
            self.alpha > 0 and (lam_max is None or self.alpha < 2.0 / lam_max),
            n,
            "alpha",
            "positive and < 2 / lambda_max(H) (the Neumann series must converge)",
            self.alpha,
        )
        check_field(
            isinstance(self.outer_steps, int) and self.outer_steps > 0,
            n,
            "outer_steps",
            "a positive integer",
            self.outer_steps,
        )
        check_field(0 < self.outer_eta < 2, n, "outer_eta", "in (0, 2)", self.outer_eta)
        check_field(isinstance(self.grid, int) and self.grid >= 5, n, "grid", "an integer >= 5", self.grid)


@dataclasses.dataclass(frozen=True)
class Field:
    """``F*`` and the hypergradients on a ``grid x grid`` mesh of ``u = (u1, u2)`` (for the figure).

    u1, u2: the mesh (``np.meshgrid``), ``F``: ``F*(u)`` on it; ``g``: ``(methods, grid, grid, 2)``, the
    hypergradient of each method; ``exact_point``: ``(1, 1)``-like end of Exact, ``y_o c / ||c||^2``;
    ``c``: ``F*(u) = 1/2 (c^T u - y_o)^2``.
    """

    u1: np.ndarray
    u2: np.ndarray
    F: np.ndarray
    g: np.ndarray
    exact_point: np.ndarray
    c: np.ndarray


@dataclasses.dataclass(frozen=True)
class Result:
    """The cold-start outer trajectories of every method (row ``i`` of each array is ``methods[i]``).

    methods: ``("Exact", "Neumann K=1", ...)``.
    trajectories: ``(methods, outer_steps + 1, 2)``: ``u_0 .. u_T``.
    final_u: ``(methods, 2)``; final_F: ``F*(u_T)``; line_residual: ``c^T u_T - y_o`` (0 on the solution
    line); dist_to_exact_point: ``||u_T - (1, 1)||``.
    directions: ``(methods, 2)``: ``v`` of ``g(u) = v (c^T u - y_o)``; predicted_end: ``y_o v / (c^T v)``,
    where that fixed direction meets the solution line.
    field: the mesh of the figure.
    """

    config: Config
    methods: tuple[str, ...]
    trajectories: np.ndarray
    final_u: np.ndarray
    final_F: np.ndarray
    dist_to_exact_point: np.ndarray
    predicted_end: np.ndarray
    line_residual: np.ndarray
    directions: np.ndarray
    field: Field

    def to_dict(self) -> dict:
        return common.to_jsonable(
            dict(
                methods=list(self.methods),
                final_u=self.final_u,
                final_F=self.final_F,
                line_residual=self.line_residual,
                dist_to_exact_point=self.dist_to_exact_point,
                predicted_end=self.predicted_end,
                directions=self.directions,
            )
        )


def _setting(cfg):
    xs = jnp.asarray(cfg.x_synth)
    Phi = jnp.stack([xs, jnp.ones_like(xs)], axis=1)
    phi_o = jnp.asarray([cfg.x_orig, 1.0])

    def f(u, w):
        return 0.5 * jnp.sum((Phi @ w - u) ** 2)

    def F(u, w):
        return 0.5 * (phi_o @ w - cfg.y_orig) ** 2

    inner = blo.ClosedForm(lambda u, w0: jnp.linalg.solve(Phi, u))
    c = jnp.linalg.solve(Phi.T, phi_o)  # F*(u) = 1/2 (c^T u - y_o)^2
    return blo.Problem(inner=f, outer=F), inner, Phi, phi_o, c


def run(config: Config, ctx: common.RunContext | None = None) -> Result:
    """Every method's cold-start trajectory (one vmapped ``ctx.stage``), then ``F*`` and the
    hypergradient field on the mesh; non-finite trajectories raise :class:`blojax.NonFiniteError`."""
    config.validate()
    ctx = common.ensure_context(ctx)
    cfg = config
    with jax.enable_x64(True):
        problem, inner, Phi, phi_o, c = _setting(cfg)
        u0 = jnp.asarray(cfg.u0, dtype=jnp.float64)
        w0 = jnp.zeros(2)
        names = ["Exact"] + [f"Neumann K={k}" for k in cfg.neumann_ks]
        # one vmapped run: index 0 is Exact, the others Neumann with traced K (K = 0 placeholder for Exact)
        ks = jnp.asarray([1] + list(cfg.neumann_ks))
        is_exact = jnp.arange(len(names)) == 0

        # throw=False (toolkit NaN policy): no host callback in the compiled programs; a NaN/inf
        # reaches the trajectories and fields, which require_finite checks on the host; K comes from
        # the validated config.
        def hyper(u, K, exact):
            w, _ = inner.run(problem, u, w0, throw=False)
            g_ex = blo.hypergradient(problem, u, w, blo.Exact(), inner, diagnostics=False, throw=False)[0]
            g_n = blo.hypergradient(
                problem, u, w, blo.Neumann(terms=K, lr=cfg.alpha), inner, diagnostics=False, throw=False
            )[0]
            return jnp.where(exact, g_ex, g_n)

        def one(K, exact):
            g0 = hyper(u0, K, exact)
            v = g0 / (c @ u0 - cfg.y_orig)  # g(u) = v (c^T u - y_o)
            kappa = c @ v
            lr = cfg.outer_eta / kappa

            def step(u, _):
                u_new = u - lr * hyper(u, K, exact)
                return u_new, u_new

            _, us = jax.lax.scan(step, u0, None, length=cfg.outer_steps)
            return jnp.concatenate([u0[None], us]), v

        traj, dirs = ctx.stage("trajectories", jax.jit(jax.vmap(one)), ks, is_exact)
        traj, dirs = np.asarray(traj), np.asarray(dirs)
        toolkit.require_finite("hypergrad_field (outer trajectories)", (traj, dirs))
        final = traj[:, -1]
        Fstar = lambda u: problem.F(u, inner.run(problem, u, w0, throw=False)[0])  # noqa: E731
        final_F = np.asarray(jax.vmap(Fstar)(jnp.asarray(final)))
        pred = cfg.y_orig * dirs / (dirs @ np.asarray(c))[:, None]
        # the field on a grid, for the plot
        g = np.linspace(-0.5, 2.5, cfg.grid)
        U1, U2 = np.meshgrid(g, g)
        pts = jnp.asarray(np.stack([U1.ravel(), U2.ravel()], 1))
        Fgrid = np.asarray(jax.jit(jax.vmap(Fstar))(pts)).reshape(U1.shape)
        field_all = jax.jit(jax.vmap(lambda K, e: jax.vmap(lambda u: hyper(u, K, e))(pts)))(ks, is_exact)
        fields = np.asarray(field_all).reshape((len(names),) + U1.shape + (2,))
        toolkit.require_finite(
            "hypergrad_field (F and the hypergradient field on the grid)", (final_F, Fgrid, fields)
        )
        c = np.asarray(c)
    exact_point = cfg.y_orig * c / (c @ c)
    return Result(
        config=cfg,
        methods=tuple(names),
        trajectories=traj,
        final_u=final,
        final_F=final_F,
        dist_to_exact_point=np.linalg.norm(final - exact_point, axis=1),
        predicted_end=pred,
        line_residual=final @ np.asarray(c) - cfg.y_orig,
        directions=dirs,
        field=Field(u1=U1, u2=U2, F=Fgrid, g=fields, exact_point=exact_point, c=np.asarray(c)),
    )


def plot(result: Result, out_dir) -> list[pathlib.Path]:
    """``hypergrad_field.png`` (:func:`blojax.experiments.figures.hypergrad_field.plot`)."""
    return figures.plot(result, out_dir)


# ------------------------------------------------------------------------------------ claims ledger


def _by_method(r, key):
    return dict(zip(r["methods"], r[key]))


CLAIMS = (
    Claim(
        "E6.exact-ends-at-1-1",
        "Hypergradient field: the exact hypergradient ends at (1, 1) on the solution line u1 + u2 = 2 (distance <= 1e-6)",
        "exact ends at (1, 1)",
        lambda r: {
            "distance": _by_method(r, "dist_to_exact_point")["Exact"],
            "final F": _by_method(r, "final_F")["Exact"],
        },
        lambda o: o["distance"] <= 1e-6 and o["final F"] <= 1e-12,
        "distance <= 1e-6 and F <= 1e-12",
    ),
    Claim(
        "E6.neumann-ends-elsewhere",
        "Neumann K = 1, 100, 200 end at other points of the line (distance from (1, 1) >= 0.05, |u1 + u2 - 2| <= 1e-6), "
        "closer as K grows",
        "Neumann K = 1, 100, 200 end at other points of it",
        lambda r: {
            "distance": [d for m, d in _by_method(r, "dist_to_exact_point").items() if m != "Exact"],
            "max line residual": max(abs(x) for x in r["line_residual"]),
        },
        lambda o: (
            min(o["distance"]) >= 0.05
            and monotone(o["distance"], decreasing=True)
            and o["max line residual"] <= 1e-6
        ),
        "distance >= 0.05, decreasing in K; line residual <= 1e-6",
    ),
)


if __name__ == "__main__":
    from blojax.runner.cli import run_module

    raise SystemExit(run_module(__name__))
