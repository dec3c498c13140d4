r"""What the two 2-D distillation experiments share: E1 (:mod:`~blojax.experiments.solution_concepts`)
and E2 (:mod:`~blojax.experiments.rings`) distill a 2-D classification data set ``(X, Y)`` into a few
synthetic points with a ReLU MLP as the inner model.

The outer parameters are ``u = {"x": (P, 2)}`` (the synthetic points), plus ``u["logits"]`` of shape
``(P, C)`` when the labels are learned (label = ``softmax(u["logits"])``); otherwise point ``j`` has the
one-hot label of class ``j``. The inner parameters ``w`` are the MLP's. With ``y_j`` the label of
point ``x_j``,

    f(u, w) = 1/P sum_j CE(mlp(w, x_j), y_j)          (inner: fit the synthetic points)
    F(u, w) = 1/N sum_i CE(mlp(w, X_i), Y_i)          (outer: loss on the original data)

Both experiments import these public functions; neither owns them (the leading underscore only keeps
the module out of the experiment discovery).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax

import blojax as blo
from blojax.data import synthetic
from blojax.experiments import toolkit
from blojax.models.mlp import mlp_apply

__all__ = [
    "is_real",
    "labels_of",
    "point_loss",
    "make_problem",
    "mlp_accuracy",
    "fit_points",
    "disk_projection",
    "init_points",
]


def is_real(v) -> bool:
    """A finite Python int or float (not a bool): the check behind every numeric ``Config`` field."""
    return isinstance(v, (int, float)) and not isinstance(v, bool) and bool(np.isfinite(v))


def labels_of(u, n_classes: int):
    """The label matrix ``y`` of the synthetic points: ``softmax(u['logits'])`` (learned labels) or
    the identity (point ``j`` has class ``j``)."""
    if "logits" in u:
        return jax.nn.softmax(u["logits"], axis=-1)
    return jnp.eye(n_classes, dtype=u["x"].dtype)


def point_loss(logits, targets, inner_loss: str = "ce"):
    """The inner loss on the synthetic points: ``CE(logits, targets)`` (mean over points, targets are
    probabilities), or with ``inner_loss="mse"`` half the squared error ``1/2 ||logits - targets||^2``
    averaged over points (no saturation)."""
    if inner_loss == "mse":
        return 0.5 * jnp.mean(jnp.sum((logits - targets) ** 2, axis=-1))
    return toolkit.prob_cross_entropy(logits, targets)


def make_problem(X, Y, n_classes: int, inner_loss: str = "ce") -> blo.Problem:
    """The bilevel problem of the module docstring: ``f`` = :func:`point_loss` of the MLP on the
    synthetic points ``u['x']`` against :func:`labels_of` ``(u)``; ``F`` = CE on the original data
    ``(X, Y)``."""
    X = jnp.asarray(X)
    T = jnp.asarray(synthetic.one_hot(Y, n_classes))

    def f(u, w):
        return point_loss(mlp_apply(w, u["x"]), labels_of(u, n_classes), inner_loss)

    def F(u, w):
        return toolkit.prob_cross_entropy(mlp_apply(w, X), T)

    return blo.Problem(inner=f, outer=F)


def mlp_accuracy(w, X, Y):
    """Accuracy of the MLP ``w`` on ``(X, Y)``: the share of rows with ``argmax mlp(w, X_i) = Y_i``."""
    return toolkit.accuracy(mlp_apply(w, jnp.asarray(X)), Y)


def fit_points(w0, x, targets, lr: float, steps: int, inner_loss: str = "ce", *, throw: bool = True):
    """A fresh model fitted to the points ``x`` with labels ``targets`` (probabilities): ``steps`` SGD
    steps at ``lr`` from ``w0`` on ``w -> point_loss(mlp(w, x), targets)``, i.e. ``w_T`` of the
    inner problem of :func:`make_problem` (through :func:`toolkit.retrain`, ``InnerLoop.run``).
    ``throw``: raise when ``w_T`` is non-finite (see the toolkit's NaN policy)."""

    def loss(u, w):
        return point_loss(mlp_apply(w, u["x"]), u["targets"], inner_loss)

    w, _ = toolkit.retrain(loss, {"x": x, "targets": targets}, w0, lr=lr, steps=steps, throw=throw)
    return w


def disk_projection(radius: float) -> optax.GradientTransformation:
    """Project every row of ``u['x']`` onto the disk ``||x|| <= radius`` after the update (other
    leaves untouched): chained after an optimizer, the points stay inside the disk."""

    def init(params):
        del params
        return optax.EmptyState()

    def update(updates, state, params=None):
        if params is None:
            raise ValueError("disk_projection needs the parameters: update(updates, state, params)")
        new = dict(updates)
        x = params["x"] + updates["x"]
        norm = jnp.linalg.norm(x, axis=-1, keepdims=True)
        x = x * jnp.minimum(1.0, radius / jnp.maximum(norm, 1e-12))
        new["x"] = x - params["x"]
        return new, state

    return optax.GradientTransformation(init, update)


def init_points(rng, X, Y, n_classes: int, soft: bool, how: str = "data"):
    """One synthetic point per class at a random training point of that class (``how="data"``) or at
    the data mean plus N(0, 0.1^2) noise (``how="center"``); with ``soft``, uniform learned labels
    (zero logits). ``rng``: an int seed or a ``numpy.random.Generator``."""
    rng = np.random.default_rng(rng) if not isinstance(rng, np.random.Generator) else rng
    X, Y = np.asarray(X), np.asarray(Y)
    if how == "center":
        x = X.mean(0) + 0.1 * rng.standard_normal((n_classes, X.shape[1]))
    else:
        x = np.stack([X[rng.choice(np.flatnonzero(Y == c))] for c in range(n_classes)])
    u = {"x": jnp.asarray(x, jnp.float32)}
    if soft:
        u["logits"] = jnp.zeros((n_classes, n_classes), jnp.float32)
    return u
