"""Why Betty's ``cg`` hypergradient differs from every other CG (float64, ridge d=100).

Betty 0.2.1 (``betty/hypergradient/cg.py``) updates the search direction with the *old* residual,
``p_new = r + beta * p`` where conjugate gradients needs ``p_new = r_new + beta * p``. This script
calls Betty's own function on a stand-in problem, then the same function with that one line
corrected (patched source), and compares both with blojax's ``CG(K)`` in float64:

    .bench-venv/bin/python benchmarks/peers/check_betty_cg.py
"""

from __future__ import annotations

import inspect
import sys
import textwrap
import types
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import problems  # noqa: E402

K = 20


def betty_like(cg_fn, data):
    X, y, Xv, yv = (torch.as_tensor(np.asarray(data[k], np.float64)) for k in ("X", "y", "Xv", "yv"))
    u = torch.nn.Parameter(torch.as_tensor(np.asarray(data["u0"], np.float64)))
    w = torch.nn.Parameter(torch.as_tensor(np.asarray(data["w_T"], np.float64)))

    def f():
        r = X @ w - y
        return 0.5 * torch.mean(r * r) + 0.5 * torch.sum(torch.exp(u) * w * w)

    curr = types.SimpleNamespace(
        paths=[],
        config=types.SimpleNamespace(cg_iterations=K, cg_alpha=1.0),
        cur_batch=None,
        training_step_exec=lambda batch: f(),
        trainable_parameters=lambda: [w],
        parameters=lambda: [w],
    )
    prev = types.SimpleNamespace(trainable_parameters=lambda: [u])
    r = Xv @ w - yv
    (vector,) = torch.autograd.grad(0.5 * torch.mean(r * r), w)
    (g,) = cg_fn([vector], curr, prev, sync=False)
    return g.detach().numpy()


def main():
    import betty.hypergradient  # noqa: F401  (the package re-exports the function under the module name)

    bcg = sys.modules["betty.hypergradient.cg"]
    import jax
    import jax.numpy as jnp
    import optax

    jax.config.update("jax_enable_x64", True)  # a standalone script: float64 throughout
    import blojax as blo

    data = problems.ridge(100)
    Xj, yj, Xvj, yvj = (jnp.asarray(np.asarray(data[k], np.float64)) for k in ("X", "y", "Xv", "yv"))
    problem = blo.Problem(
        lambda u, w: 0.5 * jnp.mean((Xj @ w - yj) ** 2) + 0.5 * jnp.sum(jnp.exp(u) * w * w),
        lambda u, w: 0.5 * jnp.mean((Xvj @ w - yvj) ** 2),
    )
    u0 = jnp.asarray(np.asarray(data["u0"], np.float64))
    inner = blo.InnerLoop(optax.sgd(data["alpha"]), steps=100)
    w_T, _ = inner.run(problem, u0, jnp.zeros(100))
    data["w_T"] = np.asarray(w_T)
    ours = np.asarray(blo.hypergradient(problem, u0, w_T, blo.CG(K))[0])

    src = textwrap.dedent(inspect.getsource(bcg.cg))
    bad = "p_new = [rr + beta * pp for rr, pp in zip(r, p)]"
    assert bad in src, "Betty's cg source changed; the check no longer applies"
    ns = dict(vars(bcg))
    exec(src.replace(bad, "p_new = [rr + beta * pp for rr, pp in zip(r_new, p)]"), ns)
    fixed = ns["cg"]

    rel = lambda a: float(np.linalg.norm(a - ours) / np.linalg.norm(ours))  # noqa: E731
    print(
        f"Betty cg as released vs blojax CG({K}), float64:      rel. diff. {rel(betty_like(bcg.cg, data)):.2e}"
    )
    print(
        f"Betty cg with p_new = r_new + beta p vs blojax CG({K}): rel. diff. {rel(betty_like(fixed, data)):.2e}"
    )


if __name__ == "__main__":
    main()
