"""Figures of E2 (:mod:`blojax.experiments.rings`): decision boundaries of the warm-start, retrained and
cold-start models, outer loss warm vs retrain, soft-label trajectories, and an animation of the joint
dynamics of points and model. matplotlib (and PIL for the GIF) are imported inside the functions."""

from __future__ import annotations

import io
import pathlib
from typing import TYPE_CHECKING

import jax
import jax.numpy as jnp
import numpy as np

from blojax.experiments import common
from blojax.experiments._distill2d import labels_of
from blojax.models.mlp import mlp_apply

if TYPE_CHECKING:
    from blojax.experiments._rings_variant import Variant
    from blojax.experiments.rings import Result

__all__ = ["plot", "plot_boundaries", "plot_losses", "plot_soft_labels", "animate"]

_COLORS = ["tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple", "tab:brown"]


def _grid(C, n=140):
    lim = C + 0.8
    g = np.linspace(-lim, lim, n)
    GX, GY = np.meshgrid(g, g)
    return GX, GY, np.stack([GX.ravel(), GY.ravel()], -1).astype(np.float32)


def _boundary(ax, w, C, data, title):
    from matplotlib.colors import ListedColormap

    GX, GY, G = _grid(C)
    pred = np.asarray(jnp.argmax(mlp_apply(w, jnp.asarray(G)), -1)).reshape(GX.shape)
    cmap = ListedColormap(_COLORS[:C])
    ax.contourf(GX, GY, pred, levels=np.arange(C + 1) - 0.5, cmap=cmap, alpha=0.18)
    ax.contour(GX, GY, pred, levels=np.arange(C) + 0.5, colors="k", linewidths=0.8)
    ax.scatter(data.x[:, 0], data.x[:, 1], c=[_COLORS[int(c)] for c in data.y], s=3, alpha=0.6)
    ax.set_xlim(GX.min(), GX.max())
    ax.set_ylim(GY.min(), GY.max())
    ax.set_aspect("equal")
    ax.set_title(title, fontsize=9)
    ax.set_xticks([])
    ax.set_yticks([])


def _take(tree, i):
    return jax.tree_util.tree_map(lambda a: a[i], tree)


def _points(ax, x, C, labels=None, marker="*", size=140):
    for c in range(C):
        col = _COLORS[int(np.argmax(labels[c]))] if labels is not None else _COLORS[c]
        ax.scatter(x[c, 0], x[c, 1], marker=marker, s=size, c=col, edgecolors="k", linewidths=1.0, zorder=5)


def plot_boundaries(v: Variant, out_dir, seed_index=0) -> pathlib.Path:
    """The test split and the decision boundaries of the warm-start model (with the points' recent
    trajectory and snapshots), the model retrained on the final points, and cold-start's model."""
    import matplotlib.pyplot as plt

    C, s = v.n_classes, seed_index
    fig, axs = plt.subplots(1, 4, figsize=(13, 3.6))
    test = v.test
    ax = axs[0]
    ax.scatter(test.x[:, 0], test.x[:, 1], c=[_COLORS[int(c)] for c in test.y], s=3)
    ax.set_aspect("equal")
    ax.set_title(f"original data ({C} rings, test split)", fontsize=9)
    ax.set_xticks([])
    ax.set_yticks([])
    acc = v.snap_acc[s, -1]
    traj = v.x_traj[s]
    labs = v.label_traj[s]
    tail = min(300, traj.shape[0])
    _boundary(
        axs[1],
        _take(v.w_warm, s),
        C,
        test,
        f"warm-start model; points: last {tail} steps (lines),\n{len(v.snap_step)} snapshots (dots); accuracy {acc:.0%}",
    )
    for c in range(C):
        col = _COLORS[int(np.argmax(labs[-1, c]))]
        axs[1].plot(traj[-tail:, c, 0], traj[-tail:, c, 1], "-", color=col, lw=0.5, alpha=0.6)
        snaps = v.snap_x[s][:, c]
        axs[1].scatter(
            snaps[:, 0],
            snaps[:, 1],
            s=12,
            c=[_COLORS[int(np.argmax(lab))] for lab in v.snap_labels[s][:, c]],
            edgecolors="k",
            linewidths=0.4,
            zorder=4,
        )
    _points(axs[1], v.u_warm["x"][s], C, labs[-1])
    _boundary(
        axs[2],
        _take(v.w_retrain, s),
        C,
        test,
        f"retrain on final points\naccuracy {v.retrain_acc[s, -1]:.0%}",
    )
    _points(axs[2], v.snap_x[s][-1], C, v.snap_labels[s][-1])
    _boundary(
        axs[3],
        _take(v.w_cold, s),
        C,
        test,
        f"cold-start (T fixed-init steps)\naccuracy {v.cold_acc[s]:.0%}",
    )
    _points(
        axs[3],
        v.u_cold["x"][s],
        C,
        np.asarray(labels_of({k: jnp.asarray(a[s]) for k, a in v.u_cold.items()}, C)),
    )
    fig.suptitle(
        f"{v.tag}: decision boundaries (seed index {s}); stars: synthetic points, dots: trajectory snapshots",
        fontsize=10,
    )
    return common.save_figure(fig, pathlib.Path(out_dir) / f"boundaries_{v.tag}.png")


def plot_losses(result: Result, out_dir) -> pathlib.Path:
    """Outer loss ``F`` along warm-start and of a fresh model retrained on each snapshot."""
    import matplotlib.pyplot as plt

    variants = result.variants
    fig, axs = plt.subplots(1, len(variants), figsize=(3.6 * len(variants), 3.2), squeeze=False)
    for ax, v in zip(axs[0], variants):
        steps = np.arange(1, v.warm_F.shape[1] + 1)
        m = v.warm_F.mean(0)
        ax.plot(steps, m, color="tab:blue", lw=1, label="warm-start model")
        ax.fill_between(steps, v.warm_F.min(0), v.warm_F.max(0), color="tab:blue", alpha=0.2, lw=0)
        rs = v.snap_step
        ax.plot(rs, v.retrain_F.mean(0), "o-", color="tab:red", ms=3, lw=1, label="retrain on snapshot")
        ax.fill_between(rs, v.retrain_F.min(0), v.retrain_F.max(0), color="tab:red", alpha=0.2, lw=0)
        ax.set_yscale("log")
        ax.set_xlabel("outer iteration")
        ax.set_ylabel("outer loss F (train split, CE)")
        ax.set_title(v.tag, fontsize=9)
        ax.legend(fontsize=7)
    fig.suptitle(
        f"Outer loss: warm-start vs retrain (mean, band: min–max over {result.config.seeds} seeds)",
        fontsize=10,
    )
    fig.tight_layout()
    return common.save_figure(fig, pathlib.Path(out_dir) / "outer_loss_warm_vs_retrain.png")


def plot_soft_labels(result: Result, out_dir, seed_index=0) -> pathlib.Path | None:
    """Each point's learned label probabilities along warm-start (soft-label variants; ``None`` when
    there are none)."""
    import matplotlib.pyplot as plt

    soft = [v for v in result.variants if v.soft]
    if not soft:
        return None
    ncols = max(v.n_classes for v in soft)
    fig, axs = plt.subplots(len(soft), ncols, figsize=(3.3 * ncols, 2.6 * len(soft)), squeeze=False)
    for r, v in enumerate(soft):
        C = v.n_classes
        lt = v.label_traj[seed_index]  # (steps, C, C)
        steps = np.arange(1, lt.shape[0] + 1)
        for j in range(ncols):
            ax = axs[r, j]
            if j >= C:
                ax.axis("off")
                continue
            for c in range(C):
                ax.plot(steps, lt[:, j, c], color=_COLORS[c], lw=1, label=f"class {c}")
            ax.set_ylim(-0.02, 1.02)
            ax.set_xlabel("outer iteration")
            ax.set_ylabel("label probability")
            ax.set_title(f"{v.tag}: point {j} (starts on ring {j})", fontsize=8)
            if j == 0:
                ax.legend(fontsize=7)
    fig.suptitle(
        f"Learned soft labels along the warm-start trajectory (seed index {seed_index})", fontsize=10
    )
    fig.tight_layout()
    return common.save_figure(fig, pathlib.Path(out_dir) / "soft_label_trajectories.png")


def animate(v: Variant, out_dir, seed_index=0, dpi=60) -> pathlib.Path:
    """GIF of the joint dynamics: the warm model's boundary at every snapshot and the moving points."""
    import matplotlib.pyplot as plt
    from PIL import Image

    C, s = v.n_classes, seed_index
    frames = []
    traj = v.x_traj[s]
    for k, step in enumerate(v.snap_step):
        fig, ax = plt.subplots(figsize=(3.4, 3.6))
        _boundary(
            ax,
            _take(_take(v.snap_w, s), k),
            C,
            v.test,
            f"{v.tag} warm-start\nstep {int(step)}  accuracy {v.snap_acc[s, k]:.0%} (last 100 steps)",
        )
        labs = v.snap_labels[s][k]
        lo = max(0, int(step) - 100)
        for c in range(C):
            ax.plot(traj[lo : int(step), c, 0], traj[lo : int(step), c, 1], "-", color="k", lw=0.5, alpha=0.6)
        _points(ax, v.snap_x[s][k], C, labs, size=90)
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=dpi)
        plt.close(fig)
        buf.seek(0)
        frames.append(Image.open(buf).convert("P", palette=Image.Palette.ADAPTIVE, colors=64))
    out = io.BytesIO()
    frames[0].save(
        out, format="GIF", save_all=True, append_images=frames[1:], duration=150, loop=0, optimize=True
    )
    return common.atomic_write_bytes(pathlib.Path(out_dir) / f"animation_{v.tag}.gif", out.getvalue())


def plot(result: Result, out_dir) -> list[pathlib.Path]:
    """Every figure of E2: boundaries and animation per variant, the loss curves, the soft labels."""
    out_dir = pathlib.Path(out_dir)
    paths = [plot_boundaries(v, out_dir) for v in result.variants]
    paths.append(plot_losses(result, out_dir))
    p = plot_soft_labels(result, out_dir)
    if p is not None:
        paths.append(p)
    paths += [animate(v, out_dir) for v in result.variants]
    return paths
