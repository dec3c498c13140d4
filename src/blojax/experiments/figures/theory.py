"""The figure of :mod:`blojax.experiments.theory`: cold-start's distance to the min-norm outer solution
against its number of inner steps ``T``."""

from __future__ import annotations

import pathlib
from typing import TYPE_CHECKING

import numpy as np

from blojax.experiments import common

if TYPE_CHECKING:
    from blojax.experiments.theory import Result


def plot(result: Result, out_dir) -> list[pathlib.Path]:
    """``theory_min_norm.png``: ``||u_T - u*|| / ||u*||`` (largest and smallest over the instances)
    against ``T``, log-log."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    d = result.to_dict()["cold_exact_min_norm"]
    fig, ax = plt.subplots(figsize=(4.5, 3.2))
    ax.loglog(d["inner_steps"], np.maximum(d["rel_err_max"], 1e-17), "o-", label="largest over instances")
    ax.loglog(d["inner_steps"], np.maximum(d["rel_err_min"], 1e-17), "s--", label="smallest")
    ax.set_xlabel("cold-start inner steps T")
    ax.set_ylabel("||u_T - u*|| / ||u*||")
    ax.set_title(
        f"cold-start + Exact vs the min-norm outer solution (cond {result.config.cond:g})", fontsize=8
    )
    ax.legend(fontsize=7)
    return [common.save_figure(fig, pathlib.Path(out_dir) / "theory_min_norm.png")]
