"""Figures of the experiments: one module per experiment, matplotlib imported inside its functions."""
