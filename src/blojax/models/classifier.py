"""Image classifiers used by the image-scale experiments: one object for "which model" that checks
that it fits the data.

    clf    = Classifier("mlp", image_shape=(28, 28, 1), num_classes=10, hidden=(128,))
    w0     = clf.init(key)
    logits = clf.apply(w0, x)              # x: (N, H, W, C)

``kind="mlp"`` flattens the image and uses :func:`blojax.models.mlp.mlp_apply` (ReLU, He init);
``kind="convnet"`` uses :mod:`blojax.models.convnet` (``hidden`` are then the conv channels).
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import optax

from .convnet import convnet_apply, init_convnet
from .mlp import init_mlp, mlp_apply

__all__ = ["Classifier", "cross_entropy", "soft_cross_entropy", "accuracy"]


@dataclasses.dataclass(frozen=True)
class Classifier:
    """A classifier for images of ``image_shape`` (H, W, C) into ``num_classes`` classes."""

    kind: str
    image_shape: tuple
    num_classes: int
    hidden: tuple = (128,)

    def __post_init__(self):
        if self.kind not in ("mlp", "convnet"):
            raise ValueError(f"Classifier.kind must be 'mlp' or 'convnet', got {self.kind!r}")
        shape = tuple(int(s) for s in self.image_shape)
        if len(shape) != 3 or min(shape) < 1:
            raise ValueError(
                f"Classifier.image_shape must be (H, W, C) with positive sizes, got {self.image_shape!r}"
            )
        object.__setattr__(self, "image_shape", shape)
        object.__setattr__(self, "hidden", tuple(int(h) for h in self.hidden))
        if self.num_classes < 2:
            raise ValueError(f"Classifier.num_classes must be >= 2, got {self.num_classes!r}")

    @property
    def input_dim(self) -> int:
        h, w, c = self.image_shape
        return h * w * c

    def init(self, key):
        """Parameters ``w0`` (a pytree)."""
        if self.kind == "mlp":
            return init_mlp(key, [self.input_dim, *self.hidden, self.num_classes])
        return init_convnet(key, self.image_shape, self.num_classes, channels=self.hidden)

    def check_input(self, x, what: str = "x") -> None:
        """Raise ``ValueError`` unless ``x`` is a batch of images of this classifier's shape."""
        shape = tuple(jnp.shape(x))
        if shape[1:] != self.image_shape:
            raise ValueError(
                f"{what} has shape {shape}, but the classifier expects images of shape (N, "
                f"{', '.join(map(str, self.image_shape))}) — model and data shapes do not match"
            )

    def apply(self, params, x):
        """Logits (N, num_classes) for images ``x`` (N, H, W, C)."""
        self.check_input(x)
        if self.kind == "mlp":
            return mlp_apply(params, x.reshape(x.shape[0], -1))
        return convnet_apply(params, x)


def cross_entropy(logits, labels):
    """Mean cross-entropy with integer labels."""
    return jnp.mean(optax.softmax_cross_entropy_with_integer_labels(logits, labels))


def soft_cross_entropy(logits, target_logits):
    """Mean cross-entropy against soft labels ``softmax(target_logits)``."""
    return jnp.mean(optax.softmax_cross_entropy(logits, jax.nn.softmax(target_logits, axis=-1)))


def accuracy(clf: Classifier, params, x, y, batch: int = 2000):
    """Accuracy on ``(x, y)``, evaluated in batches of ``batch`` (a compiled ``lax.map``)."""
    n = x.shape[0]
    nb = -(-n // batch)
    pad = nb * batch - n
    xp = jnp.concatenate([x, jnp.zeros((pad, *x.shape[1:]), x.dtype)]) if pad else x
    yp = jnp.concatenate([y, jnp.full((pad,), -1, y.dtype)]) if pad else y
    xb = xp.reshape(nb, batch, *x.shape[1:])
    yb = yp.reshape(nb, batch)

    def one(args):
        xi, yi = args
        return jnp.sum(jnp.argmax(clf.apply(params, xi), -1) == yi)

    correct = jax.lax.map(one, (xb, yb))
    return jnp.sum(correct) / n
