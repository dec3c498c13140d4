"""Problem 1 cross-check in float64 (d = 100, 1000): separates float32 round-off from real differences.

It also shows what optimistix's normal-equation CG computes in reverse mode: lineax transposes the
linear solve, and for ``Normal(CG)`` the transposed solve runs CG on ``A A^T y = b`` and returns
``A^T y`` (CGNE) where blojax and jaxopt run CG on ``A^T A x = A^T b`` (CGLS). Both converge to the
same solution; after K = 20 iterations they are different approximations. The script rebuilds both
iterations densely in numpy and compares.

    .bench-venv/bin/python benchmarks/peers/check_float64.py
"""

from __future__ import annotations

import sys
from pathlib import Path

import jax

jax.config.update("jax_enable_x64", True)  # standalone script: float64 throughout

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import impl_blojax as ours  # noqa: E402
import problems  # noqa: E402
from impl_jax_peers import JaxOpt, Optimistix  # noqa: E402


def main():
    for d in (100, 1000):
        data = {
            k: (np.asarray(v, np.float64) if isinstance(v, np.ndarray) else v)
            for k, v in problems.ridge(d).items()
        }
        for task in ("cg", "normal_cg", "unroll"):
            fn, conv = ours.p1(task, data)
            ref = conv(fn())
            for peer in (JaxOpt, Optimistix):
                f2, c2 = peer.p1(task, data)
                g = c2(f2())
                print(
                    f"d={d:5d} {task:10s} {peer.NAME:11s} float64 rel. diff. "
                    f"{np.linalg.norm(g - ref) / np.linalg.norm(ref):.1e}  (dtype {g.dtype})"
                )


def _cg(A, b, K):
    x, r = np.zeros_like(b), b.copy()
    p, rs = r.copy(), r @ r
    for _ in range(K):
        Ap = A @ p
        a = rs / (p @ Ap)
        x, r = x + a * p, r - a * Ap
        rn = r @ r
        p, rs = r + (rn / rs) * p, rn
    return x


def normal_cg_variants(d=100, K=20):
    """optimistix's normal CG against dense CGLS and CGNE (float64)."""
    import jax.numpy as jnp

    data = {
        k: (np.asarray(v, np.float64) if isinstance(v, np.ndarray) else v)
        for k, v in problems.ridge(d).items()
    }
    X, y, Xv, yv, u = (data[k] for k in ("X", "y", "Xv", "yv", "u0"))
    w = np.zeros(d)
    for _ in range(problems.T_INNER):  # the same T gradient steps
        w = w - data["alpha"] * (X.T @ (X @ w - y) / len(y) + np.exp(u) * w)
    H = X.T @ X / len(y) + np.diag(np.exp(u))
    b = Xv.T @ (Xv @ w - yv) / len(yv)
    hyper = lambda v: -np.exp(u) * w * v  # noqa: E731  (dF/du = 0, M^T v = exp(u) * w * v)
    cgls, cgne = hyper(_cg(H @ H, H @ b, K)), hyper(H @ _cg(H @ H, b, K))
    f2, c2 = Optimistix.p1("normal_cg", data)
    g = c2(f2())
    rel = lambda a, ref: np.linalg.norm(a - ref) / np.linalg.norm(ref)  # noqa: E731
    print(f"d={d} optimistix normal CG vs dense CGLS {rel(g, cgls):.1e}, vs dense CGNE {rel(g, cgne):.1e}")
    del jnp


if __name__ == "__main__":
    main()
    for d_ in (100, 1000):
        normal_cg_variants(d_)
