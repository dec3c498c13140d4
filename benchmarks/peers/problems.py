"""The benchmark problems, stated once in numpy so that every library gets the same data.

Problem 1 (ridge): ``f(u, w) = 1/(2n) ||X w - y||^2 + 1/2 sum_i exp(u_i) w_i^2``,
``F(u, w) = 1/(2m) ||X_v w - y_v||^2``; T = 100 SGD steps at step ``alpha = 1/L`` from ``w0 = 0``,
then one hypergradient ``dF/du`` at ``u0``.

Problem 2 (ring distillation): two classes on concentric rings (radii 1 and 2, 200 points each),
distilled into 2 synthetic points (outer ``u``, labels fixed 0 and 1); inner = a 2-64-64-2 ReLU MLP
trained on the 2 synthetic points with softmax cross-entropy; warm start; each outer step is 1 inner
SGD step and a 1-step unrolled hypergradient of the cross-entropy on the ring data; Adam on ``u``.

Problem 3 (antidistillation): Fourier features (L = 10, exponential amplitudes ``a_l = 2^(L - l)``
scaled by 2^-L so that lambda_max stays moderate), one original point ``(0, 2)``, n = 10 synthetic
points at fixed x in [-2, 2] with learned y (``u``, from 0); inner ``f = 1/2 ||Phi w - u||^2``
solved by T = 100 SGD steps from ``w0 = 0`` (cold start), hypergradient by Neumann K = 100, one SGD
step on ``u``.
"""

from __future__ import annotations

import numpy as np

T_INNER = 100
K_SOLVE = 20


def ridge(d: int, n_train: int = 500, n_val: int = 500, seed: int = 0) -> dict:
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from bench_util import ridge_data

    return ridge_data(d, n_train, n_val, seed)


def rings(seed: int = 0, n_per_class: int = 200, hidden: int = 64) -> dict:
    rng = np.random.default_rng(seed)
    pts, labels = [], []
    for c, r in enumerate((1.0, 2.0)):
        th = rng.uniform(0, 2 * np.pi, n_per_class)
        rad = r + 0.05 * rng.standard_normal(n_per_class)
        pts.append(np.stack([rad * np.cos(th), rad * np.sin(th)], 1))
        labels.append(np.full(n_per_class, c))
    Xo = np.concatenate(pts).astype(np.float32)
    yo = np.concatenate(labels).astype(np.int32)
    sizes = [2, hidden, hidden, 2]
    w0 = [
        (
            (rng.standard_normal((a, b)) * np.sqrt(2.0 / a)).astype(np.float32),
            np.zeros(b, np.float32),
        )
        for a, b in zip(sizes[:-1], sizes[1:])
    ]
    u0 = np.array([[0.5, 0.0], [-1.5, 0.0]], np.float32)  # one synthetic point per class
    ys = np.array([0, 1], np.int32)
    return dict(Xo=Xo, yo=yo, w0=w0, u0=u0, ys=ys, inner_lr=0.1, outer_lr=0.01, steps=2000)


def antidistillation(n: int = 10, L: int = 10, T: int = T_INNER, K: int = 100) -> dict:
    amps = np.array([2.0 ** (L - l) for l in range(1, L + 1)]) / 2.0**L

    def feats(x):
        x = np.atleast_1d(x).astype(np.float64)
        cos = np.cos(np.outer(x, np.arange(1, L + 1))) * amps
        sin = np.sin(np.outer(x, np.arange(1, L + 1))) * amps
        return np.concatenate([np.ones((x.size, 1)), cos, sin], 1)

    Phi = feats(np.linspace(-2, 2, n))
    Phi_o = feats(np.array([0.0]))
    lam_max = np.linalg.eigvalsh(Phi.T @ Phi).max()
    return dict(
        Phi=Phi.astype(np.float32),
        Phi_o=Phi_o.astype(np.float32),
        yo=np.array([2.0], np.float32),
        u0=np.zeros(n, np.float32),
        w0=np.zeros(Phi.shape[1], np.float32),
        alpha=float(1.0 / lam_max),
        T=T,
        K=K,
        outer_lr=0.1,
    )
