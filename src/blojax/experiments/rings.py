r"""E2: inner overparameterization — 2-D dataset distillation on concentric rings (PAPER.md E2, Figs. 6–7).

The original data are C concentric rings (one class per ring). The outer parameters ``u`` are C
synthetic points (one per class) and, in the soft-label variant, a C-dim label logit vector per
point (label = softmax of it, initialized to zero, i.e. uniform); the inner parameters ``w`` are a
ReLU MLP. With ``y_j`` the label of synthetic point ``x_j`` and ``(X_i, Y_i)`` the original training
split,

    f(u, w) = 1/C sum_j CE(mlp(w, x_j), y_j)          (inner: fit the synthetic points)
    F(u, w) = 1/N sum_i CE(mlp(w, X_i), Y_i)          (outer: loss on the original data)

Three algorithms, each over ``seeds`` seeds in one ``vmap``-ped compiled scan:

* **warm-start** (partial, T = 1, 1-step unrolled hypergradient, Adam on ``u``): alternating joint
  training of the points and the model, ``blo.WarmStart(P, InnerLoop(sgd(a), 1), Unroll(1), adam)``.
* **cold-start**: the fixed initialization ``w0`` re-trained for T inner SGD steps at every outer
  step, ``Unroll(K)`` hypergradient through the last K of them, Adam on ``u``.
* **warm-start + retrain**: a fresh model (the same ``w0``) trained with the inner optimizer for
  ``retrain_steps`` steps on the synthetic points of a snapshot of the warm trajectory.

Information-leak diagnostic: fresh models trained on (a) each of the ``snapshots`` snapshots of the
warm trajectory alone and (b) all of them together (``snapshots * C`` points with their labels).
Accuracy is always measured on a held-out test split of the generated rings, which nothing is tuned on.
"""

from __future__ import annotations

import dataclasses
import io
import pathlib
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

import blojax as blo
from .claims import Claim, gap
from blojax.data import synthetic
from blojax.experiments import common
from blojax.experiments.common import check_field, check_int_fields
from blojax.models.mlp import init_mlp, mlp_apply

DESCRIPTION = "E2: 2-D dataset distillation on concentric rings — warm vs cold vs retrain, soft labels, information leak"

__all__ = ["DESCRIPTION", "Config", "Result", "run", "plot"]


# ------------------------------------------------------------------------------------ config
@dataclasses.dataclass(frozen=True)
class Config:
    """Settings of the ring lab. The paper gives none of the numbers below; each says why it was chosen.

    Data
      classes: ring counts to run (2 and 3, the paper's two variants).
      soft_labels: label modes to run (False: fixed one-hot labels; True: learned soft labels).
      n_per_class: points per ring before the split (200: a clear ring at noise 0.1, cheap outer loss).
      noise: radial noise of the rings (0.1: rings of radius 1, 2, 3 stay well apart).
      test_fraction: held-out share of every ring used only for accuracy (0.5).
    Model
      width, depth: hidden layers of the ReLU MLP (2 x 32: overparameterized for C points, small
        enough that 8000 outer steps x 5 seeds compile into one scan that runs in seconds).
      bias_scale: std of the initial biases (1.0: first-layer ReLU kinks spread over the rings; with
        zero biases the initial network is positively homogeneous and cannot tell rings apart).
      first_layer_scale: multiplies the first layer's initial weights and biases (kink positions are
        unchanged, the pieces get steeper; 1.0 = plain He init).
    Optimization
      inner_lr: SGD step a of warm-start's single inner step (3e-4: the model must learn slowly
        compared with how fast the points move; with a >= 0.003 it becomes confident on the points
        before they have swept their rings, the 1-step hypergradient vanishes and the points stall).
      fit_lr: SGD step of every from-scratch fit: cold-start's T inner steps and retraining (0.1, so
        that T = 1000 steps reach an inner loss of ~1e-2 on the C points: "trained to convergence").
      outer_lr, outer_b2, outer_eps: warm-start's Adam on the synthetic points (1.0: with Adam's
        normalized steps the points cross the data disk in a few steps and sweep it many times).
      cold_outer_lr: cold-start's Adam step on the points (0.03: cold-start's u settles within ~100
        of its 200 steps; a step of 1.0 makes it bounce across the disk).
      label_lr: Adam step of the soft-label logits (0.01: chosen among 0.01 / 0.03 / 0.1 on the 3-ring
        TRAINING-split accuracy of warm-start, 5 seeds: 93.1 / 91.4 / 86.5 %;
        ``benchmarks/rings_soft_search.py``).
      point_bound: if > 0, after every outer step the points are projected onto the disk of radius
        ``point_bound * max_i ||X_i||`` (the data's extent; 0: unconstrained). The paper is silent; without
        a bound the 1-step hypergradient drives points far outside the data, where a ReLU network's
        gradient step has the most leverage, and they stall there saturated.
      point_init: ``"data"``: each synthetic point starts at a random training point of its class;
        ``"center"``: all start at the data mean (the origin) plus N(0, 0.1^2) noise.
      inner_loss: ``"ce"`` (cross-entropy against the labels, the default) or ``"mse"`` (half squared
        error between logits and labels: no saturation).
      warm_steps: outer steps of warm-start (12000; the paper shows ~8000 for two rings, three rings
        keep improving after that: train accuracy 0.94 at 8000 vs 0.96 at 12000 steps, 4 seeds).
      cold_steps, cold_inner_steps, cold_unroll: cold-start outer steps, inner steps T (the paper
        says T = 10^3..10^4) and unrolled steps K of its hypergradient.
      retrain_steps: inner steps of a fresh model trained on a snapshot ("to convergence": the
        inner loss on C points is then below 1e-2).
      snapshots: trajectory snapshots (retrain curve, leak diagnostic, animation frames).
    Seeds
      seeds: independent seeds (model init, point init) run in one vmap; seed: the first one (data
        seed too).
    """

    classes: tuple = (2, 3)
    soft_labels: tuple = (False, True)
    n_per_class: int = 200
    noise: float = 0.1
    test_fraction: float = 0.5
    width: int = 32
    depth: int = 2
    bias_scale: float = 1.0
    first_layer_scale: float = 1.0
    inner_lr: float = 0.0003
    fit_lr: float = 0.1
    outer_lr: float = 1.0
    cold_outer_lr: float = 0.03
    outer_b2: float = 0.999
    outer_eps: float = 1e-8
    label_lr: float = 0.01
    point_bound: float = 1.5
    point_init: str = "data"
    inner_loss: str = "ce"
    warm_steps: int = 12000
    cold_steps: int = 200
    cold_inner_steps: int = 1000
    cold_unroll: int = 20
    retrain_steps: int = 2000
    snapshots: int = 40
    seeds: int = 5
    seed: int = 0

    def validate(self) -> "Config":
        name = "Config"
        ok_classes = (
            isinstance(self.classes, (tuple, list))
            and len(self.classes) > 0
            and all(isinstance(c, int) and not isinstance(c, bool) and 2 <= c <= 6 for c in self.classes)
        )
        check_field(ok_classes, name, "classes", "a non-empty tuple of integers in [2, 6]", self.classes)
        ok_soft = (
            isinstance(self.soft_labels, (tuple, list))
            and len(self.soft_labels) > 0
            and all(isinstance(s, bool) for s in self.soft_labels)
        )
        check_field(ok_soft, name, "soft_labels", "a non-empty tuple of booleans", self.soft_labels)
        check_int_fields(
            self,
            (
                ("n_per_class", 4),
                "width",
                "depth",
                "warm_steps",
                "cold_steps",
                "cold_inner_steps",
                "cold_unroll",
                "retrain_steps",
                "snapshots",
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
        for field in (
            "inner_lr",
            "fit_lr",
            "outer_lr",
            "cold_outer_lr",
            "label_lr",
            "outer_eps",
            "first_layer_scale",
        ):
            v = getattr(self, field)
            check_field(_is_real(v) and v > 0, name, field, "a positive finite number", v)
        for field in ("noise", "bias_scale", "point_bound"):
            v = getattr(self, field)
            check_field(_is_real(v) and v >= 0, name, field, "a non-negative finite number", v)
        check_field(
            _is_real(self.outer_b2) and 0 <= self.outer_b2 < 1,
            name,
            "outer_b2",
            "a number in [0, 1)",
            self.outer_b2,
        )
        check_field(
            _is_real(self.test_fraction) and 0 < self.test_fraction < 1,
            name,
            "test_fraction",
            "a number in (0, 1)",
            self.test_fraction,
        )
        check_field(
            self.point_init in ("data", "center"), name, "point_init", "'data' or 'center'", self.point_init
        )
        check_field(self.inner_loss in ("ce", "mse"), name, "inner_loss", "'ce' or 'mse'", self.inner_loss)
        check_field(
            self.cold_unroll <= self.cold_inner_steps,
            name,
            "cold_unroll",
            f"<= cold_inner_steps ({self.cold_inner_steps})",
            self.cold_unroll,
        )
        check_field(
            self.warm_steps % self.snapshots == 0,
            name,
            "snapshots",
            f"a divisor of warm_steps ({self.warm_steps})",
            self.snapshots,
        )
        return self

    @classmethod
    def quick(cls) -> "Config":
        """Two rings with fixed labels, 3000 warm steps, 2 seeds, a short cold-start: the warm vs
        retrain gap in seconds (cold-start is only exercised, not converged)."""
        return cls(
            classes=(2,),
            soft_labels=(False,),
            warm_steps=3000,
            cold_steps=10,
            cold_inner_steps=200,
            cold_unroll=10,
            retrain_steps=300,
            snapshots=10,
            seeds=2,
        )


def _is_real(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and bool(np.isfinite(v))


# ------------------------------------------------------------------------------------ pieces
def cross_entropy(logits, targets):
    """Mean over rows of ``-sum_c targets_c log softmax(logits)_c`` (targets: probabilities)."""
    return -jnp.mean(jnp.sum(targets * jax.nn.log_softmax(logits), axis=-1))


def labels_of(u, n_classes: int):
    """The label matrix of the synthetic points: ``softmax(u['logits'])`` (soft) or the identity (fixed)."""
    if "logits" in u:
        return jax.nn.softmax(u["logits"], axis=-1)
    return jnp.eye(n_classes, dtype=u["x"].dtype)


def make_problem(X, Y, n_classes: int, inner_loss: str = "ce") -> blo.Problem:
    """``f`` = CE of the MLP on the synthetic points (``inner_loss="mse"``: half the squared error
    between logits and labels, averaged over points); ``F`` = CE on the original data ``(X, Y)``."""
    X = jnp.asarray(X)
    T = jnp.asarray(synthetic.one_hot(Y, n_classes))

    def f(u, w):
        if inner_loss == "mse":
            return 0.5 * jnp.mean(jnp.sum((mlp_apply(w, u["x"]) - labels_of(u, n_classes)) ** 2, axis=-1))
        return cross_entropy(mlp_apply(w, u["x"]), labels_of(u, n_classes))

    def F(u, w):
        return cross_entropy(mlp_apply(w, X), T)

    return blo.Problem(inner=f, outer=F)


def accuracy(w, X, Y):
    return jnp.mean(jnp.argmax(mlp_apply(w, jnp.asarray(X)), -1) == jnp.asarray(Y))


def train_fresh(w0, x, targets, lr: float, steps: int, inner_loss: str = "ce"):
    """A fresh model: ``steps`` SGD steps at ``lr`` from ``w0`` on ``CE(mlp(w, x), targets)`` (or the
    half squared error with ``inner_loss="mse"``), i.e. the inner objective of :func:`make_problem`."""

    def loss(w):
        if inner_loss == "mse":
            return 0.5 * jnp.mean(jnp.sum((mlp_apply(w, x) - targets) ** 2, axis=-1))
        return cross_entropy(mlp_apply(w, x), targets)

    def body(w, _):
        g = jax.grad(loss)(w)
        return jax.tree_util.tree_map(lambda p, q: p - lr * q, w, g), None

    w, _ = jax.lax.scan(body, w0, None, length=steps)
    return w


def disk_projection(radius: float) -> optax.GradientTransformation:
    """Project every row of ``u['x']`` onto the disk ``||x|| <= radius`` after the update (other
    leaves untouched)."""

    def init(params):
        del params
        return optax.EmptyState()

    def update(updates, state, params=None):
        if params is None:
            raise ValueError("disk_projection needs the parameters: update(updates, state, params)")
        new = dict(updates)
        x = params["x"] + updates["x"]
        norm = jnp.linalg.norm(x, axis=-1, keepdims=True)
        x = x * jnp.minimum(1.0, radius / jnp.maximum(norm, 1e-12))
        new["x"] = x - params["x"]
        return new, state

    return optax.GradientTransformation(init, update)


def outer_optimizer(
    cfg: Config, soft: bool, data_radius: float = 1.0, lr: float | None = None
) -> optax.GradientTransformation:
    """Adam on the points (step ``lr``, default ``cfg.outer_lr``) and on the soft-label logits
    (``cfg.label_lr``), then the optional projection onto the data disk."""
    lr = cfg.outer_lr if lr is None else lr
    adam = lambda lr: optax.adam(lr, b2=cfg.outer_b2, eps=cfg.outer_eps)  # noqa: E731
    if soft:
        opt = optax.multi_transform(
            {"x": adam(lr), "logits": adam(cfg.label_lr)}, {"x": "x", "logits": "logits"}
        )
    else:
        opt = adam(lr)
    if cfg.point_bound > 0:
        opt = optax.chain(opt, disk_projection(cfg.point_bound * data_radius))
    return opt


def init_model(key, sizes, cfg):
    """``init_mlp`` with biases ``N(0, bias_scale^2)`` and the first layer scaled by ``first_layer_scale``."""
    w = init_mlp(key, sizes, bias_scale=cfg.bias_scale)
    w[0] = {k: cfg.first_layer_scale * v for k, v in w[0].items()}
    return w


def init_points(rng, X, Y, n_classes: int, soft: bool, how: str = "data"):
    """One synthetic point per class at a random training point of that class (``how="data"``) or at
    the data mean plus N(0, 0.1^2) noise (``how="center"``); uniform soft labels (zero logits).
    ``rng``: an int seed or a ``numpy.random.Generator``."""
    rng = np.random.default_rng(rng) if not isinstance(rng, np.random.Generator) else rng
    X, Y = np.asarray(X), np.asarray(Y)
    if how == "center":
        x = X.mean(0) + 0.1 * rng.standard_normal((n_classes, X.shape[1]))
    else:
        x = np.stack([X[rng.choice(np.flatnonzero(Y == c))] for c in range(n_classes)])
    u = {"x": jnp.asarray(x, jnp.float32)}
    if soft:
        u["logits"] = jnp.zeros((n_classes, n_classes), jnp.float32)
    return u


def stack_trees(trees):
    """Stack a list of equal-structure pytrees along a new leading axis."""
    return jax.tree_util.tree_map(lambda *a: jnp.stack(a), *trees)


def init_seeds(cfg, sizes, X, Y, n_classes: int, soft: bool):
    """``(u0, w0)`` for seeds ``cfg.seed, ..., cfg.seed + cfg.seeds - 1`` stacked on a leading axis
    (NumPy draws per seed: reproducible and nothing to compile)."""
    us, ws = [], []
    for s in range(cfg.seed, cfg.seed + cfg.seeds):
        rng = np.random.default_rng(s)
        ws.append(init_model(rng, sizes, cfg))
        us.append(init_points(rng, X, Y, n_classes, soft, getattr(cfg, "point_init", "data")))
    return stack_trees(us), stack_trees(ws)


def switches(label_probs):
    """Number of changes of each point's argmax label along a trajectory ``(steps, C, C)`` -> ``(C,)``."""
    am = jnp.argmax(label_probs, axis=-1)
    return jnp.sum(am[1:] != am[:-1], axis=0)


def stats(x) -> dict:
    a = np.asarray(x, dtype=np.float64)
    return {
        "mean": float(a.mean()),
        "std": float(a.std()),
        "min": float(a.min()),
        "max": float(a.max()),
        "per_seed": a.tolist(),
    }


def _check_finite(name: str, diverged_step) -> None:
    d = np.asarray(diverged_step)
    if np.any(d >= 0):
        bad = [int(i) for i in np.flatnonzero(d >= 0)]
        raise blo.NonFiniteError(
            f"{name}: non-finite values (NaN/inf) at outer step {int(d[d >= 0].min())} for seed index(es) {bad}; "
            "stopping before any figure is written. Lower inner_lr / outer_lr."
        )


# ------------------------------------------------------------------------------------ one variant
def run_variant(cfg: Config, n_classes: int, soft: bool, ctx: common.Context) -> dict:
    """Warm, retrain, leak and cold for one (C, label mode); arrays keep a leading seed axis."""
    C = n_classes
    tag = f"{C}rings-{'soft' if soft else 'fixed'}"
    data = synthetic.rings(cfg.n_per_class, C, noise=cfg.noise, seed=cfg.seed)
    train, test = synthetic.split(data, cfg.test_fraction, seed=cfg.seed)
    problem = make_problem(train.x, train.y, C, cfg.inner_loss)
    Xtr, Ytr, Xte, Yte = map(jnp.asarray, (train.x, train.y, test.x, test.y))
    sizes = [2] + [cfg.width] * cfg.depth + [C]
    radius = float(np.max(np.linalg.norm(train.x, axis=1)))
    u0, w0 = init_seeds(cfg, sizes, train.x, train.y, C, soft)
    record = lambda u, w: {"x": u["x"], "labels": labels_of(u, C)}  # noqa: E731
    timings = {}

    # --- warm-start: T = 1, 1-step unrolled hypergradient, Adam on u; snapshots of (u, w) per frame
    warm = blo.WarmStart(
        problem,
        blo.InnerLoop(optax.sgd(cfg.inner_lr), steps=1),
        blo.Unroll(1),
        outer_optimizer(cfg, soft, radius),
        record=record,
    )
    per = cfg.warm_steps // cfg.snapshots
    state0 = jax.vmap(warm.init)(u0, w0)

    def frames(state, n):
        def one_frame(st, _):
            st, h = jax.vmap(lambda s: warm.run(s, per))(st)
            return st, (h, st.u, st.w)

        return jax.lax.scan(one_frame, state, None, length=n)

    frames_jit = jax.jit(frames, static_argnums=1)
    chunk = lambda st, n: frames_jit(st, n)  # noqa: E731
    t0 = time.perf_counter()
    wstate, (wh, snap_u, snap_w) = ctx.scan(
        chunk, state0, cfg.snapshots, key=f"{tag}-warm", desc=f"{tag} warm"
    )
    timings["warm_s"] = time.perf_counter() - t0
    _check_finite(f"{tag} warm-start", wstate.diverged_step)
    # history leaves: (frames, seeds, per, ...) -> (seeds, steps, ...)
    wh = jax.tree_util.tree_map(
        lambda a: np.moveaxis(np.asarray(a), 1, 0).reshape((cfg.seeds, cfg.warm_steps) + a.shape[3:]), wh
    )
    snap_u = jax.tree_util.tree_map(
        lambda a: np.moveaxis(np.asarray(a), 1, 0), snap_u
    )  # (seeds, frames, ...)
    snap_w = jax.tree_util.tree_map(lambda a: np.moveaxis(np.asarray(a), 1, 0), snap_w)

    acc_frames = jax.vmap(jax.vmap(lambda w: accuracy(w, Xte, Yte)))(snap_w)  # (seeds, frames)
    warm_F = wh["F"]

    # --- retrain on every snapshot, and on all snapshots together (leak)
    t0 = time.perf_counter()
    snap_labels = jax.vmap(jax.vmap(lambda u: labels_of(u, C)))(snap_u)  # (seeds, frames, C, C)

    def extra(lab):
        # the inner loss of a snapshot with its labels: soft labels as logits whose softmax is lab
        return {"logits": jnp.log(jnp.clip(lab, 1e-30, None))} if soft else {}

    def retrain_seed(w0_s, xs, ls):
        def one(x, lab):
            w = train_fresh(w0_s, x, lab, cfg.fit_lr, cfg.retrain_steps, cfg.inner_loss)
            return accuracy(w, Xte, Yte), problem.F({"x": x}, w), problem.f({"x": x, **extra(lab)}, w), w

        acc, Fv, fv, ws = jax.vmap(one)(xs, ls)
        w_all = train_fresh(
            w0_s, xs.reshape(-1, 2), ls.reshape(-1, C), cfg.fit_lr, cfg.retrain_steps, cfg.inner_loss
        )
        last = jax.tree_util.tree_map(lambda a: a[-1], ws)
        return acc, Fv, fv, accuracy(w_all, Xte, Yte), problem.F({"x": xs[0]}, w_all), last, w_all

    r_acc, r_F, r_f, all_acc, all_F, w_retrain, w_all = jax.jit(jax.vmap(retrain_seed))(
        w0, snap_u["x"], snap_labels
    )
    timings["retrain_s"] = time.perf_counter() - t0

    # --- cold-start: w0 retrained for T steps every outer step, Unroll(K) hypergradient, Adam on u
    cold = blo.ColdStart(
        problem,
        blo.InnerLoop(optax.sgd(cfg.fit_lr), steps=cfg.cold_inner_steps),
        blo.Unroll(cfg.cold_unroll),
        outer_optimizer(cfg, soft, radius, cfg.cold_outer_lr),
        record=record,
    )
    cold_jit = jax.jit(lambda st, n: jax.vmap(lambda s: cold.run(s, n))(st), static_argnums=1)
    t0 = time.perf_counter()
    cstate, ch = ctx.scan(
        cold_jit,
        jax.vmap(cold.init)(u0, w0),
        cfg.cold_steps,
        key=f"{tag}-cold",
        desc=f"{tag} cold",
        history_axis=1,
    )
    _check_finite(f"{tag} cold-start", cstate.diverged_step)
    inner_T = blo.InnerLoop(optax.sgd(cfg.fit_lr), steps=cfg.cold_inner_steps)
    w_cold = jax.jit(jax.vmap(lambda u, w: inner_T.run(problem, u, w)[0]))(cstate.u, w0)
    cold_acc = jax.vmap(lambda w: accuracy(w, Xte, Yte))(w_cold)
    cold_F = jax.vmap(lambda u, w: problem.F(u, w))(cstate.u, w_cold)
    timings["cold_s"] = time.perf_counter() - t0

    out = dict(
        n_classes=C,
        soft=soft,
        tag=tag,
        train=train,
        test=test,
        warm_F=warm_F,
        warm_f=wh["f"],
        x_traj=wh["x"],
        label_traj=wh["labels"],
        snap_step=np.arange(1, cfg.snapshots + 1) * per,
        snap_acc=np.asarray(acc_frames),
        snap_w=snap_w,
        snap_x=snap_u["x"],
        snap_labels=np.asarray(snap_labels),
        retrain_acc=np.asarray(r_acc),
        retrain_F=np.asarray(r_F),
        retrain_f=np.asarray(r_f),
        all_acc=np.asarray(all_acc),
        all_F=np.asarray(all_F),
        w_warm=jax.tree_util.tree_map(np.asarray, wstate.w),
        u_warm=jax.tree_util.tree_map(np.asarray, wstate.u),
        w_retrain=jax.tree_util.tree_map(np.asarray, w_retrain),
        w_all=jax.tree_util.tree_map(np.asarray, w_all),
        w_cold=jax.tree_util.tree_map(np.asarray, w_cold),
        u_cold=jax.tree_util.tree_map(np.asarray, cstate.u),
        cold_F_hist=np.asarray(ch["F"]),
        cold_acc=np.asarray(cold_acc),
        cold_F=np.asarray(cold_F),
        warm_train_acc=np.asarray(jax.vmap(lambda w: accuracy(w, Xtr, Ytr))(wstate.w)),
        timings=timings,
    )
    out["timings"]["total_s"] = sum(timings.values())
    return out


# ------------------------------------------------------------------------------------ result
@dataclasses.dataclass
class Result:
    config: Config
    variants: dict[str, dict[str, Any]]
    seconds: float

    def summary(self, tag: str) -> dict:
        v = self.variants[tag]
        d = {
            "n_classes": v["n_classes"],
            "soft_labels": v["soft"],
            "test_accuracy": {
                "warm": stats(v["snap_acc"][:, -1]),
                "warm_retrain_final_points": stats(v["retrain_acc"][:, -1]),
                "cold": stats(v["cold_acc"]),
            },
            "warm_train_accuracy": stats(v["warm_train_acc"]),
            "outer_loss_final": {
                "warm": stats(v["warm_F"][:, -1]),
                "warm_retrain_final_points": stats(v["retrain_F"][:, -1]),
                "cold": stats(v["cold_F"]),
            },
            "retrain_inner_loss_final": stats(v["retrain_f"][:, -1]),
            "information_leak": {
                "snapshots": int(v["snap_acc"].shape[1]),
                "best_single_snapshot_accuracy": stats(v["retrain_acc"].max(axis=1)),
                "mean_single_snapshot_accuracy": stats(v["retrain_acc"].mean(axis=1)),
                "all_snapshots_together_accuracy": stats(v["all_acc"]),
                "warm_accuracy": stats(v["snap_acc"][:, -1]),
            },
        }
        if v["soft"]:
            per_seed = np.stack(
                [np.asarray(switches(jnp.asarray(lt))) for lt in v["label_traj"]]
            )  # (seeds, C)
            final_lab = np.argmax(v["label_traj"][:, -1], axis=-1)  # (seeds, C)
            d["soft_label_switches"] = {
                "per_point_mean": per_seed.mean(axis=0).tolist(),
                "per_seed_total": per_seed.sum(axis=1).tolist(),
                "mean_per_point": float(per_seed.mean()),
                "final_argmax_labels": final_lab.tolist(),
            }
        return d

    def to_dict(self) -> dict:
        # wall times in one top-level "seconds" entry (run.json's measurements, not results.json)
        return {
            "variants": {tag: self.summary(tag) for tag in self.variants},
            "seconds": {"total": self.seconds, **{tag: v["timings"] for tag, v in self.variants.items()}},
        }


def paper_comparison(results: dict) -> list[dict]:
    """Rows for the report: our numbers beside PAPER.md E2 (which gives outer losses, not accuracies)."""
    rows = []
    for tag, name, warm, retrain in (
        ("2rings-fixed", "2 rings", "~0.1", "~1"),
        ("3rings-fixed", "3 rings", "not given", "not given"),
    ):
        v = results.get("variants", {}).get(tag)
        if v is None:
            continue
        loss, acc = v["outer_loss_final"], v["test_accuracy"]
        rows += [
            {
                "quantity": f"{name}: warm-start outer loss (final, mean over seeds)",
                "ours": round(loss["warm"]["mean"], 3),
                "paper": warm,
            },
            {
                "quantity": f"{name}: retrain on final points, outer loss",
                "ours": round(loss["warm_retrain_final_points"]["mean"], 3),
                "paper": retrain,
            },
            {
                "quantity": f"{name}: test accuracy warm / retrain / cold (%)",
                "ours": " / ".join(
                    f"{100 * acc[k]['mean']:.1f}" for k in ("warm", "warm_retrain_final_points", "cold")
                ),
                "paper": "warm separates the rings; retrain does not",
            },
        ]
    return rows


def run(config: Config | None = None, ctx: common.Context | None = None) -> Result:
    """Run every (classes, soft_labels) variant; see the module docstring."""
    cfg = (config or Config()).validate()
    ctx = ctx or common.Context()
    t0 = time.perf_counter()
    variants = {}
    for C in cfg.classes:
        for soft in cfg.soft_labels:
            v = run_variant(cfg, C, soft, ctx)
            variants[v["tag"]] = v
    return Result(cfg, variants, time.perf_counter() - t0)


# ------------------------------------------------------------------------------------ plots
_COLORS = ["tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple", "tab:brown"]


def _grid(C, n=140):
    lim = C + 0.8
    g = np.linspace(-lim, lim, n)
    GX, GY = np.meshgrid(g, g)
    return GX, GY, np.stack([GX.ravel(), GY.ravel()], -1).astype(np.float32)


def _boundary(ax, w, C, data, title):
    from matplotlib.colors import ListedColormap

    GX, GY, G = _grid(C)
    pred = np.asarray(jnp.argmax(mlp_apply(w, jnp.asarray(G)), -1)).reshape(GX.shape)
    cmap = ListedColormap(_COLORS[:C])
    ax.contourf(GX, GY, pred, levels=np.arange(C + 1) - 0.5, cmap=cmap, alpha=0.18)
    ax.contour(GX, GY, pred, levels=np.arange(C) + 0.5, colors="k", linewidths=0.8)
    ax.scatter(data.x[:, 0], data.x[:, 1], c=[_COLORS[int(c)] for c in data.y], s=3, alpha=0.6)
    ax.set_xlim(GX.min(), GX.max())
    ax.set_ylim(GY.min(), GY.max())
    ax.set_aspect("equal")
    ax.set_title(title, fontsize=9)
    ax.set_xticks([])
    ax.set_yticks([])


def _take(tree, i):
    return jax.tree_util.tree_map(lambda a: a[i], tree)


def _points(ax, x, C, labels=None, marker="*", size=140):
    for c in range(C):
        col = _COLORS[int(np.argmax(labels[c]))] if labels is not None else _COLORS[c]
        ax.scatter(x[c, 0], x[c, 1], marker=marker, s=size, c=col, edgecolors="k", linewidths=1.0, zorder=5)


def plot_boundaries(v, out_dir, seed_index=0) -> pathlib.Path:
    import matplotlib.pyplot as plt

    C, s = v["n_classes"], seed_index
    fig, axs = plt.subplots(1, 4, figsize=(13, 3.6))
    test = v["test"]
    ax = axs[0]
    ax.scatter(test.x[:, 0], test.x[:, 1], c=[_COLORS[int(c)] for c in test.y], s=3)
    ax.set_aspect("equal")
    ax.set_title(f"original data ({C} rings, test split)", fontsize=9)
    ax.set_xticks([])
    ax.set_yticks([])
    acc = v["snap_acc"][s, -1]
    traj = v["x_traj"][s]
    labs = v["label_traj"][s]
    tail = min(300, traj.shape[0])
    _boundary(
        axs[1],
        _take(v["w_warm"], s),
        C,
        test,
        f"warm-start model; points: last {tail} steps (lines),\n{len(v['snap_step'])} snapshots (dots); accuracy {acc:.0%}",
    )
    for c in range(C):
        col = _COLORS[int(np.argmax(labs[-1, c]))]
        axs[1].plot(traj[-tail:, c, 0], traj[-tail:, c, 1], "-", color=col, lw=0.5, alpha=0.6)
        snaps = v["snap_x"][s][:, c]
        axs[1].scatter(
            snaps[:, 0],
            snaps[:, 1],
            s=12,
            c=[_COLORS[int(np.argmax(l))] for l in v["snap_labels"][s][:, c]],
            edgecolors="k",
            linewidths=0.4,
            zorder=4,
        )
    _points(axs[1], v["u_warm"]["x"][s], C, labs[-1])
    _boundary(
        axs[2],
        _take(v["w_retrain"], s),
        C,
        test,
        f"retrain on final points\naccuracy {v['retrain_acc'][s, -1]:.0%}",
    )
    _points(axs[2], v["snap_x"][s][-1], C, v["snap_labels"][s][-1])
    _boundary(
        axs[3],
        _take(v["w_cold"], s),
        C,
        test,
        f"cold-start (T fixed-init steps)\naccuracy {v['cold_acc'][s]:.0%}",
    )
    _points(
        axs[3],
        v["u_cold"]["x"][s],
        C,
        np.asarray(labels_of({k: jnp.asarray(a[s]) for k, a in v["u_cold"].items()}, C)),
    )
    fig.suptitle(
        f"{v['tag']}: decision boundaries (seed index {s}); stars: synthetic points, dots: trajectory snapshots",
        fontsize=10,
    )
    return common.save_figure(fig, pathlib.Path(out_dir) / f"boundaries_{v['tag']}.png")


def plot_losses(result: Result, out_dir) -> pathlib.Path:
    import matplotlib.pyplot as plt

    tags = list(result.variants)
    fig, axs = plt.subplots(1, len(tags), figsize=(3.6 * len(tags), 3.2), squeeze=False)
    for ax, tag in zip(axs[0], tags):
        v = result.variants[tag]
        steps = np.arange(1, v["warm_F"].shape[1] + 1)
        m = v["warm_F"].mean(0)
        ax.plot(steps, m, color="tab:blue", lw=1, label="warm-start model")
        ax.fill_between(steps, v["warm_F"].min(0), v["warm_F"].max(0), color="tab:blue", alpha=0.2, lw=0)
        rs = v["snap_step"]
        ax.plot(rs, v["retrain_F"].mean(0), "o-", color="tab:red", ms=3, lw=1, label="retrain on snapshot")
        ax.fill_between(rs, v["retrain_F"].min(0), v["retrain_F"].max(0), color="tab:red", alpha=0.2, lw=0)
        ax.set_yscale("log")
        ax.set_xlabel("outer iteration")
        ax.set_ylabel("outer loss F (train split, CE)")
        ax.set_title(tag, fontsize=9)
        ax.legend(fontsize=7)
    fig.suptitle(
        f"Outer loss: warm-start vs retrain (mean, band: min–max over {result.config.seeds} seeds)",
        fontsize=10,
    )
    fig.tight_layout()
    return common.save_figure(fig, pathlib.Path(out_dir) / "outer_loss_warm_vs_retrain.png")


def plot_soft_labels(result: Result, out_dir, seed_index=0) -> pathlib.Path | None:
    import matplotlib.pyplot as plt

    tags = [t for t, v in result.variants.items() if v["soft"]]
    if not tags:
        return None
    ncols = max(result.variants[t]["n_classes"] for t in tags)
    fig, axs = plt.subplots(len(tags), ncols, figsize=(3.3 * ncols, 2.6 * len(tags)), squeeze=False)
    for r, tag in enumerate(tags):
        v = result.variants[tag]
        C = v["n_classes"]
        lt = v["label_traj"][seed_index]  # (steps, C, C)
        steps = np.arange(1, lt.shape[0] + 1)
        for j in range(ncols):
            ax = axs[r, j]
            if j >= C:
                ax.axis("off")
                continue
            for c in range(C):
                ax.plot(steps, lt[:, j, c], color=_COLORS[c], lw=1, label=f"class {c}")
            ax.set_ylim(-0.02, 1.02)
            ax.set_xlabel("outer iteration")
            ax.set_ylabel("label probability")
            ax.set_title(f"{tag}: point {j} (starts on ring {j})", fontsize=8)
            if j == 0:
                ax.legend(fontsize=7)
    fig.suptitle(
        f"Learned soft labels along the warm-start trajectory (seed index {seed_index})", fontsize=10
    )
    fig.tight_layout()
    return common.save_figure(fig, pathlib.Path(out_dir) / "soft_label_trajectories.png")


def animate(v, out_dir, seed_index=0, dpi=60) -> pathlib.Path:
    """GIF of the joint dynamics: the warm model's boundary at every snapshot and the moving points."""
    import matplotlib.pyplot as plt
    from PIL import Image

    C, s = v["n_classes"], seed_index
    frames = []
    traj = v["x_traj"][s]
    for k, step in enumerate(v["snap_step"]):
        fig, ax = plt.subplots(figsize=(3.4, 3.6))
        _boundary(
            ax,
            _take(_take(v["snap_w"], s), k),
            C,
            v["test"],
            f"{v['tag']} warm-start\nstep {int(step)}  accuracy {v['snap_acc'][s, k]:.0%} (last 100 steps)",
        )
        labs = v["snap_labels"][s][k]
        lo = max(0, int(step) - 100)
        for c in range(C):
            ax.plot(traj[lo : int(step), c, 0], traj[lo : int(step), c, 1], "-", color="k", lw=0.5, alpha=0.6)
        _points(ax, v["snap_x"][s][k], C, labs, size=90)
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=dpi)
        plt.close(fig)
        buf.seek(0)
        frames.append(Image.open(buf).convert("P", palette=Image.Palette.ADAPTIVE, colors=64))
    out = io.BytesIO()
    frames[0].save(
        out, format="GIF", save_all=True, append_images=frames[1:], duration=150, loop=0, optimize=True
    )
    return common.atomic_write_bytes(pathlib.Path(out_dir) / f"animation_{v['tag']}.gif", out.getvalue())


def plot(result: Result, out_dir) -> list[pathlib.Path]:
    out_dir = pathlib.Path(out_dir)
    paths = [plot_boundaries(v, out_dir) for v in result.variants.values()]
    paths.append(plot_losses(result, out_dir))
    p = plot_soft_labels(result, out_dir)
    if p is not None:
        paths.append(p)
    paths += [animate(v, out_dir) for v in result.variants.values()]
    return paths


# ------------------------------------------------------------------------------------ claims ledger


def _pct(stats):
    return round(100 * stats["mean"], 1)


def _warm_retrain_cold(tag):
    def ours(r):
        acc = r["variants"][tag]["test_accuracy"]
        return {
            "warm %": _pct(acc["warm"]),
            "retrain %": _pct(acc["warm_retrain_final_points"]),
            "cold %": _pct(acc["cold"]),
        }

    return ours


CLAIMS = (
    Claim(
        "E2.warm-separates-rings",
        "2 rings: the warm-start model separates the rings (test accuracy >= 90 %) while a fresh model retrained on "
        "the final two points does not (>= 20 points lower)",
        "Figs. 6-7: warm-start separates the rings; retraining on the final points gives a poor boundary",
        _warm_retrain_cold("2rings-fixed"),
        lambda o: o["warm %"] >= 90.0 and gap(o["warm %"], o["retrain %"], 20.0),
        "warm >= 90 % and warm - retrain >= 20 points",
    ),
    Claim(
        "E2.outer-loss-warm-vs-retrain",
        "2 rings: the retrained model's outer loss F is >= 3x the warm-start model's",
        "outer loss ~0.1 (warm) vs ~1 (retrain on the final points)",
        lambda r: {
            "F warm": r["variants"]["2rings-fixed"]["outer_loss_final"]["warm"]["mean"],
            "F retrain": r["variants"]["2rings-fixed"]["outer_loss_final"]["warm_retrain_final_points"][
                "mean"
            ],
        },
        lambda o: o["F retrain"] >= 3 * o["F warm"],
        "F_retrain >= 3 F_warm",
    ),
    Claim(
        "E2.no-single-snapshot-suffices",
        "2 rings: a fresh model trained on any single snapshot of the points (the best one) stays >= 15 points below "
        "the warm-start model",
        "retraining on any single snapshot gives a poor boundary",
        lambda r: {
            "warm %": _pct(r["variants"]["2rings-fixed"]["information_leak"]["warm_accuracy"]),
            "best snapshot %": _pct(
                r["variants"]["2rings-fixed"]["information_leak"]["best_single_snapshot_accuracy"]
            ),
        },
        lambda o: gap(o["warm %"], o["best snapshot %"], 15.0),
        "warm - best single snapshot >= 15 points",
    ),
    Claim(
        "E2.three-rings",
        "3 rings: warm-start beats both retrain-on-final-points and cold-start by >= 20 points",
        "three rings (3 classes) show the same picture",
        _warm_retrain_cold("3rings-fixed"),
        lambda o: gap(o["warm %"], max(o["retrain %"], o["cold %"]), 20.0),
        "warm - max(retrain, cold) >= 20 points",
        quick=False,
    ),
    Claim(
        "E2.soft-labels-switch",
        "2 rings, learned soft labels: a point's arg-max class switches along the warm-start trajectory (>= 1 switch "
        "per point on average) and warm-start still beats retrain by >= 20 points",
        "learned soft labels whose class can switch along the trajectory",
        lambda r: {
            "switches per point": r["variants"]["2rings-soft"]["soft_label_switches"]["mean_per_point"],
            **_warm_retrain_cold("2rings-soft")(r),
        },
        lambda o: o["switches per point"] >= 1.0 and gap(o["warm %"], o["retrain %"], 20.0),
        "mean switches per point >= 1 and warm - retrain >= 20 points",
        quick=False,
    ),
)


if __name__ == "__main__":
    from blojax.runner.cli import run_module

    raise SystemExit(run_module(__name__))
