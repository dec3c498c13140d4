"""``jitnan``: an experiment whose inner solve diverges inside ``jit``, so the library's run-time check
(``throw=True``) raises a wrapped JAX runtime error (test fixture only)."""

import dataclasses

import jax
import jax.numpy as jnp
import optax

import blojax as blo

DESCRIPTION = "test experiment whose jitted inner solve diverges"


@dataclasses.dataclass(frozen=True)
class Config:
    lr: float = 1.0

    def validate(self):
        pass

    @classmethod
    def quick(cls):
        return cls()


@dataclasses.dataclass
class Result:
    w: list

    def to_dict(self):
        return {"w": self.w}


def run(config, ctx=None):
    problem = blo.Problem(inner=lambda u, w: jnp.sum(jnp.exp(1e3 * w)), outer=lambda u, w: jnp.sum(w))
    solve = jax.jit(lambda w0: blo.InnerLoop(optax.sgd(config.lr), steps=5).run(problem, 0.0, w0)[0])
    return Result(jax.block_until_ready(solve(jnp.ones(2))).tolist())


def plot(result, out_dir):
    return []
