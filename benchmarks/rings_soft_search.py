"""Three rings with learned soft labels: the soft-label step chosen on TRAINING-split accuracy only.

For each candidate of ``label_lr`` (the Adam step of the soft-label logits, the one knob that acts on the
soft-label variants alone), warm-start runs exactly as in :func:`blojax.experiments.rings.run_variant`
(same data, seeds, model, optimizers and steps) and the script prints the accuracy of the final
warm-start model on the TRAINING split, per seed and mean. No test accuracy is printed here; the chosen
step is then set as ``rings.Config.label_lr`` and the test numbers come from the ordinary run
(``python -m blojax.experiments.rings --out DIR``).

    python benchmarks/rings_soft_search.py [--label-lr 0.01,0.03,0.1,0.3] [--classes 3]
"""

from __future__ import annotations

import argparse
import dataclasses
import time

import numpy as np

from blojax.experiments import common, rings


def train_accuracy(cfg: rings.Config, n_classes: int) -> np.ndarray:
    """Final warm-start training-split accuracy per seed with soft labels: ``rings.run_variant`` itself
    (so the warm-start trajectory is the one the full run computes), with a token cold-start (its
    settings do not touch warm-start) to save time."""
    cheap = dataclasses.replace(cfg, cold_steps=1, cold_inner_steps=20, cold_unroll=1)
    v = rings.run_variant(cheap, n_classes, True, common.Context(progress=False))
    return np.asarray(v.warm_train_acc)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--label-lr", default="0.01,0.03,0.1,0.3")
    ap.add_argument("--classes", type=int, default=3)
    args = ap.parse_args(argv)
    print("| label_lr | train accuracy per seed | mean | s |\n|---|---|---|---|")
    for lr in (float(x) for x in args.label_lr.split(",")):
        cfg = dataclasses.replace(rings.Config(), label_lr=lr)
        t0 = time.perf_counter()
        acc = 100 * train_accuracy(cfg, args.classes)
        print(
            f"| {lr:g} | {' / '.join(f'{a:.1f}' for a in acc)} | {acc.mean():.1f} | {time.perf_counter() - t0:.0f} |",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
