"""The figures of :mod:`blojax.experiments.stochastic_bias` (S1): where the stochastic solvers land
against the min-norm outer solution ``u_mn``, on the quadratic problem and (when it ran) on the
antidistillation problem."""

from __future__ import annotations

import pathlib
from typing import TYPE_CHECKING

import numpy as np

from blojax.experiments import common

if TYPE_CHECKING:
    from blojax.experiments.stochastic_bias import Result


def _colors(plt):
    from blojax.experiments.stochastic_bias import SOLVERS

    return dict(zip(SOLVERS, plt.rcParams["axes.prop_cycle"].by_key()["color"]))


def _final(plt, table, solvers, step_scales, path, title=""):
    """The final distance to ``u_mn`` against the inner batch size, one panel per step scale."""
    colors = _colors(plt)
    fig, axes = plt.subplots(1, len(step_scales), figsize=(5 * len(step_scales), 4), squeeze=False)
    for ax, scale in zip(axes[0], step_scales):
        for name in solvers:
            rows = [r for r in table if r.solver == name and r.step_scale == scale]
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
        ax.set_title(f"{title}step scale {scale:g}")
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    out = common.save_figure(fig, path)
    plt.close(fig)
    return out


def _trajectories(plt, curve, solvers, steps, seeds, b, scale, path, title=""):
    """Distance to ``u_mn``, drift along ``null(A)`` and ``v`` in ``null(H)`` along the run (medians)."""
    colors = _colors(plt)
    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    for name in solvers:
        c = curve(name, b, scale)
        if c is None:
            continue
        x = np.linspace(0, steps, c.dist_mn.shape[1])
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
    fig.suptitle(f"{title}inner batch {b}, step scale {scale:g} (median over {seeds} seeds)")
    fig.tight_layout()
    out = common.save_figure(fig, path)
    plt.close(fig)
    return out


def _points(plt, ad, solvers, batch_sizes, scale, path):
    """E5's picture: the learned targets ``u_T`` at the synthetic ``x_i`` (median over seeds) for the full
    and the smallest batch, against ``u_mn`` and the full-batch cold-``v`` predictions ``u_J``."""
    colors = _colors(plt)
    bs = sorted({max(batch_sizes), min(batch_sizes)}, reverse=True)
    fig, axes = plt.subplots(1, len(bs), figsize=(6 * len(bs), 4), squeeze=False)
    bound = 4 * float(np.max(np.abs(ad.u_mn)))
    for ax, b in zip(axes[0], bs):
        ax.plot(ad.x, ad.u_mn, "k-", lw=3, alpha=0.3, label=r"$u_{mn}$ (min-norm)")
        for p in ad.predictions:
            if p.step_scale == scale:
                ax.plot(ad.x, p.u, ":", color=colors[p.solver], label=f"{p.solver}: $u_J$, J={p.terms}")
        for name in solvers:
            c = ad.curve(name, b, scale)
            if c is None:
                continue
            u = np.median(c.u_final, axis=0)
            if not np.all(np.isfinite(u)) or np.max(np.abs(u)) > bound:
                continue  # off the scale (F2SA at large steps): its numbers are in the table
            ax.plot(ad.x, u, "o-", ms=3, color=colors[name], label=name)
        ax.set_xlabel("x (synthetic inputs)")
        ax.set_ylabel("learned target u")
        ax.set_title(f"inner batch {b}, step scale {scale:g}")
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=6)
    fig.tight_layout()
    out = common.save_figure(fig, path)
    plt.close(fig)
    return out


def plot(result: Result, out_dir) -> list[pathlib.Path]:
    """``stochastic_bias_final.png`` (final distance to ``u_mn`` against the inner batch size, one panel
    per step scale) and ``stochastic_bias_trajectories.png`` (the runs at the smallest batch); with the
    antidistillation problem also ``stochastic_bias_antidistill_{final,trajectories,points}.png``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = pathlib.Path(out_dir)
    cfg = result.config
    paths = [
        _final(plt, result.table, cfg.solvers, cfg.step_scales, out / "stochastic_bias_final.png"),
        _trajectories(
            plt,
            result.curve,
            cfg.solvers,
            cfg.steps,
            cfg.seeds,
            min(cfg.batch_sizes),
            cfg.step_scales[0],
            out / "stochastic_bias_trajectories.png",
        ),
    ]
    ad = result.antidistill
    if ad is not None and cfg.antidistill is not None:
        bs, t = cfg.antidistill.batch_sizes, "antidistillation, "
        paths += [
            _final(
                plt, ad.table, cfg.solvers, cfg.step_scales, out / "stochastic_bias_antidistill_final.png", t
            ),
            _trajectories(
                plt,
                ad.curve,
                cfg.solvers,
                cfg.steps,
                cfg.seeds,
                min(bs),
                cfg.step_scales[0],
                out / "stochastic_bias_antidistill_trajectories.png",
                t,
            ),
            _points(
                plt, ad, cfg.solvers, bs, cfg.step_scales[0], out / "stochastic_bias_antidistill_points.png"
            ),
        ]
    return paths
