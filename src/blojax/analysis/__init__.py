"""Closed forms and geometric tools for analysing implicit bias (quadratics, projections, spectra)."""

from . import quadratic

__all__ = ["quadratic"]
