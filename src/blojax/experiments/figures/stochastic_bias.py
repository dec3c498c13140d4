"""The figures of :mod:`blojax.experiments.stochastic_bias` (S1): where the stochastic solvers land
against the min-norm outer solution ``u_mn``."""

from __future__ import annotations

import pathlib
from typing import TYPE_CHECKING

import numpy as np

from blojax.experiments import common

if TYPE_CHECKING:
    from blojax.experiments.stochastic_bias import Result


def plot(result: Result, out_dir) -> list[pathlib.Path]:
    """The final distance to ``u_mn`` against the inner batch size (one panel per step scale), and the
    trajectories at the smallest batch (distance, drift along ``null(A)``, ``v`` in ``null(H)``)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from blojax.experiments.stochastic_bias import SOLVERS

    out = pathlib.Path(out_dir)
    cfg, paths = result.config, []
    colors = dict(zip(SOLVERS, plt.rcParams["axes.prop_cycle"].by_key()["color"]))
    # 1. final distance to the min-norm solution vs batch size, one panel per step scale
    fig, axes = plt.subplots(1, len(cfg.step_scales), figsize=(5 * len(cfg.step_scales), 4), squeeze=False)
    for ax, scale in zip(axes[0], cfg.step_scales):
        for name in cfg.solvers:
            rows = [r for r in result.table if r.solver == name and r.step_scale == scale]
            ax.plot(
                [r.batch for r in rows],
                [r.dist_mn if r.dist_mn is not None else np.nan for r in rows],
                "o-",
                color=colors[name],
                label=name,
            )
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("inner batch size")
        ax.set_ylabel(r"$\|u_T - u_{mn}\| / \|u_{mn} - u_0\|$")
        ax.set_title(f"step scale {scale:g}")
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    paths.append(common.save_figure(fig, out / "stochastic_bias_final.png"))
    plt.close(fig)
    # 2. trajectories at the smallest batch and first step scale: distance, drift along null(A), v in null(H)
    b, scale = min(cfg.batch_sizes), cfg.step_scales[0]
    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    for name in cfg.solvers:
        c = result.curve(name, b, scale)
        if c is None:
            continue
        x = np.linspace(0, cfg.steps, c.dist_mn.shape[1])
        for ax, y in zip(axes, (c.dist_mn, c.u_null, c.v_null)):
            ax.semilogy(x, np.median(y, axis=0), color=colors[name], label=name)
    for ax, t in zip(
        axes,
        (
            r"$\|u_k - u_{mn}\| / \|u_{mn} - u_0\|$",
            r"$\|P_{null(A)}(u_k - u_0)\|$ (drift along the solution set)",
            r"$\|P_{null(H)} v_k\|$",
        ),
    ):
        ax.set_title(t, fontsize=9)
        ax.set_xlabel("outer step")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    fig.suptitle(f"inner batch {b}, step scale {scale:g} (median over {cfg.seeds} seeds)")
    fig.tight_layout()
    paths.append(common.save_figure(fig, out / "stochastic_bias_trajectories.png"))
    plt.close(fig)
    return paths
