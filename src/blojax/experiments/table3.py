"""PAPER.md E4, Table 3: our distillation (1 / 10 samples) and augment-net accuracies beside the paper's,
for every dataset whose files are present.

For each dataset in ``datasets`` it runs :mod:`~blojax.experiments.distill_table` and
:mod:`~blojax.experiments.augment_net` with the per-dataset settings of :func:`settings` (the same
experiments, unchanged, on every dataset; only sizes that the paper leaves open differ), skips a dataset
whose files are not found (the reason is reported), and draws ``table3.png``: our accuracies next to
the paper's numbers (MNIST and CIFAR-10; the paper gives none for Fashion-MNIST or digits). The same
numbers as a table (mean +- std over seeds) are :meth:`Result.markdown` and the report's "ours beside
the paper" rows (:func:`paper_comparison`).
"""

from __future__ import annotations

import dataclasses
import pathlib

from blojax.data import DatasetNotFoundError, load_dataset

from . import augment_net, common, distill_table
from .common import check_field

DESCRIPTION = (
    "Table 3: distill 1/10 and augment-net, cold / warm / warm + retrain, beside the paper's numbers"
)

#: PAPER.md E4 (accuracy %, original test data).
PAPER = {
    "mnist": {
        "distill_1": {"cold": 30.7, "warm": 90.8, "warm_retrain": 12.9},
        "distill_10": {"cold": 89.1, "warm": 97.5, "warm_retrain": 17.1},
        "augment": {"cold": 84.86, "warm": 92.81, "warm_retrain": 9.15},
    },
    "cifar10": {
        "distill_1": {"cold": 17.6, "warm": 50.3, "warm_retrain": 10.2},
        "distill_10": {"cold": 46.9, "warm": 59.8, "warm_retrain": 8.9},
        "augment": {"cold": 45.38, "warm": 59.30, "warm_retrain": 11.12},
    },
}


def settings(dataset: str, quick: bool = False) -> tuple[dict, dict]:
    """Overrides of ``(distill_table.Config, augment_net.Config)`` for ``dataset`` - the settings of the
    runs reported in docs/experiments/image.md. Digits (8x8) is small enough for a narrower MLP, more
    outer steps and a longer cold-start inner loop; 28x28 and 32x32 data use 2000 distillation steps."""
    if quick:  # the two experiments' own quick settings, whose claims hold (docs/claims.md)
        return ({"dataset": dataset}, {"dataset": dataset})
    if dataset == "digits":
        return (
            {
                "dataset": dataset,
                "hidden": (64,),
                "curve_test_size": 360,
                "outer_steps": 3000,
                "eval_every": 100,
                "inner_lr": 0.1,
            },
            {
                "dataset": dataset,
                "hidden": (64,),
                "curve_test_size": 360,
                "train_subset": 50,
                "batch_size": 256,
                "outer_steps": 1000,
                "cold_steps": 200,
                "outer_lr": 0.005,
            },
        )
    return ({"dataset": dataset}, {"dataset": dataset})


@dataclasses.dataclass(frozen=True)
class Config:
    """Settings of the Table 3 run: which datasets, how many seeds; each experiment's own settings
    come from :func:`settings`."""

    #: datasets to try, in order (absent ones are skipped).
    datasets: tuple = ("digits", "fashion_mnist", "mnist", "cifar10")
    root: str | None = None
    seeds: int = 3
    seed: int = 0
    #: use the experiments' quick() settings (for tests and a smoke run).
    quick_settings: bool = False

    @classmethod
    def quick(cls) -> "Config":
        return cls(datasets=("digits",), seeds=2, quick_settings=True)

    def validate(self) -> None:
        name = type(self).__name__
        check_field(
            len(self.datasets) >= 1 and all(isinstance(d, str) for d in self.datasets),
            name,
            "datasets",
            "a non-empty tuple of dataset names",
            self.datasets,
        )
        check_field(
            isinstance(self.seeds, int) and self.seeds >= 1, name, "seeds", "a positive int", self.seeds
        )
        check_field(
            isinstance(self.seed, int) and self.seed >= 0, name, "seed", "a non-negative int", self.seed
        )


def _configs(cfg: Config, dataset: str):
    d_over, a_over = settings(dataset, cfg.quick_settings)
    base_d = distill_table.Config.quick() if cfg.quick_settings else distill_table.Config()
    base_a = augment_net.Config.quick() if cfg.quick_settings else augment_net.Config()
    common_over = {"root": cfg.root, "seeds": cfg.seeds, "seed": cfg.seed}
    return (
        dataclasses.replace(base_d, **d_over, **common_over),
        dataclasses.replace(base_a, **a_over, **common_over),
    )


#: (method key, label) of the rows of every column, in order.
METHOD_LABELS = (
    ("cold", "cold-start"),
    ("warm", "warm-start"),
    ("warm_retrain", "warm-start + retrain"),
    ("no_aug", "no augmentation"),
)


@dataclasses.dataclass(frozen=True)
class Row:
    """One dataset's two experiments: the distillation columns and the augment-net column."""

    distill: distill_table.Result
    augment: augment_net.Result


@dataclasses.dataclass(frozen=True)
class Result:
    """``rows``: one :class:`Row` per dataset run (in ``config.datasets`` order); ``skipped``: the
    datasets whose files were not found, with the reason."""

    config: Config
    rows: dict[str, Row]
    skipped: dict[str, str]

    def table(self) -> dict:
        """``{dataset: {column: {method: seed statistics of the test accuracy in %}}}``; columns
        ``distill_<n>`` for each number of synthetic samples and ``augment``."""
        out = {}
        for ds, r in self.rows.items():
            t = r.distill.table()
            out[ds] = {f"distill_{n}": t[n] for n in t}
            out[ds]["augment"] = r.augment.to_dict()["test_accuracy_percent"]
        return out

    def to_dict(self) -> dict:
        return common.to_jsonable({"ours": self.table(), "paper": PAPER, "skipped": self.skipped})

    def markdown(self) -> str:
        """Our numbers (mean ± std over seeds) beside the paper's, one line per dataset, column and
        method, as a markdown table (the report shows the same rows, see :func:`paper_comparison`)."""
        lines = ["| dataset | column | method | ours (mean ± std) | paper |", "|---|---|---|---|---|"]
        for row in comparison_rows(self.to_dict()):
            lines.append("| " + " | ".join(str(c) for c in row) + " |")
        return "\n".join(lines)


def comparison_rows(results: dict) -> list[tuple[str, str, str, str, str]]:
    """``(dataset, column, method, ours, paper)`` for every method run (``ours``: ``"mean ± std"`` over
    seeds; ``paper``: PAPER.md's number or ``"—"``), then one ``skipped`` line per absent dataset;
    ``results`` is :meth:`Result.to_dict`."""
    rows = []
    paper = results.get("paper", PAPER)
    for ds, cols in results["ours"].items():
        for col, methods in cols.items():
            for k, label in METHOD_LABELS:
                if k not in methods:
                    continue
                p = paper.get(ds, {}).get(col, {}).get(k)
                ours = f"{methods[k]['mean']:.1f} ± {methods[k]['std']:.1f}"
                rows.append((ds, col, label, ours, "—" if p is None else str(p)))
    for ds, why in results.get("skipped", {}).items():
        rows.append((ds, "—", "skipped", why.splitlines()[0], ""))
    return rows


def paper_comparison(results: dict) -> list[dict]:
    """The report's "ours beside the paper" rows: :func:`comparison_rows` as
    ``{"quantity", "ours", "paper"}``."""
    return [
        {"quantity": f"{ds} {col}: {method}", "ours": ours, "paper": paper}
        for ds, col, method, ours, paper in comparison_rows(results)
    ]


def run(config: Config, ctx: common.RunContext | None = None) -> Result:
    """distill_table and augment_net with :func:`settings` on every dataset present."""
    ctx = common.ensure_context(ctx)
    config.validate()
    rows, skipped = {}, {}
    for ds in config.datasets:
        try:
            load_dataset(ds, root=config.root, val_size=None)  # presence check (cheap for IDX files)
        except DatasetNotFoundError as exc:
            skipped[ds] = str(exc)
            print(f"table3: skipping {ds}: files not found")
            continue
        dcfg, acfg = _configs(config, ds)
        rows[ds] = Row(distill=distill_table.run(dcfg, ctx), augment=augment_net.run(acfg, ctx))
    return Result(config, rows, skipped)


def plot(result: Result, out_dir) -> list[pathlib.Path]:
    """``table3.png``: our accuracies (mean, seed range) beside the paper's, per dataset and column
    (see :mod:`blojax.experiments.figures.table3`); the numbers as a table are in the report."""
    from .figures import table3 as figures

    return figures.plot(result.table(), PAPER, out_dir)


if __name__ == "__main__":
    from blojax.runner.cli import run_module

    raise SystemExit(run_module(__name__))
