"""Dataset distillation into 1 and 10 synthetic samples (PAPER.md E4, Table 3 "distill" columns):
cold-start, warm-start and warm-start + retrain test accuracy, mean +- std over seeds.

The engine and every setting are those of :mod:`blojax.experiments.canvas_distill` (this Config extends
its Config); ``sizes`` lists the numbers of synthetic samples. With more than one sample the label
logits start on class ``i mod C`` for sample ``i`` (``multi_label_init``; still learned), the usual
dataset-distillation start; a single canvas starts uniform as in the paper's Fig. 9.
"""

from __future__ import annotations

import dataclasses
import pathlib

from . import canvas_distill as cd
from . import common, toolkit
from .claims import Claim, gap
from .common import check_field

DESCRIPTION = "Table 3 distill columns: 1 and 10 synthetic samples, cold / warm / warm + retrain"


@dataclasses.dataclass(frozen=True)
class Config(cd.Config):
    #: numbers of synthetic samples (the paper: 1 and 10).
    sizes: tuple = (1, 10)
    #: label start for more than one sample: "onehot" or "uniform".
    multi_label_init: str = "onehot"

    @classmethod
    def quick(cls) -> "Config":
        base = cd.Config.quick()
        fields = {f.name: getattr(base, f.name) for f in dataclasses.fields(cd.Config)}
        # The 1-sample column with canvas_distill's quick settings (1000 outer steps: warm-start leads
        # cold-start by 23-34 points over 5 base seeds; at 200 steps the two were level, which read as
        # the opposite of the paper). The 10-sample column is left to the full run: its warm-start lead
        # is small (+1.4 points on digits at 3000 steps) and at 200 steps it is within the seed noise.
        return cls(**fields, sizes=(1,))

    def validate(self) -> None:
        super().validate()
        name = type(self).__name__
        check_field(
            len(self.sizes) >= 1 and all(isinstance(n, int) and n >= 1 for n in self.sizes),
            name,
            "sizes",
            "a non-empty tuple of positive ints",
            self.sizes,
        )
        check_field(
            self.multi_label_init in ("onehot", "uniform"),
            name,
            "multi_label_init",
            "'onehot' or 'uniform'",
            self.multi_label_init,
        )

    def for_size(self, n: int) -> cd.Config:
        fields = {f.name: getattr(self, f.name) for f in dataclasses.fields(cd.Config)}
        fields.update(n_samples=n, label_init=self.label_init if n == 1 else self.multi_label_init)
        return cd.Config(**fields)


@dataclasses.dataclass(frozen=True)
class Result:
    """``config`` and ``runs``: for each number of synthetic samples ``n`` in ``config.sizes``, the
    :class:`~blojax.experiments.canvas_distill.DistillRun` of its cold- and warm-start distillation."""

    config: Config
    runs: dict[int, cd.DistillRun]

    def table(self) -> dict:
        """``{str(n): {method: seed statistics of the test accuracy in %}}`` (methods: cold, warm,
        warm_retrain)."""
        return {
            str(n): {k: toolkit.seed_stats(100 * r.final.of(k)) for k in cd.Accuracies.NAMES}
            for n, r in self.runs.items()
        }

    def to_dict(self) -> dict:
        first = next(iter(self.runs.values()))
        return common.to_jsonable(
            {
                "dataset": first.dataset,
                "seeds": list(first.seeds),
                "test_accuracy_percent": self.table(),
                "curves": {
                    str(n): {"steps": r.steps, **{k: r.curves.of(k).mean(0) for k in cd.Accuracies.NAMES}}
                    for n, r in self.runs.items()
                },
                "seconds": {str(n): r.seconds for n, r in self.runs.items()},
                "run_seconds": {str(n): r.run_seconds for n, r in self.runs.items()},
                "peak_rss_mb": max(r.peak_rss_mb for r in self.runs.values()),
                "soft_label": {
                    str(n): cd.soft_label_summary(r, self.config.eval_every)
                    for n, r in self.runs.items()
                    if n == 1
                },
                "cold_hypergradient": self.config.cold_method,
            }
        )

    def markdown(self) -> str:
        """The table of :meth:`table` as markdown: one row per method, one column per size."""
        t = self.table()
        ns = list(t)
        lines = ["| method | " + " | ".join(f"{n} sample(s)" for n in ns) + " |", "|---|" + "---|" * len(ns)]
        for k, label in (
            ("cold", "cold-start"),
            ("warm", "warm-start"),
            ("warm_retrain", "warm-start + retrain"),
        ):
            lines.append(
                f"| {label} | "
                + " | ".join(f"{t[n][k]['mean']:.1f} ± {t[n][k]['std']:.1f}" for n in ns)
                + " |"
            )
        return "\n".join(lines)


def run(config: Config, ctx: common.RunContext | None = None) -> Result:
    """:func:`~blojax.experiments.canvas_distill.distill` for every size in ``config.sizes``."""
    ctx = common.ensure_context(ctx)
    config.validate()
    runs = {}
    for n in config.sizes:
        cfg = config.for_size(n)  # the 1-sample run is canvas_distill's: computed once per reproduction
        runs[n] = ctx.reuse(cd.REUSE_NAME, cfg, lambda cfg=cfg: cd.distill(cfg, ctx, key_prefix="table"))
    return Result(config, runs)


def plot(result: Result, out_dir) -> list[pathlib.Path]:
    """``distill_curves.png``, ``table.md`` and, when one sample was run, canvas_distill's three
    figures (see :mod:`blojax.experiments.figures.distill_table`)."""
    from .figures import distill_table as figures

    return figures.plot(result, out_dir)


# ------------------------------------------------------------------------------------ claims ledger


def _accs(n):
    def ours(r):
        acc = r["test_accuracy_percent"][str(n)]
        return {
            "cold %": round(acc["cold"]["mean"], 1),
            "warm %": round(acc["warm"]["mean"], 1),
            "warm+retrain %": round(acc["warm_retrain"]["mean"], 1),
        }

    return ours


CLAIMS = (
    Claim(
        "E4.distill-1-warm-beats-cold",
        "Table 3, distillation into 1 sample: warm-start beats cold-start by >= 10 points",
        "MNIST 90.8 vs 30.7; CIFAR-10 50.3 vs 17.6",
        _accs(1),
        lambda o: gap(o["warm %"], o["cold %"], 10.0),
        "warm - cold >= 10 points",
    ),
    Claim(
        "E4.distill-10-warm-beats-cold",
        "Table 3, distillation into 10 samples: warm-start is above cold-start",
        "MNIST 97.5 vs 89.1; CIFAR-10 59.8 vs 46.9",
        _accs(10),
        lambda o: gap(o["warm %"], o["cold %"], 0.0),
        "warm - cold >= 0 points",
        quick=False,
    ),
    Claim(
        "E4.distill-retrain-collapses",
        "Table 3, distillation (every size run: 1 and 10 samples): warm-start + retrain stays <= 25 % (near chance)",
        "MNIST 12.9 / 17.1; CIFAR-10 10.2 / 8.9",
        lambda r: {
            f"{n} sample(s) %": round(r["test_accuracy_percent"][n]["warm_retrain"]["mean"], 1)
            for n in r["test_accuracy_percent"]
        },
        lambda o: len(o) > 0 and max(o.values()) <= 25.0,
        "warm+retrain <= 25 % in every column run",
    ),
)


if __name__ == "__main__":
    from blojax.runner.cli import run_module

    raise SystemExit(run_module(__name__))
