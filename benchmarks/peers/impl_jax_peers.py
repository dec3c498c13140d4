"""jaxopt and optimistix (+ lineax) implementations of problem 1 (and memory of problem 4).

Same data, same T = 100 gradient steps at the same fixed step size, same K = 20 solver iterations
(tolerances set to zero so that every solver runs all K iterations, as blojax does).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from problems import K_SOLVE, T_INNER


class NotAvailable(Exception):
    """The library has no such method (the reason is the message)."""


def _f(w, u, X, y):
    r = X @ w - y
    return 0.5 * jnp.mean(r * r) + 0.5 * jnp.sum(jnp.exp(u) * w * w)


def _F(w, Xv, yv):
    r = Xv @ w - yv
    return 0.5 * jnp.mean(r * r)


def _args(data):
    return tuple(jnp.asarray(data[k]) for k in ("u0", "w0", "X", "y", "Xv", "yv"))


# ------------------------------------------------------------------------------------------------ shared
class _JaxPeer:
    """Problem 1 for a JAX peer whose ``_outer(task, data, T)`` builds ``F(w_T(u))`` as a function of
    ``(u, w0, X, y, Xv, yv)``: the hypergradient is ``jax.grad`` of it, compiled once."""

    @classmethod
    def p1(cls, task, data):
        g = jax.jit(jax.grad(cls._outer(task, data, T_INNER)))
        args = _args(data)
        return lambda: g(*args), lambda out: np.asarray(out)

    @classmethod
    def p4_memory(cls, task, data, T):
        args = _args(data)
        compiled = jax.jit(jax.grad(cls._outer(task, data, T))).lower(*args).compile()
        return compiled.memory_analysis().temp_size_in_bytes, lambda: jax.block_until_ready(compiled(*args))


# ------------------------------------------------------------------------------------------------ jaxopt
class JaxOpt(_JaxPeer):
    NAME = "jaxopt"

    @staticmethod
    def version():
        from importlib import metadata

        return metadata.version("jaxopt")

    @staticmethod
    def _outer(task, data, T):
        import jaxopt

        alpha = data["alpha"]
        common = dict(fun=_f, stepsize=alpha, maxiter=T, tol=0.0, acceleration=False)
        if task == "unroll":
            solver = jaxopt.GradientDescent(**common, implicit_diff=False, unroll=True)
        elif task == "cg":
            solver = jaxopt.GradientDescent(
                **common,
                implicit_diff=True,
                implicit_diff_solve=functools.partial(jaxopt.linear_solve.solve_cg, maxiter=K_SOLVE, tol=0.0),
            )
        elif task == "normal_cg":  # jaxopt's default implicit solver, with K iterations
            solver = jaxopt.GradientDescent(
                **common,
                implicit_diff=True,
                implicit_diff_solve=functools.partial(
                    jaxopt.linear_solve.solve_normal_cg, maxiter=K_SOLVE, tol=0.0
                ),
            )
        else:
            raise NotAvailable("no Neumann-series linear solver in jaxopt.linear_solve")

        def outer(u, w0, X, y, Xv, yv):
            w = solver.run(w0, u, X, y).params
            return _F(w, Xv, yv)

        return outer


# ------------------------------------------------------------------------------------------------ optimistix
class Optimistix(_JaxPeer):
    NAME = "optimistix"

    @staticmethod
    def version():
        from importlib import metadata

        return f"{metadata.version('optimistix')} (lineax {metadata.version('lineax')})"

    @staticmethod
    def _outer(task, data, T):
        import lineax as lx
        import optimistix as optx

        alpha = data["alpha"]
        solver = optx.GradientDescent(learning_rate=alpha, rtol=0.0, atol=0.0)
        tags = frozenset({lx.symmetric_tag, lx.positive_semidefinite_tag})
        if task == "unroll":
            adjoint = optx.RecursiveCheckpointAdjoint(checkpoints=T + 2)
        elif task == "cg":
            adjoint = optx.ImplicitAdjoint(linear_solver=lx.CG(rtol=0.0, atol=0.0, max_steps=K_SOLVE))
        elif task == "normal_cg":
            adjoint = optx.ImplicitAdjoint(linear_solver=lx.NormalCG(rtol=0.0, atol=0.0, max_steps=K_SOLVE))
        else:
            raise NotAvailable("no Neumann-series linear solver in lineax")

        def outer(u, w0, X, y, Xv, yv):
            # optimistix's first step evaluates f at y0 without an update: T updates take max_steps=T+1.
            sol = optx.minimise(
                lambda w, args: _f(w, *args),
                solver,
                w0,
                args=(u, X, y),
                max_steps=T + 1,
                adjoint=adjoint,
                throw=False,
                tags=tags,
            )
            return _F(sol.value, Xv, yv)

        return outer
