r"""E5: outer overparameterization — antidistillation (PAPER.md E5, Figs. 10–11).

One original point ``(x_o, y_o) = (0, 2)``; ``n`` synthetic points at fixed ``x_i`` (linearly spaced in
[-2, 2]) whose targets are the outer parameters ``u`` (``u0 = 0``). Inner: a linear model on Fourier
features, ``f(u, w) = 1/2 ||Phi w - u||^2`` (``n < 2L + 1``: overparameterized, ``H = Phi^T Phi``
singular); outer: ``F(u, w) = 1/2 (phi_o^T w - y_o)^2``. Cold start from ``w0 = 0``: the inner solution
is the minimum-norm fit ``w*(u) = Phi^+ u`` (given in closed form, :class:`blojax.ClosedForm`, because
gradient descent cannot converge with ``lambda_max(H) ~ 1e6``).

Every valid outer solution satisfies ``c^T u = y_o`` with ``c = Phi^{+T} phi_o`` (one equation, n
unknowns: the outer problem is overparameterized). Every IFT strategy gives a hypergradient
``g(u) = v (c^T u - y_o)`` with a *fixed* direction ``v = Phi h(H) phi_o`` (``h``: the method's spectral
map, :mod:`blojax.analysis.spectral`), so cold-start ends at ``u = y_o v / (c^T v)``; only ``Exact``
(``v = c``) reaches the minimum-norm ``u* = y_o c / ||c||^2``. Truncated methods (small K, large eps)
reach larger-norm, smoother ``u`` with a smaller-norm ``w``.

``Unroll(K)`` differentiates K SGD steps (step ``alpha``) taken from the inner solution ``w*(u)`` (a
stationary point), so it equals K-term Neumann (PAPER.md §4.6). The proximal run actually minimizes
``f(u, w) + eps/2 ||w - w'||^2`` (``w' = w*(u)`` held constant) by gradient descent from ``w0`` and
differentiates through the whole optimization; it matches ``Damped(eps)`` (PAPER.md §4.7).

The outer optimizer is SGD with step ``eta / kappa``, ``kappa = c^T v`` the curvature of ``F*`` along
the method's direction ``v`` (read off its first hypergradient ``g(u0) = -y_o v``): every method then
converges at the same rate ``(1 - eta)^t`` along its own direction, so the comparison is *where* they
end. (The MLP variant measures kappa by a secant of its hypergradient map at ``u0``.)

Plain CG meets an inconsistent system here: ``dF/dw ~ phi_o`` has a part in the null space of ``H``
(``x_o`` is not a synthetic input). That part pulls a Ritz value of ``(H, phi_o)`` toward 0 as K grows,
CG's spectral map explodes on range(H) and, at K = 10, the solve breaks down (zero curvature) and the
run does not fit the original point; the results report the Ritz values, the gain and the breakdown
flag. CGLS (``CG(normal=True)``) is run beside it and converges to the Exact answer.

The module holds the configuration, the typed results, ``run`` / ``run_batch`` and the claims; the
computation lives in ``_antidistill_linear.py`` (both Fourier bases, one compiled program),
``_antidistill_mlp.py`` (the MLP variant) and ``_antidistill_sweep.py`` (the vmapped cold-start sweep
and its outer step), the figures in :mod:`blojax.experiments.figures.antidistill`.
"""

from __future__ import annotations

import dataclasses
import math
import pathlib

import jax
import numpy as np

from blojax.data import fourier

from . import common
from ._antidistill_linear import FAMILIES, BasisResult, FamilyRuns, StartSolve, run_linear
from ._antidistill_mlp import MLP_FAMILIES, MLPResult, MLPRuns, run_mlp
from ._antidistill_sweep import first_step_sgd
from .claims import Claim, all_at_most, monotone
from .common import check_field, check_int_fields

__all__ = [
    "BATCH_FIELDS",
    "CLAIMS",
    "DESCRIPTION",
    "FAMILIES",
    "MLP_FAMILIES",
    "BasisResult",
    "Config",
    "FamilyRuns",
    "MLPResult",
    "MLPRuns",
    "Result",
    "StartSolve",
    "first_step_sgd",
    "plot",
    "run",
    "run_batch",
]

DESCRIPTION = (
    "E5 antidistillation: Fourier-feature regression, Exact/Neumann/Unroll/Damped/CG/proximal (Figs. 10-11)"
)


def _positive_ints(values) -> bool:
    return len(values) > 0 and all(isinstance(k, int) and not isinstance(k, bool) and k > 0 for k in values)


def _positive_floats(values) -> bool:
    return len(values) > 0 and all(
        isinstance(e, (int, float)) and not isinstance(e, bool) and math.isfinite(e) and e > 0 for e in values
    )


@dataclasses.dataclass(frozen=True)
class Config:
    """Settings of E5.

    n: synthetic points (default 12; the paper does not say. It must be < 2L + 1 = 21 so the inner
      problem stays overparameterized; even n keeps x = 0 — the original point — out of the synthetic
      grid, where it would make the answer trivial; 12 keeps H well conditioned on range(H)
      (lambda_min > 0 is ~2e2 / ~0.2 for the two bases) while the truncated methods stay far from Exact).
    L: Fourier frequencies (paper: 10).
    bases: amplitude schedules to run: "exponential" (a_l = 2^(L-l)) and/or "inverse" (a_l = 1/l).
    x_orig, y_orig: the original point (paper: (0, 2)).
    x_min, x_max: interval of the synthetic x (paper: [-2, 2]).
    ks: K for Neumann and Unroll (paper: 1, 10, 100, 1000).
    eps_exponential, eps_inverse: damping grids (paper: 1e4..1e7 for the exponential basis,
      0.1..100 for the 1/l basis).
    cg_iters: K for CG (paper: 1, 2, 5, 10).
    alpha_scale: Neumann/Unroll step alpha = alpha_scale / lambda_max(H) (paper silent; must be < 2 for
      the series to converge on range(H); 1 is the largest "safe" step).
    outer_steps, outer_eta: outer SGD steps and the relative step eta (step = eta / kappa, see the module
      docstring; paper silent). 0.5 halves the outer residual per step: 60 steps reach F ~ 1e-36.
    prox_steps: gradient-descent steps on the proximal inner problem (step 2 / (lambda_max + 2 eps),
      the optimal constant step; 3000 contracts the error by < 1e-12 for every eps of both grids).
    damped_rtol: CG tolerance of Damped (tight, float64, so Damped and proximal can be compared).
    cgls: also run CG on the normal equations (CGLS, ``CG(normal=True)``): the fix for CG's
      inconsistent system, beside plain CG (not in the paper).
    mlp: also run the MLP variant (Neumann and Unroll only, no closed form).
    mlp_width: hidden width of the one-hidden-layer tanh network (paper silent; 64 -> 193 weights for
      12 points). tanh with random biases rather than the library's ReLU MLP: a 1-D ReLU net with the
      usual zero initial biases has a rank-2 tangent kernel at init and barely fits 12 points.
    mlp_inner_steps: T, cold-start GD steps of the MLP from its fixed init (the last K are unrolled).
    mlp_inner_lr: the SGD step relative to 1 / lambda_max of the tangent-kernel (Gauss-Newton) matrix
      at the init (paper silent; 1 is the largest stable step for the fitted quadratic model).
    mlp_ks: K for the MLP variant (K <= mlp_inner_steps).
    mlp_outer_steps, mlp_outer_eta: outer SGD steps and relative step (kappa measured at u0).
    seed: seed of the MLP initialization (the linear part is deterministic).
    """

    n: int = 12
    L: int = 10
    bases: tuple = ("exponential", "inverse")
    x_orig: float = 0.0
    y_orig: float = 2.0
    x_min: float = -2.0
    x_max: float = 2.0
    ks: tuple = (1, 10, 100, 1000)
    eps_exponential: tuple = (1e4, 1e5, 1e6, 1e7)
    eps_inverse: tuple = (0.1, 1.0, 10.0, 100.0)
    cg_iters: tuple = (1, 2, 5, 10)
    alpha_scale: float = 1.0
    outer_steps: int = 60
    outer_eta: float = 0.5
    prox_steps: int = 3000
    damped_rtol: float = 1e-12
    cgls: bool = True
    mlp: bool = True
    mlp_width: int = 64
    mlp_inner_steps: int = 500
    mlp_inner_lr: float = 1.0
    mlp_ks: tuple = (1, 10, 100)
    mlp_outer_steps: int = 30
    mlp_outer_eta: float = 0.3
    seed: int = 0

    @classmethod
    def quick(cls) -> "Config":
        """The linear-basis claims with less work: K up to 100, fewer outer steps, and no MLP variant
        (its compilation alone takes longer than the quick budget)."""
        return cls(ks=(1, 10, 100), outer_steps=40, cgls=False, mlp=False)

    def validate(self) -> None:
        """Raise :class:`common.ConfigError` naming the first field out of range."""
        name = "Config"
        check_field(isinstance(self.L, int) and self.L >= 1, name, "L", "a positive integer", self.L)
        p = 2 * self.L + 1 if isinstance(self.L, int) else None
        check_field(
            isinstance(self.n, int) and not isinstance(self.n, bool) and self.n >= 1,
            name,
            "n",
            "a positive integer",
            self.n,
        )
        check_field(
            p is None or self.n < p,
            name,
            "n",
            f"< 2L + 1 = {p} (the number of Fourier features) so the inner problem is overparameterized",
            self.n,
        )
        check_field(
            isinstance(self.bases, (tuple, list))
            and len(self.bases) > 0
            and all(b in fourier.BASES for b in self.bases),
            name,
            "bases",
            f"a non-empty tuple of basis names from {fourier.BASES}",
            self.bases,
        )
        check_field(self.x_min < self.x_max, name, "x_min", "< x_max", self.x_min)
        for field in ("ks", "cg_iters", "mlp_ks"):
            check_field(
                _positive_ints(getattr(self, field)),
                name,
                field,
                "a non-empty tuple of positive integers (K > 0)",
                getattr(self, field),
            )
        for field in ("eps_exponential", "eps_inverse"):
            check_field(
                _positive_floats(getattr(self, field)),
                name,
                field,
                "a non-empty tuple of positive damping values (eps > 0)",
                getattr(self, field),
            )
        check_field(
            0 < self.alpha_scale < 2,
            name,
            "alpha_scale",
            "in (0, 2) (Neumann converges on range(H))",
            self.alpha_scale,
        )
        check_int_fields(
            self, ("outer_steps", "prox_steps", "mlp_width", "mlp_inner_steps", "mlp_outer_steps")
        )
        for field in ("outer_eta", "mlp_outer_eta"):
            v = getattr(self, field)
            check_field(0 < v < 2, name, field, "in (0, 2) (the relative outer step)", v)
        check_field(
            0 < self.mlp_inner_lr < 2,
            name,
            "mlp_inner_lr",
            "in (0, 2) (relative to 1 / lambda_max)",
            self.mlp_inner_lr,
        )
        check_field(self.damped_rtol > 0, name, "damped_rtol", "positive", self.damped_rtol)
        check_field(
            max(self.mlp_ks) <= self.mlp_inner_steps,
            name,
            "mlp_ks",
            f"<= mlp_inner_steps={self.mlp_inner_steps} (the unrolled steps are the last K)",
            self.mlp_ks,
        )


# --------------------------------------------------------------------------------- run / result
@dataclasses.dataclass(frozen=True)
class Result:
    """E5's numbers.

    config: the settings of the run.
    bases: one :class:`BasisResult` per amplitude basis, keyed by ``config.bases``: the reached outer
      ``u`` of every method family (Exact, Neumann(K), Unroll(K), Damped(eps), proximal, CG(K), CGLS),
      their norms and final ``F``, the minimum-norm reference ``u* = y_o c / ||c||^2`` and CG's
      diagnostics.
    mlp: the MLP variant (:class:`MLPResult`), ``None`` when ``config.mlp`` is off.
    """

    config: Config
    bases: dict[str, BasisResult]
    mlp: MLPResult | None

    def to_dict(self) -> dict:
        """``results.json``: every number but the per-step histories, the plotting curves and the
        directions (kept on the dataclasses for the figures)."""
        return common.to_jsonable(
            dict(
                bases={b: r.to_dict() for b, r in self.bases.items()},
                mlp=None if self.mlp is None else self.mlp.to_dict(),
            )
        )


def run(config: Config, ctx: common.RunContext | None = None) -> Result:
    """Both Fourier bases (one compiled program) and, with ``config.mlp``, the MLP variant, in float64.
    A run entry that turns non-finite stops the experiment (:func:`blojax.experiments.toolkit.require_finite`)
    naming the basis and family, except plain CG, whose breakdown is reported (``diverged_step``)."""
    ctx = common.ensure_context(ctx)
    config.validate()
    with jax.enable_x64(True):
        bases = run_linear(config, ctx)
        mlp = run_mlp(config, ctx) if config.mlp else None
    return Result(config, bases, mlp)


# --------------------------------------------------------------------------------- sweep hook
BATCH_FIELDS = ("ks",)


def run_batch(configs: list[Config], ctx: common.RunContext | None = None) -> list[Result]:
    """``blojax sweep`` hook: configs that differ only in ``ks`` run as ONE run over the union of their
    K values (each K is one entry of the vmapped Neumann/Unroll sweeps), and each config gets its own
    K entries back; the K-dependent summaries are recomputed on them."""
    ctx = common.ensure_context(ctx)
    union = tuple(sorted({k for c in configs for k in c.ks}))
    merged = run(dataclasses.replace(configs[0], ks=union), ctx)
    out = []
    for c in configs:
        idx = np.asarray([union.index(k) for k in c.ks])
        bases = {basis: r.with_ks(idx) for basis, r in merged.bases.items()}
        out.append(Result(c, bases, merged.mlp))
    return out


# --------------------------------------------------------------------------------- plots
def plot(result: Result, out_dir) -> list[pathlib.Path]:
    """E5's figures (:func:`blojax.experiments.figures.antidistill.plot`)."""
    from .figures import antidistill as figures

    return figures.plot(result, out_dir)


# ------------------------------------------------------------------------------------ claims ledger

_B = ("exponential", "inverse")


def _per_basis(key):
    return lambda r: {b: r["bases"][b][key] for b in _B}


def _norms(family, which):
    return lambda r: {
        b: {"exact": r["bases"][b]["exact"][which][0], family: r["bases"][b][family][which]} for b in _B
    }


def _u_toward_exact(o, decreasing):
    return all(
        monotone(v[f], decreasing=decreasing) and all(x >= v["exact"] * (1 - 1e-9) for x in v[f])
        for v in o.values()
        for f in v
        if f != "exact"
    )


def _w_toward_exact(o, increasing):
    return all(
        monotone(v[f], decreasing=not increasing) and all(x <= v["exact"] * (1 + 1e-9) for x in v[f])
        for v in o.values()
        for f in v
        if f != "exact"
    )


CLAIMS = (
    Claim(
        "E5.exact-reaches-min-norm",
        "Antidistillation: cold-start with exact hypergradients from u0 = 0 reaches the minimum-norm outer solution "
        "(relative error <= 1e-8, both bases)",
        "exact: the min-norm u (proved)",
        _per_basis("exact_rel_err"),
        lambda o: all_at_most(o.values(), 1e-8),
        "relative error <= 1e-8",
    ),
    Claim(
        "S4.6-neumann-equals-unroll",
        "§4.6: K steps of unrolling from a stationary w equal the K-term Neumann hypergradient: reached u agree to "
        "<= 1e-10 relative, every K, both bases",
        "equal (proved)",
        _per_basis("neumann_unroll_rel_diff"),
        lambda o: all_at_most(o.values(), 1e-10),
        "relative difference <= 1e-10",
    ),
    Claim(
        "S4.7-damped-equals-proximal",
        "§4.7: the damped-Hessian hypergradient equals that of the proximal inner problem: reached u agree to <= 1e-9",
        "equal (proved)",
        _per_basis("damped_prox_rel_diff"),
        lambda o: all_at_most(o.values(), 1e-9),
        "relative difference <= 1e-9",
    ),
    Claim(
        "E5.every-method-fits",
        "Antidistillation: every method (except plain CG) fits the original point: final F <= 1e-20",
        "every method fits the point",
        _per_basis("max_F"),
        lambda o: all_at_most(o.values(), 1e-20),
        "max final F <= 1e-20",
    ),
    Claim(
        "E5.u-norm-falls-with-K",
        "Truncated Neumann reaches larger-norm u than exact; ||u|| falls strictly toward exact's as K grows (both bases)",
        "larger-norm u, approaching exact as K grows",
        _norms("neumann", "u_norm"),
        lambda o: _u_toward_exact(o, decreasing=True),
        "strictly decreasing in K, every value >= exact (1 - 1e-9)",
    ),
    Claim(
        "E5.u-norm-falls-as-eps-shrinks",
        "Damped reaches larger-norm u than exact; ||u|| falls strictly toward exact's as eps shrinks (both bases)",
        "larger-norm u, approaching exact as eps shrinks",
        _norms("damped", "u_norm"),
        lambda o: _u_toward_exact(o, decreasing=False),
        "strictly increasing in eps, every value >= exact (1 - 1e-9)",
    ),
    Claim(
        "E5.w-norm-smaller",
        "Truncated methods reach smaller-norm w than exact: ||w|| rises toward exact's as K grows (Neumann) and as "
        "eps shrinks (damped)",
        "smaller-norm w",
        lambda r: {
            b: {
                "exact": r["bases"][b]["exact"]["w_norm"][0],
                "neumann": r["bases"][b]["neumann"]["w_norm"],
                "damped (eps falling)": r["bases"][b]["damped"]["w_norm"][::-1],
            }
            for b in _B
        },
        lambda o: _w_toward_exact(o, increasing=True),
        "strictly increasing toward exact, every value <= exact (1 + 1e-9)",
    ),
)


if __name__ == "__main__":
    from blojax.runner.cli import run_module

    raise SystemExit(run_module(__name__))
