r"""E2's computation for one (C rings, label mode) variant: warm-start, retraining on its snapshots
(the information-leak diagnostic) and cold-start, each over ``seeds`` seeds in one ``vmap``; the
numbers and arrays in a typed :class:`Variant`. :mod:`blojax.experiments.rings` holds the
configuration, the claims and :func:`~blojax.experiments.rings.run` over the variants.
"""

from __future__ import annotations

import dataclasses
import time
from typing import TYPE_CHECKING, Any

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
    labels_of,
    make_problem,
    mlp_accuracy,
)
from blojax.models.mlp import init_mlp

if TYPE_CHECKING:
    from blojax.experiments.rings import Config

__all__ = ["Variant", "variant_tag", "run_variant", "outer_optimizer", "init_model", "init_seeds", "switches"]

#: MLP parameters (a list of ``{"w", "b"}`` layers), here with leading seed (and snapshot) axes.
Params = Any


def variant_tag(n_classes: int, soft: bool) -> str:
    """The name of a variant in ``results.json``: ``"2rings-fixed"``, ``"3rings-soft"``, ..."""
    return f"{n_classes}rings-{'soft' if soft else 'fixed'}"


# ------------------------------------------------------------------------------------ pieces
def outer_optimizer(
    cfg: Config, soft: bool, data_radius: float = 1.0, lr: float | None = None
) -> optax.GradientTransformation:
    """Adam on the points (step ``lr``, default ``cfg.outer_lr``) and on the soft-label logits
    (``cfg.label_lr``), then the optional projection onto the data disk."""
    lr = cfg.outer_lr if lr is None else lr

    def adam(step):
        return optax.adam(step, b2=cfg.outer_b2, eps=cfg.outer_eps)

    if soft:
        opt = optax.multi_transform(
            {"x": adam(lr), "logits": adam(cfg.label_lr)}, {"x": "x", "logits": "logits"}
        )
    else:
        opt = adam(lr)
    if cfg.point_bound > 0:
        opt = optax.chain(opt, disk_projection(cfg.point_bound * data_radius))
    return opt


def init_model(key, sizes, cfg: Config):
    """``init_mlp`` with biases ``N(0, bias_scale^2)`` and the first layer scaled by ``first_layer_scale``."""
    w = init_mlp(key, sizes, bias_scale=cfg.bias_scale)
    w[0] = {k: cfg.first_layer_scale * v for k, v in w[0].items()}
    return w


def init_seeds(cfg: Config, sizes, X, Y, n_classes: int, soft: bool):
    """``(u0, w0)`` for seeds ``cfg.seed, ..., cfg.seed + cfg.seeds - 1`` stacked on a leading axis
    (NumPy draws per seed: reproducible and nothing to compile)."""
    us, ws = [], []
    for s in range(cfg.seed, cfg.seed + cfg.seeds):
        rng = np.random.default_rng(s)
        ws.append(init_model(rng, sizes, cfg))
        us.append(init_points(rng, X, Y, n_classes, soft, cfg.point_init))
    return toolkit.tree_stack(us), toolkit.tree_stack(ws)


def switches(label_probs):
    """Number of changes of each point's argmax label along a trajectory ``(steps, C, C)`` -> ``(C,)``."""
    am = jnp.argmax(label_probs, axis=-1)
    return jnp.sum(am[1:] != am[:-1], axis=0)


# ------------------------------------------------------------------------------------ the variant
@dataclasses.dataclass(frozen=True)
class Variant:
    """Everything one (C, label mode) variant computed; arrays keep a leading seed axis (``S`` seeds,
    ``t`` = 1..warm_steps the warm-start outer steps, ``k`` = 1..snapshots its snapshots, ``u_t``/``w_t``
    the points and model along warm-start, ``w^0`` the fixed initialization).

    Attributes:
      n_classes: C, the number of rings (= synthetic points).
      soft: learned soft labels (``u['logits']``) or fixed one-hot labels.
      train, test: the training split (``F`` is measured on it) and the held-out test split (accuracy).
      warm_F, warm_f: ``(S, warm_steps)``: ``F(u_t, w_t)`` and ``f(u_t, w_t)`` along warm-start.
      x_traj, label_traj: ``(S, warm_steps, C, 2)`` points ``u_t['x']`` and ``(S, warm_steps, C, C)``
        their labels along warm-start.
      snap_step: ``(snapshots,)`` the outer step of each snapshot.
      snap_acc: ``(S, snapshots)`` test accuracy of the warm-start model ``w_t`` at each snapshot.
      snap_w, snap_x, snap_labels: the warm-start model, points and labels at each snapshot
        (leaves / arrays ``(S, snapshots, ...)``).
      retrain_acc, retrain_F, retrain_f: ``(S, snapshots)`` test accuracy, ``F`` and ``f`` of a fresh
        model (from ``w^0``, ``retrain_steps`` SGD steps) trained on each snapshot alone.
      all_acc, all_F: ``(S,)`` the same for one fresh model trained on all snapshots together.
      w_warm, u_warm: final warm-start model and points.
      w_retrain: the fresh model trained on the final snapshot (= the final points).
      w_all: the fresh model trained on all snapshots together.
      w_cold, u_cold: cold-start's final points and the model ``Xi^T(u, w^0)`` they give.
      cold_F_hist: ``(S, cold_steps)`` ``F`` along cold-start.
      cold_acc, cold_F: ``(S,)`` test accuracy and ``F`` of cold-start's final model.
      warm_train_acc: ``(S,)`` training-split accuracy of the final warm-start model.
      timings: wall seconds: ``warm_s``, ``retrain_s``, ``cold_s`` and ``total_s``.
    """

    n_classes: int
    soft: bool
    train: synthetic.Dataset
    test: synthetic.Dataset
    warm_F: np.ndarray
    warm_f: np.ndarray
    x_traj: np.ndarray
    label_traj: np.ndarray
    snap_step: np.ndarray
    snap_acc: np.ndarray
    snap_w: Params
    snap_x: np.ndarray
    snap_labels: np.ndarray
    retrain_acc: np.ndarray
    retrain_F: np.ndarray
    retrain_f: np.ndarray
    all_acc: np.ndarray
    all_F: np.ndarray
    w_warm: Params
    u_warm: dict[str, np.ndarray]
    w_retrain: Params
    w_all: Params
    w_cold: Params
    u_cold: dict[str, np.ndarray]
    cold_F_hist: np.ndarray
    cold_acc: np.ndarray
    cold_F: np.ndarray
    warm_train_acc: np.ndarray
    timings: dict[str, float]

    @property
    def tag(self) -> str:
        """``"<C>rings-fixed"`` or ``"<C>rings-soft"``: the variant's key in ``results.json``."""
        return variant_tag(self.n_classes, self.soft)

    def to_dict(self) -> dict:
        """The variant's entry in ``results.json``: per-seed statistics (:func:`toolkit.seed_stats`)
        of the final accuracies and outer losses, the leak diagnostic and the label switches."""
        stats = toolkit.seed_stats
        d: dict[str, Any] = {
            "n_classes": self.n_classes,
            "soft_labels": self.soft,
            "test_accuracy": {
                "warm": stats(self.snap_acc[:, -1]),
                "warm_retrain_final_points": stats(self.retrain_acc[:, -1]),
                "cold": stats(self.cold_acc),
            },
            "warm_train_accuracy": stats(self.warm_train_acc),
            "outer_loss_final": {
                "warm": stats(self.warm_F[:, -1]),
                "warm_retrain_final_points": stats(self.retrain_F[:, -1]),
                "cold": stats(self.cold_F),
            },
            "retrain_inner_loss_final": stats(self.retrain_f[:, -1]),
            "information_leak": {
                "snapshots": int(self.snap_acc.shape[1]),
                "best_single_snapshot_accuracy": stats(self.retrain_acc.max(axis=1)),
                "mean_single_snapshot_accuracy": stats(self.retrain_acc.mean(axis=1)),
                "all_snapshots_together_accuracy": stats(self.all_acc),
                "warm_accuracy": stats(self.snap_acc[:, -1]),
            },
        }
        if self.soft:
            counts = np.stack([np.asarray(switches(jnp.asarray(lt))) for lt in self.label_traj])  # (S, C)
            final_lab = np.argmax(self.label_traj[:, -1], axis=-1)  # (S, C)
            d["soft_label_switches"] = {
                "per_point_mean": counts.mean(axis=0).tolist(),
                "per_seed_total": counts.sum(axis=1).tolist(),
                "mean_per_point": float(counts.mean()),
                "final_argmax_labels": final_lab.tolist(),
            }
        return d


def _numpy(tree):
    return jax.tree_util.tree_map(np.asarray, tree)


def run_variant(cfg: Config, n_classes: int, soft: bool, ctx: common.RunContext) -> Variant:
    """Warm-start, retraining on its snapshots, and cold-start for one (C, label mode); see the module
    docstring of :mod:`blojax.experiments.rings`."""
    C = n_classes
    tag = variant_tag(C, soft)
    data = synthetic.rings(cfg.n_per_class, C, noise=cfg.noise, seed=cfg.seed)
    train, test = synthetic.split(data, cfg.test_fraction, seed=cfg.seed)
    problem = make_problem(train.x, train.y, C, cfg.inner_loss)
    Xtr, Ytr, Xte, Yte = map(jnp.asarray, (train.x, train.y, test.x, test.y))
    sizes = [2] + [cfg.width] * cfg.depth + [C]
    radius = float(np.max(np.linalg.norm(train.x, axis=1)))
    u0, w0 = init_seeds(cfg, sizes, train.x, train.y, C, soft)

    def record(u, w):
        return {"x": u["x"], "labels": labels_of(u, C)}

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
    t0 = time.perf_counter()
    wstate, (wh, snap_u, snap_w) = ctx.scan(
        lambda st, n: frames_jit(st, n), state0, cfg.snapshots, key=f"{tag}-warm", desc=f"{tag} warm"
    )
    timings["warm_s"] = time.perf_counter() - t0
    toolkit.require_finite(
        f"{tag} warm-start (lower inner_lr / outer_lr)", diverged_step=wstate.diverged_step
    )
    # history leaves: (frames, seeds, per, ...) -> (seeds, steps, ...)
    wh = jax.tree_util.tree_map(
        lambda a: np.moveaxis(np.asarray(a), 1, 0).reshape((cfg.seeds, cfg.warm_steps) + a.shape[3:]), wh
    )
    snap_u = jax.tree_util.tree_map(
        lambda a: np.moveaxis(np.asarray(a), 1, 0), snap_u
    )  # (seeds, frames, ...)
    snap_w = jax.tree_util.tree_map(lambda a: np.moveaxis(np.asarray(a), 1, 0), snap_w)
    acc_frames = jax.vmap(jax.vmap(lambda w: mlp_accuracy(w, Xte, Yte)))(snap_w)  # (seeds, frames)

    # --- retrain on every snapshot, and on all snapshots together (leak)
    t0 = time.perf_counter()
    snap_labels = jax.vmap(jax.vmap(lambda u: labels_of(u, C)))(snap_u)  # (seeds, frames, C, C)

    def extra(lab):
        # the inner loss of a snapshot with its labels: soft labels as logits whose softmax is lab
        return {"logits": jnp.log(jnp.clip(lab, 1e-30, None))} if soft else {}

    def retrain_seed(w0_s, xs, ls):
        def one(x, lab):
            w = fit_points(w0_s, x, lab, cfg.fit_lr, cfg.retrain_steps, cfg.inner_loss, throw=False)
            return mlp_accuracy(w, Xte, Yte), problem.F({"x": x}, w), problem.f({"x": x, **extra(lab)}, w), w

        acc, Fv, fv, ws = jax.vmap(one)(xs, ls)
        w_all = fit_points(
            w0_s,
            xs.reshape(-1, 2),
            ls.reshape(-1, C),
            cfg.fit_lr,
            cfg.retrain_steps,
            cfg.inner_loss,
            throw=False,
        )
        last = jax.tree_util.tree_map(lambda a: a[-1], ws)
        return acc, Fv, fv, mlp_accuracy(w_all, Xte, Yte), problem.F({"x": xs[0]}, w_all), last, w_all

    # throw=False above (toolkit NaN policy): a non-finite retrained model shows in its F / f here
    r_acc, r_F, r_f, all_acc, all_F, w_retrain, w_all = jax.jit(jax.vmap(retrain_seed))(
        w0, snap_u["x"], snap_labels
    )
    toolkit.require_finite(f"{tag} retraining on the snapshots (lower fit_lr)", (r_F, r_f, all_F, w_all))
    timings["retrain_s"] = time.perf_counter() - t0

    # --- cold-start: w0 retrained for T steps every outer step, Unroll(K) hypergradient, Adam on u
    inner_T = blo.InnerLoop(optax.sgd(cfg.fit_lr), steps=cfg.cold_inner_steps)
    cold = blo.ColdStart(
        problem,
        inner_T,
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
    toolkit.require_finite(
        f"{tag} cold-start (lower fit_lr / cold_outer_lr)", diverged_step=cstate.diverged_step
    )
    w_cold = jax.jit(jax.vmap(lambda u, w: inner_T.run(problem, u, w, throw=False)[0]))(cstate.u, w0)
    toolkit.require_finite(f"{tag} cold-start's final inner solve (lower fit_lr)", w_cold)
    cold_acc = jax.vmap(lambda w: mlp_accuracy(w, Xte, Yte))(w_cold)
    cold_F = jax.vmap(lambda u, w: problem.F(u, w))(cstate.u, w_cold)
    timings["cold_s"] = time.perf_counter() - t0
    timings["total_s"] = sum(timings.values())

    return Variant(
        n_classes=C,
        soft=soft,
        train=train,
        test=test,
        warm_F=wh["F"],
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
        w_warm=_numpy(wstate.w),
        u_warm=_numpy(wstate.u),
        w_retrain=_numpy(w_retrain),
        w_all=_numpy(w_all),
        w_cold=_numpy(w_cold),
        u_cold=_numpy(cstate.u),
        cold_F_hist=np.asarray(ch["F"]),
        cold_acc=np.asarray(cold_acc),
        cold_F=np.asarray(cold_F),
        warm_train_acc=np.asarray(jax.vmap(lambda w: mlp_accuracy(w, Xtr, Ytr))(wstate.w)),
        timings=timings,
    )
