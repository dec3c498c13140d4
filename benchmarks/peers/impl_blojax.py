"""blojax implementations of the peer-benchmark problems (see problems.py)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax

import blojax as blo

from bench_util import blojax_ridge_problem, grad_loop, hvp_loop, noop_like
from problems import K_SOLVE, T_INNER

NAME = "blojax"


def version():
    return blo.__version__


def ridge_problem():
    return blojax_ridge_problem()


METHODS = {
    "cg": lambda a: blo.CG(iters=K_SOLVE),
    "normal_cg": lambda a: blo.CG(iters=K_SOLVE, normal=True),
    "neumann": lambda a: blo.Neumann(terms=K_SOLVE, lr=a),
    "unroll": lambda a: blo.Unroll(steps=T_INNER),
}


def p1(task, data):
    """Returns a callable computing the hypergradient (T inner steps + one hypergradient)."""
    alpha = data["alpha"]
    problem = ridge_problem()
    inner = blo.InnerLoop(optax.sgd(alpha), steps=T_INNER)
    method = METHODS[task](alpha)

    pre = method.presolver(inner)  # the T - K plain steps before the strategy (Unroll(T): none)

    @jax.jit
    def run(u, w0, ib, ob):
        w_s = pre.solve(problem, u, w0, pre.init(w0), ib)[0]
        g, _ = blo.hypergradient(
            problem, u, w_s, method, inner, inner_batch=ib, outer_batch=ob, diagnostics=False
        )
        return g

    args = (
        jnp.asarray(data["u0"]),
        jnp.asarray(data["w0"]),
        (jnp.asarray(data["X"]), jnp.asarray(data["y"])),
        (jnp.asarray(data["Xv"]), jnp.asarray(data["yv"])),
    )
    return lambda: run(*args), lambda out: np.asarray(out)


def p1_solve(task, data):
    """The same problem-1 unit written as a JAX user would: ``jax.grad`` of ``u -> F(u, w)`` with ``w =
    blojax.solve(problem, u, w0, inner=..., method=...)`` (T inner steps in the forward pass, the
    strategy's pullback in the backward pass), one compiled call. Same counted work as :func:`p1`."""
    alpha = data["alpha"]
    problem = ridge_problem()
    inner = blo.InnerLoop(optax.sgd(alpha), steps=T_INNER)
    method = METHODS[task](alpha)

    @jax.jit
    def run(u, w0, ib, ob):
        def loss(u_):
            return problem.F(u_, blo.solve(problem, u_, w0, inner=inner, method=method, batch=ib), ob)

        return jax.grad(loss)(u)

    args = (
        jnp.asarray(data["u0"]),
        jnp.asarray(data["w0"]),
        (jnp.asarray(data["X"]), jnp.asarray(data["y"])),
        (jnp.asarray(data["Xv"]), jnp.asarray(data["yv"])),
    )
    return lambda: run(*args), lambda out: np.asarray(out)


def p1_units(data):
    """Unit costs of problem 1 for the floor: amortized grad_w f, forward-over-reverse HVP, and a call
    with the arguments and result of one unit (``p1``'s ``run(u, w0, ib, ob) -> g``)."""
    problem = ridge_problem()
    ib = (jnp.asarray(data["X"]), jnp.asarray(data["y"]))
    ob = (jnp.asarray(data["Xv"]), jnp.asarray(data["yv"]))
    u, w = jnp.asarray(data["u0"]), jnp.asarray(data["w0"]) + 0.01
    grad = lambda w_, u_, ib_: problem.grad_w_f(u_, w_, ib_)  # noqa: E731
    return dict(
        grad=grad_loop(grad, w, u, ib),
        hvp=hvp_loop(grad, w, u, ib),
        call=noop_like(lambda u_, w_, ib_, ob_: u_, u, w, ib, ob),
    )


# Counted work of one problem-1 unit (T inner steps + one hypergradient), as blojax.hypergradient
# reports it: IFT = T grads (inner) + 2 grads + hvps; Unroll = T grads forward + T reverse products
# (one HVP each) + 1 grad of F.
def p1_counts(task):
    if task == "unroll":
        return dict(grads=T_INNER + 1, hvps=T_INNER)
    hvps = {"cg": K_SOLVE + 1, "normal_cg": 2 * K_SOLVE + 2, "neumann": K_SOLVE}[task]
    return dict(grads=T_INNER + 2, hvps=hvps)


# ------------------------------------------------------------------------------------------------ problem 2
def mlp(w, x):
    h = x
    for i, (W, b) in enumerate(w):
        h = h @ W + b
        if i < len(w) - 1:
            h = jax.nn.relu(h)
    return h


def ce(logits, y):
    return -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(logits), y[:, None], axis=1))


def p2(data, steps=None):
    steps = steps or data["steps"]
    Xo, yo, ys = jnp.asarray(data["Xo"]), jnp.asarray(data["yo"]), jnp.asarray(data["ys"])
    problem = blo.Problem(lambda u, w: ce(mlp(w, u), ys), lambda u, w: ce(mlp(w, Xo), yo))
    # diagnostics=False: like the peers (and problem 1), no f / ||grad_w f|| at w_T each step.
    algo = blo.WarmStart(
        problem,
        blo.InnerLoop(optax.sgd(data["inner_lr"]), steps=1),
        blo.Unroll(steps=1, remat=True),
        optax.adam(data["outer_lr"]),
        diagnostics=False,
    )  # remat pinned: p2_floor counts it
    w0 = [(jnp.asarray(W), jnp.asarray(b)) for W, b in data["w0"]]
    state0 = algo.init(jnp.asarray(data["u0"]), w0)
    jax.block_until_ready(algo.run(state0, steps))  # compile

    def run():
        state, hist = algo.run(state0, steps)
        return state.u, hist["F"]

    return run, lambda out: (np.asarray(out[0]), np.asarray(out[1]))


# ------------------------------------------------------------------------------------------------ problem 3
def _p3_algo(data):
    Phi, Phi_o, yo = (jnp.asarray(data[k]) for k in ("Phi", "Phi_o", "yo"))
    problem = blo.Problem(
        lambda u, w: 0.5 * jnp.sum((Phi @ w - u) ** 2), lambda u, w: 0.5 * jnp.sum((Phi_o @ w - yo) ** 2)
    )
    algo = blo.ColdStart(
        problem,
        blo.InnerLoop(optax.sgd(data["alpha"]), steps=data["T"]),
        blo.Neumann(terms=data["K"], lr=data["alpha"]),
        optax.sgd(data["outer_lr"]),
        diagnostics=False,
    )
    return algo, algo.init(jnp.asarray(data["u0"]), jnp.asarray(data["w0"]))


def p3(data):
    algo, state0 = _p3_algo(data)

    def run():
        state, metrics = algo.step(state0)
        return state.u

    return run, lambda out: np.asarray(out)


# ------------------------------------------------------------------------------------------------ problem 4
def p4_memory(task, data, T):
    """Peak temporary memory (bytes) XLA allocates for one problem-1 unit with T inner steps."""
    alpha = data["alpha"]
    problem = ridge_problem()
    inner = blo.InnerLoop(optax.sgd(alpha), steps=T)
    method = blo.Unroll(steps=T) if task == "unroll" else blo.CG(iters=K_SOLVE)

    def run(u, w0, ib, ob):
        if task == "unroll":
            return blo.hypergradient(
                problem, u, w0, method, inner, inner_batch=ib, outer_batch=ob, diagnostics=False
            )[0]
        w_t, _ = inner.run(problem, u, w0, ib)
        return blo.hypergradient(problem, u, w_t, method, inner_batch=ib, outer_batch=ob, diagnostics=False)[
            0
        ]

    args = (
        jnp.asarray(data["u0"]),
        jnp.asarray(data["w0"]),
        (jnp.asarray(data["X"]), jnp.asarray(data["y"])),
        (jnp.asarray(data["Xv"]), jnp.asarray(data["yv"])),
    )
    compiled = jax.jit(run).lower(*args).compile()
    return compiled.memory_analysis().temp_size_in_bytes, lambda: jax.block_until_ready(compiled(*args))


# ------------------------------------------------------------------------------------------------ floors of 2 / 3
def p2_units(data):
    """Units of one warm-start outer step: grad_w f (2 synthetic points), grad_w F (ring data), a
    forward-over-reverse HVP of f, and a no-op call divided by the steps of one run."""
    Xo, yo, ys = jnp.asarray(data["Xo"]), jnp.asarray(data["yo"]), jnp.asarray(data["ys"])
    u = jnp.asarray(data["u0"])
    w = [(jnp.asarray(W), jnp.asarray(b)) for W, b in data["w0"]]
    grad_f = lambda w_, u_, ys_: jax.grad(lambda v: ce(mlp(v, u_), ys_))(w_)  # noqa: E731
    grad_F = lambda w_, X_, y_: jax.grad(lambda v: ce(mlp(v, X_), y_))(w_)  # noqa: E731
    return dict(
        grad_f=grad_loop(grad_f, w, u, ys),
        grad_F=grad_loop(grad_F, w, Xo, yo),
        hvp_f=hvp_loop(grad_f, w, u, ys),
        call=noop_like(lambda u_, w_: u_, u, w),
    )


def p2_floor(t, steps):
    """Per outer step, as ``Unroll(1)`` counts them with ``diagnostics=False``: the inner step (1 grad
    f), its recomputation in the rematerialized backward pass (1 grad f; CPU default), the reverse
    pass through it (1 HVP of f) and dF/dw (1 grad F)."""
    return t["call"] / steps + 2 * t["grad_f"] + t["grad_F"] + t[
        "hvp_f"
    ], "2 grad f + 1 grad F + 1 HVP per step"


def p3_units(data):
    """Units of one cold-start step: grad_w f, a forward-over-reverse HVP of f, and a compiled call
    that does no work with the arguments and results of ``algo.step`` (the state in, the state and the
    metrics out): mostly JAX's per-result dispatch, which any step returning this many arrays pays."""
    Phi, u, w = jnp.asarray(data["Phi"]), jnp.asarray(data["u0"]), jnp.asarray(data["w0"]) + 0.1
    grad = lambda w_, u_, Phi_: jax.grad(lambda v: 0.5 * jnp.sum((Phi_ @ v - u_) ** 2))(w_)  # noqa: E731
    algo, state0 = _p3_algo(data)
    return dict(
        grad=grad_loop(grad, w, u, Phi), hvp=hvp_loop(grad, w, u, Phi), call=noop_like(algo.step, state0)
    )


def p3_floor(t, data):
    """As ``blojax.hypergradient`` counts them with ``diagnostics=False``: T inner grads + dF (1) +
    linearize (1) + Neumann K - 1 products (no residual) + M^T v (1)."""
    T, K = data["T"], data["K"]
    grads, hvps = T + 2, K
    return t["call"] + grads * t["grad"] + hvps * t["hvp"], f"{grads} grads + {hvps} HVPs"


def p2_plain_jax(data, steps=None):
    """Reference: the same warm-start loop written by hand in plain JAX (one ``lax.scan``: one SGD
    step of f, the 1-step unrolled hypergradient of F, Adam on u), without any library."""
    steps = steps or data["steps"]
    Xo, yo, ys = jnp.asarray(data["Xo"]), jnp.asarray(data["yo"]), jnp.asarray(data["ys"])
    f = lambda u, w: ce(mlp(w, u), ys)  # noqa: E731
    F = lambda u, w: ce(mlp(w, Xo), yo)  # noqa: E731
    adam, lr = optax.adam(data["outer_lr"]), data["inner_lr"]
    w0 = [(jnp.asarray(W), jnp.asarray(b)) for W, b in data["w0"]]
    u0 = jnp.asarray(data["u0"])

    @jax.jit
    def run(u, w):
        def body(c, _):
            u, w, s = c

            def obj(u):
                g = jax.grad(f, 1)(u, w)
                w1 = jax.tree_util.tree_map(lambda a, b: a - lr * b, w, g)
                return F(u, w1), w1

            (Fv, w1), gu = jax.value_and_grad(obj, has_aux=True)(u)
            upd, s = adam.update(gu, s, u)
            return (optax.apply_updates(u, upd), w1, s), Fv

        (u, w, s), Fs = jax.lax.scan(body, (u, w, adam.init(u)), None, length=steps)
        return u, Fs

    jax.block_until_ready(run(u0, w0))
    return (lambda: run(u0, w0)), (lambda out: (np.asarray(out[0]), np.asarray(out[1])))
