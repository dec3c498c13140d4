r"""Minibatch oracles: a bilevel problem whose objectives are averages over data sets.

    f(u, w) = (1/n) sum_i f_i(u, w)     (inner data, n samples)
    F(u, w) = (1/m) sum_j F_j(u, w)     (outer data, m samples)

The user writes ``f(u, w, batch)`` and ``F(u, w, batch)`` as the *mean* over a batch (a pytree whose
leaves have a leading axis of batch samples); :class:`MinibatchProblem` holds the two data sets and
cuts batches out of them by block index (see :mod:`blojax.stochastic.samplers`). Passing the whole
data set as the batch gives the full objectives, used for metrics.

The stochastic oracles every solver draws from one batch ``B`` are (with ``f_B`` the batch mean):

* ``grad_w f_B(u, w)``, ``grad_w F_B``, ``grad_u F_B`` (gradients);
* ``H_B v = d^2 f_B / dw dw . v`` (Hessian-vector product) and ``M_B^T v = d^2 f_B / du dw . v``
  (cross-derivative product), both from one ``jax.vjp`` of ``grad_w f_B``.
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp

from ..problem import Problem, takes_data
from .samplers import block_start

__all__ = ["MinibatchProblem", "data_size"]


def data_size(data, name: str = "data") -> int:
    """Number of samples of ``data``: the common leading axis of all its leaves."""
    leaves = jax.tree_util.tree_leaves(data)
    if not leaves:
        raise ValueError(f"{name} must be a pytree with at least one array leaf (leading axis = samples)")
    sizes = {int(jnp.shape(x)[0]) if jnp.ndim(x) else None for x in leaves}
    if None in sizes or len(sizes) != 1:
        shapes = [tuple(jnp.shape(x)) for x in leaves]
        raise ValueError(f"{name} leaves must share a leading sample axis, got shapes {shapes}")
    (size,) = sizes
    assert size is not None
    return size


class MinibatchProblem(Problem):
    """A :class:`blojax.Problem` with its inner and outer data sets.

    Args:
      inner: ``f(u, w, batch)`` -> scalar, the mean inner loss over ``batch``.
      outer: ``F(u, w, batch)`` -> scalar, the mean outer loss over ``batch``.
      inner_data: pytree of arrays with a leading axis of ``n`` samples (the inner / training set).
      outer_data: same with ``m`` samples (the outer / validation set).

    ``problem.f(u, w, batch)`` and ``problem.F(u, w, batch)`` are the objectives on a batch,
    ``problem.f_full(u, w)`` / ``problem.F_full(u, w)`` on the whole data. Instances are static
    (closed over by the solvers' compiled steps), not pytrees.
    """

    def __init__(
        self,
        inner: Callable[..., Any],
        outer: Callable[..., Any],
        inner_data: Any = None,
        outer_data: Any = None,
    ):
        super().__init__(inner, outer)
        for name, fn in (("inner", inner), ("outer", outer)):
            if not takes_data(fn):
                raise TypeError(
                    f"MinibatchProblem.{name} must take a batch: define it as {name}(u, w, batch)"
                )
        # declarations for type checkers (the instance is frozen: values go through object.__setattr__)
        self.inner_data: Any
        self.outer_data: Any
        self.n_inner: int
        self.n_outer: int
        object.__setattr__(self, "inner_data", inner_data)
        object.__setattr__(self, "outer_data", outer_data)
        object.__setattr__(self, "n_inner", data_size(inner_data, "MinibatchProblem.inner_data"))
        object.__setattr__(self, "n_outer", data_size(outer_data, "MinibatchProblem.outer_data"))

    def __repr__(self):
        return f"MinibatchProblem(inner={self.inner!r}, outer={self.outer!r}, n_inner={self.n_inner}, n_outer={self.n_outer})"

    @staticmethod
    def slice(data, block, batch_size: int):
        """The batch of block ``block`` (samples ``[s, s + b)``, ``s = min(block b, n - b)``)."""
        n = data_size(data)
        start = block_start(block, n, batch_size)
        return jax.tree_util.tree_map(lambda x: jax.lax.dynamic_slice_in_dim(x, start, batch_size, 0), data)

    def inner_batch(self, block, batch_size: int):
        return self.slice(self.inner_data, block, batch_size)

    def outer_batch(self, block, batch_size: int):
        return self.slice(self.outer_data, block, batch_size)

    def f_full(self, u, w):
        """``f(u, w)`` on the whole inner data."""
        return self.inner(u, w, self.inner_data)

    def F_full(self, u, w):
        """``F(u, w)`` on the whole outer data."""
        return self.outer(u, w, self.outer_data)
