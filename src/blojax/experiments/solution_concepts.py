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
"""

from __future__ import annotations

import dataclasses
import pathlib
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

import blojax as blo
from .claims import Claim, gap
from blojax.data import synthetic
from blojax.experiments import common
from blojax.experiments.common import check_field, check_int_fields
from blojax.experiments.rings import (
    _is_real,
    accuracy,
    cross_entropy,
    disk_projection,
    init_points,
    make_problem,
    stack_trees,
    stats,
    train_fresh,
)
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

    def validate(self) -> "Config":
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
            check_field(_is_real(v) and v > 0, name, field, "a positive finite number", v)
        for field in ("amplitude", "bias_scale", "point_bound"):
            v = getattr(self, field)
            check_field(_is_real(v) and v >= 0, name, field, "a non-negative finite number", v)
        check_field(
            _is_real(self.test_fraction) and 0 < self.test_fraction < 1,
            name,
            "test_fraction",
            "a number in (0, 1)",
            self.test_fraction,
        )
        ok = (
            isinstance(self.init_scales, (tuple, list))
            and len(self.init_scales) > 0
            and all(_is_real(s) and s > 0 for s in self.init_scales)
        )
        check_field(ok, name, "init_scales", "a non-empty tuple of positive numbers", self.init_scales)
        check_field(
            self.cold_unroll <= self.cold_inner_steps,
            name,
            "cold_unroll",
            f"<= cold_inner_steps ({self.cold_inner_steps})",
            self.cold_unroll,
        )
        return self

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


@dataclasses.dataclass
class Result:
    config: Config
    train: synthetic.Dataset
    test: synthetic.Dataset
    acc: dict  # concept -> (seeds,) test accuracy
    F: dict  # concept -> (seeds,) outer loss on the training split
    points: dict  # concept -> (seeds, 2, 2)
    models: dict  # concept -> MLP params with a leading seed axis
    warm_traj: np.ndarray  # (seeds, steps, 2, 2)
    fit_fraction: np.ndarray  # (seeds,) share of samples that fit their two points
    seconds: dict

    def to_dict(self) -> dict:
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
    return pairs, stack_trees([stack_trees(row) for row in inits])


def sample_solutions(cfg: Config, pairs, inits, problem):
    """Optimistic and pessimistic picks among the sampled inner solutions of one seed.

    Every init ``(p, m)`` is trained on the two points of pair ``p`` (``fit_steps`` SGD steps at
    ``fit_lr``); it is an inner solution when both points are classified correctly with inner loss
    below ``fit_tol``. Returns ``(u_opt, w_opt, u_pes, w_pes, fraction that fit)``.
    """
    eye = jnp.eye(2, dtype=jnp.float32)

    def fit(x, w0):
        w = train_fresh(w0, x, eye, cfg.fit_lr, cfg.fit_steps)
        logits = mlp_apply(w, x)
        ok = jnp.logical_and(
            cross_entropy(logits, eye) < cfg.fit_tol, jnp.all(jnp.argmax(logits, -1) == jnp.arange(2))
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


def run(config: Config | None = None, ctx: common.Context | None = None) -> Result:
    cfg = (config or Config()).validate()
    ctx = ctx or common.Context()
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
    u0, w0 = stack_trees(u0s), stack_trees(w0s)
    pairs, inits = stack_trees(cands)
    secs, acc, Fo, pts, mods = {}, {}, {}, {}, {}

    def finish(name, u, w):
        pts[name] = np.asarray(u["x"] if isinstance(u, dict) else u)
        mods[name] = jax.tree_util.tree_map(np.asarray, w)
        acc[name] = np.asarray(jax.vmap(lambda w_: accuracy(w_, Xte, Yte))(w))
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
    _check(wst, "warm-start")
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
    _check(cst, "cold-start")
    w_cold = jax.jit(jax.vmap(lambda u, w: inner.run(problem, u, w)[0]))(cst.u, w0)
    finish("cold", cst.u, w_cold)
    secs["cold_s"] = time.perf_counter() - t0

    # optimistic / pessimistic by sampling
    t0 = time.perf_counter()
    sample = jax.jit(jax.vmap(lambda p, i: sample_solutions(cfg, p, i, problem)))
    u_o, w_o, u_p, w_p, frac = ctx.stage("sampling", sample, pairs, inits)
    finish("optimistic", u_o, w_o)
    finish("pessimistic", u_p, w_p)
    secs["sampling_s"] = time.perf_counter() - t0
    secs["total_s"] = sum(secs.values())
    return Result(cfg, train, test, acc, Fo, pts, mods, np.asarray(wh["x"]), np.asarray(frac), secs)


def _check(state, name):
    d = np.asarray(state.diverged_step)
    if np.any(d >= 0):
        raise blo.NonFiniteError(
            f"{name}: non-finite values (NaN/inf) at outer step {int(d[d >= 0].min())}; "
            "stopping before any figure is written. Lower inner_lr / outer_lr."
        )


def plot(result: Result, out_dir) -> list[pathlib.Path]:
    import matplotlib.pyplot as plt
    from matplotlib.colors import ListedColormap
    from matplotlib.patches import Rectangle

    cfg, s = result.config, 0
    titles = {
        "optimistic": "optimistic (best sampled w in S(u))",
        "pessimistic": "pessimistic (worst sampled w in S(u))",
        "cold": "cold-start (w0 re-trained each step)",
        "warm": "warm-start (T=1, points move)",
    }
    # the data box, enlarged to show every synthetic point and the warm trajectory of seed index s
    pts = np.concatenate([result.points[c][s] for c in CONCEPTS] + [result.warm_traj[s].reshape(-1, 2)])
    xl = max(np.pi, float(np.abs(pts[:, 0]).max()) + 0.3)
    yl = max(2.0, float(np.abs(pts[:, 1]).max()) + 0.3)
    g1 = np.linspace(-xl, xl, 200)
    g2 = np.linspace(-yl, yl, 140)
    GX, GY = np.meshgrid(g1, g2)
    G = jnp.asarray(np.stack([GX.ravel(), GY.ravel()], -1), jnp.float32)
    colors = ["tab:blue", "tab:orange"]
    fig, axs = plt.subplots(1, 4, figsize=(15, 3.4))
    for ax, c in zip(axs, CONCEPTS):
        w = jax.tree_util.tree_map(lambda a: a[s], result.models[c])
        pred = np.asarray(jnp.argmax(mlp_apply(w, G), -1)).reshape(GX.shape)
        ax.contourf(GX, GY, pred, levels=[-0.5, 0.5, 1.5], cmap=ListedColormap(colors), alpha=0.2)
        ax.contour(GX, GY, pred, levels=[0.5], colors="k", linewidths=1)
        ax.scatter(
            result.test.x[:, 0],
            result.test.x[:, 1],
            c=[colors[int(y)] for y in result.test.y],
            s=3,
            alpha=0.6,
        )
        ax.plot(g1, cfg.amplitude * np.sin(cfg.frequency * g1), "k:", lw=0.8)
        if c == "warm":
            tr = result.warm_traj[s]
            for j in range(2):
                ax.plot(tr[:, j, 0], tr[:, j, 1], "-", color=colors[j], lw=0.8)
        p = result.points[c][s]
        for j in range(2):
            ax.scatter(p[j, 0], p[j, 1], marker="*", s=180, c=colors[j], edgecolors="k", zorder=5)
        ax.add_patch(Rectangle((-np.pi, -2), 2 * np.pi, 4, fill=False, ls="--", lw=0.6, color="gray"))
        ax.set_xlim(-xl, xl)
        ax.set_ylim(-yl, yl)
        ax.set_title(
            f"{titles[c]}\ntest accuracy {result.acc[c][s]:.0%} (mean over seeds {np.mean(result.acc[c]):.0%})",
            fontsize=9,
        )
        ax.set_xlabel("x1")
        ax.set_ylabel("x2")
    fig.suptitle(
        "Four solution concepts for distilling a sinusoid-split dataset into 2 points (stars); "
        "dotted: true boundary, solid: learned boundary, dashed box: data region (seed index 0)",
        fontsize=10,
    )
    fig.tight_layout()
    return [common.save_figure(fig, pathlib.Path(out_dir) / "solution_concepts.png")]


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
