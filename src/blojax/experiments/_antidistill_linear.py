r"""E5 (antidistillation), the linear Fourier-feature part: every method family's cold-start runs for
both amplitude bases as one compiled program, and their summaries (:class:`BasisResult`).

Notation of :mod:`blojax.experiments.antidistill`: ``f(u, w) = 1/2 ||Phi w - u||^2``,
``F(u, w) = 1/2 (phi_o^T w - y_o)^2``, ``H = Phi^T Phi``, ``w*(u) = Phi^+ u``, ``c = Phi^{+T} phi_o``;
method ``m`` follows the fixed direction ``v_m`` and ends at ``u = y_o v_m / (c^T v_m)``.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

import jax
import jax.numpy as jnp
import numpy as np
import optax

import blojax as blo
from blojax.analysis import spectral
from blojax.data import fourier

from . import toolkit
from ._antidistill_sweep import sweep

if TYPE_CHECKING:
    from .antidistill import Config

#: The method families, in the order of ``results.json``: Exact, K-term Neumann, Unroll(K) from
#: ``w*(u)``, Damped(eps), the proximal inner problem, plain CG(K), CGLS (``CG(K, normal=True)``).
FAMILIES = ("exact", "neumann", "unroll", "damped", "proximal", "cg", "cgls")


@dataclasses.dataclass(frozen=True)
class StartSolve:
    """CG's solve ``H x = b`` at the runs' start, ``b = dF/dw(u0, w0) = -y_o phi_o``: the solve that fixes
    the direction ``v`` every later step follows (one entry per K).

    breakdown: CG met a direction of zero curvature (``blojax.linalg.cg``'s flag).
    reported_residual: ``||r_K||`` as CG's recursion reports it.
    solution_norm: ``||x_K||``.
    true_residual: ``||H x_K - b||``, recomputed.
    """

    breakdown: np.ndarray
    reported_residual: np.ndarray
    solution_norm: np.ndarray
    true_residual: np.ndarray

    def to_dict(self) -> dict:
        return {
            "breakdown_start": self.breakdown,
            "reported_residual_start": self.reported_residual,
            "solution_norm_start": self.solution_norm,
            "true_residual_start": self.true_residual,
        }


@dataclasses.dataclass(frozen=True)
class FamilyRuns:
    """Cold-start runs of one method family, entry ``i`` for the parameter ``params[i]`` (K or eps).

    u: ``(m, n)`` reached outer parameters; u_norm, w_norm: ``||u||``, ``||w*(u)||``.
    F: final ``F(u, w*(u))``; F_history: ``(m, outer_steps)`` F along each run.
    kappa: the outer step's curvature ``c^T v`` (the step is ``eta / kappa``).
    c_dot_v: ``c^T v`` recomputed from the first hypergradient ``g(u0) = -y_o v``.
    diverged_step: first outer step with a non-finite update (``-1``: finite throughout).
    curves: ``(m, len(x_grid))`` the fitted model ``phi(x)^T w*(u)`` on the plotting grid.
    predicted_u_rel_err: ``||u - y_o v / (c^T v)|| / ||y_o v / (c^T v)||`` (the predicted end point).
    start_solve: CG's start solve (``cg`` and ``cgls`` only).
    ritz_min, max_gain_lambda_h: ``min theta_j``, the smallest Ritz value of ``(H, phi_o)``, and
      ``max_{lambda in range(H)} |lambda h_K(lambda)|``, CG's spectral map (``cg`` only).
    """

    params: np.ndarray
    u: np.ndarray
    u_norm: np.ndarray
    w_norm: np.ndarray
    F: np.ndarray
    F_history: np.ndarray
    kappa: np.ndarray
    c_dot_v: np.ndarray
    diverged_step: np.ndarray
    curves: np.ndarray
    predicted_u_rel_err: np.ndarray
    start_solve: StartSolve | None = None
    ritz_min: np.ndarray | None = None
    max_gain_lambda_h: np.ndarray | None = None

    def to_dict(self) -> dict:
        """The ``results.json`` entry (``F_history`` and ``curves`` are for the figures only)."""
        out = {
            "params": self.params,
            "u": self.u,
            "u_norm": self.u_norm,
            "w_norm": self.w_norm,
            "F": self.F,
            "kappa": self.kappa,
            "c_dot_v": self.c_dot_v,
            "diverged_step": self.diverged_step,
            "predicted_u_rel_err": self.predicted_u_rel_err,
        }
        if self.start_solve is not None:
            out.update(self.start_solve.to_dict())
        if self.ritz_min is not None:
            out["ritz_min"] = self.ritz_min
        if self.max_gain_lambda_h is not None:
            out["max_gain_lambda_h"] = self.max_gain_lambda_h
        return out

    def select(self, idx) -> FamilyRuns:
        """The runs ``idx`` (an index array into ``params``)."""
        m = len(self.params)

        def pick(v):
            return v[idx] if isinstance(v, np.ndarray) and v.ndim >= 1 and v.shape[0] == m else v

        def picked(obj):
            return {f.name: pick(getattr(obj, f.name)) for f in dataclasses.fields(obj)}

        start = None if self.start_solve is None else StartSolve(**picked(self.start_solve))
        return dataclasses.replace(self, **{**picked(self), "start_solve": start})


@dataclasses.dataclass(frozen=True)
class BasisResult:
    """E5 on one amplitude basis.

    x: the ``n`` synthetic inputs; x_grid: the plotting grid.
    lambda_max, lambda_min_nonzero, rank_H: the spectrum of ``H = Phi^T Phi``.
    alpha: the Neumann / Unroll step ``alpha_scale / lambda_max``.
    u_pinv, u_pinv_norm, w_pinv_norm: the minimum-norm solution ``u* = y_o c / ||c||^2``, ``||u*||``,
      ``||Phi^+ u*||``; pinv_curve: its fitted model on ``x_grid``.
    dFdw_null_fraction: ``||phi_o - Phi^T c|| / ||phi_o||``, the part of ``dF/dw`` outside range(H).
    families: :class:`FamilyRuns` keyed by the names of :data:`FAMILIES` that ran.
    exact_rel_err: ``||u_Exact - u*|| / ||u*||``.
    neumann_unroll_rel_diff, damped_prox_rel_diff: the largest relative distance between the ``u``
      reached by Neumann(K) and Unroll(K) (PAPER.md §4.6), and by Damped(eps) and proximal (§4.7).
    max_F: the largest final F over every family but plain CG; cg_max_F: plain CG's.
    """

    basis: str
    x: np.ndarray
    x_grid: np.ndarray
    lambda_max: float
    lambda_min_nonzero: float
    rank_H: int
    alpha: float
    u_pinv: np.ndarray
    u_pinv_norm: float
    w_pinv_norm: float
    pinv_curve: np.ndarray
    dFdw_null_fraction: float
    families: dict[str, FamilyRuns]
    exact_rel_err: float
    neumann_unroll_rel_diff: float
    damped_prox_rel_diff: float
    max_F: float
    cg_max_F: float

    def to_dict(self) -> dict:
        return {
            "basis": self.basis,
            "x": self.x,
            "lambda_max": self.lambda_max,
            "lambda_min_nonzero": self.lambda_min_nonzero,
            "rank_H": self.rank_H,
            "alpha": self.alpha,
            "u_pinv": self.u_pinv,
            "u_pinv_norm": self.u_pinv_norm,
            "w_pinv_norm": self.w_pinv_norm,
            "dFdw_null_fraction": self.dFdw_null_fraction,
            **{name: runs.to_dict() for name, runs in self.families.items()},
            "exact_rel_err": self.exact_rel_err,
            "neumann_unroll_rel_diff": self.neumann_unroll_rel_diff,
            "damped_prox_rel_diff": self.damped_prox_rel_diff,
            "max_F": self.max_F,
            "cg_max_F": self.cg_max_F,
        }

    def with_ks(self, idx) -> BasisResult:
        """The Neumann and Unroll runs ``idx`` only (a K sweep's grid point), summaries recomputed."""
        families = dict(self.families)
        for name in ("neumann", "unroll"):
            families[name] = families[name].select(idx)
        return dataclasses.replace(
            self,
            families=families,
            neumann_unroll_rel_diff=max_rel_diff(families["neumann"].u, families["unroll"].u),
            max_F=max_F(families),
        )


def max_rel_diff(a, b) -> float:
    """``max_i ||a_i - b_i|| / ||a_i||`` over the rows."""
    return float(np.max(np.linalg.norm(a - b, axis=1) / np.linalg.norm(a, axis=1)))


def max_F(families: dict[str, FamilyRuns]) -> float:
    """Largest final F over every method except plain CG (which is reported on its own)."""
    return float(max(np.max(runs.F) for name, runs in families.items() if name != "cg"))


def _linear_program(cfg: Config):
    """The whole linear-basis part of E5 for one basis as a pure function of the basis' arrays, so that
    both bases run as one ``vmap`` (same shapes) and one compilation."""
    p = 2 * cfg.L + 1
    kmax = max(cfg.ks)
    y_o = cfg.y_orig
    names = FAMILIES if cfg.cgls else tuple(n for n in FAMILIES if n != "cgls")

    def program(Phi, phi_o, eps_grid, Pg):
        Pp = jnp.linalg.pinv(Phi)
        H = Phi.T @ Phi
        lam = jnp.linalg.eigvalsh(H)
        lam_max = lam[-1]
        alpha = cfg.alpha_scale / lam_max
        u0, w0 = jnp.zeros(cfg.n, Phi.dtype), jnp.zeros(p, Phi.dtype)
        c = Pp.T @ phi_o
        u_pinv = y_o * c / (c @ c)

        def f(u, w):
            return 0.5 * jnp.sum((Phi @ w - u) ** 2)

        def F(u, w):
            return 0.5 * (phi_o @ w - y_o) ** 2

        def w_star(u, w0_):
            """Minimum-displacement least-squares fit from w0 (w0 = 0: Phi^+ u)."""
            return w0_ + Pp @ (u - Phi @ w0_)

        problem = blo.Problem(inner=f, outer=F)
        closed = blo.ClosedForm(w_star, step_optimizer=optax.sgd(alpha))
        start = lambda u: w_star(u, w0)  # noqa: E731

        def make_prox(e):
            def f_prox(u, w):
                w_prime = jax.lax.stop_gradient(w_star(u, w0))
                return f(u, w) + 0.5 * e * jnp.sum((w - w_prime) ** 2)

            inner = blo.InnerLoop(optax.sgd(2.0 / (lam_max + 2.0 * e)), steps=cfg.prox_steps)
            return blo.Problem(inner=f_prox, outer=F), inner, blo.Unroll(steps=cfg.prox_steps), lambda u: w0

        every = {
            "exact": (lambda q: (problem, closed, blo.Exact(), start), jnp.zeros(1)),
            "neumann": (
                lambda K: (problem, closed, blo.Neumann(terms=K, lr=alpha), start),
                jnp.asarray(cfg.ks),
            ),
            "unroll": (
                lambda K: (problem, closed, blo.Unroll(steps=K, max_steps=kmax), start),
                jnp.asarray(cfg.ks),
            ),
            "damped": (
                lambda e: (problem, closed, blo.Damped(eps=e, rtol=cfg.damped_rtol, max_iters=10 * p), start),
                eps_grid,
            ),
            "proximal": (make_prox, eps_grid),
            "cg": (lambda K: (problem, closed, blo.CG(iters=K), start), jnp.asarray(cfg.cg_iters)),
            "cgls": (
                lambda K: (problem, closed, blo.CG(iters=K, normal=True), start),
                jnp.asarray(cfg.cg_iters),
            ),
        }
        out = dict(
            lam=lam,
            alpha=alpha,
            u_pinv=u_pinv,
            w_pinv=Pp @ u_pinv,
            c=c,
            H=H,
            phi_o=phi_o,
            null_part=phi_o - Phi.T @ c,
            pinv_curve=Pg @ (Pp @ u_pinv),
        )
        for name in names:
            make, params = every[name]
            # F*(u) = 1/2 (c^T u - y_o)^2 and g(u) = v (c^T u - y_o) with g(u0) = -y_o v: kappa = c^T v
            states, kappa, g0, hist = sweep(
                make, params, u0, w0, cfg.outer_steps, cfg.outer_eta, kappa_of=lambda g: -(c @ g) / y_o
            )
            U = states.u
            W = jax.vmap(lambda u: w_star(u, w0))(U)
            res = dict(
                params=params,
                u=U,
                w=W,
                F=jax.vmap(F)(U, W),
                F_history=hist["F"],
                kappa=kappa,
                diverged_step=states.diverged_step,
                direction=-g0 / y_o,  # g(u0) = v (c^T u0 - y_o) = -y_o v: the method's fixed direction
                curves=jax.vmap(lambda w: Pg @ w)(W),
            )
            if name in ("cg", "cgls"):

                def solve(K, u, w, normal=(name == "cgls")):
                    b = jax.grad(F, argnums=1)(u, w)
                    x, stats = blo.CG(iters=K, normal=normal).solve(lambda z: H @ z, b)
                    return jnp.linalg.norm(H @ x - b), stats.residual, stats.breakdown, jnp.linalg.norm(x)

                # the solve at the start u0: the direction v the whole run follows (at the end b ~ 0)
                tr, rr, brk, xn = jax.vmap(solve)(params, jnp.broadcast_to(u0, U.shape), jnp.zeros_like(W))
                res["start_solve"] = dict(
                    true_residual=tr, reported_residual=rr, breakdown=brk, solution_norm=xn
                )
            out[name] = res
        return out

    return program


def run_linear(cfg: Config, ctx) -> dict[str, BasisResult]:
    """Both bases' runs as one staged, compiled program (``ctx.stage("linear", ...)``), summarized."""
    xs = jnp.linspace(cfg.x_min, cfg.x_max, cfg.n)
    xg = jnp.linspace(cfg.x_min - 0.5, cfg.x_max + 0.5, 400)
    eps_of = {"exponential": cfg.eps_exponential, "inverse": cfg.eps_inverse}
    m = max(len(v) for v in eps_of.values())
    # the two damping grids must have the same length to be vmapped together: pad by repetition
    Phi = jnp.stack([fourier.features(xs, cfg.L, b) for b in cfg.bases])
    phi_o = jnp.stack([fourier.features(jnp.asarray(cfg.x_orig), cfg.L, b) for b in cfg.bases])
    Pg = jnp.stack([fourier.features(xg, cfg.L, b) for b in cfg.bases])
    eps = jnp.stack(
        [
            jnp.asarray(list(eps_of[b]) + [eps_of[b][-1]] * (m - len(eps_of[b])), dtype=float)
            for b in cfg.bases
        ]
    )
    program = jax.jit(jax.vmap(_linear_program(cfg)))
    raw = ctx.stage("linear", program, Phi, phi_o, eps, Pg)
    raw = jax.tree_util.tree_map(np.asarray, raw)
    out = {}
    for i, basis in enumerate(cfg.bases):
        r = jax.tree_util.tree_map(lambda a: a[i], raw)  # noqa: B023 - used in this iteration
        ne = len(eps_of[basis])
        for name in ("damped", "proximal"):
            r[name] = {k: v[:ne] for k, v in r[name].items()}
        # the NaN policy (toolkit): a diverged run stops the experiment, naming it; the raw numbers
        # stay in the "linear" stage. Plain CG is the exception: its breakdown is what E5 measures
        # (reported with diverged_step, and left out of max_F).
        for name in FAMILIES:
            if name in r and name != "cg":
                knob = "outer_eta / alpha_scale" if name in ("neumann", "unroll") else "outer_eta"
                toolkit.require_finite(
                    f"antidistill {basis} {name} (lower {knob})", diverged_step=r[name]["diverged_step"]
                )
        out[basis] = _summarize_basis(cfg, basis, r, np.asarray(xs), np.asarray(xg))
    return out


def _summarize_basis(cfg: Config, basis: str, r: dict, xs, xg) -> BasisResult:
    lam = r["lam"]
    p = lam.shape[0]
    lam_max = float(lam[-1])
    c = r["c"]
    families = {}
    for name in FAMILIES:
        if name not in r:
            continue
        x = r[name]
        U, v = x["u"], x["direction"]
        cv = v @ c
        predicted = cfg.y_orig * v / cv[:, None]
        families[name] = FamilyRuns(
            params=x["params"],
            u=U,
            u_norm=np.linalg.norm(U, axis=1),
            w_norm=np.linalg.norm(x["w"], axis=1),
            F=x["F"],
            F_history=x["F_history"],
            kappa=x["kappa"],
            c_dot_v=cv,
            diverged_step=x["diverged_step"],
            curves=x["curves"],
            predicted_u_rel_err=np.linalg.norm(U - predicted, axis=1) / np.linalg.norm(predicted, axis=1),
            start_solve=StartSolve(**x["start_solve"]) if "start_solve" in x else None,
        )
    # CG's spectral map (analysis.spectral): x_K = h_K(H) b with h_K(lam) = (1 - prod_j(1 - lam/theta_j))/lam,
    # theta_j the Ritz values of (H, b = dF/dw ~ phi_o). The null-space part of b pulls a Ritz value
    # toward 0 as K grows, and h_K then blows up on range(H).
    lam_range = lam[lam > p * np.finfo(lam.dtype).eps * lam_max]
    ritz_min, gain = [], []
    for K in np.asarray(families["cg"].params):
        theta = spectral.ritz_values(r["H"], r["phi_o"], int(K))
        ritz_min.append(float(np.min(theta)))
        gain.append(float(np.max(np.abs(spectral.cg(lam_range, theta) * lam_range))))
    families["cg"] = dataclasses.replace(
        families["cg"], ritz_min=np.asarray(ritz_min), max_gain_lambda_h=np.asarray(gain)
    )
    return BasisResult(
        basis=basis,
        x=xs,
        x_grid=xg,
        lambda_max=lam_max,
        lambda_min_nonzero=float(lam[-cfg.n]),
        rank_H=int(np.sum(lam > p * np.finfo(lam.dtype).eps * lam_max)),
        alpha=float(r["alpha"]),
        u_pinv=r["u_pinv"],
        u_pinv_norm=float(np.linalg.norm(r["u_pinv"])),
        w_pinv_norm=float(np.linalg.norm(r["w_pinv"])),
        pinv_curve=r["pinv_curve"],
        dFdw_null_fraction=float(np.linalg.norm(r["null_part"]) / np.linalg.norm(r["phi_o"])),
        families=families,
        exact_rel_err=float(
            np.linalg.norm(families["exact"].u[0] - r["u_pinv"]) / np.linalg.norm(r["u_pinv"])
        ),
        neumann_unroll_rel_diff=max_rel_diff(families["neumann"].u, families["unroll"].u),
        damped_prox_rel_diff=max_rel_diff(families["damped"].u, families["proximal"].u),
        max_F=max_F(families),
        cg_max_F=float(np.max(families["cg"].F)),
    )
