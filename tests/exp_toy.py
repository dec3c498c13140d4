"""A small experiment for testing the command line itself (a test fixture, not a paper experiment:
it is not listed unless registered, e.g. ``PYTHONPATH=tests BLOJAX_EXPERIMENTS=toy=exp_toy blojax run
toy`` from the repository root).

Least-squares dataset distillation with warm-start BLO: outer ``u`` = inputs of ``n_syn`` synthetic
points with fixed labels ``y_s``, inner ``w`` = a linear model; ``f(u, w) = 0.5 ||u w - y_s||^2``,
``F(u, w) = 0.5 mean((X_o w - y_o)^2)`` on ``n_orig`` original points drawn from ``seed``. One inner
SGD step and a 1-step unrolled hypergradient per outer step (alternating training). Float64.

It implements the sweep hook (``BATCH_FIELDS`` + ``run_batch``): configurations that differ only in
``seed`` and ``lr`` run as one ``vmap``ped computation.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Literal

import jax
import jax.numpy as jnp
import numpy as np
import optax

import blojax as blo
from blojax.experiments import common

DESCRIPTION = (
    "Test experiment of the command line: warm-start least-squares distillation (not from the paper)"
)

BATCH_FIELDS = ("seed", "lr")


@dataclasses.dataclass(frozen=True)
class Config:
    steps: int = 400  # outer steps
    lr: float = 0.01  # outer learning rate
    inner_lr: float = 0.05  # inner SGD step
    outer: Literal["adam", "sgd"] = "adam"  # outer optimizer (sgd with a large lr diverges: error tests)
    n_syn: int = 2  # synthetic points (outer)
    n_orig: int = 20  # original points
    dim: int = 6  # input dimension (= number of inner parameters)
    seed: int = 0
    chunk_delay: float = 0.0  # seconds to sleep after each chunk (lets tests interrupt a run mid-way)

    def validate(self):
        name = "toy.Config"
        common.check_field(self.steps >= 1, name, "steps", "a positive integer", self.steps)
        common.check_field(self.lr > 0, name, "lr", "positive", self.lr)
        common.check_field(self.inner_lr > 0, name, "inner_lr", "positive", self.inner_lr)
        common.check_field(self.outer in ("adam", "sgd"), name, "outer", "'adam' or 'sgd'", self.outer)
        for f in ("n_syn", "n_orig", "dim"):
            common.check_field(getattr(self, f) >= 1, name, f, "a positive integer", getattr(self, f))
        common.check_field(self.chunk_delay >= 0, name, "chunk_delay", "non-negative", self.chunk_delay)

    @classmethod
    def quick(cls):
        return cls(steps=200)


@dataclasses.dataclass
class Result:
    config: Config
    F: np.ndarray  # outer loss per step
    u: np.ndarray  # final synthetic inputs
    w: np.ndarray  # final inner weights

    def to_dict(self):
        return {
            "final_F": float(self.F[-1]),
            "min_F": float(np.min(self.F)),
            "u_norm": float(np.linalg.norm(self.u)),
            "w_norm": float(np.linalg.norm(self.w)),
            "u": self.u.tolist(),
            "w": self.w.tolist(),
        }


def _data(seed, cfg: Config):
    k1, k2, k3 = jax.random.split(jax.random.PRNGKey(seed), 3)
    X_o = jax.random.normal(k1, (cfg.n_orig, cfg.dim), jnp.float64)
    y_o = jnp.tanh(X_o @ jax.random.normal(k2, (cfg.dim,), jnp.float64))
    u0 = jax.random.normal(k3, (cfg.n_syn, cfg.dim), jnp.float64)
    return (X_o, y_o), u0


def _algo(data, lr, cfg: Config):
    X_o, y_o = data
    y_s = jnp.where(jnp.arange(cfg.n_syn) % 2 == 0, 1.0, -1.0)

    def f(u, w):
        return 0.5 * jnp.sum((u @ w - y_s) ** 2)

    def F(u, w):
        return 0.5 * jnp.mean((X_o @ w - y_o) ** 2)

    outer = optax.adam(lr) if cfg.outer == "adam" else optax.sgd(lr)
    return blo.WarmStart(
        blo.Problem(f, F), blo.InnerLoop(optax.sgd(cfg.inner_lr), steps=1), blo.Unroll(1), outer
    )


def _init(seed, lr, cfg):
    data, u0 = _data(seed, cfg)
    state = _algo(data, lr, cfg).init(u0, jnp.zeros(cfg.dim, jnp.float64))
    return state, data, lr


def _chunk(carry, n, cfg):
    state, data, lr = carry
    state, hist = _algo(data, lr, cfg).run(state, n, on_nonfinite="stop")
    return (state, data, lr), {"F": hist["F"], "u_norm": hist["u_norm"], "w_norm": hist["w_norm"]}


_init_one = jax.jit(_init, static_argnums=2)
_chunk_one = jax.jit(_chunk, static_argnums=(1, 2))
_init_many = jax.jit(jax.vmap(_init, in_axes=(0, 0, None)), static_argnums=2)
_chunk_many = jax.jit(jax.vmap(_chunk, in_axes=(0, None, None), out_axes=(0, 0)), static_argnums=(1, 2))


def _shape_config(cfg: Config) -> Config:
    """The fields that fix the computation (what a vmapped batch shares)."""
    return dataclasses.replace(cfg, seed=0, lr=1.0, chunk_delay=0.0, steps=1)


def _check_finite(F, label):
    if not np.all(np.isfinite(F)):
        bad = int(np.argmax(~np.isfinite(F).reshape(F.shape[0], -1).all(axis=1)))
        raise blo.NonFiniteError(f"toy ({label}): non-finite outer loss at step {bad}", None, {"F": F})


def run(config: Config, ctx: common.RunContext | None = None) -> Result:
    config.validate()
    ctx = common.ensure_context(ctx)
    shape = _shape_config(config)
    with jax.enable_x64(True):

        def chunk(carry, n):
            out = _chunk_one(carry, n, shape)
            if config.chunk_delay:
                time.sleep(config.chunk_delay)
            return out

        carry = _init_one(config.seed, jnp.float64(config.lr), shape)
        (state, _, _), hist = ctx.scan(chunk, carry, config.steps, key="toy", desc="toy")
        F = np.asarray(hist["F"])
        _check_finite(F, f"seed={config.seed}")
        return Result(config, F, np.asarray(state.u), np.asarray(state.w))


def run_batch(configs: list[Config], ctx: common.RunContext | None = None) -> list[Result]:
    """All ``configs`` (equal but for ``seed`` and ``lr``) as one vmapped computation."""
    ctx = common.ensure_context(ctx)
    shape = _shape_config(configs[0])
    if any(_shape_config(c) != shape for c in configs):
        raise ValueError("run_batch: configs must differ only in " + ", ".join(BATCH_FIELDS))
    for c in configs:
        c.validate()
    with jax.enable_x64(True):
        seeds = jnp.asarray([c.seed for c in configs])
        lrs = jnp.asarray([c.lr for c in configs], jnp.float64)
        carry = _init_many(seeds, lrs, shape)
        (state, _, _), hist = ctx.scan(
            lambda c, n: _chunk_many(c, n, shape), carry, configs[0].steps, key="toy-batch", history_axis=1
        )
        F = np.asarray(hist["F"])  # (batch, steps)
        out = []
        for i, c in enumerate(configs):
            _check_finite(F[i], f"seed={c.seed}")
            out.append(Result(c, F[i], np.asarray(state.u[i]), np.asarray(state.w[i])))
        return out


def plot(result: Result, out_dir):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.2))
    ax.semilogy(np.arange(1, len(result.F) + 1), result.F, label="outer loss F(u, w)")
    ax.set_xlabel("outer step")
    ax.set_ylabel("F on the original points")
    ax.set_title(f"toy: warm-start distillation (seed {result.config.seed}, lr {result.config.lr})")
    ax.legend()
    return [common.save_figure(fig, f"{out_dir}/toy_loss.png")]


def paper_comparison(results: dict):
    return [{"quantity": "final outer loss", "ours": results["final_F"], "paper": "n/a (test experiment)"}]


if __name__ == "__main__":
    from blojax.runner.cli import run_module

    raise SystemExit(run_module(__name__))
