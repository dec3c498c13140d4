r"""Fourier feature bases for the 1-D antidistillation experiment (PAPER.md E5).

With ``L`` frequencies the feature map of a scalar input ``x`` is

    phi(x) = [1, a_1 cos(x), ..., a_L cos(L x), a_1 sin(x), ..., a_L sin(L x)]   (2L + 1 features)

with amplitudes ``a_l = 2^(L - l)`` (``"exponential"``: the low frequencies dominate, ``H = Phi^T Phi``
spans ~6 orders of magnitude for L = 10) or ``a_l = 1 / l`` (``"inverse"``). A linear model
``y = phi(x)^T w`` on these features is the inner model of E5.
"""

from __future__ import annotations

import jax.numpy as jnp

__all__ = ["BASES", "amplitudes", "features", "num_features"]

#: The amplitude schedules known by :func:`amplitudes`.
BASES = ("exponential", "inverse")


def _check(L, basis):
    if basis not in BASES:
        raise ValueError(f"basis must be one of {BASES}, got {basis!r}")
    if not isinstance(L, int) or isinstance(L, bool) or L < 1:
        raise ValueError(f"L (number of frequencies) must be a positive integer, got {L!r}")


def amplitudes(L: int, basis: str, dtype=None):
    """``a_l`` for ``l = 1..L``: ``2^(L - l)`` (``"exponential"``) or ``1 / l`` (``"inverse"``)."""
    _check(L, basis)
    l = jnp.arange(1, L + 1, dtype=dtype or jnp.result_type(float))
    return 2.0 ** (L - l) if basis == "exponential" else 1.0 / l


def num_features(L: int) -> int:
    """``2 L + 1``."""
    return 2 * L + 1


def features(x, L: int, basis: str):
    """``Phi``: one row ``phi(x_i)`` per input (shape ``(n, 2L + 1)``; a scalar ``x`` gives ``(2L + 1,)``)."""
    x = jnp.asarray(x, dtype=jnp.result_type(x, float))
    scalar = x.ndim == 0
    xs = jnp.atleast_1d(x)[:, None]
    a = amplitudes(L, basis, xs.dtype)
    l = jnp.arange(1, L + 1, dtype=xs.dtype)
    Phi = jnp.concatenate([jnp.ones_like(xs), a * jnp.cos(l * xs), a * jnp.sin(l * xs)], axis=1)
    return Phi[0] if scalar else Phi
