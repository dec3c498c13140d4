"""Small pytree utilities shared by the core modules (vector-space operations on pytrees).

Everything here is a pure function of pytrees: ``u`` and ``w`` may be arrays, tuples, dicts or any
registered pytree, and the linear algebra of :mod:`blojax.linalg` is written with these helpers so
that no user structure is ever flattened into one vector unless a method (``Exact``) needs a matrix.
"""

from __future__ import annotations

import dataclasses
import numbers
from typing import Callable, TypeVar, dataclass_transform, overload

import jax
import jax.core
import jax.numpy as jnp
import numpy as np


def tree_add(a, b):
    return jax.tree_util.tree_map(jnp.add, a, b)


def tree_sub(a, b):
    return jax.tree_util.tree_map(jnp.subtract, a, b)


def tree_scale(s, a):
    return jax.tree_util.tree_map(lambda x: s * x, a)


def tree_axpy(s, x, y):
    """``s * x + y`` leaf by leaf."""
    return jax.tree_util.tree_map(lambda xi, yi: s * xi + yi, x, y)


def tree_vdot(a, b):
    leaves = jax.tree_util.tree_leaves(jax.tree_util.tree_map(lambda x, y: jnp.vdot(x, y), a, b))
    return sum(leaves) if leaves else jnp.asarray(0.0)


def tree_sq_norm(a):
    return tree_vdot(a, a)


def tree_norm(a):
    return jnp.sqrt(tree_sq_norm(a))


def tree_zeros_like(a):
    return jax.tree_util.tree_map(jnp.zeros_like, a)


def tree_size(a) -> int:
    return int(sum(np.size(x) for x in jax.tree_util.tree_leaves(a)))


def tree_all_finite(a):
    leaves = [jnp.all(jnp.isfinite(x)) for x in jax.tree_util.tree_leaves(a)]
    return jnp.all(jnp.stack(leaves)) if leaves else jnp.asarray(True)


# --------------------------------------------------------------------------------------------
# Frozen dataclasses that are pytrees.
# --------------------------------------------------------------------------------------------


def _is_concrete_number(x) -> bool:
    return isinstance(x, (numbers.Number, np.number)) and not isinstance(x, bool)


def is_traced_or_array(x) -> bool:
    return isinstance(x, (jax.Array, np.ndarray)) or isinstance(x, jax.core.Tracer)


def is_traced(x) -> bool:
    """A value only known at run time (inside ``jit``/``vmap``/``grad``)."""
    return isinstance(x, jax.core.Tracer)


def check_int(owner: str, name: str, value, *, minimum: int = 1):
    """Validate a step/term count: a Python integer or a concrete integer array is checked now
    (every element), a traced value passes through (``vmap``-ped sweeps) and is checked at run time
    by :func:`runtime_violations`."""
    word = "positive" if minimum == 1 else f">= {minimum}"
    if is_traced(value):
        return
    if is_traced_or_array(value):
        arr = np.asarray(value)
        if not np.issubdtype(arr.dtype, np.integer):
            raise TypeError(
                f"{owner}.{name} must be a {word} integer (or integer array), got dtype {arr.dtype}"
            )
        if arr.size and arr.min() < minimum:
            raise ValueError(
                f"{owner}.{name} must be a {word} integer, got {arr if arr.ndim else arr.item()}"
            )
        return
    if isinstance(value, bool) or not isinstance(value, (numbers.Integral, np.integer)):
        raise TypeError(f"{owner}.{name} must be a {word} integer, got {value!r}")
    if value < minimum:
        raise ValueError(f"{owner}.{name} must be a {word} integer, got {value}")


def check_float(owner: str, name: str, value, *, positive: bool = False, nonneg: bool = False):
    """Validate a real hyperparameter: a Python number or concrete array is checked now (every
    element), a traced value passes through and is checked at run time (:func:`runtime_violations`)."""
    if is_traced(value):
        return
    if is_traced_or_array(value):
        arr = np.asarray(value)
        if (
            not (np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer))
            or arr.dtype == bool
        ):
            raise TypeError(f"{owner}.{name} must be real (a number or real array), got dtype {arr.dtype}")
        shown = arr if arr.ndim else arr.item()
        if not np.all(np.isfinite(arr)):
            raise ValueError(f"{owner}.{name} must be finite, got {shown}")
        if positive and not np.all(arr > 0):
            raise ValueError(f"{owner}.{name} must be positive, got {shown}")
        if nonneg and not np.all(arr >= 0):
            raise ValueError(f"{owner}.{name} must be non-negative, got {shown}")
        return
    if isinstance(value, bool) or not _is_concrete_number(value):
        raise TypeError(f"{owner}.{name} must be a real number, got {value!r}")
    if not np.isfinite(value):
        raise ValueError(f"{owner}.{name} must be finite, got {value}")
    if positive and not value > 0:
        raise ValueError(f"{owner}.{name} must be positive, got {value}")
    if nonneg and value < 0:
        raise ValueError(f"{owner}.{name} must be non-negative, got {value}")


def runtime_violations(owner: str, specs, obj):
    """``[(pred, message)]`` for the traced fields of ``obj`` that break their spec, evaluated at run
    time. ``specs``: ``(name, kind, rule)`` with kind ``"int"`` (rule: minimum) or ``"float"`` (rule:
    ``"positive"``, ``"nonneg"`` or ``None``)."""
    out = []
    for name, kind, rule in specs:
        value = getattr(obj, name)
        if not is_traced(value):
            continue
        if kind == "int":
            out.append((jnp.any(value < rule), f"{owner}.{name} must be an integer >= {rule} (traced value)"))
        else:
            bad = jnp.any(~jnp.isfinite(value))
            if rule == "positive":
                bad = bad | jnp.any(value <= 0)
            elif rule == "nonneg":
                bad = bad | jnp.any(value < 0)
            word = {"positive": "finite and positive", "nonneg": "finite and non-negative"}.get(
                rule, "finite"
            )
            out.append((bad, f"{owner}.{name} must be {word} (traced value)"))
    return out


def check_fields(owner: str, specs, obj):
    """Eager validation of ``obj``'s fields by ``specs`` (see :func:`runtime_violations`)."""
    for name, kind, rule in specs:
        value = getattr(obj, name)
        if kind == "int":
            check_int(owner, name, value, minimum=rule)
        else:
            check_float(owner, name, value, positive=rule == "positive", nonneg=rule == "nonneg")


_C = TypeVar("_C", bound=type)


# The overloads and dataclass_transform (PEP 681) tell static type checkers that the decorated class
# is a frozen dataclass, so its generated __init__ is checked at every call site.
@overload
def pytree_dataclass(cls: _C, *, data_fields=(), meta_fields=None) -> _C: ...
@overload
def pytree_dataclass(cls: None = None, *, data_fields=(), meta_fields=None) -> Callable[[_C], _C]: ...
@dataclass_transform(frozen_default=True)
def pytree_dataclass(cls=None, *, data_fields=(), meta_fields=None):
    """Make ``cls`` a frozen dataclass registered as a pytree.

    ``data_fields`` become pytree leaves (so e.g. ``Neumann(lr=jnp.array([...]))`` can be vmapped);
    every other field is static metadata. Unflattening bypasses ``__init__`` so that validation in
    ``__post_init__`` only ever sees user input, never JAX's internal placeholders. Instances with
    Python-number fields are hashable, so they are also valid ``jit`` static arguments.
    """

    def wrap(c):
        c = dataclasses.dataclass(frozen=True)(c)
        names = [f.name for f in dataclasses.fields(c)]
        data = tuple(n for n in names if n in data_fields)
        meta = tuple(n for n in names if n not in data)

        def flatten(obj):
            return tuple(getattr(obj, n) for n in data), tuple(getattr(obj, n) for n in meta)

        def unflatten(aux, children):
            obj = object.__new__(c)
            for n, v in zip(data, children):
                object.__setattr__(obj, n, v)
            for n, v in zip(meta, aux):
                object.__setattr__(obj, n, v)
            return obj

        jax.tree_util.register_pytree_node(c, flatten, unflatten)
        return c

    return wrap if cls is None else wrap(cls)
