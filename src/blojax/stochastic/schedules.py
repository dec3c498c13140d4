r"""Step sizes as optax schedules (``count -> step size``, ``count`` = outer steps taken, from 0).

Every solver step size may be a positive float (constant) or any optax schedule
(``optax.constant_schedule``, ``optax.exponential_decay``, ...). :func:`inverse_power` is the
``a / (k + 1)^e`` decay of the stochastic bilevel literature (SOBA's ``e = 1/2``, F2SA's
``e in {5/7, 4/7, 1/7}``).
"""

from __future__ import annotations

import numbers

import jax.numpy as jnp
import numpy as np

__all__ = ["inverse_power", "as_schedule"]


def inverse_power(init_value: float, exponent: float):
    """The schedule ``k -> init_value / (k + 1) ** exponent`` (``k = 0`` on the first step)."""
    if not isinstance(init_value, numbers.Real) or not init_value > 0:
        raise ValueError(f"inverse_power.init_value must be a positive number, got {init_value!r}")
    if not isinstance(exponent, numbers.Real) or exponent < 0:
        raise ValueError(f"inverse_power.exponent must be a non-negative number, got {exponent!r}")

    def schedule(count):
        return init_value / (jnp.asarray(count) + 1.0) ** exponent

    def power(count):
        """``(k + 1)^(-e)``: ``schedule(k) = init_value * power(k)``, the form XLA compiles ``schedule`` to
        (``a / x^e`` is rewritten ``a * x^(-e)``), so a loop may take these values from a table computed
        before it and get the same step sizes to the bit."""
        return (jnp.asarray(count) + 1.0) ** -exponent

    schedule.init_value, schedule.exponent, schedule.power = init_value, exponent, power
    return schedule


def as_schedule(value, owner: str, name: str):
    """Check a step size and return it as a schedule.

    A number must be > 0; a callable is evaluated at counts 0, 1 and 1000 and each value must be a
    finite number > 0 (a schedule that is not concrete there, e.g. closes over traced values, is
    accepted unchecked).
    """
    if isinstance(value, bool):
        raise ValueError(f"{owner}.{name} must be a positive step size or an optax schedule, got {value!r}")
    if isinstance(value, numbers.Real):
        if not (np.isfinite(float(value)) and float(value) > 0):
            raise ValueError(f"{owner}.{name} must be a positive step size, got {value!r}")
        const = float(value)
        return lambda count: jnp.asarray(const)
    if callable(value):
        for count in (0, 1, 1000):
            try:
                s = float(np.asarray(value(count)))
            except Exception:  # noqa: BLE001 - a traced or exotic schedule: cannot check here
                return value
            if not (np.isfinite(s) and s > 0):
                raise ValueError(
                    f"{owner}.{name} must give positive step sizes, but the schedule gives {s!r} at step {count}"
                )
        return value
    raise ValueError(f"{owner}.{name} must be a positive step size or an optax schedule, got {value!r}")
