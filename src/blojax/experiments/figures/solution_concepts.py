"""The figure of E1 (:mod:`blojax.experiments.solution_concepts`): the decision boundaries of the four
solution concepts side by side. matplotlib is imported inside the function."""

from __future__ import annotations

import pathlib
from typing import TYPE_CHECKING

import jax
import jax.numpy as jnp
import numpy as np

from blojax.experiments import common
from blojax.experiments.solution_concepts import CONCEPTS
from blojax.models.mlp import mlp_apply

if TYPE_CHECKING:
    from blojax.experiments.solution_concepts import Result

__all__ = ["plot"]


def plot(result: Result, out_dir) -> list[pathlib.Path]:
    """One panel per concept (seed index 0): the learned boundary of its model ``w``, the true
    sinusoid, the test split, the synthetic points ``u`` (stars) and warm-start's trajectory ``u_t``."""
    import matplotlib.pyplot as plt
    from matplotlib.colors import ListedColormap
    from matplotlib.patches import Rectangle

    cfg, s = result.config, 0
    titles = {
        "optimistic": "optimistic (best sampled w in S(u))",
        "pessimistic": "pessimistic (worst sampled w in S(u))",
        "cold": "cold-start (w0 re-trained each step)",
        "warm": "warm-start (T=1, points move)",
    }
    # the data box, enlarged to show every synthetic point and the warm trajectory of seed index s
    pts = np.concatenate([result.points[c][s] for c in CONCEPTS] + [result.warm_traj[s].reshape(-1, 2)])
    xl = max(np.pi, float(np.abs(pts[:, 0]).max()) + 0.3)
    yl = max(2.0, float(np.abs(pts[:, 1]).max()) + 0.3)
    g1 = np.linspace(-xl, xl, 200)
    g2 = np.linspace(-yl, yl, 140)
    GX, GY = np.meshgrid(g1, g2)
    G = jnp.asarray(np.stack([GX.ravel(), GY.ravel()], -1), jnp.float32)
    colors = ["tab:blue", "tab:orange"]
    fig, axs = plt.subplots(1, 4, figsize=(15, 3.4))
    for ax, c in zip(axs, CONCEPTS):
        w = jax.tree_util.tree_map(lambda a: a[s], result.models[c])
        pred = np.asarray(jnp.argmax(mlp_apply(w, G), -1)).reshape(GX.shape)
        ax.contourf(GX, GY, pred, levels=[-0.5, 0.5, 1.5], cmap=ListedColormap(colors), alpha=0.2)
        ax.contour(GX, GY, pred, levels=[0.5], colors="k", linewidths=1)
        ax.scatter(
            result.test.x[:, 0],
            result.test.x[:, 1],
            c=[colors[int(y)] for y in result.test.y],
            s=3,
            alpha=0.6,
        )
        ax.plot(g1, cfg.amplitude * np.sin(cfg.frequency * g1), "k:", lw=0.8)
        if c == "warm":
            tr = result.warm_traj[s]
            for j in range(2):
                ax.plot(tr[:, j, 0], tr[:, j, 1], "-", color=colors[j], lw=0.8)
        p = result.points[c][s]
        for j in range(2):
            ax.scatter(p[j, 0], p[j, 1], marker="*", s=180, c=colors[j], edgecolors="k", zorder=5)
        ax.add_patch(Rectangle((-np.pi, -2), 2 * np.pi, 4, fill=False, ls="--", lw=0.6, color="gray"))
        ax.set_xlim(-xl, xl)
        ax.set_ylim(-yl, yl)
        ax.set_title(
            f"{titles[c]}\ntest accuracy {result.acc[c][s]:.0%} (mean over seeds {np.mean(result.acc[c]):.0%})",
            fontsize=9,
        )
        ax.set_xlabel("x1")
        ax.set_ylabel("x2")
    fig.suptitle(
        "Four solution concepts for distilling a sinusoid-split dataset into 2 points (stars); "
        "dotted: true boundary, solid: learned boundary, dashed box: data region (seed index 0)",
        fontsize=10,
    )
    fig.tight_layout()
    return [common.save_figure(fig, pathlib.Path(out_dir) / "solution_concepts.png")]
