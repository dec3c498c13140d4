"""Closed forms and geometric tools for analysing implicit bias (quadratics, projections, spectra)."""

from . import projections, quadratic, spectral

__all__ = ["quadratic", "projections", "spectral"]
