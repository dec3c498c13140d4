"""Figures of :mod:`blojax.experiments.distill_table` (Table 3, distillation columns): one panel of
accuracy curves per number of synthetic samples, the markdown table, and for a single sample the
figures of :mod:`blojax.experiments.figures.canvas_distill`."""

from __future__ import annotations

import pathlib

from .. import common
from . import canvas_distill as canvas_figures


def plot(result, out_dir) -> list[pathlib.Path]:
    """``distill_curves.png``, ``table.md`` (:meth:`Result.markdown`) and, when ``1`` is among the
    sizes, ``accuracy_curves.png``, ``soft_labels.png``, ``canvases.png`` of that run."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sizes = list(result.runs)
    fig, axes = plt.subplots(1, len(sizes), figsize=(5 * len(sizes), 3.8), squeeze=False)
    for ax, n in zip(axes[0], sizes):
        r = result.runs[n]
        canvas_figures.accuracy_curves(ax, r)
        ax.set_title(f"{r.dataset}: {n} synthetic sample(s), {len(r.seeds)} seeds")
        ax.set_xlabel("outer iteration")
        ax.set_ylabel("test accuracy (%)")
        ax.set_ylim(0, 100)
    axes[0][0].legend()
    out = pathlib.Path(out_dir)
    paths = [common.save_figure(fig, out / "distill_curves.png")]
    paths.append(common.atomic_write_text(out / "table.md", result.markdown() + "\n"))
    if 1 in result.runs:  # the single canvas: Fig. 9's curves, soft labels and canvases
        paths += canvas_figures.plot(result.runs[1], result.config.for_size(1), out)
    return paths
