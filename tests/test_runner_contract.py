"""The shape every experiment module has (experiments/common.py's docstring), checked on every
experiment of the package: ``validate() -> None``, a frozen typed ``Result``, ``run(config, ctx=None)``
with a required config, ``plot`` in ``experiments/figures/<name>.py`` (the ``__main__`` entry point is
checked by tests/test_layers.py)."""

import dataclasses
import importlib
import inspect

import pytest

from blojax.experiments import common
from blojax.runner import discovery

# Every experiment of the package.
EXPERIMENTS = tuple(sorted(discovery.discover()[0]))


@pytest.fixture(params=EXPERIMENTS)
def mod(request):
    return importlib.import_module(f"blojax.experiments.{request.param}")


def test_config_is_frozen_and_validate_returns_none(mod):
    assert dataclasses.is_dataclass(mod.Config) and mod.Config.__dataclass_params__.frozen
    for cfg in (mod.Config(), mod.Config.quick()):
        assert cfg.validate() is None


def test_result_is_a_frozen_typed_dataclass(mod):
    R = mod.Result
    assert dataclasses.is_dataclass(R) and R.__dataclass_params__.frozen
    assert R.__doc__ and "to_dict" in vars(R)
    fields = dataclasses.fields(R)
    assert fields[0].name == "config"
    assert all(f.type not in ("dict", "list", "Any") for f in fields), [(f.name, f.type) for f in fields]


def test_run_requires_a_config_and_takes_a_context(mod):
    params = inspect.signature(mod.run).parameters
    assert list(params)[:2] == ["config", "ctx"]
    assert params["config"].default is inspect.Parameter.empty
    assert params["ctx"].default is None
    assert "ensure_context" in inspect.getsource(mod.run)


def test_plot_lives_in_the_figures_subpackage(mod):
    name = mod.__name__.rsplit(".", 1)[-1]
    figures = importlib.import_module(f"blojax.experiments.figures.{name}")
    assert callable(figures.plot)
    assert "figures.plot(" in inspect.getsource(mod.plot)  # drawing is delegated


def test_figures_toolkit_and_contract_are_not_experiments():
    found, broken = discovery.discover()
    for name in discovery.CONTRACT_MODULES:
        assert name not in found and name not in broken
    assert {"theory", "spectral", "hypergrad_field", "projection_sketch", "stochastic_bias"} <= set(found)


def test_in_memory_context_satisfies_the_protocol():
    ctx = common.ensure_context(None)
    for method in ("scan", "run", "stage"):
        assert callable(getattr(ctx, method))
    assert ctx.stage("x", lambda a: a + 1, 1) == 2


def test_a_resumed_run_writes_the_same_results(tmp_path):
    """A stage loaded back from its checkpoint (a pytree: dict keys come back sorted, floats as
    arrays) gives the same results.json text as the run that computed it."""
    import json

    from blojax.experiments import spectral
    from blojax.runner.context import Context

    cfg = spectral.Config(trials=1, ks=(1, 10), cg_ks=(1, 2), eps=(1.0, 0.1))
    first = spectral.run(cfg, Context(progress=False, checkpoint_dir=tmp_path))
    again = spectral.run(cfg, Context(progress=False, checkpoint_dir=tmp_path, resume=True))
    assert (tmp_path / "stage-check.pkl").exists()
    assert json.dumps(again.to_dict()) == json.dumps(first.to_dict())
    keys = list(first.to_dict()["check"]["max_rel_deviation"])
    assert keys[:2] == ["inverse (Exact): matrix", "inverse (Exact): eigenvalues"] and keys != sorted(keys)
