"""What the paper's experiments share: losses, accuracy, seed statistics, pytree stacking, retraining
through :meth:`blojax.InnerLoop.run`, and one policy for non-finite values.

Every experiment module imports from here (and from the library), never another experiment's private
names. Nothing here does I/O: run folders, checkpoints and figures' files belong to
:mod:`blojax.runner`.

Notation as in the paper: ``u`` outer parameters, ``w`` inner parameters, ``f`` inner objective,
``F`` outer objective.

NaN policy (one for every experiment):

* inside a compiled program (a ``jax.jit`` block, a vmapped sweep) library entry points are called
  with ``throw=False``, and what the program returns is checked on the host: a non-finite model
  turns the numbers computed from it into NaN (:func:`nan_unless_finite`), a non-finite algorithm
  step freezes its state (``diverged_step``), and :func:`require_finite` raises on either. The reason
  is speed: ``throw=True`` raises through a host callback, and JAX's persistent compilation cache
  never stores a program that holds one, so every process would compile it again (the quick
  reproduction's largest programs: about 30 s of CPU per run, docs/benchmarks.md);
* eager calls outside compiled programs may keep ``throw=True`` (their default): they raise where
  a non-finite inner solution or hypergradient appears;
* long outer loops run through ``ctx.run`` (chunked, checkpointed), which raises
  :class:`blojax.NonFiniteError` after the chunk where NaN/inf first appeared, keeping everything
  before it;
* loops an experiment writes itself report divergence with a per-seed ``diverged_step`` (``-1``:
  finite throughout) and call :func:`require_finite` on it, or call :func:`require_finite` on the
  final numbers; both raise :class:`blojax.NonFiniteError` naming what diverged and for which seeds.
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax

import blojax as blo
from blojax._tree import tree_all_finite
from blojax.algorithms import NonFiniteError
from blojax.models.classifier import cross_entropy, soft_cross_entropy
from blojax.status import raise_if

__all__ = [
    "cross_entropy",
    "soft_cross_entropy",
    "prob_cross_entropy",
    "accuracy",
    "seed_stats",
    "tree_stack",
    "tree_concat",
    "retrain",
    "retrain_stochastic",
    "COLD_METHODS",
    "cold_hypergradient",
    "require_finite",
    "nan_unless_finite",
    "scan_blocks",
    "NonFiniteError",
]


# ------------------------------------------------------------------------------------ losses
def prob_cross_entropy(logits, probs):
    """Mean over rows of ``-sum_c p_c log softmax(logits)_c`` with target probabilities ``p`` (rows
    of ``probs`` sum to one; one-hot rows give the ordinary cross-entropy)."""
    return -jnp.mean(jnp.sum(probs * jax.nn.log_softmax(logits), axis=-1))


def accuracy(logits, labels):
    """Fraction of rows whose ``argmax`` over the last axis equals the integer label."""
    return jnp.mean(jnp.argmax(logits, axis=-1) == jnp.asarray(labels))


# ------------------------------------------------------------------------------------ statistics
def seed_stats(x) -> dict:
    """Summary of one number per seed: ``mean``, ``std`` (population, ``ddof=0``), ``min``, ``max``
    and ``values`` (the per-seed list), all plain floats for ``results.json``."""
    a = np.asarray(x, dtype=np.float64).reshape(-1)
    if a.size == 0:
        raise ValueError("seed_stats: expected at least one value, got an empty array")
    return {
        "mean": float(a.mean()),
        "std": float(a.std()),
        "min": float(a.min()),
        "max": float(a.max()),
        "values": a.tolist(),
    }


# ------------------------------------------------------------------------------------ pytrees
def tree_stack(trees, axis: int = 0):
    """Stack a sequence of equal-structure pytrees leaf by leaf into numpy arrays along ``axis``."""
    trees = list(trees)
    if not trees:
        raise ValueError("tree_stack: expected at least one pytree, got none")
    return jax.tree_util.tree_map(lambda *xs: np.stack([np.asarray(x) for x in xs], axis=axis), *trees)


def tree_concat(parts, axis: int = 0):
    """Concatenate a sequence of equal-structure pytrees leaf by leaf into numpy arrays along ``axis``."""
    parts = list(parts)
    if not parts:
        raise ValueError("tree_concat: expected at least one pytree, got none")
    return jax.tree_util.tree_map(lambda *xs: np.concatenate([np.asarray(x) for x in xs], axis=axis), *parts)


# ------------------------------------------------------------------------------------ retraining
def retrain(
    loss: Callable[[Any, Any], Any],
    u,
    w0,
    *,
    lr: float,
    steps: int,
    optimizer: optax.GradientTransformation | None = None,
    throw: bool = True,
):
    """A fresh model trained on the final outer parameters: ``steps`` updates of ``optimizer``
    (default plain SGD at ``lr``) from ``w0`` on ``w -> loss(u, w)``, i.e. ``w_T`` of
    :class:`blojax.InnerLoop` with ``f = loss``; returns ``(w_T, info)``.

    This is the paper's "warm-start + retrain" column: the outer solution ``u`` of a bilevel run,
    judged by a model that did not co-adapt with it. ``throw`` raises
    :class:`blojax.NonFiniteError`-style runtime errors when ``w_T`` is non-finite (see the module's
    NaN policy)."""
    if not (isinstance(steps, (int, np.integer)) and not isinstance(steps, bool) and steps >= 0):
        raise ValueError(f"retrain: steps must be a non-negative int, got {steps!r}")
    opt = optimizer if optimizer is not None else optax.sgd(lr)
    problem = blo.Problem(inner=loss, outer=loss)
    return blo.InnerLoop(opt, steps=int(steps)).run(problem, u, w0, throw=throw)


def retrain_stochastic(
    loss: Callable[[Any, Any, Any], Any],
    u,
    w0,
    batches,
    *,
    lr: float,
    optimizer: optax.GradientTransformation | None = None,
    throw: bool = True,
):
    """:func:`retrain` with a fresh batch each step: ``w_{t+1} = Xi(u, w_t; b_t)`` for the slices
    ``b_t`` of ``batches`` along their leading axis (``T`` of them), each update one step of
    ``optimizer`` (default plain SGD at ``lr``: ``w_{t+1} = w_t - lr grad_w loss(u, w_t, b_t)``)
    through :meth:`blojax.InnerLoop.step`; returns ``w_T``.

    For a retrain on a stochastic inner objective (e.g. fresh augmentation noise every step), which a
    single :meth:`blojax.InnerLoop.run` with one fixed batch cannot express. ``throw`` raises at run
    time (also under ``jit``/``vmap``) when ``w_T`` is non-finite (see the module's NaN policy)."""
    opt = optimizer if optimizer is not None else optax.sgd(lr)
    problem = blo.Problem(inner=loss, outer=loss)
    loop = blo.InnerLoop(opt, steps=1)

    def body(carry, batch):
        w, state = carry
        return loop.step(problem, u, w, state, batch), None

    (w, _), _ = jax.lax.scan(body, (w0, loop.init(w0)), batches)
    return raise_if(w, ~tree_all_finite(w), "retrain_stochastic: non-finite retrained w_T (NaN/inf)", throw)


#: The cold-start hypergradients :func:`cold_hypergradient` builds.
COLD_METHODS = ("unroll", "neumann", "cg")


def cold_hypergradient(method: str, *, steps: int, terms: int, lr: float):
    """The hypergradient of a cold-start run whose inner loop is ``T = steps`` steps of SGD at
    ``alpha = lr`` from ``w0``: ``"unroll"``: :class:`blojax.Unroll` ``(T, remat=True)`` (reverse mode
    through all ``T`` steps, rematerialized); ``"neumann"``: :class:`blojax.Neumann` ``(K, alpha)`` at
    ``w_T``; ``"cg"``: :class:`blojax.CG` ``(K)`` at ``w_T`` (``K = terms``; both memory independent of
    ``T``)."""
    if method == "unroll":
        return blo.Unroll(steps, remat=True)
    if method == "neumann":
        return blo.Neumann(terms=terms, lr=lr)
    if method == "cg":
        return blo.CG(iters=terms)
    raise ValueError(f"cold_hypergradient: method must be one of {COLD_METHODS}, got {method!r}")


# ------------------------------------------------------------------------------------ NaN policy
def require_finite(what: str, value=None, *, diverged_step=None, state=None, history=None) -> None:
    """Raise :class:`blojax.NonFiniteError` naming ``what`` when ``value`` (any pytree) holds NaN/inf,
    or when a per-seed ``diverged_step`` (``-1`` = finite throughout) is ``>= 0`` for some seed.
    ``state``/``history`` are attached to the error (what the run had before it diverged)."""
    if diverged_step is not None:
        d = np.asarray(diverged_step).reshape(-1)
        bad = np.flatnonzero(d >= 0)
        if bad.size:
            seeds = ", ".join(str(int(i)) for i in bad)
            raise NonFiniteError(
                f"{what}: non-finite values (NaN/inf) from step {int(d[bad].min())} "
                f"(seed index {seeds}); stopped",
                state,
                history,
            )
    if value is not None:
        leaves = [np.asarray(x) for x in jax.tree_util.tree_leaves(value)]
        for x in leaves:
            if np.issubdtype(x.dtype, np.inexact) and not np.all(np.isfinite(x)):
                raise NonFiniteError(f"{what}: non-finite values (NaN/inf) in the result", state, history)


def nan_unless_finite(value, tree):
    """``value`` where every leaf of ``tree`` is finite, NaN (``value``'s shape and dtype) otherwise.

    How a compiled program reports a non-finite model, e.g. the accuracy of a retrained ``w_T``,
    without a host callback: ``argmax`` of NaN logits is a valid class, so an accuracy computed from a
    diverged model would look like a number; marked NaN, :func:`require_finite` on the host raises."""
    value = jnp.asarray(value)
    return jnp.where(tree_all_finite(tree), value, jnp.full_like(value, jnp.nan))


# ------------------------------------------------------------------------------------ block loops
def scan_blocks(
    ctx, block, states: dict, n_blocks: int, args: tuple, *, what: str, hint: str, key: str, desc: str
):
    """``n_blocks`` calls ``states, hist, eval = block(states, b, *args)`` (``b`` = 0, 1, ...: the
    block index) through ``ctx.scan`` (chunked, checkpointed, with progress); after each chunk every
    state in ``states`` (a dict of algorithm name -> state with ``diverged_step``) goes through
    :func:`require_finite` as ``f"{what}, {name}-start ({hint})"`` (``hint``: the knobs to lower), and
    so does every block's ``eval`` (mark numbers of a non-finite model with :func:`nan_unless_finite`). Returns the final ``states`` and the
    stacked ``{"hist": ..., "eval": ...}`` of every block (leading axis: block)."""

    def chunk(carry, n):
        states, b = carry
        parts = []
        for _ in range(n):
            states, h, ev = block(states, b, *args)
            parts.append({"hist": h, "eval": ev})
            b = b + 1
        for name, s in states.items():
            require_finite(f"{what}, {name}-start ({hint})", diverged_step=s.diverged_step)
        require_finite(f"{what}, evaluation of a block ({hint})", [p["eval"] for p in parts])
        return (states, b), tree_stack(parts)

    (states, _), hist = ctx.scan(chunk, (states, jnp.asarray(0)), n_blocks, key=key, desc=desc)
    return states, hist
