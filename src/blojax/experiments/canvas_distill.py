r"""E3 (PAPER.md Fig. 9): distill an image dataset into ONE synthetic canvas with a learned soft label,
with cold-start and warm-start bilevel optimization.

Outer parameters ``u = (x_syn, l)``: ``n`` synthetic images ``x_syn`` (n, H, W, C) and their label logits
``l`` (n, C) (soft label ``softmax(l)``, initialized uniform). Inner parameters ``w``: a classifier
(default a 1-hidden-layer ReLU MLP). The two objectives are

    f(u, w)    = (1/n) sum_i CE(model_w(x_syn_i), softmax(l_i))        (train on the synthetic set)
    F(u, w; B) = (1/|B|) sum_{(x, y) in B} CE(model_w(x), y)           (loss on a minibatch B of the
                                                                         ORIGINAL training data)

* **cold-start**: every outer step trains ``w`` from the same ``w0`` for ``T = cold_steps`` SGD steps and
  differentiates through them (``Unroll(T, remat=True)``: reverse mode with rematerialized steps) or
  uses the implicit function theorem at ``w_T`` (``Neumann`` / ``CG``: memory independent of T).
* **warm-start**: ``w`` is carried over; one SGD step per outer step, ``Unroll(1)`` hypergradient
  (alternating joint training of ``u`` and ``w``).
* **warm-start + retrain**: a fresh model trained from ``w0`` on the current ``u`` exactly as
  cold-start's inner loop does (``retrain_steps`` SGD steps), evaluated on the test data.

Curves: test accuracy of the three against outer iteration (on a fixed test subset of
``curve_test_size``; the final numbers use the full test set). Soft labels: the label distribution of
the canvas at every outer step, its entropy and how often its arg-max class switches.
Seeds are ``seed, seed + 1, ...`` (``seeds`` of them) and run as one ``vmap``.

The distillation engine (:func:`distill`, in ``_canvas_distill_engine``) is shared with
``distill_table``; the figures are in :mod:`blojax.experiments.figures.canvas_distill`.
"""

from __future__ import annotations

import dataclasses
import pathlib

import numpy as np

from . import common, toolkit
from ._canvas_distill_engine import (
    ALGORITHMS,
    Accuracies,
    DistillRun,
    Trace,
    cold_step_memory,
    distill,
    images_of,
)
from .claims import Claim, gap
from .common import check_field, check_int_fields

__all__ = [
    "DESCRIPTION",
    "CLAIMS",
    "METHODS",
    "Config",
    "Result",
    "run",
    "plot",
    "distill",
    "DistillRun",
    "Accuracies",
    "Trace",
    "ALGORITHMS",
    "label_stats",
    "soft_label_summary",
    "cold_step_memory",
    "images_of",
]

DESCRIPTION = "E3: one synthetic canvas + learned soft label, cold vs warm vs warm+retrain (Fig. 9)"

#: The cold-start hypergradients (``Config.cold_method``).
METHODS = toolkit.COLD_METHODS


@dataclasses.dataclass(frozen=True)
class Config:
    """Settings of the canvas-distillation experiment (PAPER.md gives none of these numbers)."""

    #: dataset name for :func:`blojax.data.load_dataset` (the paper uses MNIST; we measure
    #: Fashion-MNIST, whose files the Debian package ``dataset-fashion-mnist`` provides, and digits).
    dataset: str = "fashion_mnist"
    #: folder with the dataset files (None: BLOJAX_DATA, system folders, cache).
    root: str | None = None
    #: synthetic samples (1: the single canvas of Fig. 9).
    n_samples: int = 1
    #: "uniform": label logits start at 0 (as in PAPER.md E2); "onehot": sample i starts on class i mod C
    #: (logit 2 on it), still learned.
    label_init: str = "uniform"
    #: classifier: "mlp" (default: fast on CPU and its Hessian-vector products are cheap) or "convnet".
    model: str = "mlp"
    #: hidden widths (MLP) or conv channels (convnet). 128 units make the inner problem heavily
    #: overparameterized (>100k weights for 1-10 training points).
    hidden: tuple = (128,)
    #: "sigmoid": the synthetic image is ``lo + (hi - lo) * sigmoid(z)`` with [lo, hi] the pixel range of
    #: the (standardized) training data and ``z`` the outer parameter, so it stays a valid image;
    #: "free": the pixels are the outer parameters. Without the bound, warm-start grows the canvas norm
    #: (a larger input is a larger inner step) until the joint training diverges.
    canvas_param: str = "sigmoid"
    #: std of the Gaussian initialization of ``z`` (or of the free pixels).
    canvas_std: float = 1.0
    #: inner SGD step alpha (both algorithms and the retrain). One canvas gives a rank-1 update whose
    #: size grows with the squared input norm, so the step shrinks with the number of pixels: 0.1 on
    #: digits (64 pixels), 0.02 on 28x28 images (0.1 there: warm-start collapsed on 2 of 3 seeds).
    inner_lr: float = 0.02
    #: cold-start inner steps T (the paper says 10^3-10^4 for cold-start in general; 100 steps of
    #: SGD fit 1-10 points to a loss < 1e-2 here, see docs/experiments/image.md).
    cold_steps: int = 100
    #: cold-start hypergradient: "unroll" (Unroll(T, remat=True)), "neumann" (Neumann(K, alpha) at
    #: w_T) or "cg" (CG(K) at w_T).
    cold_method: str = "unroll"
    #: K for "neumann" / "cg".
    ift_terms: int = 50
    #: warm-start inner steps per outer step (1: alternating), unrolled for the hypergradient.
    warm_steps: int = 1
    #: Adam on u (canvas parameters and label logits): step, and the two decay rates. b1 = 0 (no
    #: momentum) and a short b2 let the canvas follow the quickly changing hypergradient of
    #: warm-start; measured on digits, see docs/experiments/image.md.
    outer_lr: float = 0.1
    outer_b1: float = 0.0
    outer_b2: float = 0.9
    #: outer steps of each algorithm (the time budget; warm-start's Fashion-MNIST curve is still
    #: rising at 1000; digits runs use 3000).
    outer_steps: int = 1000
    #: minibatch size of the original training data in F (a large batch: the single canvas follows
    #: the minibatch gradient, and a noisy one makes it chase noise; 128 vs 512 on digits: 15% vs 58%).
    batch_size: int = 512
    #: outer steps between evaluations (curve points).
    eval_every: int = 200
    #: SGD steps of the retrain (default: the same as cold-start's inner loop).
    retrain_steps: int = 100
    #: test examples for the curves (fixed balanced subset); final numbers use the full test set.
    curve_test_size: int = 2000
    #: number of seeds (run as one vmap) and the first seed.
    seeds: int = 3
    seed: int = 0

    @classmethod
    def quick(cls) -> "Config":
        """Digits, 2 seeds, 1000 outer steps: the shortest run in which warm-start pulls clearly away from
        cold-start (at 300 steps it leads by 8 points, at 200 it trails; at 1000 it leads by 23-34 points over 5
        base seeds); 5 evaluation points, enough for the soft-label drift over the second half."""
        return cls(
            dataset="digits",
            hidden=(64,),
            inner_lr=0.1,
            outer_steps=1000,
            eval_every=200,
            cold_steps=30,
            retrain_steps=30,
            batch_size=512,
            curve_test_size=360,
            seeds=2,
        )

    def validate(self) -> None:
        name = type(self).__name__
        check_field(isinstance(self.dataset, str), name, "dataset", "a dataset name", self.dataset)
        check_int_fields(
            self,
            (
                "n_samples",
                "cold_steps",
                "ift_terms",
                "warm_steps",
                "outer_steps",
                "batch_size",
                "eval_every",
                "retrain_steps",
                "curve_test_size",
                "seeds",
            ),
        )
        check_field(
            isinstance(self.seed, int) and self.seed >= 0, name, "seed", "a non-negative int", self.seed
        )
        check_field(
            self.label_init in ("uniform", "onehot"),
            name,
            "label_init",
            "'uniform' or 'onehot'",
            self.label_init,
        )
        check_field(self.model in ("mlp", "convnet"), name, "model", "'mlp' or 'convnet'", self.model)
        check_field(
            len(self.hidden) >= 1 and all(isinstance(h, int) and h >= 1 for h in self.hidden),
            name,
            "hidden",
            "a non-empty tuple of positive ints",
            self.hidden,
        )
        for f in ("inner_lr", "outer_lr", "canvas_std"):
            v = getattr(self, f)
            check_field(
                isinstance(v, (int, float)) and v > 0 and np.isfinite(v), name, f, "a positive number", v
            )
        check_field(
            self.canvas_param in ("sigmoid", "free"),
            name,
            "canvas_param",
            "'sigmoid' or 'free'",
            self.canvas_param,
        )
        for f in ("outer_b1", "outer_b2"):
            v = getattr(self, f)
            check_field(isinstance(v, (int, float)) and 0 <= v < 1, name, f, "a number in [0, 1)", v)
        check_field(self.cold_method in METHODS, name, "cold_method", f"one of {METHODS}", self.cold_method)
        check_field(self.warm_steps <= self.cold_steps, name, "warm_steps", "<= cold_steps", self.warm_steps)
        check_field(
            self.outer_steps % self.eval_every == 0,
            name,
            "outer_steps",
            f"a multiple of eval_every={self.eval_every}",
            self.outer_steps,
        )


# ------------------------------------------------------------------------------------ summaries
def label_stats(labels: np.ndarray, eval_every: int) -> dict:
    """Soft-label dynamics of sample 0 from ``labels`` (seeds, steps, n, C): final entropy (nats),
    arg-max switches over the run and over its second half, and the mean L1 change of the label
    distribution per ``eval_every`` steps over the second half."""
    p = labels[:, :, 0, :]
    ent = -np.sum(p * np.log(np.clip(p, 1e-12, None)), axis=-1)  # (seeds, steps)
    am = np.argmax(p, axis=-1)
    sw = am[:, 1:] != am[:, :-1]
    half = p.shape[1] // 2
    late = p[:, half::eval_every]
    drift = np.abs(np.diff(late, axis=1)).sum(-1).mean(-1) if late.shape[1] > 1 else np.zeros(p.shape[0])
    return {
        "final_entropy": ent[:, -1],
        "argmax_switches": sw.sum(1),
        "argmax_switches_second_half": sw[:, half:].sum(1),
        "l1_drift_per_eval_second_half": drift,
        "final_argmax": am[:, -1],
        "final_max_prob": p[:, -1].max(-1),
    }


def soft_label_summary(run: DistillRun, eval_every: int) -> dict:
    """``{algorithm: label_stats(...) as lists}`` for cold- and warm-start (results.json's
    ``soft_label``)."""
    return {
        k: {kk: np.asarray(vv).tolist() for kk, vv in label_stats(run.trace(k).label, eval_every).items()}
        for k in ALGORITHMS
    }


# ------------------------------------------------------------------------------------ contract
@dataclasses.dataclass(frozen=True)
class Result:
    """``config`` and ``distill``: the :class:`DistillRun` of its cold- and warm-start runs (per-seed
    test accuracies of cold-start, warm-start and warm-start + retrain, their curves, the outer losses
    ``F`` and soft labels ``softmax(l)`` per outer step, the final synthetic sets ``u``)."""

    config: Config
    distill: DistillRun

    def to_dict(self) -> dict:
        r, cfg = self.distill, self.config
        out = {
            "dataset": r.dataset,
            "seeds": list(r.seeds),
            "test_accuracy_percent": {k: toolkit.seed_stats(100 * r.final.of(k)) for k in Accuracies.NAMES},
            "curves": {
                "steps": r.steps,
                **{k: r.curves.of(k).mean(0) for k in Accuracies.NAMES},
                "curve_test_size": cfg.curve_test_size,
            },
            "soft_label": soft_label_summary(r, cfg.eval_every),
            "final_soft_label": {k: r.trace(k).label[:, -1, 0].tolist() for k in ALGORITHMS},
            "final_outer_loss": {k: toolkit.seed_stats(r.trace(k).F[:, -100:].mean(1)) for k in ALGORITHMS},
            "seconds": r.seconds,
            "run_seconds": r.run_seconds,
            "peak_rss_mb": r.peak_rss_mb,
            "cold_hypergradient": cfg.cold_method,
        }
        return common.to_jsonable(out)


#: The name under which :func:`distill` of a config is shared by the runs of a reproduction
#: (``ctx.reuse``: ``distill_table`` and ``table3`` reach the same computations).
REUSE_NAME = "canvas_distill.distill"


def run(config: Config, ctx: common.RunContext | None = None) -> Result:
    """Cold- and warm-start distillation of ``config`` (see the module docstring)."""
    ctx = common.ensure_context(ctx)
    config.validate()
    return Result(config, ctx.reuse(REUSE_NAME, config, lambda: distill(config, ctx, key_prefix="canvas")))


def plot(result: Result, out_dir) -> list[pathlib.Path]:
    """``accuracy_curves.png``, ``soft_labels.png``, ``canvases.png`` (see
    :mod:`blojax.experiments.figures.canvas_distill`)."""
    from .figures import canvas_distill as figures

    return figures.plot(result.distill, result.config, out_dir)


# ------------------------------------------------------------------------------------ claims ledger


def _accs(r):
    acc = r["test_accuracy_percent"]
    return {
        "cold %": round(acc["cold"]["mean"], 1),
        "warm %": round(acc["warm"]["mean"], 1),
        "warm+retrain %": round(acc["warm_retrain"]["mean"], 1),
    }


CLAIMS = (
    Claim(
        "E3.canvas-warm-beats-cold",
        "One distilled canvas + soft label: warm-start's accuracy on the original task exceeds cold-start's by >= 10 points",
        "Fig. 9: warm-start accuracy high, cold-start low",
        _accs,
        lambda o: gap(o["warm %"], o["cold %"], 10.0),
        "warm - cold >= 10 points (mean over seeds)",
    ),
    Claim(
        "E3.canvas-retrain-collapses",
        "One canvas: a fresh model retrained on warm-start's canvas scores <= 25 % and >= 20 points below warm-start",
        "Fig. 9: warm-start + retrain low",
        _accs,
        lambda o: o["warm+retrain %"] <= 25.0 and gap(o["warm %"], o["warm+retrain %"], 20.0),
        "warm+retrain <= 25 % and warm - warm+retrain >= 20 points",
    ),
    Claim(
        "E3.soft-label-keeps-moving",
        "One canvas: warm-start's soft label keeps moving between classes (L1 change per evaluation in the second "
        "half >= 2x cold-start's, whose label settles)",
        "Fig. 9: cold-start's soft label settles on a class mixture; warm-start's keeps moving",
        lambda r: {
            "drift warm": round(
                sum(r["soft_label"]["warm"]["l1_drift_per_eval_second_half"])
                / len(r["soft_label"]["warm"]["l1_drift_per_eval_second_half"]),
                4,
            ),
            "drift cold": round(
                sum(r["soft_label"]["cold"]["l1_drift_per_eval_second_half"])
                / len(r["soft_label"]["cold"]["l1_drift_per_eval_second_half"]),
                4,
            ),
        },
        lambda o: o["drift warm"] > 0 and o["drift warm"] >= 2 * o["drift cold"],
        "drift_warm >= 2 drift_cold",
    ),
)


if __name__ == "__main__":
    from blojax.runner.cli import run_module

    raise SystemExit(run_module(__name__))
