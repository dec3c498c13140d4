"""The bilevel problem: two scalar objectives of the outer parameters ``u`` and inner parameters ``w``.

    u* in argmin_u F(u, w*(u)),    w*(u) in S(u) = argmin_w f(u, w).

``f`` is the *inner* objective (training loss), ``F`` the *outer* objective (validation loss).
Both take ``(u, w)`` and optionally a data argument ``batch`` (``f(u, w, batch)``), so that
experiments can feed minibatches. ``u`` and ``w`` are arbitrary pytrees.
"""

from __future__ import annotations

import dataclasses
import inspect
from typing import Any, Callable

import jax
import jax.numpy as jnp

__all__ = ["Problem"]


def _accepts_batch(fn: Callable) -> bool:
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):
        return True
    params = list(sig.parameters.values())
    if any(p.kind == p.VAR_POSITIONAL for p in params):
        return True
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    return len(positional) >= 3


def _requires_batch(fn: Callable) -> bool:
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):
        return False
    required = [
        p for p in sig.parameters.values()
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) and p.default is p.empty
    ]
    return len(required) >= 3


@dataclasses.dataclass(frozen=True, eq=False)
class Problem:
    """A bilevel problem ``(f, F)``.

    Args:
      inner: ``f(u, w)`` or ``f(u, w, batch)`` -> scalar, the inner objective minimized over ``w``.
      outer: ``F(u, w)`` or ``F(u, w, batch)`` -> scalar, the outer objective minimized over ``u``
        through ``w*(u)``.

    The objectives are called as ``f(u, w)`` when no batch is given and ``f(u, w, batch)`` otherwise.
    Instances hash by identity, so a ``Problem`` can be closed over or passed as a static argument.
    """

    inner: Callable[..., Any]
    outer: Callable[..., Any]

    def __post_init__(self):
        for name in ("inner", "outer"):
            fn = getattr(self, name)
            if not callable(fn):
                raise TypeError(f"Problem.{name} must be a callable {name}(u, w[, batch]) -> scalar, got {fn!r}")

    # The two objectives, with the optional data argument.
    def f(self, u, w, batch=None):
        """Inner objective ``f(u, w[, batch])``."""
        return self.inner(u, w) if batch is None else self.inner(u, w, batch)

    def F(self, u, w, batch=None):
        """Outer objective ``F(u, w[, batch])``."""
        return self.outer(u, w) if batch is None else self.outer(u, w, batch)

    def grad_w_f(self, u, w, batch=None):
        """``grad_w f(u, w)``."""
        return jax.grad(self.f, argnums=1)(u, w, batch)

    def check(self, u, w, inner_batch=None, outer_batch=None):
        """Trace both objectives abstractly (no FLOPs) and raise a clear error when ``u``/``w`` do not
        fit what they accept or when they do not return a real scalar."""
        for name, fn, batch in (("inner", self.f, inner_batch), ("outer", self.F, outer_batch)):
            if batch is not None and not _accepts_batch(getattr(self, name)):
                raise TypeError(
                    f"Problem.{name} takes (u, w) but a batch was given; define it as {name}(u, w, batch)"
                )
            if batch is None and _requires_batch(getattr(self, name)):
                continue  # needs data that is not known here (e.g. at init); checked when called
            try:
                out = jax.eval_shape(fn, u, w, batch)
            except Exception as exc:  # noqa: BLE001 - re-raised with context
                raise TypeError(
                    f"Problem.{name} could not be evaluated at the given u and w "
                    f"(u: {_describe(u)}; w: {_describe(w)}): {type(exc).__name__}: {exc}"
                ) from exc
            if not (hasattr(out, "shape") and out.shape == () and jnp.issubdtype(out.dtype, jnp.floating)):
                raise TypeError(
                    f"Problem.{name} must return a real scalar, got {_describe(out)}"
                )
            for arg_name, arg in (("u", u), ("w", w)):
                for leaf in jax.tree_util.tree_leaves(arg):
                    if not jnp.issubdtype(jnp.result_type(leaf), jnp.inexact):
                        raise TypeError(
                            f"{arg_name} must be a pytree of floating-point arrays, got a leaf of dtype "
                            f"{jnp.result_type(leaf)}"
                        )


def _describe(tree) -> str:
    shapes = jax.tree_util.tree_map(lambda x: f"{getattr(x, 'dtype', type(x).__name__)}{list(getattr(x, 'shape', ()))}", tree)
    return str(shapes)
