"""A tiny experiment whose whole computation goes through ``ctx.reuse`` (a test fixture for
tests/test_runner_reuse.py, not a paper experiment)."""

from __future__ import annotations

import dataclasses
import pathlib

import jax.numpy as jnp

from blojax.data import download
from blojax.experiments import common

DESCRIPTION = "Test fixture: one shared computation (ctx.reuse)"


@dataclasses.dataclass(frozen=True)
class Config:
    n: int = 3

    def validate(self) -> None:
        common.check_field(self.n >= 1, "exp_reuse.Config", "n", "a positive int", self.n)

    @classmethod
    def quick(cls) -> "Config":
        return cls()


@dataclasses.dataclass(frozen=True)
class Result:
    total: float

    def to_dict(self) -> dict:
        return {"total": self.total}


def _work(ctx, n: int) -> float:
    download.record_source("toydata", f"toy data n={n}", "1")
    carry, _ = ctx.scan(lambda c, k: (c + k, jnp.arange(k, dtype=jnp.float32)), jnp.float32(0), n, key="loop")
    return float(carry)


def run(config: Config, ctx: common.RunContext | None = None) -> Result:
    ctx = common.ensure_context(ctx)
    config.validate()
    return Result(ctx.reuse("exp_reuse.work", config, lambda: _work(ctx, config.n)))


def plot(result: Result, out_dir) -> list[pathlib.Path]:
    return []
