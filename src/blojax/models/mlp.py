"""A ReLU multilayer perceptron as a pure parameter pytree and an apply function.

    params = init_mlp(key, [d_in, h_1, ..., h_L, d_out])
    logits = mlp_apply(params, x)          # x: (..., d_in) -> (..., d_out)

``params`` is a list of ``{"w": (d_i, d_{i+1}), "b": (d_{i+1},)}`` dicts, so it can be the inner
parameters ``w`` of a :class:`blojax.Problem` directly (any pytree works). Layer ``i`` computes
``h_{i+1} = relu(h_i W_i + b_i)``; the last layer has no activation (logits).
"""

from __future__ import annotations

import numbers

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["init_mlp", "mlp_apply", "mlp_sizes"]


def init_mlp(key, sizes, *, scale: float = 1.0, bias_scale: float = 0.0, dtype=jnp.float32):
    """He-normal initialization: ``W_i ~ N(0, scale^2 * 2 / d_i)``, ``b_i ~ N(0, bias_scale^2)``.

    Args:
      key: a ``jax.random`` key (works under ``jit``/``vmap``), or an int seed or a
        ``numpy.random.Generator`` (NumPy draws: nothing to compile, handy for many inits outside jit).
      sizes: layer widths ``[d_in, h_1, ..., d_out]`` (at least two positive integers).
      scale: multiplies the He standard deviation of every weight matrix.
      bias_scale: standard deviation of the biases (0: zero biases).
      dtype: parameter dtype.

    Returns:
      list of ``{"w", "b"}`` dicts, one per layer.
    """
    sizes = list(sizes)
    if len(sizes) < 2 or any(
        isinstance(s, bool) or not isinstance(s, numbers.Integral) or s < 1 for s in sizes
    ):
        raise ValueError(
            f"init_mlp(sizes) must be at least two positive integers [d_in, ..., d_out], got {sizes!r}"
        )
    for name, v in (("scale", scale), ("bias_scale", bias_scale)):
        if not isinstance(v, numbers.Real) or not v >= 0:
            raise ValueError(f"init_mlp({name}) must be a non-negative number, got {v!r}")
    params = []
    if isinstance(key, (numbers.Integral, np.random.Generator)) and not isinstance(key, bool):
        rng = np.random.default_rng(int(key)) if isinstance(key, numbers.Integral) else key
        for d_in, d_out in zip(sizes[:-1], sizes[1:]):
            std = scale * np.sqrt(2.0 / d_in)
            w = std * rng.standard_normal((d_in, d_out))
            b = bias_scale * rng.standard_normal(d_out)
            params.append({"w": jnp.asarray(w, dtype), "b": jnp.asarray(b, dtype)})
        return params
    keys = jax.random.split(key, 2 * (len(sizes) - 1))
    for i, (d_in, d_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        std = scale * jnp.sqrt(2.0 / d_in)
        w = std * jax.random.normal(keys[2 * i], (d_in, d_out), dtype)
        b = bias_scale * jax.random.normal(keys[2 * i + 1], (d_out,), dtype)
        params.append({"w": w, "b": b})
    return params


def mlp_apply(params, x):
    """Logits of the MLP at ``x`` (``(..., d_in)`` -> ``(..., d_out)``), ReLU between layers."""
    h = x
    for layer in params[:-1]:
        h = jax.nn.relu(h @ layer["w"] + layer["b"])
    last = params[-1]
    return h @ last["w"] + last["b"]


def mlp_sizes(params) -> list[int]:
    """The widths ``[d_in, ..., d_out]`` of an MLP parameter list."""
    return [int(params[0]["w"].shape[-2])] + [int(p["w"].shape[-1]) for p in params]
