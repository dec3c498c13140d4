"""Outcome codes of the iterative parts (inner solve, linear solve, hypergradient) and the ``throw``
check that turns the fatal ones into errors, also under ``jit`` and ``vmap``.

Every info object of blojax carries ``status``, an int32 array holding a :class:`Status` value (an
array, so that it survives ``jit``/``vmap``; compare with ``info.status == blojax.Status.MAX_STEPS``).
When several parts report, the combined status is the largest code (the most severe).
"""

from __future__ import annotations

import enum

import equinox as eqx
import jax.numpy as jnp

__all__ = ["Status", "combine", "raise_if", "status_name"]


class Status(enum.IntEnum):
    """Outcome of a solve, from harmless to fatal.

    Attributes:
      CONVERGED: finished as asked (a tolerance met, or a fixed count of steps/iterations done).
      MAX_STEPS: a tolerance loop stopped at its bound (``max_steps`` / ``max_iters``) before the tolerance.
      BREAKDOWN: the iteration could not go on: CG met negative curvature (``H`` indefinite; with
        ``CG(stop_at_breakdown=True)`` the last descent iterate is returned), or an inner loop diverged (``||grad_w f||`` grew by more than
        ``InnerLoop.diverge`` times its start) without producing NaN yet.
      INCONSISTENT: CG met zero curvature with a residual left (``H`` singular and the right-hand side
        not in its range), or its residual grew far above its minimum (``stop_at_breakdown=True``:
        the iterate before is returned). Use damping (``CG(damping=eps)``, ``Damped(eps)``) or ``CG(normal=True)``.
      NONFINITE: NaN or inf appeared. Raised by default (``throw=True``).
    """

    CONVERGED = 0
    MAX_STEPS = 1
    BREAKDOWN = 2
    INCONSISTENT = 3
    NONFINITE = 4


def code(s) -> jnp.ndarray:
    """A :class:`Status` (or array of codes) as an int32 array."""
    return jnp.asarray(int(s) if isinstance(s, Status) else s, jnp.int32)


def combine(*codes):
    """The most severe of several status codes (elementwise)."""
    out = code(codes[0])
    for c in codes[1:]:
        out = jnp.maximum(out, code(c))
    return out


def status_name(s) -> str:
    """Name of a concrete status code, e.g. ``'MAX_STEPS'``."""
    return Status(int(s)).name


def raise_if(x, pred, message: str, throw: bool = True):
    """Return ``x``; when ``throw`` and ``pred`` holds, raise ``message`` at run time (works under
    ``jit`` and ``vmap``; under ``jit`` JAX wraps it in a runtime error carrying the message)."""
    if not throw:
        return x
    return eqx.error_if(x, pred, message)


_RUNTIME_TAGS = ("EquinoxRuntimeError: ", "EqxRuntimeError: ")


def runtime_message(exc: BaseException) -> str | None:
    """The message of a run-time check (:func:`raise_if`, ``throw=True``) carried by ``exc``, or
    ``None`` when ``exc`` is not such an error.

    Under ``jit`` JAX wraps the check's message in a long runtime error (``JaxRuntimeError:
    INTERNAL: CpuCallback error ...``); this finds the one line a user needs, e.g.
    ``"InnerLoop: non-finite inner iterate (NaN/inf); lower the inner step size, ..."``."""
    for line in str(exc).splitlines():
        for tag in _RUNTIME_TAGS:
            i = line.find(tag)
            if i >= 0 and line[i + len(tag) :].strip():
                return line[i + len(tag) :].strip()
    if type(exc).__name__ in ("EquinoxRuntimeError", "EqxRuntimeError"):
        first = str(exc).strip().splitlines()
        return first[0] if first else None
    return None
