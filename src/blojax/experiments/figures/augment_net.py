"""Figures of :mod:`blojax.experiments.augment_net` (Table 3, augment-net): test-accuracy curves of
cold-start, warm-start and warm-start + retrain beside the no-augmentation baseline, and the dynamics
(``||u - u0||``, the inner loss ``f`` and the validation loss ``F`` per outer step)."""

from __future__ import annotations

import pathlib

import numpy as np

from .. import common

#: (curve, legend label, colour) of the three models with a curve, in drawing order.
CURVES = (
    ("warm", "warm-start", "C1"),
    ("cold", "cold-start", "C0"),
    ("warm_retrain", "warm-start + retrain", "C2"),
)


def plot(run, config, out_dir) -> list[pathlib.Path]:
    """``augment_curves.png`` and ``augment_dynamics.png`` of an
    :class:`~blojax.experiments.augment_net.AugmentRun` ``run`` made with ``config``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir = pathlib.Path(out_dir)
    fig, ax = plt.subplots(figsize=(6, 4))
    for key, label, color in CURVES:
        c = 100 * run.curves.of(key)
        ax.plot(run.steps, c.mean(0), color=color, label=label)
        ax.fill_between(run.steps, c.min(0), c.max(0), color=color, alpha=0.2)
    na = 100 * run.final.no_aug
    ax.axhline(na.mean(), color="k", ls="--", lw=1, label="no augmentation")
    ax.set_xlabel("outer iteration")
    ax.set_ylabel(f"test accuracy (%)  [{config.curve_test_size} test images]")
    ax.set_title(f"augment-net, {run.dataset} ({run.train_subset} training images), {config.seeds} seeds")
    ax.legend()
    paths = [common.save_figure(fig, out_dir / "augment_curves.png")]

    fig, axes = plt.subplots(1, 3, figsize=(15, 3.8))
    steps = np.arange(1, run.cold.F.shape[1] + 1)
    for k, label, color in (("cold", "cold-start", "C0"), ("warm", "warm-start", "C1")):
        t = run.trace(k)
        axes[0].plot(run.steps, t.u_dist.mean(0), color=color, label=label)
        axes[1].semilogy(steps, np.asarray(t.f).mean(0), color=color, label=label)
        axes[2].plot(steps, np.asarray(t.F).mean(0), color=color, label=label, lw=0.8)
    axes[0].set_ylabel("||u - u0||")
    axes[1].set_ylabel("inner loss f(u, w) on the training subset")
    axes[2].set_ylabel("validation loss F (minibatch)")
    for a in axes:
        a.set_xlabel("outer iteration")
    axes[0].legend()
    fig.suptitle(f"augment-net dynamics, {run.dataset}, mean over {config.seeds} seeds")
    paths.append(common.save_figure(fig, out_dir / "augment_dynamics.png"))
    return paths
