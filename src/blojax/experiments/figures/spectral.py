"""The figure of :mod:`blojax.experiments.spectral` (E8, Fig. 5): the spectral maps of the
hypergradient approximations and CG's polynomial."""

from __future__ import annotations

import pathlib
from typing import TYPE_CHECKING

from blojax.experiments import common

if TYPE_CHECKING:
    from blojax.experiments.spectral import Result


def plot(result: Result, out_dir) -> list[pathlib.Path]:
    """``spectral.png``: the maps ``h(lambda)``, the fraction ``lambda h(lambda)`` inverted, and CG's
    polynomial on an example (``lambda``: eigenvalue of ``H``)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir = pathlib.Path(out_dir)
    cfg = result.config
    lam = result.lam
    fig, axes = plt.subplots(1, 3, figsize=(17, 5))
    blues = plt.get_cmap("Blues")
    oranges = plt.get_cmap("Oranges")
    for ax, scaled in ((axes[0], False), (axes[1], True)):
        ax.plot(
            lam,
            lam * result.inverse if scaled else result.inverse,
            "k-",
            lw=2.5,
            label=r"inverse $1/\lambda$",
        )
        for i, K in enumerate(cfg.ks):
            y = result.neumann[i]
            ax.plot(
                lam,
                lam * y if scaled else y,
                "-",
                color=blues(0.4 + 0.6 * i / max(1, len(cfg.ks) - 1)),
                label=rf"Neumann / Unroll K={K} ($\alpha = 1/\lambda_{{max}}$)",
            )
        for i, e in enumerate(cfg.eps):
            y = result.damped[i]
            ax.plot(
                lam,
                lam * y if scaled else y,
                "--",
                color=oranges(0.4 + 0.6 * i / max(1, len(cfg.eps) - 1)),
                label=rf"damped $\epsilon$={e:g}",
            )
        ax.set_xscale("log")
        ax.set_xlabel(r"eigenvalue $\lambda$ of $H$")
        ax.grid(alpha=0.3, which="both")
    axes[0].set_yscale("log")
    axes[0].set_ylabel(r"$h(\lambda)$ (what replaces $1/\lambda$)")
    axes[0].set_title(r"Spectral maps $\lambda \to h(\lambda)$")
    axes[0].legend(fontsize=7)
    axes[1].set_ylabel(r"$\lambda\, h(\lambda)$ (1 = exactly inverted)")
    axes[1].set_title(
        r"Fraction inverted: high curvature inverted, low curvature ignored"
        "\n"
        r"(K-term Neumann $\approx$ damping with $\epsilon = 1/(\alpha K)$)",
        fontsize=9,
    )
    ax = axes[2]
    greens = plt.get_cmap("Greens")
    for i, K in enumerate(cfg.cg_ks):
        ax.plot(
            result.cg_grid,
            result.cg_grid * result.cg_maps[i],
            color=greens(0.4 + 0.6 * i / max(1, len(cfg.cg_ks) - 1)),
            label=f"CG, K={K}",
        )
    for j, e in enumerate(result.cg_eigenvalues):
        ax.axvline(e, color="0.6", lw=0.8, ls=":", label="eigenvalues of H" if j == 0 else None)
    ax.axhline(1.0, color="k", lw=1)
    ax.set_xscale("log")
    ax.set_ylim(-1.5, 2.5)
    ax.set_xlabel(r"$\lambda$")
    ax.set_ylabel(r"$\lambda\, h_{CG}(\lambda)$")
    ax.set_title(
        "CG: a polynomial fitted to the eigenvalues that b excites\n"
        r"($h_{CG}(\lambda) = (1 - \prod_j (1 - \lambda/\theta_j))/\lambda$, $\theta_j$ Ritz values)",
        fontsize=9,
    )
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3, which="both")
    worst = max(d.value for d in result.deviations)
    fig.suptitle(
        f"E8: spectral picture of the hypergradient approximations (checked against the library's solvers on "
        f"{cfg.trials} random PSD matrices: max relative deviation {worst:.1e})",
        fontsize=10,
    )
    fig.tight_layout()
    return [common.save_figure(fig, out_dir / "spectral.png")]
