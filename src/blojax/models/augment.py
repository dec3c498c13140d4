"""A linear data-augmentation network ``a_u(x, eps)``, the outer parameters ``u`` of the augment-net
experiment (PAPER.md E4): it transforms a training input ``x`` (flattened, dimension D) and a noise
vector ``eps ~ N(0, I_m)`` before the classifier sees them,

    a_u(x, eps) = x + x diag(s) + (x U) V^T + eps B + b,       u = (s, U, V, B, b),

a residual linear map of ``(x, eps)``: ``s`` (D) a per-pixel gain, ``U, V`` (D x r) a rank-r mixing of
pixels (``rank=None``: a full D x D matrix ``A`` instead, ``x A``), ``B`` (m x D) the noise injection,
``b`` (D) a shift. At ``u = 0`` it is the identity on ``x`` (no augmentation). The low-rank form keeps
the cost per image at ``O(D r)`` instead of ``O(D^2)`` (D = 784 for 28x28 images).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

__all__ = ["init_augment", "augment_apply"]


def init_augment(
    key, image_shape, *, noise_dim: int = 16, rank: int | None = 32, scale: float = 0.01, dtype=jnp.float32
):
    """Parameters of the identity augmentation plus small random mixing (``scale``; U/V need a
    non-zero start so that their gradients are not both zero)."""
    d = 1
    for s in image_shape:
        d *= int(s)
    if noise_dim < 0:
        raise ValueError(f"init_augment(noise_dim) must be >= 0, got {noise_dim!r}")
    k1, k2 = jax.random.split(key)
    u = {"s": jnp.zeros((d,), dtype), "B": jnp.zeros((noise_dim, d), dtype), "b": jnp.zeros((d,), dtype)}
    if rank is None:
        u["A"] = jnp.zeros((d, d), dtype)
    else:
        if rank < 1:
            raise ValueError(f"init_augment(rank) must be a positive int or None, got {rank!r}")
        u["U"] = scale * jax.random.normal(k1, (d, rank), dtype)
        u["V"] = scale * jax.random.normal(k2, (d, rank), dtype)
    return u


def augment_apply(u, x, eps):
    """``a_u(x, eps)`` for images ``x`` (N, H, W, C) and noise ``eps`` (N, m); returns (N, H, W, C)."""
    n = x.shape[0]
    flat = x.reshape(n, -1)
    if flat.shape[1] != u["s"].shape[0]:
        raise ValueError(
            f"augment_apply: images have {flat.shape[1]} values but the augmentation net was built for "
            f"{u['s'].shape[0]} — model and data shapes do not match"
        )
    out = flat + flat * u["s"] + u["b"]
    out = out + (flat @ u["A"] if "A" in u else (flat @ u["U"]) @ u["V"].T)
    if u["B"].shape[0]:
        out = out + eps @ u["B"]
    return out.reshape(x.shape)
