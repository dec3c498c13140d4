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

import numpy as np

from .claims import Claim, gap
from . import common
from . import canvas_distill as cd
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


@dataclasses.dataclass
class Result:
    config: Config
    raw: dict  # n -> distill() output

    def table(self) -> dict:
        out = {}
        for n, r in self.raw.items():
            out[str(n)] = {k: cd.summarize(100 * r[f"final_{k}"]) for k in ("cold", "warm", "warm_retrain")}
        return out

    def to_dict(self) -> dict:
        return common.to_jsonable(
            {
                "dataset": next(iter(self.raw.values()))["dataset"],
                "seeds": next(iter(self.raw.values()))["seeds"],
                "test_accuracy_percent": self.table(),
                "curves": {
                    str(n): {
                        "steps": r["steps"],
                        "cold": r["curve_cold"].mean(0),
                        "warm": r["curve_warm"].mean(0),
                        "warm_retrain": r["curve_warm_retrain"].mean(0),
                    }
                    for n, r in self.raw.items()
                },
                "seconds": {str(n): r["seconds"] for n, r in self.raw.items()},
                "run_seconds": {str(n): r["run_seconds"] for n, r in self.raw.items()},
                "peak_rss_mb": max(r["peak_rss_mb"] for r in self.raw.values()),
                "soft_label": {
                    str(n): {
                        k: {
                            kk: np.asarray(vv).tolist()
                            for kk, vv in cd.label_stats(r[f"label_{k}"], self.config.eval_every).items()
                        }
                        for k in ("cold", "warm")
                    }
                    for n, r in self.raw.items()
                    if n == 1
                },
                "cold_hypergradient": self.config.cold_method,
            }
        )

    def markdown(self) -> str:
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


def run(config: Config, ctx=None) -> Result:
    config.validate()
    raw = {}
    for n in config.sizes:
        raw[n] = cd.distill(config.for_size(n), ctx, key_prefix="table")
    return Result(config, raw)


def plot(result: Result, out_dir) -> list[pathlib.Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sizes = list(result.raw)
    fig, axes = plt.subplots(1, len(sizes), figsize=(5 * len(sizes), 3.8), squeeze=False)
    for ax, n in zip(axes[0], sizes):
        r = result.raw[n]
        for key, label, color in (
            ("curve_warm", "warm-start", "C1"),
            ("curve_cold", "cold-start", "C0"),
            ("curve_warm_retrain", "warm-start + retrain", "C2"),
        ):
            c = 100 * r[key]
            ax.plot(r["steps"], c.mean(0), color=color, label=label)
            ax.fill_between(r["steps"], c.min(0), c.max(0), color=color, alpha=0.2)
        ax.set_title(f"{r['dataset']}: {n} synthetic sample(s), {len(r['seeds'])} seeds")
        ax.set_xlabel("outer iteration")
        ax.set_ylabel("test accuracy (%)")
        ax.set_ylim(0, 100)
    axes[0][0].legend()
    out = pathlib.Path(out_dir)
    paths = [common.save_figure(fig, out / "distill_curves.png")]
    paths.append(common.atomic_write_text(out / "table.md", result.markdown() + "\n"))
    if 1 in result.raw:  # the single canvas: Fig. 9's curves, soft labels and canvases
        paths += cd.plot(cd.Result(result.config.for_size(1), result.raw[1]), out)
    return paths


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
