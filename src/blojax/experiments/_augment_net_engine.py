r"""The computation of :mod:`blojax.experiments.augment_net`: cold- and warm-start bilevel
optimization of a linear augmentation network ``a_u``, every seed in one ``vmap``, and the
classifiers it reports.

    f(u, w; eps) = CE(model_w(a_u(X_s, eps)), Y_s)        (training subset, noise eps)
    F(u, w; B)   = CE(model_w(X_v[B]), Y_v[B])            (clean validation minibatch B)

Every reported classifier except warm-start's carried ``w`` is
:func:`blojax.experiments.toolkit.retrain_stochastic`: ``T = cold_steps`` GD steps from ``w0`` on
``f(u, .; eps_t)`` with fresh noise ``eps_t`` each step (``u`` the final augmentation), or
:func:`blojax.experiments.toolkit.retrain` on the clean subset (no augmentation).
"""

from __future__ import annotations

import dataclasses
import resource
import time
from typing import ClassVar

import jax
import jax.numpy as jnp
import numpy as np
import optax

import blojax as blo
from blojax.data import load_dataset
from blojax.data.images import balanced_subset
from blojax.models.augment import augment_apply, init_augment
from blojax.models.classifier import Classifier, accuracy

from . import common, toolkit
from .common import ConfigError

#: The two algorithms (cold-start, warm-start), in the order they are run.
ALGORITHMS = ("cold", "warm")


@dataclasses.dataclass(frozen=True)
class Accuracies:
    """Accuracy (a fraction) per seed, shape ``(seeds,)``, of the four reported classifiers:
    ``cold`` (``T`` steps from ``w0`` with cold-start's final ``a_u``), ``warm`` (warm-start's carried
    ``w``), ``warm_retrain`` (``T`` steps from ``w0`` with warm-start's final ``a_u``) and ``no_aug``
    (``T`` steps from ``w0`` on the clean subset)."""

    NAMES: ClassVar[tuple[str, ...]] = ("cold", "warm", "warm_retrain", "no_aug")
    cold: np.ndarray
    warm: np.ndarray
    warm_retrain: np.ndarray
    no_aug: np.ndarray

    def of(self, name: str) -> np.ndarray:
        """The field ``name`` (one of :attr:`NAMES`)."""
        return getattr(self, name)


@dataclasses.dataclass(frozen=True)
class Curves:
    """Accuracy (a fraction) per seed and evaluation, shape ``(seeds, evals)``, on the fixed curve
    subset of the test set: ``cold`` and ``warm_retrain`` retrained on the current ``a_u``, ``warm``
    the carried ``w``."""

    NAMES: ClassVar[tuple[str, ...]] = ("cold", "warm", "warm_retrain")
    cold: np.ndarray
    warm: np.ndarray
    warm_retrain: np.ndarray

    def of(self, name: str) -> np.ndarray:
        """The field ``name`` (one of :attr:`NAMES`)."""
        return getattr(self, name)


@dataclasses.dataclass(frozen=True)
class Trace:
    """One algorithm's dynamics: ``F`` and ``f`` (seeds, outer steps) the minibatch validation loss
    ``F(u_t, w_t; B_t)`` and inner loss ``f(u_t, w_t; eps_t)`` per outer step; ``u_dist`` (seeds,
    evals) ``||u - u0||`` at the evaluations; ``u_norm`` ``||u||`` of the final ``u`` over all seeds
    together (square root of the sum of squares of every seed's leaves)."""

    F: np.ndarray
    f: np.ndarray
    u_dist: np.ndarray
    u_norm: float


@dataclasses.dataclass(frozen=True)
class AugmentRun:
    """What :func:`run_augment` returns: ``final`` test accuracies (clean test set), ``curves``,
    ``select`` the accuracies on the ``select_size`` held-out validation images (``None`` when none
    are held out), the two algorithms' :class:`Trace`, ``steps`` (evals,) the outer steps of the curve
    points, ``train_subset`` the number of training images, wall times and peak memory."""

    dataset: str
    train_subset: int
    seeds: tuple[int, ...]
    steps: np.ndarray
    final: Accuracies
    curves: Curves
    select: Accuracies | None
    select_size: int
    cold: Trace
    warm: Trace
    run_seconds: float
    seconds: float
    peak_rss_mb: float

    def trace(self, algorithm: str) -> Trace:
        """The trace of ``algorithm`` (one of :data:`ALGORITHMS`)."""
        if algorithm not in ALGORITHMS:
            raise ValueError(f"AugmentRun.trace: algorithm must be one of {ALGORITHMS}, got {algorithm!r}")
        return getattr(self, algorithm)


def tree_dist(a, b):
    """``||a - b||`` over all leaves of two pytrees (the distance of ``u`` from its start ``u0``)."""
    return jnp.sqrt(
        sum(jnp.sum((x - y) ** 2) for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)))
    )


def _check_sizes(cfg, ds) -> None:
    if cfg.batch_size > len(ds.y_val):
        raise ConfigError(
            f"{type(cfg).__name__}.batch_size must be <= the {len(ds.y_val)} validation examples, "
            f"got {cfg.batch_size}"
        )
    if cfg.curve_test_size > len(ds.y_test):
        raise ConfigError(
            f"{type(cfg).__name__}.curve_test_size must be <= the {len(ds.y_test)} test examples, "
            f"got {cfg.curve_test_size}"
        )
    if cfg.select_size >= len(ds.y_val):
        raise ConfigError(
            f"{type(cfg).__name__}.select_size must be < the {len(ds.y_val)} validation examples, "
            f"got {cfg.select_size}"
        )


def run_augment(cfg, ctx: common.RunContext | None = None) -> AugmentRun:
    """Cold- and warm-start augment-net runs of ``cfg`` (an ``augment_net.Config``) for ``cfg.seeds``
    seeds; the outer loops go through ``ctx.scan`` under the key ``augment-{dataset}``. Raises
    :class:`blojax.NonFiniteError` when an algorithm diverges (toolkit NaN policy)."""
    ctx = common.ensure_context(ctx)
    t0 = time.perf_counter()
    ds = load_dataset(cfg.dataset, root=cfg.root, seed=cfg.seed, train_subset=cfg.train_subset)
    _check_sizes(cfg, ds)
    clf = Classifier(cfg.model, ds.image_shape, ds.num_classes, tuple(cfg.hidden))
    Xs, Ys = jnp.asarray(ds.x_train), jnp.asarray(ds.y_train)
    sel = (
        np.sort(balanced_subset(ds.y_val, cfg.select_size, np.random.default_rng(54321)))
        if cfg.select_size
        else np.zeros(0, np.int64)
    )
    keep = np.setdiff1d(np.arange(len(ds.y_val)), sel)
    Xv, Yv = jnp.asarray(ds.x_val[keep]), jnp.asarray(ds.y_val[keep])
    Xsel, Ysel = jnp.asarray(ds.x_val[sel]), jnp.asarray(ds.y_val[sel])
    Xte, Yte = jnp.asarray(ds.x_test), jnp.asarray(ds.y_test)

    cidx = balanced_subset(ds.y_test, cfg.curve_test_size, np.random.default_rng(12345))
    Xc, Yc = Xte[cidx], Yte[cidx]
    n_sub, m = len(Ys), cfg.noise_dim

    def make_problem(Xs, Ys, Xv, Yv):
        def f(u, w, batch=None):  # batch: the noise eps of this outer step (None: no noise)
            eps = jnp.zeros((Xs.shape[0], m), Xs.dtype) if batch is None else batch
            return toolkit.cross_entropy(clf.apply(w, augment_apply(u, Xs, eps)), Ys)

        def F(u, w, batch=None):  # batch: validation minibatch indices (None: the whole split)
            if batch is None:
                return toolkit.cross_entropy(clf.apply(w, Xv), Yv)
            return toolkit.cross_entropy(clf.apply(w, Xv[batch]), Yv[batch])

        return blo.Problem(f, F)

    def algos(problem):
        lr = (
            cfg.outer_lr
            if cfg.outer_schedule == "constant"
            else optax.cosine_decay_schedule(cfg.outer_lr, cfg.outer_steps)
        )
        outer = optax.adam(lr)
        method = toolkit.cold_hypergradient(
            cfg.cold_method, steps=cfg.cold_steps, terms=cfg.ift_terms, lr=cfg.inner_lr
        )
        return {
            "cold": blo.ColdStart(
                problem, blo.InnerLoop(optax.sgd(cfg.inner_lr), steps=cfg.cold_steps), method, outer
            ),
            "warm": blo.WarmStart(
                problem,
                blo.InnerLoop(optax.sgd(cfg.inner_lr), steps=cfg.warm_steps),
                blo.Unroll(cfg.warm_steps),
                outer,
            ),
        }

    def augmented_loss(u, w, key):  # f(u, w; eps) with eps drawn from this step's key
        x = augment_apply(u, Xs, jax.random.normal(key, (n_sub, m)))
        return toolkit.cross_entropy(clf.apply(w, x), Ys)

    def clean_loss(u, w):  # the no-augmentation baseline's objective (u unused)
        return toolkit.cross_entropy(clf.apply(w, Xs), Ys)

    def train(u, w0, key):
        """T GD steps from w0 on the subset augmented by a_u, with fresh noise each step."""
        keys = jax.random.split(key, cfg.cold_steps)  # throw=False: checked on the host (NaN policy)
        return toolkit.retrain_stochastic(augmented_loss, u, w0, keys, lr=cfg.inner_lr, throw=False)

    def train_clean(w0):
        """T GD steps from w0 on the clean subset."""
        return toolkit.retrain(clean_loss, None, w0, lr=cfg.inner_lr, steps=cfg.cold_steps, throw=False)[0]

    def accuracy_of(w, Xe, Ye):  # NaN when the model is not finite (toolkit NaN policy)
        return toolkit.nan_unless_finite(accuracy(clf, w, Xe, Ye), w)

    seeds = np.arange(cfg.seed, cfg.seed + cfg.seeds)
    keys = jax.vmap(jax.random.PRNGKey)(jnp.asarray(seeds))
    k_w, k_u, k_b, k_t = (jax.vmap(lambda k, i=i: jax.random.fold_in(k, i))(keys) for i in range(4))
    w0 = jax.vmap(clf.init)(k_w)
    u0 = jax.vmap(lambda k: init_augment(k, ds.image_shape, noise_dim=m, rank=cfg.aug_rank))(k_u)
    clf.check_input(Xs, "the training subset")
    dummy = algos(make_problem(Xs, Ys, Xv, Yv))
    states = {name: jax.vmap(a.init)(u0, w0) for name, a in dummy.items()}
    E, B, Nv = cfg.eval_every, cfg.batch_size, len(Yv)

    @jax.jit
    def block(states, b, Xs, Ys, Xv, Yv, Xc, Yc, w0, u0, k_b, k_t):
        algs = algos(make_problem(Xs, Ys, Xv, Yv))
        out_states, hists, u_dist, retrained = {}, {}, {}, {}
        for name, algo in algs.items():

            def one(state, kb, algo=algo):
                kb = jax.random.fold_in(kb, b)
                idx = jax.random.randint(kb, (E, B), 0, Nv)
                eps = jax.random.normal(jax.random.fold_in(kb, 1), (E, n_sub, m))
                return algo.run(state, E, inner_batches=eps, outer_batches=idx)

            st, h = jax.vmap(one)(states[name], k_b)
            out_states[name] = st
            hists[name] = {"F": h["F"], "f": h["f"]}
            u_dist[name] = jax.vmap(tree_dist)(st.u, u0)
            w_r = jax.vmap(lambda u, w, k: train(u, w, jax.random.fold_in(k, b)))(st.u, w0, k_t)
            retrained[name] = jax.vmap(lambda w: accuracy_of(w, Xc, Yc))(w_r)
        warm = jax.vmap(lambda w: accuracy(clf, w, Xc, Yc))(out_states["warm"].w)
        return out_states, hists, {"u_dist": u_dist, "retrain": retrained, "warm": warm}

    n_blocks = cfg.outer_steps // E
    t_run = time.perf_counter()
    states, hist = toolkit.scan_blocks(
        ctx,
        block,
        states,
        n_blocks,
        (Xs, Ys, Xv, Yv, Xc, Yc, w0, u0, k_b, k_t),
        what="augment-net",
        hint="lower outer_lr / inner_lr",
        key=f"augment-{cfg.dataset}",
        desc=f"augment-net {cfg.dataset}",
    )
    run_seconds = time.perf_counter() - t_run

    @jax.jit
    def final(states, w0, k_t, Xte, Yte, Xsel, Ysel):
        kf = jax.vmap(lambda k: jax.random.fold_in(k, 10**6))(k_t)
        models = {
            "cold": jax.vmap(train)(states["cold"].u, w0, kf),
            "warm": states["warm"].w,
            "warm_retrain": jax.vmap(train)(states["warm"].u, w0, kf),
            "no_aug": jax.vmap(train_clean)(w0),
        }
        test = {k: jax.vmap(lambda w: accuracy_of(w, Xte, Yte))(w) for k, w in models.items()}
        select = (
            {k: jax.vmap(lambda w: accuracy_of(w, Xsel, Ysel))(w) for k, w in models.items()}
            if cfg.select_size
            else None
        )
        return test, select

    test, select = jax.tree_util.tree_map(np.asarray, final(states, w0, k_t, Xte, Yte, Xsel, Ysel))
    toolkit.require_finite("augment-net, final models (lower outer_lr / inner_lr)", (test, select))
    ev = hist["eval"]

    def trace(name) -> Trace:
        h = hist["hist"][name]
        leaves = jax.tree_util.tree_leaves(states[name].u)
        return Trace(
            F=np.swapaxes(h["F"], 0, 1).reshape(cfg.seeds, -1),
            f=np.swapaxes(h["f"], 0, 1).reshape(cfg.seeds, -1),
            u_dist=np.asarray(ev["u_dist"][name]).T,
            u_norm=float(np.sqrt(sum(np.sum(np.asarray(x) ** 2) for x in leaves))),
        )

    return AugmentRun(
        dataset=ds.name,
        train_subset=n_sub,
        seeds=tuple(int(s) for s in seeds),
        steps=(np.arange(n_blocks) + 1) * E,
        final=Accuracies(**test),
        curves=Curves(
            cold=np.asarray(ev["retrain"]["cold"]).T,
            warm=np.asarray(ev["warm"]).T,
            warm_retrain=np.asarray(ev["retrain"]["warm"]).T,
        ),
        select=Accuracies(**select) if select is not None else None,
        select_size=int(cfg.select_size),
        cold=trace("cold"),
        warm=trace("warm"),
        run_seconds=run_seconds,
        seconds=time.perf_counter() - t0,
        peak_rss_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    )
