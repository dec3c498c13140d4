r"""E5 (antidistillation), the MLP variant: the same outer problem with a one-hidden-layer tanh network as
the inner model (no closed form). Cold start from a fixed init ``w0``, T SGD steps per outer step;
``Neumann(K)`` at ``w_T`` and ``Unroll`` through the last K of the T steps, each family's K values as
one vmapped sweep (:func:`blojax.hypergrad.sweep_presolver` keeps T steps for every K)."""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

import jax
import jax.flatten_util
import jax.numpy as jnp
import numpy as np
import optax

import blojax as blo
from blojax._tree import tree_norm
from blojax.hypergrad import sweep_presolver

from . import toolkit
from ._antidistill_sweep import sweep

if TYPE_CHECKING:
    from .antidistill import Config

#: The MLP variant's method families: K-term Neumann at ``w_T``, Unroll through the last K steps.
MLP_FAMILIES = ("neumann", "unroll")


@dataclasses.dataclass(frozen=True)
class MLPRuns:
    """Cold-start runs of one family on the MLP, entry ``i`` for ``K = params[i]``.

    u, u_norm: ``(m, n)`` reached outer parameters and ``||u||``.
    F, f: ``F(u, w_T(u))`` and ``f(u, w_T(u))`` of a fresh cold-start fit of the final ``u`` (T steps
      from ``w0``); w_norm: ``||w_T(u)||``; curves: the fitted network on the plotting grid.
    F_history: ``(m, mlp_outer_steps)`` F along each run.
    kappa: the secant curvature of the hypergradient map at ``u0`` (the outer step is ``eta / kappa``).
    diverged_step: first outer step with a non-finite update (``-1``: finite throughout).
    """

    params: np.ndarray
    u: np.ndarray
    u_norm: np.ndarray
    F: np.ndarray
    f: np.ndarray
    F_history: np.ndarray
    kappa: np.ndarray
    diverged_step: np.ndarray
    w_norm: np.ndarray
    curves: np.ndarray

    def to_dict(self) -> dict:
        return {
            "F": self.F,
            "diverged_step": self.diverged_step,
            "f": self.f,
            "kappa": self.kappa,
            "params": self.params,
            "u": self.u,
            "w_norm": self.w_norm,
            "u_norm": self.u_norm,
        }


@dataclasses.dataclass(frozen=True)
class MLPResult:
    """E5's MLP variant.

    x: the synthetic inputs; x_grid: the plotting grid.
    inner_lr: the inner SGD step ``mlp_inner_lr / lambda_max(J J^T)`` (J: the network's Jacobian at
      ``w0``), also the Neumann step.
    n_weights: number of inner parameters.
    families: :class:`MLPRuns` keyed by :data:`MLP_FAMILIES`.
    neumann_unroll_rel_diff: per K, ``||u_Neumann - u_Unroll|| / ||u_Neumann||`` (not equal here: ``w_T``
      is not stationary).
    """

    x: np.ndarray
    x_grid: np.ndarray
    inner_lr: float
    n_weights: int
    families: dict[str, MLPRuns]
    neumann_unroll_rel_diff: np.ndarray

    def to_dict(self) -> dict:
        return {
            "x": self.x,
            "inner_lr": self.inner_lr,
            "n_weights": self.n_weights,
            **{name: runs.to_dict() for name, runs in self.families.items()},
            "neumann_unroll_rel_diff": self.neumann_unroll_rel_diff,
        }


def init_tanh(seed, width):
    """One-hidden-layer tanh network ``y = sum_j v_j tanh(a_j x + b_j) + c`` with ``a ~ N(0, 1)``,
    ``b ~ U(-2, 2)`` (kinks spread over the data interval), ``v ~ N(0, 1/width)``, ``c = 0``."""
    k1, k2, k3 = jax.random.split(jax.random.PRNGKey(seed), 3)
    return dict(
        a=jax.random.normal(k1, (width,), jnp.float64),
        b=jax.random.uniform(k2, (width,), jnp.float64, -2.0, 2.0),
        v=jax.random.normal(k3, (width,), jnp.float64) / np.sqrt(width),
        c=jnp.zeros((), jnp.float64),
    )


def tanh_apply(w, x):
    return jnp.tanh(x[:, None] * w["a"] + w["b"]) @ w["v"] + w["c"]


def run_mlp(cfg: Config, ctx) -> MLPResult:
    """Cold start from a fixed MLP init ``w0``: T SGD steps per outer step; Neumann(K) at ``w_T`` and
    Unroll through the last K of the T steps. No closed form: the reference is the trend in K."""
    xs = jnp.linspace(cfg.x_min, cfg.x_max, cfg.n)
    w0 = init_tanh(cfg.seed, cfg.mlp_width)
    xg = jnp.linspace(cfg.x_min - 0.5, cfg.x_max + 0.5, 200)
    model = tanh_apply

    def f(u, w):
        return 0.5 * jnp.sum((model(w, xs) - u) ** 2)

    def F(u, w):
        return 0.5 * (model(w, jnp.asarray([cfg.x_orig]))[0] - cfg.y_orig) ** 2

    # inner SGD step: mlp_inner_lr / lambda_max of the Gauss-Newton (NTK) matrix at w0, which is the
    # Hessian of f at a fit; the same alpha is the Neumann step
    flat, unravel = jax.flatten_util.ravel_pytree(w0)
    Jac = jax.jacfwd(lambda z: model(unravel(z), xs))(flat)
    lr = cfg.mlp_inner_lr / float(jnp.linalg.eigvalsh(Jac @ Jac.T)[-1])
    problem = blo.Problem(inner=f, outer=F)
    inner = blo.InnerLoop(optax.sgd(lr), steps=cfg.mlp_inner_steps)
    u0 = jnp.zeros(cfg.n)
    kmax = max(cfg.mlp_ks)
    # throw=False inside the compiled program (toolkit NaN policy); its F and w_norm are checked below
    full = lambda u: inner.run(problem, u, w0, throw=False)[0]  # noqa: E731

    def make_neumann(K):
        return problem, inner, blo.Neumann(terms=K, lr=lr), full

    def make_unroll(K):
        method = blo.Unroll(steps=K, max_steps=kmax)
        pre = sweep_presolver(inner, method)  # T - K plain steps for a traced K: T in all
        return problem, pre, method, lambda u: pre.solve(problem, u, w0, pre.init(w0))[0]

    def program(params):
        out = {}
        for name, make in (("neumann", make_neumann), ("unroll", make_unroll)):
            states, kappa, _, hist = sweep(make, params, u0, w0, cfg.mlp_outer_steps, cfg.mlp_outer_eta)
            U = states.u
            Ws = jax.vmap(full)(U)  # a fresh cold-start fit of the final u (T steps from w0)
            out[name] = dict(
                params=params,
                u=U,
                F=jax.vmap(F)(U, Ws),
                f=jax.vmap(f)(U, Ws),
                F_history=hist["F"],
                kappa=kappa,
                diverged_step=states.diverged_step,
                w_norm=jax.vmap(tree_norm)(Ws),
                curves=jax.vmap(lambda w: model(w, xg))(Ws),
            )
        return out

    raw = ctx.stage("mlp", jax.jit(program), jnp.asarray(cfg.mlp_ks))
    raw = jax.tree_util.tree_map(np.asarray, raw)
    families = {}
    for name in MLP_FAMILIES:
        r = raw[name]
        toolkit.require_finite(
            f"antidistill mlp {name} (lower mlp_outer_eta / mlp_inner_lr)", diverged_step=r["diverged_step"]
        )
        toolkit.require_finite(
            f"antidistill mlp {name}, refit of the final u (lower mlp_inner_lr)", (r["F"], r["w_norm"])
        )
        families[name] = MLPRuns(u_norm=np.linalg.norm(r["u"], axis=1), **r)
    nu, un = families["neumann"].u, families["unroll"].u
    return MLPResult(
        x=np.asarray(xs),
        x_grid=np.asarray(xg),
        inner_lr=lr,
        n_weights=int(sum(x.size for x in jax.tree_util.tree_leaves(w0))),
        families=families,
        neumann_unroll_rel_diff=np.linalg.norm(nu - un, axis=1) / np.linalg.norm(nu, axis=1),
    )
