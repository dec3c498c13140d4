"""``dataexp``: reads an IDX dataset through :func:`blojax.data.load_dataset` (``root`` field), so the
data provenance in results.json and checkpoints can be checked. Test fixture only."""

from __future__ import annotations

import dataclasses

import numpy as np

from blojax.experiments import common

DESCRIPTION = "test experiment reading an IDX dataset"


@dataclasses.dataclass(frozen=True)
class Config:
    root: str = ""
    steps: int = 40

    def validate(self):
        common.check_field(self.steps >= 1, "dataexp.Config", "steps", "a positive integer", self.steps)

    @classmethod
    def quick(cls):
        return cls()


@dataclasses.dataclass
class Result:
    mean: float
    total: float

    def to_dict(self):
        return {"mean": self.mean, "total": self.total}


def run(config: Config, ctx: common.RunContext | None = None) -> Result:
    from blojax.data import load_dataset

    ctx = common.ensure_context(ctx)
    d = load_dataset("mnist", root=config.root or None, val_size=10)
    x = np.asarray(d.x_train.reshape(len(d.x_train), -1).mean(1), np.float64)

    def chunk(c, n):
        out = c + np.arange(n, dtype=np.float64)
        return c + n, out

    total, hist = ctx.scan(chunk, np.float64(0.0), config.steps, key="count")
    return Result(float(x.mean()), float(total))


def plot(result, out_dir):
    return []
