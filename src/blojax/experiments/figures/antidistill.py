r"""Figures of E5 (antidistillation, PAPER.md Figs. 10-11): per basis, the learned synthetic points ``u``
with the minimum-norm fit through them, and ``||u||``, ``||w||`` against K and eps; the MLP variant's
points and ``||u||`` against K. matplotlib is imported inside the functions."""

from __future__ import annotations

import pathlib
from typing import TYPE_CHECKING

import numpy as np

from .. import common

if TYPE_CHECKING:
    from .._antidistill_linear import BasisResult
    from .._antidistill_mlp import MLPResult
    from ..antidistill import Config, Result

_LABEL_OF = {"exponential": "exponential amplitudes $a_l = 2^{L-l}$", "inverse": "amplitudes $a_l = 1/l$"}


def _fmt(v):
    return f"{v:g}"


def _plot_family(ax, x, x_grid, runs, sym):
    """One curve and its learned points per parameter value of ``runs`` (viridis, in order)."""
    import matplotlib.pyplot as plt

    cmap = plt.get_cmap("viridis")
    m = len(runs.params)
    for i in range(m):
        col = cmap(i / max(1, m - 1))
        ax.plot(x_grid, runs.curves[i], color=col, lw=1.2)
        ax.plot(x, runs.u[i], "o", color=col, ms=4, label=f"{sym} = {_fmt(runs.params[i])}")


def _points(cfg: Config, r: BasisResult, out_dir: pathlib.Path) -> pathlib.Path:
    """Learned points and fitted functions: Neumann/Unroll, Damped/proximal, CG (one panel each)."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(16, 4.6), sharey=True)
    panels = [
        ("Neumann / Unroll, K terms", "neumann", "K"),
        (r"Damped $(H+\epsilon I)^{-1}$ (+ proximal)", "damped", r"$\epsilon$"),
        ("CG, K steps (inconsistent system)", "cg", "K"),
    ]
    for ax, (title, name, sym) in zip(axes, panels):
        _plot_family(ax, r.x, r.x_grid, r.families[name], sym)
        ax.plot(r.x_grid, r.pinv_curve, "k--", lw=1.2)
        ax.plot(r.x, r.u_pinv, "ks", ms=4, mfc="none", label="Exact (pseudoinverse)")
        ax.plot([cfg.x_orig], [cfg.y_orig], "r*", ms=14, label="original point")
        ax.set_title(title)
        ax.set_xlabel("x")
        ax.axvspan(cfg.x_min - 0.5, cfg.x_min, color="0.93")
        ax.axvspan(cfg.x_max, cfg.x_max + 0.5, color="0.93")
        ax.legend(fontsize=7, loc="lower left")
    lo = min(np.min(r.families[k].u) for k in ("neumann", "damped", "exact"))
    hi = max(np.max(r.families[k].u) for k in ("neumann", "damped", "exact"))
    pad = 0.4 * (hi - lo)
    axes[0].set_ylim(lo - pad, hi + pad)
    axes[0].set_ylabel("y (points: learned u; lines: fitted model)")
    fig.suptitle(
        f"E5 antidistillation, {_LABEL_OF[r.basis]}: learned synthetic points (outer u) and the "
        f"min-norm fit through them; every method fits the original point (0, 2)",
        fontsize=10,
    )
    return common.save_figure(fig, out_dir / f"antidistill_{r.basis}_points.png")


def _norms(r: BasisResult, out_dir: pathlib.Path) -> pathlib.Path:
    """``||u||`` (top) and ``||w||`` (bottom) against K (Neumann, Unroll), eps (Damped, proximal) and
    CG's K, with the pseudoinverse reference."""
    import matplotlib.pyplot as plt

    fam = r.families
    fig, axes = plt.subplots(2, 3, figsize=(14, 7))
    for row, key, ref, lab in (
        (0, "u_norm", r.u_pinv_norm, r"$\|u\|$"),
        (1, "w_norm", r.w_pinv_norm, r"$\|w\|$"),
    ):
        ax = axes[row, 0]
        ax.plot(fam["neumann"].params, getattr(fam["neumann"], key), "o-", label="Neumann")
        ax.plot(fam["unroll"].params, getattr(fam["unroll"], key), "x--", ms=9, label="Unroll (from $w^*$)")
        ax.axhline(ref, color="k", ls=":", label="pseudoinverse (Exact)")
        ax.set_xscale("log")
        ax.set_xlabel("K (terms / unrolled steps)")
        ax.set_ylabel(lab)
        ax = axes[row, 1]
        ax.plot(fam["damped"].params, getattr(fam["damped"], key), "o-", label="Damped (IFT)")
        ax.plot(
            fam["proximal"].params,
            getattr(fam["proximal"], key),
            "x--",
            ms=9,
            label="proximal inner optimization",
        )
        ax.axhline(ref, color="k", ls=":", label="pseudoinverse (Exact)")
        ax.set_xscale("log")
        ax.set_xlabel(r"damping $\epsilon$")
        ax = axes[row, 2]
        cg = fam["cg"]
        ax.plot(cg.params, np.abs(getattr(cg, key)), "o-", color="C3", label="CG")
        for K, val, Fv in zip(cg.params, np.abs(getattr(cg, key)), cg.F):
            if not Fv < 1e-6:  # the run did not fit the original point
                ax.plot([K], [val], "kx", ms=12, mew=2)
                ax.annotate(
                    f"no fit: F = {Fv:.1e}",
                    (K, val),
                    textcoords="offset points",
                    xytext=(-95, -4),
                    fontsize=7,
                )
        if "cgls" in fam:
            ax.plot(
                fam["cgls"].params,
                getattr(fam["cgls"], key),
                "s--",
                color="C2",
                label="CGLS (normal equations)",
            )
        ax.axhline(ref, color="k", ls=":", label="pseudoinverse (Exact)")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("K (CG iterations)")
        for a in axes[row]:
            a.set_yscale("log")
            a.legend(fontsize=7)
            a.grid(alpha=0.3, which="both")
    axes[0, 0].set_title(r"against K: $\|u\|$ falls, $\|w\|$ rises toward Exact")
    axes[0, 1].set_title(r"against $\epsilon$: smaller $\epsilon$ approaches Exact")
    axes[0, 2].set_title("CG: norms per K")
    fig.suptitle(
        f"E5 antidistillation, {_LABEL_OF[r.basis]}: norms of the reached outer (u) and inner (w) solutions",
        fontsize=10,
    )
    fig.tight_layout()
    return common.save_figure(fig, out_dir / f"antidistill_{r.basis}_norms.png")


def _mlp(cfg: Config, r: MLPResult, out_dir: pathlib.Path) -> pathlib.Path:
    """The MLP variant: learned points and fitted networks per K (Neumann, Unroll), ``||u||`` against K."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(15, 4.4))
    for ax, name, title in (
        (axes[0], "neumann", "MLP, Neumann K terms"),
        (axes[1], "unroll", "MLP, Unroll last K steps"),
    ):
        _plot_family(ax, r.x, r.x_grid, r.families[name], "K")
        ax.plot([cfg.x_orig], [cfg.y_orig], "r*", ms=14, label="original point")
        ax.set_title(title)
        ax.set_xlabel("x")
        ax.set_ylabel("y")
        ax.legend(fontsize=7)
    ax = axes[2]
    ne, un = r.families["neumann"], r.families["unroll"]
    ax.plot(ne.params, ne.u_norm, "o-", label=r"$\|u\|$ Neumann")
    ax.plot(un.params, un.u_norm, "x--", ms=9, label=r"$\|u\|$ Unroll")
    ax.set_xscale("log")
    ax.set_xlabel("K")
    ax.set_ylabel(r"$\|u\|$")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    ax.set_title("MLP: norm of the learned points against K")
    fig.suptitle(
        f"E5 antidistillation with a one-hidden-layer tanh network ({r.n_weights} weights, cold start, "
        f"T = {cfg.mlp_inner_steps} SGD steps from a fixed init; no closed form)",
        fontsize=10,
    )
    fig.tight_layout()
    return common.save_figure(fig, out_dir / "antidistill_mlp.png")


def plot(result: Result, out_dir) -> list[pathlib.Path]:
    """Write E5's figures into ``out_dir``: ``antidistill_<basis>_points.png`` and
    ``antidistill_<basis>_norms.png`` per basis, ``antidistill_mlp.png`` with the MLP variant."""
    import matplotlib

    matplotlib.use("Agg")

    out_dir = pathlib.Path(out_dir)
    paths = []
    for r in result.bases.values():
        paths.append(_points(result.config, r, out_dir))
        paths.append(_norms(r, out_dir))
    if result.mlp is not None:
        paths.append(_mlp(result.config, result.mlp, out_dir))
    return paths
