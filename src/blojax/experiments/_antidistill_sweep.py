r"""E5 (antidistillation): cold-start runs over a sweep of K or eps as one vmapped computation, with the
outer step ``eta / kappa`` scaled by the curvature ``kappa`` of ``F*(u) = F(u, w*(u))`` along the
method's hypergradient (see :mod:`blojax.experiments.antidistill`)."""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

import blojax as blo


def curvature(g_fn, u0):
    """``(g0, kappa)``: the hypergradient at u0 and the secant curvature along it,
    ``kappa = g0^T (g(u0 - s g0) - g0) / (-s ||g0||^2)`` with ``s = 1 / ||g0||`` (a unit step). Exact
    when ``g`` is affine in ``u`` (every linear-basis method); a step-size heuristic for the MLP. A secant
    rather than a JVP: it sees only the values the algorithm sees (``stop_gradient`` inside the
    proximal objective would hide part of the slope from a JVP)."""
    g0 = g_fn(u0)
    gg = jnp.vdot(g0, g0)
    s = 1.0 / jnp.sqrt(gg)
    g1 = g_fn(u0 - s * g0)
    return g0, jnp.vdot(g0, g1 - g0) / (-s * gg)


class _FirstStepState(NamedTuple):
    lr: jax.Array
    count: jax.Array  # pyright: ignore[reportIncompatibleMethodOverride] - optax's field name
    g0: Any


def first_step_sgd(eta, curvature) -> optax.GradientTransformation:
    """SGD whose constant step is fixed at the first update from the first gradient:
    ``lr = eta / curvature(g0)``. The state keeps ``lr`` and ``g0`` for the report."""

    def init(params):
        leaf = jax.tree_util.tree_leaves(params)[0]
        return _FirstStepState(
            jnp.zeros((), leaf.dtype),
            jnp.zeros((), jnp.int32),
            jax.tree_util.tree_map(jnp.zeros_like, params),
        )

    def update(updates, state, params=None):
        first = state.count == 0
        lr = jnp.where(first, eta / curvature(updates), state.lr)
        g0 = jax.tree_util.tree_map(lambda g, s: jnp.where(first, g, s), updates, state.g0)
        return jax.tree_util.tree_map(lambda g: -lr * g, updates), _FirstStepState(lr, state.count + 1, g0)

    return optax.GradientTransformation(init, update)


def sweep(make, params, u0, w0, steps, eta, kappa_of=None):
    """Cold-start runs for every value in ``params`` as ONE vmapped computation (traceable).

    ``make(p) -> (problem, inner, method, start)`` builds the setting from a traced sweep value;
    ``start(u)`` is the inner point the hypergradient is taken at (used by the secant). The outer
    optimizer is SGD with step ``eta / kappa``: ``kappa_of(g0)``, when given, returns kappa from the
    first hypergradient in closed form, applied at the first outer step (:func:`first_step_sgd`: no
    extra hypergradient evaluation); otherwise kappa is a secant (:func:`curvature`) measured before the
    run. Returns the final states (batched), kappa, the first hypergradient and the history (leaves
    ``(len(params), steps)``). A non-finite step freezes that entry's state (``diverged_step >= 0``);
    the caller applies the NaN policy (:func:`blojax.experiments.toolkit.require_finite`). A traced
    sweep value out of its strategy's range does the same (``throw=False``: no host callback, so the
    compiled sweep is stored in the persistent compilation cache; see the toolkit's NaN policy)."""

    def one(p):
        problem, inner, method, start = make(p)
        if kappa_of is not None:
            algo = blo.ColdStart(problem, inner, method, first_step_sgd(eta, kappa_of), throw=False)
            state, hist = algo.run(algo.init(u0, w0), steps)
            return state, eta / state.outer_state.lr, state.outer_state.g0, hist

        def g_fn(u):
            return blo.hypergradient(problem, u, start(u), method, inner, diagnostics=False, throw=False)[0]

        g0, kappa = curvature(g_fn, u0)
        algo = blo.ColdStart(problem, inner, method, optax.sgd(eta / kappa), throw=False)
        state, hist = algo.run(algo.init(u0, w0), steps)
        return state, kappa, g0, hist

    return jax.vmap(one)(params)
