r"""E1: the four solution concepts of dataset distillation on a 2-D binary task (PAPER.md E1, Fig. 2).

Two classes split by a sinusoid ``x2 = A sin(omega x1)`` are distilled into two synthetic points
``u = (x_0, x_1)`` with fixed labels 0 and 1; the inner model ``w`` is a ReLU MLP (overparameterized:
many boundaries fit two points). With ``f(u, w)`` the cross-entropy on the two points and ``F(u, w)``
the cross-entropy on the original training split:

* **optimistic**   ``min_u min_{w in S(u)} F(u, w)``
* **pessimistic**  ``min_u max_{w in S(u)} F(u, w)``
* **cold-start**   ``min_u F(u, Xi^T(u, w0))`` — ``blo.ColdStart`` (T SGD steps from the fixed ``w0``
  every outer step, ``Unroll(K)`` hypergradient, Adam on ``u``).
* **warm-start**   partial warm-start, T = 1 with a 1-step unrolled hypergradient, Adam on ``u``.

Optimistic and pessimistic are approximated by sampling (stated, not exact): ``pairs`` candidate
synthetic sets ``u`` (one random training point of each class), and for each ``models`` inner
solutions ``w in S(u)`` obtained by training MLPs from independent random inits of different scales
(``init_scales``) on the two points for ``fit_steps`` SGD steps; a sample counts as a solution only if it
classifies both points correctly with inner loss below ``fit_tol``. Optimistic = the (u, w) with the
lowest ``F``; pessimistic = the ``u`` whose worst sampled solution is least bad, with that worst ``w``.
The extremes are taken on the *training* split; accuracies are reported on the held-out test split.

The problem, the point initialization, the disk projection and the point fitting are shared with E2
(:mod:`blojax.experiments._distill2d`); the figure is :mod:`blojax.experiments.figures.solution_concepts`.
"""

from __future__ import annotations

import dataclasses
import pathlib
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

import blojax as blo
from blojax.data import synthetic
from blojax.experiments import common, toolkit
from blojax.experiments._distill2d import (
    disk_projection,
    fit_points,
    init_points,
    is_real,
    make_problem,
    mlp_accuracy,
)
from blojax.experiments.claims import Claim, gap
from blojax.experiments.common import check_field, check_int_fields
from blojax.models.mlp import init_mlp, mlp_apply

DESCRIPTION = "E1: optimistic, pessimistic, cold-start and warm-start solutions of 2-point distillation of a sinusoid-split dataset"

__all__ = ["DESCRIPTION", "Config", "Result", "run", "plot"]

CONCEPTS = ("optimistic", "pessimistic", "cold", "warm")


@dataclasses.dataclass(frozen=True)
class Config:
    """Settings of E1 (the paper gives none of these numbers).

    Data: ``n`` points uniform in ``[-pi, pi] x [-2, 2]``, label = above ``amplitude * sin(frequency x1)``
      (amplitude 1, frequency 1.5: 1.5 periods, so no line separates the classes), ``test_fraction`` held out.
    Model: ReLU MLP ``2 -> width^depth -> 2`` (2 x 32), biases ``N(0, bias_scale^2)``.
    Warm/cold: as in the ring lab, warm-start's single inner SGD step ``inner_lr`` (3e-4: the model
      learns slowly compared with how fast the points move) and Adam ``outer_lr`` (1.0) on the points
      for ``warm_steps``; cold-start re-trains ``w0`` with SGD at ``fit_lr`` for ``cold_inner_steps``
      steps every one of its ``cold_steps`` outer steps, unrolls the last ``cold_unroll`` of them and
      moves the points with Adam ``cold_outer_lr`` (0.03). After every outer step the points are
      projected onto the disk of radius ``point_bound * max_i ||X_i||`` (0: off).
    Sampling: ``pairs`` candidate point pairs x ``models`` inits each, init scales cycled through
      ``init_scales`` (diverse boundaries), ``fit_steps`` SGD steps at ``fit_lr`` per fit, ``fit_tol``
      inner loss for a sample to count as an inner solution.
    Seeds: ``seeds`` independent seeds (model inits, point inits, samples) from ``seed`` (also the data seed).
    """

    n: int = 600
    amplitude: float = 1.0
    frequency: float = 1.5
    test_fraction: float = 0.5
    width: int = 32
    depth: int = 2
    bias_scale: float = 1.0
    inner_lr: float = 0.0003
    outer_lr: float = 1.0
    cold_outer_lr: float = 0.03
    point_bound: float = 1.5
    warm_steps: int = 3000
    cold_steps: int = 100
    cold_inner_steps: int = 1000
    cold_unroll: int = 20
    pairs: int = 24
    models: int = 24
    init_scales: tuple = (0.5, 1.0, 2.0, 4.0)
    fit_steps: int = 1000
    fit_lr: float = 0.1
    fit_tol: float = 0.1
    seeds: int = 5
    seed: int = 0

    def validate(self) -> None:
        """Raise :class:`~blojax.experiments.common.ConfigError` naming the first invalid field."""
        name = "Config"
        check_int_fields(
            self,
            (
                ("n", 20),
                "width",
                "depth",
                "warm_steps",
                "cold_steps",
                "cold_inner_steps",
                "cold_unroll",
                "pairs",
                "models",
                "fit_steps",
                "seeds",
            ),
        )
        check_field(
            isinstance(self.seed, int) and not isinstance(self.seed, bool) and self.seed >= 0,
            name,
            "seed",
            "a non-negative integer",
            self.seed,
        )
        for field in ("inner_lr", "outer_lr", "cold_outer_lr", "fit_lr", "fit_tol", "frequency"):
            v = getattr(self, field)
            check_field(is_real(v) and v > 0, name, field, "a positive finite number", v)
        for field in ("amplitude", "bias_scale", "point_bound"):
            v = getattr(self, field)
            check_field(is_real(v) and v >= 0, name, field, "a non-negative finite number", v)
        check_field(
            is_real(self.test_fraction) and 0 < self.test_fraction < 1,
            name,
            "test_fraction",
            "a number in (0, 1)",
            self.test_fraction,
        )
        ok = (
            isinstance(self.init_scales, (tuple, list))
            and len(self.init_scales) > 0
            and all(is_real(s) and s > 0 for s in self.init_scales)
        )
        check_field(ok, name, "init_scales", "a non-empty tuple of positive numbers", self.init_scales)
        check_field(
            self.cold_unroll <= self.cold_inner_steps,
            name,
            "cold_unroll",
            f"<= cold_inner_steps ({self.cold_inner_steps})",
            self.cold_unroll,
        )

    @classmethod
    def quick(cls) -> "Config":
        """Fewer steps, samples and seeds: the pipeline in seconds."""
        return cls(
            warm_steps=600,
            cold_steps=10,
            cold_inner_steps=200,
            cold_unroll=10,
            pairs=6,
            models=6,
            fit_steps=300,
            seeds=2,
            width=16,
        )


@dataclasses.dataclass(frozen=True)
class Result:
    """E1's outcome. The dicts are keyed by the concepts of :data:`CONCEPTS` (``"optimistic"``,
    ``"pessimistic"``, ``"cold"``, ``"warm"``); arrays have a leading seed axis ``S``.

    Attributes:
      config: the configuration run.
      train, test: the training split (``F`` and the sampling use it) and the held-out test split.
      acc: concept -> ``(S,)`` test accuracy of the concept's model ``w``.
      F: concept -> ``(S,)`` outer loss ``F(u, w)`` on the training split.
      points: concept -> ``(S, 2, 2)`` the concept's synthetic points ``u``.
      models: concept -> the concept's MLP ``w`` (leaves with a leading seed axis).
      warm_traj: ``(S, warm_steps, 2, 2)`` the points ``u_t`` along warm-start.
      fit_fraction: ``(S,)`` share of the sampled inits whose fit is an inner solution (``w in S(u)``).
      seconds: wall seconds per stage (``warm_s``, ``cold_s``, ``sampling_s``) and ``total_s``.
    """

    config: Config
    train: synthetic.Dataset
    test: synthetic.Dataset
    acc: dict[str, np.ndarray]
    F: dict[str, np.ndarray]
    points: dict[str, np.ndarray]
    models: dict[str, Any]
    warm_traj: np.ndarray
    fit_fraction: np.ndarray
    seconds: dict[str, float]

    def to_dict(self) -> dict:
        """``results.json``: per-seed statistics (:func:`toolkit.seed_stats`) of each concept's test
        accuracy and ``F``, the concepts ordered by mean accuracy, the sampling's yield."""
        stats = toolkit.seed_stats
        order = sorted(CONCEPTS, key=lambda c: -float(np.mean(self.acc[c])))
        return {
            "test_accuracy": {c: stats(self.acc[c]) for c in CONCEPTS},
            "outer_loss_train": {c: stats(self.F[c]) for c in CONCEPTS},
            "order_by_mean_accuracy": order,
            "expected_order": "optimistic >= warm >= cold ~ pessimistic",
            "sampled_inner_solutions": {
                "per_seed": self.config.pairs * self.config.models,
                "fraction_fitting_the_points": stats(self.fit_fraction),
            },
            "seconds": self.seconds,
        }


def draw_samples(cfg: Config, rng, X, Y):
    """The candidates of one seed: ``pairs`` synthetic sets (``(P, 2, 2)``) and ``pairs x models`` MLP
    inits (leaves ``(P, M, ...)``), init scales cycled through ``init_scales``."""
    sizes = [2] + [cfg.width] * cfg.depth + [2]
    pairs = jnp.stack([init_points(rng, X, Y, 2, False)["x"] for _ in range(cfg.pairs)])
    inits = [
        [
            jax.tree_util.tree_map(
                lambda a, m=m: a * cfg.init_scales[m % len(cfg.init_scales)],
                init_mlp(rng, sizes, bias_scale=cfg.bias_scale),
            )
            for m in range(cfg.models)
        ]
        for _ in range(cfg.pairs)
    ]
    return pairs, toolkit.tree_stack([toolkit.tree_stack(row) for row in inits])


def sample_solutions(cfg: Config, pairs, inits, problem):
    """Optimistic and pessimistic picks among the sampled inner solutions of one seed.

    Every init ``(p, m)`` is trained on the two points of pair ``p`` (``fit_steps`` SGD steps at
    ``fit_lr``); it is an inner solution when both points are classified correctly with inner loss
    below ``fit_tol``. A fit that diverged is no inner solution (its loss is NaN, so it fails the
    test) and does not stop the sampling; the picks themselves are checked finite by :func:`run`.
    Returns ``(u_opt, w_opt, u_pes, w_pes, fraction that fit)``.
    """
    eye = jnp.eye(2, dtype=jnp.float32)

    def fit(x, w0):
        w = fit_points(w0, x, eye, cfg.fit_lr, cfg.fit_steps, throw=False)
        logits = mlp_apply(w, x)
        ok = jnp.logical_and(
            toolkit.prob_cross_entropy(logits, eye) < cfg.fit_tol,
            jnp.all(jnp.argmax(logits, -1) == jnp.arange(2)),
        )
        return w, ok, problem.F({"x": x}, w)

    w, ok, Fv = jax.vmap(lambda x, ws: jax.vmap(fit, in_axes=(None, 0))(x, ws))(pairs, inits)
    inf = jnp.asarray(jnp.inf, Fv.dtype)
    F_opt = jnp.where(ok, Fv, inf)
    i_opt = jnp.unravel_index(jnp.argmin(F_opt), F_opt.shape)
    F_worst = jnp.max(jnp.where(ok, Fv, -inf), axis=1)  # worst solution per pair
    F_worst = jnp.where(jnp.any(ok, axis=1), F_worst, inf)  # pairs with no solution are out
    p_pes = jnp.argmin(F_worst)
    m_pes = jnp.argmax(jnp.where(ok[p_pes], Fv[p_pes], -inf))
    pick = lambda p, m: jax.tree_util.tree_map(lambda a: a[p, m], w)  # noqa: E731
    return pairs[i_opt[0]], pick(*i_opt), pairs[p_pes], pick(p_pes, m_pes), jnp.mean(ok)


def paper_comparison(results: dict) -> list[dict]:
    """Rows for the report: our order of the four concepts beside the one PAPER.md E1 implies."""
    acc = results["test_accuracy"]
    return [
        {
            "quantity": "order by mean test accuracy",
            "ours": " > ".join(results["order_by_mean_accuracy"]),
            "paper": "optimistic >= warm >= cold ~ pessimistic",
        },
        {
            "quantity": "test accuracy optimistic / warm / cold / pessimistic (%)",
            "ours": " / ".join(
                f"{100 * acc[c]['mean']:.1f}" for c in ("optimistic", "warm", "cold", "pessimistic")
            ),
            "paper": "not given (Fig. 2 is a sketch)",
        },
    ]


def run(config: Config, ctx: common.RunContext | None = None) -> Result:
    """The four concepts over ``config.seeds`` seeds: warm-start, cold-start, then the sampled
    optimistic and pessimistic solutions; see the module docstring."""
    ctx = common.ensure_context(ctx)
    config.validate()
    cfg = config
    data = synthetic.sinusoid(cfg.n, amplitude=cfg.amplitude, frequency=cfg.frequency, seed=cfg.seed)
    train, test = synthetic.split(data, cfg.test_fraction, seed=cfg.seed)
    problem = make_problem(train.x, train.y, 2)
    Xtr, Ytr, Xte, Yte = map(jnp.asarray, (train.x, train.y, test.x, test.y))
    sizes = [2] + [cfg.width] * cfg.depth + [2]
    u0s, w0s, cands = [], [], []
    for s in range(cfg.seed, cfg.seed + cfg.seeds):
        rng = np.random.default_rng(s)
        w0s.append(init_mlp(rng, sizes, bias_scale=cfg.bias_scale))
        u0s.append(init_points(rng, train.x, train.y, 2, False))
        cands.append(draw_samples(cfg, rng, train.x, train.y))
    u0, w0 = toolkit.tree_stack(u0s), toolkit.tree_stack(w0s)
    pairs, inits = toolkit.tree_stack(cands)
    secs, acc, Fo, pts, mods = {}, {}, {}, {}, {}

    def finish(name, u, w):
        pts[name] = np.asarray(u["x"] if isinstance(u, dict) else u)
        mods[name] = jax.tree_util.tree_map(np.asarray, w)
        acc[name] = np.asarray(jax.vmap(lambda w_: mlp_accuracy(w_, Xte, Yte))(w))
        Fo[name] = np.asarray(jax.vmap(lambda w_: problem.F(u0, w_))(w))

    # warm-start
    record = lambda u, w: {"x": u["x"]}  # noqa: E731
    radius = cfg.point_bound * float(np.max(np.linalg.norm(train.x, axis=1)))

    def outer_opt(lr):
        return optax.chain(optax.adam(lr), disk_projection(radius)) if cfg.point_bound > 0 else optax.adam(lr)

    outer = outer_opt(cfg.outer_lr)
    warm = blo.WarmStart(
        problem, blo.InnerLoop(optax.sgd(cfg.inner_lr), steps=1), blo.Unroll(1), outer, record=record
    )
    warm_jit = jax.jit(lambda st, n: jax.vmap(lambda s: warm.run(s, n))(st), static_argnums=1)
    t0 = time.perf_counter()
    wst, wh = ctx.scan(
        warm_jit, jax.vmap(warm.init)(u0, w0), cfg.warm_steps, key="warm", desc="warm-start", history_axis=1
    )
    toolkit.require_finite("warm-start (lower inner_lr / outer_lr)", diverged_step=wst.diverged_step)
    finish("warm", wst.u, wst.w)
    secs["warm_s"] = time.perf_counter() - t0

    # cold-start
    inner = blo.InnerLoop(optax.sgd(cfg.fit_lr), steps=cfg.cold_inner_steps)
    cold = blo.ColdStart(problem, inner, blo.Unroll(cfg.cold_unroll), outer_opt(cfg.cold_outer_lr))
    cold_jit = jax.jit(lambda st, n: jax.vmap(lambda s: cold.run(s, n))(st), static_argnums=1)
    t0 = time.perf_counter()
    cst, _ = ctx.scan(
        cold_jit, jax.vmap(cold.init)(u0, w0), cfg.cold_steps, key="cold", desc="cold-start", history_axis=1
    )
    toolkit.require_finite("cold-start (lower fit_lr / cold_outer_lr)", diverged_step=cst.diverged_step)
    # throw=False (toolkit NaN policy: no host callback in compiled programs), checked here
    w_cold = jax.jit(jax.vmap(lambda u, w: inner.run(problem, u, w, throw=False)[0]))(cst.u, w0)
    toolkit.require_finite("cold-start's final inner solve (lower fit_lr)", w_cold)
    finish("cold", cst.u, w_cold)
    secs["cold_s"] = time.perf_counter() - t0

    # optimistic / pessimistic by sampling
    t0 = time.perf_counter()
    sample = jax.jit(jax.vmap(lambda p, i: sample_solutions(cfg, p, i, problem)))
    u_o, w_o, u_p, w_p, frac = ctx.stage("sampling", sample, pairs, inits)
    finish("optimistic", u_o, w_o)
    finish("pessimistic", u_p, w_p)
    toolkit.require_finite(
        "sampling (optimistic and pessimistic picks)", (Fo["optimistic"], Fo["pessimistic"])
    )
    secs["sampling_s"] = time.perf_counter() - t0
    secs["total_s"] = sum(secs.values())
    return Result(cfg, train, test, acc, Fo, pts, mods, np.asarray(wh["x"]), np.asarray(frac), secs)


def plot(result: Result, out_dir) -> list[pathlib.Path]:
    """E1's figure (:mod:`blojax.experiments.figures.solution_concepts`): the four concepts' boundaries."""
    from blojax.experiments.figures import solution_concepts as figures

    return figures.plot(result, out_dir)


# ------------------------------------------------------------------------------------ claims ledger


def _acc(r, c):
    return round(100 * r["test_accuracy"][c]["mean"], 1)


CLAIMS = (
    Claim(
        "E1.warm-beats-cold",
        "Warm-start's points move and its model fits the data: warm-start's test accuracy exceeds cold-start's "
        "(min-norm boundary) by >= 5 points",
        "Fig. 2: cold-start gives the min-norm boundary, warm-start fits the data (no numbers)",
        lambda r: {"warm %": _acc(r, "warm"), "cold %": _acc(r, "cold")},
        lambda o: gap(o["warm %"], o["cold %"], 5.0),
        "warm - cold >= 5 points (mean over seeds)",
    ),
    Claim(
        "E1.optimistic-beats-pessimistic",
        "The optimistic solution (best inner solution for F) beats the pessimistic one (worst) in test accuracy by "
        ">= 5 points and in outer loss F by a factor >= 3",
        "Fig. 2: optimistic and pessimistic solutions differ (no numbers)",
        lambda r: {
            "optimistic %": _acc(r, "optimistic"),
            "pessimistic %": _acc(r, "pessimistic"),
            "F optimistic": r["outer_loss_train"]["optimistic"]["mean"],
            "F pessimistic": r["outer_loss_train"]["pessimistic"]["mean"],
        },
        lambda o: (
            gap(o["optimistic %"], o["pessimistic %"], 5.0) and o["F pessimistic"] >= 3 * o["F optimistic"]
        ),
        "optimistic - pessimistic >= 5 points and F_pes >= 3 F_opt",
    ),
)


if __name__ == "__main__":
    from blojax.runner.cli import run_module

    raise SystemExit(run_module(__name__))
