"""Seeded 2-D toy datasets for the inner-overparameterization experiments (PAPER.md E1, E2).

* :func:`rings`: ``n_classes`` concentric rings, class ``c`` at radius ``radii[c]`` (default
  ``1, 2, ..., C``), angles uniform, radial Gaussian noise of standard deviation ``noise``.
* :func:`sinusoid`: points uniform in the box ``[-width, width] x [-height, height]``, label 1 above
  the boundary ``x2 = amplitude * sin(frequency * x1)`` and 0 below (optionally with label noise).
* :func:`split`: a seeded train/test split (stratified: every class keeps the same test fraction).

Everything returns NumPy arrays (``x`` float32 of shape ``(n, 2)``, ``y`` int32 of shape ``(n,)``), so
they can be fed to JAX as constants; the same arguments always give the same data.
"""

from __future__ import annotations

import numbers
from typing import NamedTuple

import numpy as np

__all__ = ["Dataset", "rings", "sinusoid", "split", "one_hot"]


class Dataset(NamedTuple):
    """Inputs ``x`` (``(n, 2)`` float32) and integer labels ``y`` (``(n,)`` int32)."""

    x: np.ndarray
    y: np.ndarray


def _check_int(name, value, minimum):
    if isinstance(value, bool) or not isinstance(value, (numbers.Integral, np.integer)) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")


def _check_real(name, value, *, positive=False, nonneg=False):
    real = isinstance(value, (numbers.Real, np.floating)) and not isinstance(value, bool)
    if not real or not np.isfinite(value):  # pyright: ignore[reportCallIssue, reportArgumentType]
        raise ValueError(f"{name} must be a finite real number, got {value!r}")
    if positive and not value > 0:  # pyright: ignore[reportOperatorIssue]
        raise ValueError(f"{name} must be positive, got {value!r}")
    if nonneg and value < 0:
        raise ValueError(f"{name} must be non-negative, got {value!r}")


def rings(
    n_per_class: int = 200, n_classes: int = 2, *, noise: float = 0.1, radii=None, seed: int = 0
) -> Dataset:
    """Concentric rings: class ``c`` at ``r_c (cos t, sin t) + noise * e (cos t, sin t)``.

    Args:
      n_per_class: points per ring.
      n_classes: number of rings C (>= 2).
      noise: standard deviation of the radial Gaussian noise.
      radii: the C ring radii, increasing and positive (default ``1, 2, ..., C``).
      seed: NumPy seed.

    Returns:
      :class:`Dataset`, points ordered class by class.
    """
    _check_int("rings(n_per_class)", n_per_class, 1)
    _check_int("rings(n_classes)", n_classes, 2)
    _check_real("rings(noise)", noise, nonneg=True)
    if radii is None:
        radii = np.arange(1, n_classes + 1, dtype=np.float64)
    radii = np.asarray(radii, dtype=np.float64)
    if (
        radii.shape != (n_classes,)
        or not np.all(np.isfinite(radii))
        or np.any(radii <= 0)
        or np.any(np.diff(radii) <= 0)
    ):
        raise ValueError(
            f"rings(radii) must be {n_classes} positive increasing numbers, got {radii.tolist()}"
        )
    rng = np.random.default_rng(seed)
    t = rng.uniform(0.0, 2.0 * np.pi, size=(n_classes, n_per_class))
    r = radii[:, None] + noise * rng.standard_normal((n_classes, n_per_class))
    x = np.stack([r * np.cos(t), r * np.sin(t)], axis=-1).reshape(-1, 2)
    y = np.repeat(np.arange(n_classes), n_per_class)
    return Dataset(x.astype(np.float32), y.astype(np.int32))


def sinusoid(
    n: int = 400,
    *,
    amplitude: float = 1.0,
    frequency: float = 1.0,
    width: float = np.pi,
    height: float = 2.0,
    label_noise: float = 0.0,
    seed: int = 0,
) -> Dataset:
    """Binary data split by a sinusoid: ``y = 1[x2 > amplitude * sin(frequency * x1)]``.

    Args:
      n: number of points, uniform in ``[-width, width] x [-height, height]``.
      amplitude, frequency: of the boundary.
      width, height: half-sizes of the box.
      label_noise: probability of flipping each label.
      seed: NumPy seed.
    """
    _check_int("sinusoid(n)", n, 2)
    _check_real("sinusoid(amplitude)", amplitude)
    _check_real("sinusoid(frequency)", frequency)
    _check_real("sinusoid(width)", width, positive=True)
    _check_real("sinusoid(height)", height, positive=True)
    _check_real("sinusoid(label_noise)", label_noise, nonneg=True)
    if label_noise > 1:
        raise ValueError(f"sinusoid(label_noise) must be a probability in [0, 1], got {label_noise!r}")
    rng = np.random.default_rng(seed)
    x = rng.uniform([-width, -height], [width, height], size=(n, 2))
    y = (x[:, 1] > amplitude * np.sin(frequency * x[:, 0])).astype(np.int32)
    flip = rng.uniform(size=n) < label_noise
    y = np.where(flip, 1 - y, y)
    return Dataset(x.astype(np.float32), y.astype(np.int32))


def split(data: Dataset, test_fraction: float = 0.5, *, seed: int = 0) -> tuple[Dataset, Dataset]:
    """Stratified, seeded train/test split: ``(train, test)``."""
    _check_real("split(test_fraction)", test_fraction)
    if not 0 < test_fraction < 1:
        raise ValueError(f"split(test_fraction) must be in (0, 1), got {test_fraction!r}")
    rng = np.random.default_rng(seed)
    train_idx, test_idx = [], []
    for c in np.unique(data.y):
        idx = rng.permutation(np.flatnonzero(data.y == c))
        k = int(round(test_fraction * len(idx)))
        if k == 0 or k == len(idx):
            raise ValueError(f"split(test_fraction={test_fraction}) leaves class {int(c)} with an empty part")
        test_idx.append(idx[:k])
        train_idx.append(idx[k:])
    tr, te = np.sort(np.concatenate(train_idx)), np.sort(np.concatenate(test_idx))
    return Dataset(data.x[tr], data.y[tr]), Dataset(data.x[te], data.y[te])


def one_hot(y, n_classes: int) -> np.ndarray:
    """Float32 one-hot rows of the integer labels ``y``."""
    y = np.asarray(y)
    return (y[..., None] == np.arange(n_classes)).astype(np.float32)
