"""The bilevel problem: two scalar objectives of the outer parameters ``u`` and inner parameters ``w``.

    u* in argmin_u F(u, w*(u)),    w*(u) in S(u) = argmin_w f(u, w).

``f`` is the *inner* objective (training loss), ``F`` the *outer* objective (validation loss).
``u`` and ``w`` are arbitrary pytrees.

Data. Both objectives take ``(u, w)`` and, when data is given, a third positional argument
``batch``: a pytree of arrays (``f(u, w, batch)``). Data comes from the call (``inner_batch`` /
``outer_batch`` of :func:`blojax.hypergradient`, ``batch`` of :func:`blojax.solve`, the batches of
the bilevel algorithms) or, when a call gives none, from ``Problem.data`` (the same pytree for both
objectives). Which objectives take data is decided from their signatures once, at construction:
an objective takes data when its third parameter is required, is named ``batch`` or ``data``, or it
has ``*args``; ``F(u, w, scale=1.0)`` does not (a batch given to it is an error, never ``scale``).

A ``Problem`` is a pytree: the arrays it holds (``data``, and array arguments of
``jax.tree_util.Partial`` objectives or of any pytree-callable objective) are its leaves, so ``jit``,
``vmap`` and ``grad`` see them as traced inputs instead of baked-in constants, and
:func:`blojax.solve` returns their cotangents.
"""

from __future__ import annotations

import dataclasses
import inspect
from typing import Any, Callable

import jax
import jax.core
import jax.numpy as jnp
import numpy as np

__all__ = ["Problem"]

_DATA_NAMES = ("batch", "data")


def takes_data(fn: Callable) -> bool:
    """Whether ``fn(u, w, ...)`` takes a data argument third (see the module docstring)."""
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):
        return True  # builtins and odd callables: trust the caller
    params = list(sig.parameters.values())
    if any(p.kind == p.VAR_POSITIONAL for p in params):
        return True
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    if len(positional) < 3:
        return False
    third = positional[2]
    return third.default is third.empty or third.name in _DATA_NAMES


def _requires_data(fn: Callable) -> bool:
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):
        return False
    required = [
        p
        for p in sig.parameters.values()
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) and p.default is p.empty
    ]
    return len(required) >= 3


def _is_array(x) -> bool:
    return isinstance(x, (jax.Array, np.ndarray, jax.core.Tracer))


class Problem:
    """A bilevel problem ``(f, F)``.

    Args:
      inner: ``f(u, w)`` or ``f(u, w, batch)`` -> scalar, the inner objective minimized over ``w``.
      outer: ``F(u, w)`` or ``F(u, w, batch)`` -> scalar, the outer objective minimized over ``u``
        through ``w*(u)``.
      data: optional pytree of arrays, the ``batch`` argument of both objectives whenever a call
        passes none (e.g. ``{"train": (X, y), "val": (Xv, yv)}``). Its arrays are pytree leaves of
        the ``Problem``.

    The objectives are called as ``f(u, w)`` when there is no data and ``f(u, w, batch)`` otherwise.
    Instances hash by identity, so a ``Problem`` can also be closed over or passed as a static
    argument.
    """

    __slots__ = ("inner", "outer", "data", "_takes", "_layout")

    def __init__(self, inner: Callable[..., Any], outer: Callable[..., Any], data: Any = None):
        for name, fn in (("inner", inner), ("outer", outer)):
            if not callable(fn):
                raise TypeError(
                    f"Problem.{name} must be a callable {name}(u, w[, batch]) -> scalar, got {fn!r}"
                )
        object.__setattr__(self, "inner", inner)
        object.__setattr__(self, "outer", outer)
        object.__setattr__(self, "data", data)
        object.__setattr__(self, "_takes", (takes_data(inner), takes_data(outer)))
        object.__setattr__(self, "_layout", None)  # which leaves are static, once decided (see _flatten)
        for name, ok in zip(("inner", "outer"), self._takes):
            if data is not None and not ok:
                raise TypeError(
                    f"Problem.{name} takes (u, w) but Problem.data was given; define it as {name}(u, w, batch)"
                )

    def __setattr__(self, name, value):
        raise dataclasses.FrozenInstanceError(f"cannot assign to field {name!r}")

    def __repr__(self):
        return f"Problem(inner={self.inner!r}, outer={self.outer!r}, data={'None' if self.data is None else '...'})"

    def replace(self, **changes) -> "Problem":
        """A copy with some of ``inner``, ``outer``, ``data`` replaced."""
        kw = dict(inner=self.inner, outer=self.outer, data=self.data)
        kw.update(changes)
        return Problem(**kw)

    # The two objectives, with the data argument.
    def _call(self, which: int, u, w, batch):
        fn = self.inner if which == 0 else self.outer
        d = self.data if batch is None else batch
        if d is None:
            return fn(u, w)
        if not self._takes[which]:
            name = ("inner", "outer")[which]
            raise TypeError(
                f"Problem.{name} takes no data argument (its third parameter, if any, has a default and "
                f"is not named batch/data) but a batch was given; define it as {name}(u, w, batch)"
            )
        return fn(u, w, d)

    def f(self, u, w, batch=None):
        """Inner objective ``f(u, w[, batch])``."""
        return self._call(0, u, w, batch)

    def F(self, u, w, batch=None):
        """Outer objective ``F(u, w[, batch])``."""
        return self._call(1, u, w, batch)

    def grad_w_f(self, u, w, batch=None):
        """``grad_w f(u, w)``."""
        return jax.grad(self.f, argnums=1)(u, w, batch)

    def check(self, u, w, inner_batch=None, outer_batch=None):
        """Trace both objectives abstractly (no FLOPs) and raise a clear error when ``u``/``w`` do not
        fit what they accept or when they do not return a real scalar."""
        for which, (name, batch) in enumerate((("inner", inner_batch), ("outer", outer_batch))):
            fn = getattr(self, name)
            d = self.data if batch is None else batch
            if d is not None and not self._takes[which]:
                raise TypeError(
                    f"Problem.{name} takes (u, w) but a batch was given; define it as {name}(u, w, batch)"
                )
            if d is None and _requires_data(fn):
                continue  # needs data that is not known here (e.g. at init); checked when called
            try:
                out = jax.eval_shape(
                    lambda u_, w_, b_, which=which: self._call(which, u_, w_, b_), u, w, batch
                )
            except Exception as exc:  # noqa: BLE001 - re-raised with context
                raise TypeError(
                    f"Problem.{name} could not be evaluated at the given u and w "
                    f"(u: {_describe(u)}; w: {_describe(w)}): {type(exc).__name__}: {exc}"
                ) from exc
            if not (hasattr(out, "shape") and out.shape == () and jnp.issubdtype(out.dtype, jnp.floating)):
                raise TypeError(f"Problem.{name} must return a real scalar, got {_describe(out)}")
            for arg_name, arg in (("u", u), ("w", w)):
                for leaf in jax.tree_util.tree_leaves(arg):
                    if not jnp.issubdtype(jnp.result_type(leaf), jnp.inexact):
                        raise TypeError(
                            f"{arg_name} must be a pytree of floating-point arrays, got a leaf of dtype "
                            f"{jnp.result_type(leaf)}"
                        )


def _flatten(p: Problem):
    leaves, treedef = jax.tree_util.tree_flatten((p.inner, p.outer, p.data))
    if p._layout is not None and p._layout[0] == treedef:
        fixed = p._layout[1]  # an unflattened copy keeps its split, whatever JAX put in the leaves
    else:
        fixed = frozenset(i for i, x in enumerate(leaves) if not _is_array(x))
    dynamic = [x for i, x in enumerate(leaves) if i not in fixed]
    static = tuple((i, leaves[i]) for i in sorted(fixed))
    return dynamic, (treedef, static, len(leaves), p._takes)


def _unflatten(aux, dynamic):
    treedef, static, n, takes = aux
    leaves = [None] * n
    for i, x in static:
        leaves[i] = x
    it = iter(dynamic)
    fixed = {j for j, _ in static}
    for i in range(n):
        if i not in fixed:
            leaves[i] = next(it)
    inner, outer, data = jax.tree_util.tree_unflatten(treedef, leaves)
    obj = object.__new__(Problem)
    object.__setattr__(obj, "inner", inner)
    object.__setattr__(obj, "outer", outer)
    object.__setattr__(obj, "data", data)
    object.__setattr__(obj, "_takes", takes)
    object.__setattr__(obj, "_layout", (treedef, fixed))
    return obj


jax.tree_util.register_pytree_node(Problem, _flatten, _unflatten)


def _describe(tree) -> str:
    shapes = jax.tree_util.tree_map(
        lambda x: f"{getattr(x, 'dtype', type(x).__name__)}{list(getattr(x, 'shape', ()))}", tree
    )
    return str(shapes)
