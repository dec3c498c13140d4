"""``solve(..., throw=False)`` compiles to the same work as the default ``throw=True``.

``throw=True`` adds a run-time check (a host callback behind a finite test) and nothing else: the
compiled gradient ``u -> grad F(u, solve(u))`` has the same loops (one forward inner loop of ``T`` or
``T - K`` steps, the strategy's loops) and the same matrix products with either setting, and the
``throw=False`` program has no host callback. (A host callback makes JAX's CPU client run the call
in the calling thread, while a program without one is dispatched asynchronously to a worker thread
by default; on a loaded machine that hand-off, not the computation, made ``throw=False`` look
slower in timings. ``benchmarks/hypergrad_cost.py`` times with synchronous dispatch.)
No timing here: the checks are on the compiled HLO text.
"""

import re

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import blojax as blo

pytestmark = pytest.mark.skipif(
    jax.default_backend() != "cpu", reason="the host-callback target name is the CPU one"
)

T = 12


def ridge(d=6, n=10, seed=0):
    rng = np.random.default_rng(seed)
    X, y = (jnp.asarray(rng.standard_normal(s), jnp.float32) for s in ((n, d), (n,)))
    Xv, yv = (jnp.asarray(rng.standard_normal(s), jnp.float32) for s in ((n, d), (n,)))

    def f(u, w, batch):
        A, b = batch
        r = A @ w - b
        return 0.5 * jnp.mean(r * r) + 0.5 * jnp.sum(jnp.exp(u) * w * w)

    def F(u, w, batch):
        A, b = batch
        r = A @ w - b
        return 0.5 * jnp.mean(r * r)

    return blo.Problem(f, F), jnp.full(d, -1.0, jnp.float32), jnp.zeros(d, jnp.float32), (X, y), (Xv, yv)


def compiled_gradient_hlo(method, throw):
    problem, u, w0, ib, ob = ridge()
    inner = blo.InnerLoop(optax.sgd(0.1), steps=T)

    def grad(u_, w_, ib_, ob_):
        return jax.grad(
            lambda v: problem.F(
                v, blo.solve(problem, v, w_, inner=inner, method=method, batch=ib_, throw=throw), ob_
            )
        )(u_)

    return jax.jit(grad).lower(u, w0, ib, ob).compile().as_text()


def trip_counts(hlo):
    """Trip counts of the while loops of a compiled module (``None`` where XLA does not know it)."""
    out = []
    for line in hlo.splitlines():
        if re.search(r"\) while\(", line):
            m = re.search(r'"known_trip_count":\{"n":"(\d+)"\}', line)
            out.append(int(m.group(1)) if m else None)
    return sorted(out, key=lambda n: -1 if n is None else n)


def count(hlo, op):
    return len(re.findall(rf"= [^=]*? {op}\(", hlo))


CALLBACK = "xla_ffi_python_cpu_callback"


@pytest.mark.parametrize(
    "method",
    [blo.Unroll(4), blo.CG(5), blo.Neumann(5, 0.1), blo.Damped(0.1), blo.Identity(0.1)],
    ids=lambda m: type(m).__name__,
)
def test_throw_false_compiles_to_the_same_loops_and_products(method):
    on, off = compiled_gradient_hlo(method, True), compiled_gradient_hlo(method, False)
    # the same loops with the same trip counts: the forward inner loop once, not recomputed
    assert trip_counts(off) == trip_counts(on)
    t_pre = method.presolver(blo.InnerLoop(optax.sgd(0.1), steps=T)).steps
    assert trip_counts(off).count(t_pre) == 1
    # the same matrix products, inside and outside the loops
    assert count(off, "dot") == count(on, "dot") > 0
    # the only difference is the check: a host callback with throw=True, none with throw=False
    assert CALLBACK in on
    assert CALLBACK not in off
    callbacks = sum(CALLBACK in line for line in on.splitlines() if " custom-call(" in line)
    assert count(off, "custom-call") == count(on, "custom-call") - callbacks
