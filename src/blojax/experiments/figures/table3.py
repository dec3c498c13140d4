"""Figure of :mod:`blojax.experiments.table3` (PAPER.md Table 3): our test accuracies beside the
paper's, one panel per dataset, one group of bars per column (distillation into ``n`` samples,
augment-net) and method."""

from __future__ import annotations

import pathlib

import numpy as np

from .. import common

#: (method key, short label, colour), in drawing order.
METHODS = (
    ("cold", "cold", "C0"),
    ("warm", "warm", "C1"),
    ("warm_retrain", "warm+retrain", "C2"),
    ("no_aug", "no aug.", "C7"),
)


def plot(table: dict, paper: dict, out_dir) -> list[pathlib.Path]:
    """``table3.png`` from ``table`` (``{dataset: {column: {method: seed statistics in %}}}``, as
    ``table3.Result.table()``) and ``paper`` (``{dataset: {column: {method: accuracy %}}}``): a solid
    bar per method with our mean and the seeds' range (error bar), and beside it a hatched bar with the
    paper's number where the paper gives one. Nothing is drawn (no file) when no dataset was run."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    if not table:
        return []
    datasets = list(table)
    fig, axes = plt.subplots(
        len(datasets),
        1,
        figsize=(max(6.0, 1.1 * max(_n_bars(table[d]) for d in datasets)), 3.4 * len(datasets)),
    )
    axes = np.atleast_1d(axes)
    for ax, ds in zip(axes, datasets):
        ticks, labels, x = [], [], 0.0
        for col, methods in table[ds].items():
            for key, label, color in METHODS:
                if key not in methods:
                    continue
                s = methods[key]
                err = [[s["mean"] - s.get("min", s["mean"])], [s.get("max", s["mean"]) - s["mean"]]]
                ax.bar(x - 0.2, s["mean"], 0.4, color=color, yerr=err, capsize=3)
                p = paper.get(ds, {}).get(col, {}).get(key)
                if p is not None:
                    ax.bar(x + 0.2, p, 0.4, color="white", edgecolor=color, hatch="//")
                ticks.append(x)
                labels.append(f"{col}\n{label}")
                x += 1.0
            x += 0.5  # a gap between columns
        ax.set_xticks(ticks)
        ax.set_xticklabels(labels, fontsize=7)
        ax.set_ylim(0, 100)
        ax.set_ylabel("test accuracy (%)")
        ax.set_title(
            f"{ds}: ours (mean, range over seeds) beside the paper"
            + ("" if ds in paper else " (no paper numbers)")
        )
        ax.grid(axis="y", alpha=0.3)
    axes[0].legend(
        handles=[
            Patch(color="gray", label="ours"),
            Patch(facecolor="white", edgecolor="gray", hatch="//", label="paper (Table 3)"),
        ],
        loc="upper right",
        fontsize=8,
    )
    return [common.save_figure(fig, pathlib.Path(out_dir) / "table3.png")]


def _n_bars(columns: dict) -> int:
    return sum(1 for methods in columns.values() for key, _, _ in METHODS if key in methods)
