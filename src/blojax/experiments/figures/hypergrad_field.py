"""The figure of :mod:`blojax.experiments.hypergrad_field` (E6, Fig. 11c): cold-start outer
trajectories and the hypergradient field over the contours of ``F*``."""

from __future__ import annotations

import pathlib
from typing import TYPE_CHECKING

import numpy as np

from blojax.experiments import common

if TYPE_CHECKING:
    from blojax.experiments.hypergrad_field import Result


def plot(result: Result, out_dir) -> list[pathlib.Path]:
    """``hypergrad_field.png``: the trajectories over the contours of ``F*`` and the normalized descent
    directions ``-g(u)`` of Exact and Neumann K=1."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir = pathlib.Path(out_dir)
    fld = result.field
    fig, axes = plt.subplots(1, 2, figsize=(13, 5.8))
    ax = axes[0]
    cs = ax.contourf(fld.u1, fld.u2, np.log10(fld.F + 1e-6), levels=20, cmap="Greys_r", alpha=0.8)
    fig.colorbar(cs, ax=ax, label=r"$\log_{10}(F^*(u) + 10^{-6})$")
    g = fld.u1[0]
    c = fld.c
    ax.plot(g, (result.config.y_orig - c[0] * g) / c[1], "w--", lw=1.5, label=r"outer solutions $F^* = 0$")
    colors = ["k"] + [
        plt.get_cmap("autumn")(i / max(1, len(result.methods) - 1)) for i in range(1, len(result.methods))
    ]
    for i, name in enumerate(result.methods):
        tr = result.trajectories[i]
        ax.plot(tr[:, 0], tr[:, 1], "-", color=colors[i] if i else "tab:blue", lw=2)
        ax.plot(tr[::5, 0], tr[::5, 1], ".", color=colors[i] if i else "tab:blue", ms=5)
        ax.plot(
            *result.final_u[i],
            "o",
            color=colors[i] if i else "tab:blue",
            ms=9,
            mec="k",
            label=f"{name}: ends at ({result.final_u[i][0]:.3f}, {result.final_u[i][1]:.3f})",
        )
    ax.plot(*result.trajectories[0, 0], "ks", ms=8, label="start $u_0$")
    ax.set_xlim(g[0], g[-1])
    ax.set_ylim(g[0], g[-1])
    ax.set_aspect("equal")
    ax.set_xlabel("$u_1$ (target of the synthetic point at x = 0)")
    ax.set_ylabel("$u_2$ (target of the synthetic point at x = 2)")
    ax.set_title("Cold-start outer trajectories over the contours of $F^*$")
    ax.legend(fontsize=7, loc="upper right")
    ax = axes[1]
    ax.contour(fld.u1, fld.u2, np.log10(fld.F + 1e-6), levels=12, colors="0.7", linewidths=0.7)
    ax.plot(g, (result.config.y_orig - c[0] * g) / c[1], "k--", lw=1)
    step = max(1, len(g) // 8)
    sl = (slice(None, None, step), slice(None, None, step))
    for i, name in enumerate(result.methods[:2]):
        G = -fld.g[i]
        nrm = np.linalg.norm(G, axis=-1, keepdims=True)
        G = G / np.where(nrm == 0, 1, nrm)
        ax.quiver(
            fld.u1[sl],
            fld.u2[sl],
            G[sl][..., 0],
            G[sl][..., 1],
            color=colors[i] if i else "tab:blue",
            scale=14,
            width=0.006,
            label=name,
            alpha=0.85,
        )
    ax.set_aspect("equal")
    ax.set_xlabel("$u_1$")
    ax.set_ylabel("$u_2$")
    ax.set_title("Descent directions $-g(u)$ (normalized): Exact vs Neumann K=1")
    ax.legend(fontsize=7, loc="upper right")
    fig.suptitle(
        "E6: exact hypergradients reach the outer solution nearest $u_0$, (1, 1); "
        "K-term Neumann reaches other points of $u_1 + u_2 = 2$",
        fontsize=10,
    )
    fig.tight_layout()
    return [common.save_figure(fig, out_dir / "hypergrad_field.png")]
