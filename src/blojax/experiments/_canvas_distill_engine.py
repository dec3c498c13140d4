r"""The distillation engine of :mod:`blojax.experiments.canvas_distill` (also run by
:mod:`blojax.experiments.distill_table`): cold- and warm-start bilevel optimization of ``n`` synthetic
images and their soft labels, every seed in one ``vmap``.

Outer parameters ``u = (x_syn, l)``; inner parameters ``w`` (a classifier);

    f(u, w)    = (1/n) sum_i CE(model_w(x_syn_i), softmax(l_i))
    F(u, w; B) = (1/|B|) sum_{(x, y) in B} CE(model_w(x), y)        (minibatch B of the original data)

The "retrain" models are ``w_T`` of :func:`blojax.experiments.toolkit.retrain`: ``T = retrain_steps``
SGD steps from ``w0`` on ``f(u, .)`` for the current ``u``.
"""

from __future__ import annotations

import dataclasses
import resource
import time
from typing import Any, ClassVar

import jax
import jax.numpy as jnp
import numpy as np
import optax

import blojax as blo
from blojax.data import load_dataset
from blojax.data.images import balanced_subset
from blojax.models.classifier import Classifier, accuracy

from . import common, toolkit
from .common import ConfigError

#: The two algorithms (cold-start, warm-start), in the order they are run.
ALGORITHMS = ("cold", "warm")


@dataclasses.dataclass(frozen=True)
class Accuracies:
    """Test accuracy (a fraction) of the three reported models, per seed (shape ``(seeds,)``) or per
    seed and evaluation (``(seeds, evals)``).

    ``cold``: cold-start's model, ``w_T`` of its own inner loop (``T`` SGD steps from ``w0``) on its
    final ``u``; ``warm``: warm-start's carried ``w``; ``warm_retrain``: ``T`` SGD steps from ``w0``
    on warm-start's final ``u``."""

    NAMES: ClassVar[tuple[str, ...]] = ("cold", "warm", "warm_retrain")
    cold: np.ndarray
    warm: np.ndarray
    warm_retrain: np.ndarray

    def of(self, name: str) -> np.ndarray:
        """The field ``name`` (one of :attr:`NAMES`)."""
        return getattr(self, name)


@dataclasses.dataclass(frozen=True)
class Trace:
    """One algorithm's run: ``F`` (seeds, outer steps) the minibatch outer loss ``F(u_t, w_t; B_t)``;
    ``label`` (seeds, outer steps, n, C) the soft labels ``softmax(l_t)``; ``u`` the final outer
    parameters (leaves with a leading seed axis); ``images`` (seeds, n, H, W, C) the final synthetic
    images encoded by ``u``."""

    F: np.ndarray
    label: np.ndarray
    u: Any
    images: np.ndarray


@dataclasses.dataclass(frozen=True)
class DistillRun:
    """What :func:`distill` returns. ``steps`` (evals,): the outer steps of the curve points;
    ``final``: accuracies on the full test set (``test_size`` images); ``final_cold_last_inner``:
    cold-start's last inner ``w_T`` of the run (trained on the last-but-one ``u``); ``curves``:
    accuracies on the fixed curve subset at each evaluation; ``cold`` / ``warm``: the two algorithms'
    traces; ``seconds`` wall time of the whole call, ``run_seconds`` of the outer loops,
    ``peak_rss_mb`` the process's peak resident memory."""

    dataset: str
    n_train: int
    seeds: tuple[int, ...]
    steps: np.ndarray
    final: Accuracies
    final_cold_last_inner: np.ndarray
    curves: Accuracies
    cold: Trace
    warm: Trace
    test_size: int
    image_shape: tuple[int, ...]
    class_names: tuple[str, ...]
    run_seconds: float
    seconds: float
    peak_rss_mb: float

    def trace(self, algorithm: str) -> Trace:
        """The trace of ``algorithm`` (one of :data:`ALGORITHMS`)."""
        if algorithm not in ALGORITHMS:
            raise ValueError(f"DistillRun.trace: algorithm must be one of {ALGORITHMS}, got {algorithm!r}")
        return getattr(self, algorithm)


def pixel_range(ds) -> tuple[float, float]:
    """``(min, max)`` over the (standardized) training images."""
    return float(ds.x_train.min()), float(ds.x_train.max())


def images_of(cfg, ds, u):
    """The synthetic images encoded by ``u["x"]`` (see ``Config.canvas_param``)."""
    if cfg.canvas_param == "free":
        return u["x"]
    lo, hi = pixel_range(ds)
    return lo + (hi - lo) * jax.nn.sigmoid(u["x"])


def build(cfg, ds):
    """``(classifier, make_problem(X, Y), algos(problem) -> {"cold", "warm"}, f)`` for ``cfg`` on
    ``ds``; ``f(u, w)`` is the inner objective (the retrain's loss)."""
    clf = Classifier(cfg.model, ds.image_shape, ds.num_classes, tuple(cfg.hidden))

    def f(u, w):
        return toolkit.soft_cross_entropy(clf.apply(w, images_of(cfg, ds, u)), u["logits"])

    def make_problem(X, Y):
        def F(u, w, batch=None):  # batch: minibatch indices (None: the whole training set)
            if batch is None:
                return toolkit.cross_entropy(clf.apply(w, X), Y)
            return toolkit.cross_entropy(clf.apply(w, X[batch]), Y[batch])

        return blo.Problem(f, F)

    def record(u, w):
        return {"label": jax.nn.softmax(u["logits"], axis=-1)}

    def algos(problem):
        outer = optax.adam(cfg.outer_lr, b1=cfg.outer_b1, b2=cfg.outer_b2)
        method = toolkit.cold_hypergradient(
            cfg.cold_method, steps=cfg.cold_steps, terms=cfg.ift_terms, lr=cfg.inner_lr
        )
        cold = blo.ColdStart(
            problem,
            blo.InnerLoop(optax.sgd(cfg.inner_lr), steps=cfg.cold_steps),
            method,
            outer,
            record=record,
        )
        warm = blo.WarmStart(
            problem,
            blo.InnerLoop(optax.sgd(cfg.inner_lr), steps=cfg.warm_steps),
            blo.Unroll(cfg.warm_steps),
            outer,
            record=record,
        )
        return {"cold": cold, "warm": warm}

    return clf, make_problem, algos, f


def init_u(cfg, ds, key):
    """``u0``: Gaussian canvas parameters (std ``canvas_std``) and label logits (uniform or one-hot)."""
    n, C = cfg.n_samples, ds.num_classes
    x = cfg.canvas_std * jax.random.normal(key, (n, *ds.image_shape), jnp.float32)
    if cfg.label_init == "uniform":
        logits = jnp.zeros((n, C), jnp.float32)
    else:
        logits = 2.0 * jax.nn.one_hot(jnp.arange(n) % C, C, dtype=jnp.float32)
    return {"x": x, "logits": logits}


def _check_sizes(cfg, ds) -> None:
    for field, n, what in (
        ("batch_size", len(ds.y_train), "training"),
        ("curve_test_size", len(ds.y_test), "test"),
    ):
        if getattr(cfg, field) > n:
            raise ConfigError(
                f"{type(cfg).__name__}.{field} must be <= the {n} {what} examples "
                f"of {ds.name}, got {getattr(cfg, field)}"
            )


def distill(cfg, ctx: common.RunContext | None = None, *, key_prefix: str = "distill") -> DistillRun:
    """Run cold- and warm-start distillation of ``cfg`` (a ``canvas_distill.Config``) for
    ``cfg.seeds`` seeds; the outer loops go through ``ctx.scan`` under the key
    ``{key_prefix}-{dataset}-n{n_samples}``. Raises :class:`blojax.NonFiniteError` when an algorithm
    diverges (toolkit NaN policy)."""
    ctx = common.ensure_context(ctx)
    t0 = time.perf_counter()
    ds = load_dataset(cfg.dataset, root=cfg.root, seed=cfg.seed)
    clf, make_problem, algos, f = build(cfg, ds)
    _check_sizes(cfg, ds)
    X, Y = jnp.asarray(ds.x_train), jnp.asarray(ds.y_train)
    Xte, Yte = jnp.asarray(ds.x_test), jnp.asarray(ds.y_test)
    cidx = balanced_subset(ds.y_test, cfg.curve_test_size, np.random.default_rng(12345))
    Xc, Yc = Xte[cidx], Yte[cidx]

    seeds = np.arange(cfg.seed, cfg.seed + cfg.seeds)
    keys = jax.vmap(jax.random.PRNGKey)(jnp.asarray(seeds))
    k_w, k_u, k_b = (jax.vmap(lambda k, i=i: jax.random.fold_in(k, i))(keys) for i in range(3))
    w0 = jax.vmap(clf.init)(k_w)
    u0 = jax.vmap(lambda k: init_u(cfg, ds, k))(k_u)
    clf.check_input(u0["x"][0], "the synthetic images")

    dummy = algos(make_problem(X, Y))
    states = {name: jax.vmap(a.init)(u0, w0) for name, a in dummy.items()}
    E, B, N = cfg.eval_every, cfg.batch_size, len(ds.y_train)

    def retrain(u, w):  # throw=False: compiled below, checked on the host (toolkit NaN policy)
        return toolkit.retrain(f, u, w, lr=cfg.inner_lr, steps=cfg.retrain_steps, throw=False)[0]

    def retrain_accuracy(u, w, Xe, Ye):  # NaN when the retrained model is not finite
        w_r = retrain(u, w)
        return toolkit.nan_unless_finite(accuracy(clf, w_r, Xe, Ye), w_r)

    @jax.jit
    def block(states, b, X, Y, Xc, Yc, w0, k_b):
        algs = algos(make_problem(X, Y))
        out_states, hists, evals, evals_retrain = {}, {}, {}, {}
        for name, algo in algs.items():

            def one(state, kb, algo=algo):
                idx = jax.random.randint(jax.random.fold_in(kb, b), (E, B), 0, N)
                return algo.run(state, E, outer_batches=idx)

            st, h = jax.vmap(one)(states[name], k_b)
            out_states[name] = st
            hists[name] = {"F": h["F"], "label": h["label"]}
            evals[name] = jax.vmap(lambda w: accuracy(clf, w, Xc, Yc))(st.w)
            evals_retrain[name] = jax.vmap(lambda u, w: retrain_accuracy(u, w, Xc, Yc))(st.u, w0)
        return out_states, hists, {"model": evals, "retrain": evals_retrain}

    n_blocks = cfg.outer_steps // E
    t_run = time.perf_counter()
    states, hist = toolkit.scan_blocks(
        ctx,
        block,
        states,
        n_blocks,
        (X, Y, Xc, Yc, w0, k_b),
        what="canvas distillation",
        hint="lower inner_lr / outer_lr",
        key=f"{key_prefix}-{cfg.dataset}-n{cfg.n_samples}",
        desc=f"distill {cfg.dataset} n={cfg.n_samples}",
    )
    run_seconds = time.perf_counter() - t_run

    @jax.jit
    def final(states, w0, Xte, Yte):
        out = {}
        for name in ALGORITHMS:
            out[name] = {
                "retrain": jax.vmap(lambda u, w: retrain_accuracy(u, w, Xte, Yte))(states[name].u, w0),
                "model": jax.vmap(lambda w: accuracy(clf, w, Xte, Yte))(states[name].w),
            }
        return out

    fin = jax.tree_util.tree_map(np.asarray, final(states, w0, Xte, Yte))
    toolkit.require_finite("canvas distillation, final test accuracies (lower inner_lr / outer_lr)", fin)
    ev = hist["eval"]

    def trace(name) -> Trace:
        h = hist["hist"][name]
        lab = np.asarray(h["label"])  # (blocks, seeds, E, n, C)
        return Trace(
            F=np.swapaxes(h["F"], 0, 1).reshape(cfg.seeds, -1),  # (seeds, steps)
            label=np.swapaxes(lab, 0, 1).reshape(cfg.seeds, -1, *lab.shape[-2:]),
            u=jax.tree_util.tree_map(np.asarray, states[name].u),
            images=np.asarray(jax.vmap(lambda u: images_of(cfg, ds, u))(states[name].u)),
        )

    # cold-start's reported model: trained from w0 on its final u (its own inner loop); warm-start's:
    # the carried w; warm + retrain: from w0 on warm's final u.
    return DistillRun(
        dataset=ds.name,
        n_train=int(N),
        seeds=tuple(int(s) for s in seeds),
        steps=(np.arange(n_blocks) + 1) * E,
        final=Accuracies(
            cold=fin["cold"]["retrain"], warm=fin["warm"]["model"], warm_retrain=fin["warm"]["retrain"]
        ),
        final_cold_last_inner=fin["cold"]["model"],
        curves=Accuracies(
            cold=np.asarray(ev["retrain"]["cold"]).T,
            warm=np.asarray(ev["model"]["warm"]).T,
            warm_retrain=np.asarray(ev["retrain"]["warm"]).T,
        ),
        cold=trace("cold"),
        warm=trace("warm"),
        test_size=int(len(ds.y_test)),
        image_shape=tuple(ds.image_shape),
        class_names=tuple(ds.class_names),
        run_seconds=run_seconds,
        seconds=time.perf_counter() - t0,
        peak_rss_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    )


def cold_step_memory(cfg, methods=("unroll", "unroll_no_remat", "neumann", "cg")) -> dict:
    """Memory XLA plans for ONE cold-start outer step (one seed) with each hypergradient method:
    ``{method: {"temp_mb", "argument_mb"}}`` from the compiled step's ``memory_analysis()``.
    ``unroll_no_remat`` is ``Unroll(T)`` without checkpointing (stores every step's activations)."""
    ds = load_dataset(cfg.dataset, root=cfg.root, seed=cfg.seed)
    X, Y = jnp.asarray(ds.x_train), jnp.asarray(ds.y_train)
    out = {}
    for m in methods:
        c = dataclasses.replace(cfg, cold_method="unroll" if m == "unroll_no_remat" else m)
        clf, make_problem, algos, _ = build(c, ds)

        def step(state, X, Y, idx, m=m, c=c):
            algo = algos(make_problem(X, Y))["cold"]  # noqa: B023 - lowered in this iteration
            if m == "unroll_no_remat":
                algo = dataclasses.replace(algo, method=blo.Unroll(c.cold_steps, remat=False))
            return algo._step(state, None, idx)

        key = jax.random.PRNGKey(cfg.seed)
        state = algos(make_problem(X, Y))["cold"].init(init_u(c, ds, key), clf.init(key))
        idx = jnp.zeros((cfg.batch_size,), jnp.int32)
        try:
            ma = jax.jit(step).lower(state, X, Y, idx).compile().memory_analysis()
            if ma is None:
                raise RuntimeError("the backend gives no memory analysis")
            out[m] = {
                "temp_mb": ma.temp_size_in_bytes / 2**20,
                "argument_mb": ma.argument_size_in_bytes / 2**20,
            }
        except Exception as exc:  # noqa: BLE001 - backends without memory analysis
            out[m] = {"error": f"{type(exc).__name__}: {exc}"}
    return out
