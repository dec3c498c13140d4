"""Figures of :mod:`blojax.experiments.canvas_distill` (Fig. 9): accuracy curves of cold-start,
warm-start and warm-start + retrain, the soft label ``softmax(l)`` of the canvas over the outer
iterations, and the final canvases."""

from __future__ import annotations

import pathlib

import numpy as np

from .. import common

#: (curve, legend label, colour) of the three reported models, in drawing order.
CURVES = (
    ("warm", "warm-start", "C1"),
    ("cold", "cold-start", "C0"),
    ("warm_retrain", "warm-start + retrain", "C2"),
)


def accuracy_curves(ax, run) -> None:
    """Mean (line) and range over seeds (band) of the test accuracy (%) against the outer step."""
    for key, label, color in CURVES:
        c = 100 * run.curves.of(key)
        ax.plot(run.steps, c.mean(0), color=color, label=label)
        ax.fill_between(run.steps, c.min(0), c.max(0), color=color, alpha=0.2)


def plot(run, config, out_dir) -> list[pathlib.Path]:
    """``accuracy_curves.png``, ``soft_labels.png`` (seed 0, sample 0) and ``canvases.png`` of a
    :class:`~blojax.experiments.canvas_distill.DistillRun` ``run`` made with ``config``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir = pathlib.Path(out_dir)
    paths = []
    fig, ax = plt.subplots(figsize=(6, 4))
    accuracy_curves(ax, run)
    ax.axhline(100 / 10, color="gray", ls=":", lw=1, label="chance")
    ax.set_xlabel("outer iteration")
    ax.set_ylabel(f"test accuracy (%)  [{config.curve_test_size} test images]")
    ax.set_title(
        f"{run.dataset}: {config.n_samples} synthetic sample(s), mean and range over {config.seeds} seeds"
    )
    ax.legend()
    paths.append(common.save_figure(fig, out_dir / "accuracy_curves.png"))

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6), sharey=True)
    names = list(run.class_names) or [str(i) for i in range(10)]
    for ax, k, title in zip(axes, ("cold", "warm"), ("cold-start", "warm-start")):
        p = run.trace(k).label[0, :, 0, :]  # seed 0, sample 0: (steps, C)
        x = np.arange(1, p.shape[0] + 1)
        ax.stackplot(x, p.T, labels=names, colors=plt.get_cmap("tab10")(np.arange(p.shape[1])))
        ax.set_title(f"{title}: soft label of the canvas (seed {run.seeds[0]})")
        ax.set_xlabel("outer iteration")
        ax.set_xlim(1, p.shape[0])
        ax.set_ylim(0, 1)
    axes[0].set_ylabel("softmax(label logits)")
    axes[1].legend(loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=8, title="class")
    paths.append(common.save_figure(fig, out_dir / "soft_labels.png"))

    fig, axes = plt.subplots(1, 2, figsize=(6, 3.2))
    for ax, k, title in zip(axes, ("cold", "warm"), ("cold-start", "warm-start")):
        img = run.trace(k).images[0, 0]
        ax.imshow(
            img[..., 0] if img.shape[-1] == 1 else (img - img.min()) / (np.ptp(img) + 1e-8), cmap="gray"
        )
        ax.set_title(f"final canvas, {title}")
        ax.axis("off")
    paths.append(common.save_figure(fig, out_dir / "canvases.png"))
    return paths
