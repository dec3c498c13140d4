"""One module per paper experiment, each following the contract in :mod:`blojax.experiments.common`:
``Config`` -> ``run(config, ctx)`` -> ``Result`` -> ``plot(result, out_dir)``."""
