"""Shared fixtures and the suite's float comparison.

Theory tests run in float64 through the ``x64`` fixture (a context, so the rest of the suite keeps
JAX's float32 default). Every comparison of floats computed on two paths (vmapped vs separate,
chunked vs one scan, jitted vs eager, ours vs a NumPy reference) goes through :func:`assert_close`:
its tolerance is a number of units in the last place of the *least precise* dtype involved, times
the quantity's scale, so the same test holds on a CPU that rounds float32 differently (another
vector width, another reduction order, another XLA runtime) and stays tight in float64."""

import os

import jax
import numpy as np
import pytest

# The command line keeps JAX's compilation cache in the user's cache folder; tests that call it in
# this process (or start it) leave that folder alone unless told otherwise (tests/test_reliability_cache.py).
os.environ.setdefault("BLOJAX_JAX_CACHE", "off")

# The test experiments (tests/exp_*.py, e.g. `toy=exp_toy`) are importable in this process (pytest puts
# tests/ on sys.path) and in the command lines, sweeps and workers the tests start.
_TESTS = os.path.dirname(os.path.abspath(__file__))
os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (_TESTS, os.environ.get("PYTHONPATH", "")) if p)


@pytest.fixture
def x64():
    with jax.enable_x64(True):
        yield


def _least_precise(*arrays):
    """The least precise floating dtype among ``arrays`` (float32 if none is floating)."""
    floats = [np.finfo(a.dtype) for a in arrays if np.issubdtype(a.dtype, np.floating)]
    return max(floats, key=lambda f: f.eps).dtype if floats else np.dtype(np.float32)


def float_tol(dtype, scale=1.0, ulps=64):
    """Absolute tolerance ``ulps * eps(dtype) * scale``: what ``ulps`` roundings of a quantity of size
    ``scale`` can move it. float32: 64 ulps of 1 = 7.6e-6; float64: 1.4e-14."""
    return ulps * float(np.finfo(np.dtype(dtype)).eps) * float(scale)


def assert_close(actual, desired, *, ulps=64, scale=None, err_msg=""):
    """Assert ``|actual - desired| <= ulps * eps * (|desired| + scale)`` elementwise, over pytrees too.

    ``eps`` is the machine epsilon of the least precise floating dtype of the two sides (a float64 NumPy
    reference for a float32 result is judged in float32). ``scale`` is the size of the quantity the
    numbers come from (default: ``max |desired|`` over each leaf), so an entry near zero of a history
    whose values are of size 1 (a loss that converged to 6e-4 from 1) gets the absolute slack of the
    whole history, not a bare ``atol`` that only one CPU's rounding happens to meet. ``ulps`` counts the
    roundings the compared paths can differ by: a few for one expression, more for long iterative runs
    (each caller states why). A real bug (a wrong seed, a dropped term) moves results by far more."""
    la, ta = jax.tree_util.tree_flatten(actual)
    ld, td = jax.tree_util.tree_flatten(desired)
    assert ta == td, f"tree structures differ: {ta} vs {td}. {err_msg}"
    for a, d in zip(la, ld):
        a, d = np.asarray(a), np.asarray(d)
        assert a.shape == d.shape, f"shapes differ: {a.shape} vs {d.shape}. {err_msg}"
        if not (np.issubdtype(a.dtype, np.inexact) or np.issubdtype(d.dtype, np.inexact)):
            np.testing.assert_array_equal(a, d, err_msg=err_msg)
            continue
        dtype = _least_precise(a, d)
        eps = float(np.finfo(dtype).eps)
        finite = np.abs(d[np.isfinite(d)])
        s = float(scale) if scale is not None else (float(finite.max()) if finite.size else 0.0)
        np.testing.assert_allclose(
            a,
            d,
            rtol=ulps * eps,
            atol=ulps * eps * s,
            equal_nan=True,
            err_msg=f"{err_msg} (tolerance: {ulps} ulps of {dtype}, scale {s:.3g})",
        )
