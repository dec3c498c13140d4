"""Negative curvature on real data: CG at w_T of a tanh MLP distilling scikit-learn's digits.

    python benchmarks/negative_curvature.py [--seeds 0 1 2] [--lrs 0.1 0.5] [--json PATH]

The setting: dataset distillation of the 8x8 digits (1797 images, pixels / 16) into ``u``, ten
synthetic images (one per class, started at a real image of that class, labels fixed); the inner
model is a 64-128-10 tanh MLP (9610 parameters ``w``) trained on the ten synthetic images by T = 100
SGD steps from a fixed random ``w0``, with weight decay 1e-3,

    f(u, w) = CE(mlp_w(u), 0..9) + 1e-3/2 ||w||^2,      F(u, w) = CE(mlp_w(X_digits), y_digits),

and the hypergradient is taken at ``w_T``. With ten training points ``H = d^2f/dw^2`` is ``1e-3 I``
plus a low-rank part, whose curvature along directions that the ten points use can be negative while
``w_T`` is still far from a minimum.

For each seed (which real images start ``u``, and ``w0``) and inner step size, in float64 and float32
(the whole pipeline, inner loop included, in that dtype):

* the extreme eigenvalues of ``H`` at ``w_T`` (Lanczos, ``scipy.sparse.linalg.eigsh`` on the
  float64 Hessian-vector product);
* ``CG(20)`` (undamped): ``info.status``, the final residual over ``||dF/dw||``, the residual growth
  over its minimum, and the hypergradient's relative distance to the float64 IFT answer
  ``g* = -M^T H^{-1} dF/dw`` (``H^{-1}`` by MINRES to 1e-12, ``H`` being indefinite but nonsingular);
* ``CG(20, stop_at_breakdown=True)`` (the last descent iterate);
* damping: ``CG(20, damping=eps)`` and ``Damped(eps)`` for each ``--eps``: status and the distance to
  ``g*`` and to the exact damped answer ``g*_eps`` (MINRES on ``H + eps I``);
* ``float32 vs float64``: the relative distance between the two dtypes' answers of the same strategy,
  and, in float32, ``diagnostics=True`` against ``False`` (the same strategy, compiled differently).

No timing. Results in docs/hypergradients.md ("Negative curvature on real data").
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import jax

jax.config.update("jax_enable_x64", True)  # float64 available; every array below carries its dtype

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402
from jax.flatten_util import ravel_pytree  # noqa: E402
from tqdm.auto import tqdm  # noqa: E402

import blojax as blo  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_util import format_machine, machine_info, table  # noqa: E402

T_INNER, K_CG, DECAY, HIDDEN = 100, 20, 1e-3, 128


def digits_case(seed: int, lr: float, dtype):
    """``(problem, u, w0, inner)`` of the distillation problem (module docstring) in ``dtype``."""
    from sklearn.datasets import load_digits

    d = load_digits()
    X = (d.data / 16.0).astype(np.float64)
    y = d.target.astype(np.int32)
    rng = np.random.default_rng(seed)
    first = [int(rng.choice(np.flatnonzero(y == c))) for c in range(10)]
    u = jnp.asarray(X[first], dtype)
    labels = jnp.arange(10)
    w0 = {
        "W1": jnp.asarray(rng.standard_normal((64, HIDDEN)) / np.sqrt(64), dtype),
        "b1": jnp.zeros(HIDDEN, dtype),
        "W2": jnp.asarray(rng.standard_normal((HIDDEN, 10)) / np.sqrt(HIDDEN), dtype),
        "b2": jnp.zeros(10, dtype),
    }
    Xr, yr = jnp.asarray(X, dtype), jnp.asarray(y)

    def logits(w, x):
        return jnp.tanh(x @ w["W1"] + w["b1"]) @ w["W2"] + w["b2"]

    def ce(z, t):
        return -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(z), t[:, None], axis=1))

    def f(u_, w):
        sq = sum(jnp.sum(x**2) for x in jax.tree_util.tree_leaves(w))
        return ce(logits(w, u_), labels) + 0.5 * DECAY * sq

    def F(u_, w):
        return ce(logits(w, Xr), yr)

    inner = blo.InnerLoop(optax.sgd(lr), steps=T_INNER)
    return blo.Problem(f, F), u, w0, inner


def _flat(t):
    return np.asarray(ravel_pytree(t)[0], np.float64)


def _rel(a, b):
    a, b = _flat(a), _flat(b)
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-300))


def reference(problem, u, w, eps_list):
    """float64: extreme eigenvalues of H at ``w``, ``||dF/dw||`` and the IFT answers ``g*`` (undamped)
    and ``g*_eps`` (H + eps I), with ``H^{-1}`` by MINRES to 1e-12."""
    from scipy.sparse.linalg import LinearOperator, eigsh, minres

    flat_w, unravel = ravel_pytree(w)
    n = flat_w.size
    grad_w = lambda x: ravel_pytree(jax.grad(problem.f, argnums=1)(u, unravel(x)))[0]  # noqa: E731
    hvp = jax.jit(lambda v: jax.jvp(grad_w, (flat_w,), (v,))[1])
    op = LinearOperator((n, n), matvec=lambda v: np.asarray(hvp(jnp.asarray(v))), dtype=np.float64)
    lam_lo = eigsh(op, k=3, which="SA", tol=1e-10, return_eigenvectors=False)
    lam_hi = eigsh(op, k=1, which="LA", tol=1e-10, return_eigenvectors=False)
    dF_dw = jax.grad(problem.F, argnums=1)(u, w)
    b = np.asarray(ravel_pytree(dF_dw)[0])

    def mixed(v):  # g = dF/du - M^T v  (F does not depend on u directly here)
        _, vjp = jax.vjp(lambda u_: jax.grad(problem.f, argnums=1)(u_, w), u)
        return jax.tree_util.tree_map(jnp.negative, vjp(unravel(jnp.asarray(v)))[0])

    out = {}
    for eps in [0.0, *eps_list]:
        A = LinearOperator((n, n), matvec=lambda v, e=eps: op.matvec(v) + e * v, dtype=np.float64)
        v, info = minres(A, b, rtol=1e-12, maxiter=20 * n)
        res = float(np.linalg.norm(A.matvec(v) - b) / np.linalg.norm(b))
        out[eps] = (mixed(v), res)
    return dict(lam_min=sorted(lam_lo), lam_max=float(lam_hi[0]), bnorm=float(np.linalg.norm(b)), g=out, n=n)


def strategies(eps_list):
    ms = {"CG(20)": blo.CG(K_CG), "CG(20, stop_at_breakdown)": blo.CG(K_CG, stop_at_breakdown=True)}
    for e in eps_list:
        ms[f"CG(20, damping={e:g})"] = blo.CG(K_CG, damping=e)
        ms[f"Damped({e:g})"] = blo.Damped(e, rtol=1e-6, max_iters=1000)
    return ms


def run_case(seed, lr, eps_list):
    rows = []
    res = {}
    for dtype in (jnp.float64, jnp.float32):
        problem, u, w0, inner = digits_case(seed, lr, dtype)
        w_T, inner_info = jax.jit(lambda u_, w_: inner.run(problem, u_, w_))(u, w0)
        res[dtype] = dict(w=w_T, problem=problem, u=u, gn=float(inner_info.grad_norm))
        for name, m in strategies(eps_list).items():
            hg = jax.jit(
                lambda u_, w_, m=m, d=True: blo.hypergradient(problem, u_, w_, m, throw=False, diagnostics=d)
            )
            g, info = hg(u, w_T)
            g_nodiag = jax.jit(
                lambda u_, w_, m=m: blo.hypergradient(problem, u_, w_, m, throw=False, diagnostics=False)[0]
            )(u, w_T)
            res[dtype][name] = (g, info, g_nodiag)
    ref = reference(res[jnp.float64]["problem"], res[jnp.float64]["u"], res[jnp.float64]["w"], eps_list)
    g_star = ref["g"][0.0][0]
    for name in strategies(eps_list):
        eps = (
            0.0
            if "damping" not in name and not name.startswith("Damped")
            else float(name.split("(")[-1].split("=")[-1].rstrip(")"))
        )
        for dtype, tag in ((jnp.float64, "float64"), (jnp.float32, "float32")):
            g, info, g_nodiag = res[dtype][name]
            rows.append(
                dict(
                    seed=seed,
                    lr=lr,
                    strategy=name,
                    dtype=tag,
                    status=blo.Status(int(info.status)).name,
                    iters=int(info.solve_iters),
                    res_over_b=float(info.residual) / ref["bnorm"],
                    growth=float(info.residual_growth),
                    to_g_star=_rel(g, g_star),
                    to_g_eps=_rel(g, ref["g"][eps][0]) if eps else float("nan"),
                    f32_vs_f64=_rel(res[jnp.float32][name][0], res[jnp.float64][name][0]),
                    diag_vs_nodiag=_rel(g, g_nodiag),
                )
            )
    facts = dict(
        seed=seed,
        lr=lr,
        n=ref["n"],
        lam_min=ref["lam_min"],
        lam_max=ref["lam_max"],
        grad_norm_f64=res[jnp.float64]["gn"],
        grad_norm_f32=res[jnp.float32]["gn"],
        minres_rel_residual={str(k): v[1] for k, v in ref["g"].items()},
    )
    return facts, rows


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seeds", type=int, nargs="*", default=[0, 1, 2])
    ap.add_argument("--lrs", type=float, nargs="*", default=[0.1, 0.5])
    ap.add_argument("--eps", type=float, nargs="*", default=[0.02, 0.1])
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)
    print(
        format_machine(machine_info(("jax", "jaxlib", "optax", "numpy", "scipy", "scikit-learn"))), flush=True
    )
    all_facts, all_rows = [], []
    for seed in tqdm(args.seeds, desc="seeds"):
        for lr in args.lrs:
            facts, rows = run_case(seed, lr, args.eps)
            all_facts.append(facts)
            all_rows += rows
            lam = ", ".join(f"{x:.4g}" for x in facts["lam_min"])
            print(
                f"\nseed {seed}, inner lr {lr}: n = {facts['n']}, smallest eigenvalues of H at w_T: {lam}; "
                f"largest {facts['lam_max']:.4g}; ||grad_w f(w_T)|| {facts['grad_norm_f64']:.3g} (float64), "
                f"{facts['grad_norm_f32']:.3g} (float32); MINRES rel. residuals {facts['minres_rel_residual']}",
                flush=True,
            )
            cols = [
                ("strategy", "strategy"),
                ("dtype", "dtype"),
                ("status", "status"),
                ("iters", "CG iters"),
                ("res_over_b", "residual / ||b||"),
                ("growth", "residual / min"),
                ("to_g_star", "rel. dist. to g*"),
                ("to_g_eps", "rel. dist. to g*_eps"),
                ("f32_vs_f64", "float32 vs float64"),
                ("diag_vs_nodiag", "diagnostics on vs off"),
            ]
            shown = [
                {
                    k: (f"{v:.3g}" if isinstance(v, float) else v)
                    for k, v in r.items()
                    if not (k == "f32_vs_f64" and r["dtype"] == "float64")
                }
                for r in rows
            ]
            print(table(shown, cols), flush=True)
    if args.json:
        args.json.write_text(json.dumps(dict(facts=all_facts, rows=all_rows), indent=1, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
