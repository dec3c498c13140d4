"""A small convolutional classifier for NHWC images, as a parameter pytree and an apply function.

    params = init_convnet(key, image_shape=(28, 28, 1), num_classes=10, channels=(16, 32))
    logits = convnet_apply(params, x)           # x: (N, H, W, C) -> (N, num_classes)

Each block is a 3x3 convolution ("SAME" padding), ReLU and 2x2 average pooling; a dense layer maps the
flattened features to logits. Average (not max) pooling keeps the model smooth, which second-order
hypergradients (Hessian-vector products through the inner loss) prefer.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

__all__ = ["init_convnet", "convnet_apply"]


def init_convnet(key, image_shape, num_classes: int, channels=(16, 32), dtype=jnp.float32):
    """He-normal initialization of ``len(channels)`` conv blocks and a dense output layer."""
    if len(image_shape) != 3 or any(int(s) < 1 for s in image_shape):
        raise ValueError(f"init_convnet(image_shape) must be (H, W, C), got {image_shape!r}")
    h, w, c = (int(s) for s in image_shape)
    keys = jax.random.split(key, len(channels) + 1)
    params: dict[str, Any] = {"conv": []}
    for k, c_out in zip(keys[:-1], channels):
        std = jnp.sqrt(2.0 / (9 * c))
        params["conv"].append(
            {"w": std * jax.random.normal(k, (3, 3, c, c_out), dtype), "b": jnp.zeros((c_out,), dtype)}
        )
        c = c_out
        h, w = h // 2, w // 2
    if h < 1 or w < 1:
        raise ValueError(f"init_convnet: {len(channels)} pooling blocks shrink {image_shape} below 1x1")
    d = h * w * c
    params["dense"] = {
        "w": jnp.sqrt(1.0 / d) * jax.random.normal(keys[-1], (d, num_classes), dtype),
        "b": jnp.zeros((num_classes,), dtype),
    }
    return params


def convnet_apply(params, x):
    """Logits for a batch ``x`` of shape (N, H, W, C)."""
    h = x
    for layer in params["conv"]:
        h = jax.lax.conv_general_dilated(
            h, layer["w"], (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC")
        )
        h = jax.nn.relu(h + layer["b"])
        n, hh, ww, cc = h.shape
        h = h[:, : hh // 2 * 2, : ww // 2 * 2].reshape(n, hh // 2, 2, ww // 2, 2, cc).mean(axis=(2, 4))
    h = h.reshape(h.shape[0], -1)
    return h @ params["dense"]["w"] + params["dense"]["b"]
