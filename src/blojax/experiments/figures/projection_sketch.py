"""The figure of :mod:`blojax.experiments.projection_sketch` (E7, Fig. 8): cold-start and full /
partial warm-start as projections onto four cyclic solution lines."""

from __future__ import annotations

import pathlib
from typing import TYPE_CHECKING

import numpy as np

from blojax.experiments import common

if TYPE_CHECKING:
    from blojax.experiments.projection_sketch import Result


def plot(result: Result, out_dir) -> list[pathlib.Path]:
    """``projection_sketch.png``: per case, the iterates in weight space over the solution lines
    ``S_t``, and the fitted lines of the last pass in data space."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir = pathlib.Path(out_dir)
    cfg = result.config
    m = len(cfg.xs)
    fig, axes = plt.subplots(2, 2, figsize=(13, 11))
    set_colors = [plt.get_cmap("tab10")(i) for i in range(m)]
    styles = {
        "cold": ("s", "tab:gray", "cold-start: $P_{S_t}(w_0)$"),
        "warm_full": ("o", "k", "full warm-start: $P_{S_t}(w_{t-1})$"),
        "warm_partial": ("^", "tab:purple", f"partial warm-start ({cfg.partial_steps} GD steps)"),
    }
    for row, case in enumerate(("consistent", "inconsistent")):
        r = getattr(result, case)
        ax = axes[row, 0]
        allw = np.concatenate([r.runs[k].iterates for k in styles])
        lo, hi = allw.min(0) - 0.6, allw.max(0) + 0.6
        g = np.linspace(lo[0], hi[0], 50)
        for t in range(m):
            x, y = r.data[t]
            ax.plot(
                g,
                y - x * g,
                color=set_colors[t],
                lw=1.5,
                label=f"$S_{t + 1}$: $w_1 \\cdot {x:g} + w_2 = {y:.2f}$",
            )
        for name, (mk, col, lab) in styles.items():
            ws = r.runs[name].iterates
            n_show = min(len(ws), 4 * m + 1)
            if name != "cold":
                ax.plot(ws[:n_show, 0], ws[:n_show, 1], "-", color=col, lw=0.8, alpha=0.7)
            ax.plot(
                ws[1:n_show, 0],
                ws[1:n_show, 1],
                mk,
                color=col,
                ms=6,
                mfc="none" if name == "cold" else col,
                label=lab,
            )
            info = r.runs[name]
            desc = (
                "converges"
                if info.converged
                else (f"limit cycle, period {info.period}" if info.period else "no cycle found")
            )
            pts = info.cycle_points
            ax.plot(pts[:, 0], pts[:, 1], mk, color=col, ms=13, mfc="none", mew=2, label=f"   tail: {desc}")
        ax.plot(*cfg.w0, "k*", ms=14, label="$w_0$")
        ax.set_xlim(lo[0], hi[0])
        ax.set_ylim(lo[1], hi[1])
        ax.set_xlabel("$w_1$ (slope)")
        ax.set_ylabel("$w_2$ (intercept)")
        title = "lines share a point" if r.lines_have_common_point else "no common point"
        ax.set_title(f"Weight space, {case} data ({title}); first {4} passes shown")
        ax.legend(fontsize=7, loc="best")
        # data space
        ax = axes[row, 1]
        xg = np.linspace(min(cfg.xs) - 0.5, max(cfg.xs) + 0.5, 50)
        for t in range(m):
            x, y = r.data[t]
            ax.plot(
                [x],
                [y],
                "o",
                color=set_colors[t],
                ms=11,
                mec="k",
                label=f"datapoint {t + 1} (defines $S_{t + 1}$)",
            )
        for name in ("warm_full", "cold"):
            mk, col, lab = styles[name]
            tail = r.runs[name].iterates[-m:]
            for k, w in enumerate(tail):
                t = (len(r.runs[name].iterates) - 1 - m + k) % m
                ax.plot(
                    xg,
                    w[0] * xg + w[1],
                    "-" if name == "warm_full" else ":",
                    color=set_colors[t],
                    lw=1.3,
                    label=(f"{lab.split(':')[0]} fits (last pass)" if k == 0 else None),
                )
        ax.set_xlabel("x")
        ax.set_ylabel("y")
        ax.set_title(
            f"Data space, {case}: the fitted lines $y = w_1 x + w_2$ of the last pass\n"
            "(solid: full warm-start, dotted: cold-start; colour = datapoint just fitted)"
        )
        ax.legend(fontsize=7, loc="best")
    fig.suptitle(
        "E7: warm-start remembers — full warm-start projects the previous $w$ (alternating projections), "
        "cold-start re-projects $w_0$",
        fontsize=11,
    )
    fig.tight_layout()
    return [common.save_figure(fig, out_dir / "projection_sketch.png")]
