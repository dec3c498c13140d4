"""Iterate-by-iterate agreement with benchmark_bilevel's own solvers (float64, 200 steps).

tests/data/stochastic_reference.npz holds benchmark_bilevel's simulated quadratic (n = m = 64,
dimensions 8 / 6), the block index streams its minibatch sampler drew, and the iterates its
``solvers/{soba,saba,amigo,stocbio,f2sa}.py`` produced. Regenerate it with
``make bench-stochastic-reference`` (benchmarks/stochastic/reference.py, in the benchmark venv).
Here blojax's solvers get the same data, the same block streams (``Replay`` samplers) and the same
step sizes, and must reproduce every iterate to relative 1e-10.
"""

import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import blojax as blo
from blojax.stochastic import Replay, inverse_power
from blojax.stochastic.quadratic import quadratic_metrics, quadratic_problem

DATA = pathlib.Path(__file__).parent / "data" / "stochastic_reference.npz"
RTOL = 1e-10


@pytest.fixture(scope="module")
def ref():
    jax.config.update("jax_enable_x64", True)
    with np.load(DATA) as z:
        return {k: z[k] for k in z.files}


def _data(ref, side):
    return {k: jnp.asarray(ref[f"{side}_{k}"], jnp.float64) for k in ("H", "C", "X", "a", "c")}


SOLVERS = {
    "soba": lambda: dict(
        cls=blo.SOBA, kw=dict(inner_lr=inverse_power(0.1, 0.5), outer_lr=inverse_power(0.1, 0.5))
    ),
    "saba": lambda: dict(cls=blo.SABA, kw=dict(inner_lr=0.1, outer_lr=0.1)),
    "amigo": lambda: dict(cls=blo.AmIGO, kw=dict(inner_lr=0.1, v_lr=0.1, outer_lr=0.1, inner_steps=10)),
    "stocbio": lambda: dict(
        cls=blo.StocBiO, kw=dict(inner_lr=0.1, outer_lr=0.1, inner_steps=10, neumann_steps=10)
    ),
    "f2sa": lambda: dict(
        cls=blo.F2SA,
        kw=dict(
            inner_lr=inverse_power(0.01, 5 / 7),
            z_lr=inverse_power(0.01, 4 / 7),
            outer_lr=inverse_power(0.01, 4 / 7),
            lam_lr=inverse_power(0.1, 1 / 7),
            lam0=1.0,
            inner_steps=10,
        ),
    ),
}


def _max_rel(ours, theirs):
    ours, theirs = np.asarray(ours), np.asarray(theirs)
    err = np.linalg.norm(ours - theirs, axis=-1) / np.maximum(np.linalg.norm(theirs, axis=-1), 1e-300)
    return float(err.max())


@pytest.mark.parametrize("name", list(SOLVERS))
def test_iterates_match_benchmark_bilevel(ref, name):
    spec = SOLVERS[name]()
    problem = quadratic_problem(_data(ref, "inner"), _data(ref, "outer"))
    n, b, steps = problem.n_inner, int(ref["batch_size"]), int(ref["steps"])
    inner_s = Replay(ref[f"{name}_inner_blocks"], n=n, batch_size=b)
    outer_s = Replay(ref[f"{name}_outer_blocks"], n=problem.n_outer, batch_size=b)

    def record(u, w, v):
        out = dict(u=u, w=w)
        if v is not None:
            out["v"] = v
        return out

    algo = spec["cls"](problem, inner_s, outer_s, record=record, **spec["kw"])
    state = algo.init(jnp.asarray(ref["u0"]), jnp.asarray(ref["w0"]))
    state, hist = algo.run(state, steps)
    assert hist["u"].dtype == jnp.float64
    assert _max_rel(hist["u"], ref[f"{name}_u"]) < RTOL
    assert _max_rel(hist["w"], ref[f"{name}_w"]) < RTOL
    if name in ("soba", "saba"):
        assert _max_rel(hist["v"], ref[f"{name}_v"]) < RTOL
    elif name == "amigo":  # benchmark_bilevel's AmIGO solves H v = +grad_w F: the opposite sign
        assert _max_rel(hist["v"], -ref[f"{name}_v"]) < RTOL
    elif name == "f2sa":
        # z and lam live in state.aux, not in the history: compare the final ones
        assert _max_rel(state.aux["z"], ref["f2sa_v"][-1]) < RTOL
        np.testing.assert_allclose(float(state.aux["lam"]), float(ref["f2sa_lam"]), rtol=RTOL)
    # the run really moves: the iterates are far from the start and from each other
    assert np.linalg.norm(ref[f"{name}_u"][-1] - ref["u0"]) > 0.1


def test_reference_runs_decrease_the_benchmark_metric(ref):
    """Sanity of the stored problem: the exact metric ||grad h||^2 falls along SABA's iterates."""
    metrics = quadratic_metrics(_data(ref, "inner"), _data(ref, "outer"))
    first = float(metrics(jnp.asarray(ref["u0"]), jnp.asarray(ref["w0"]))["value"])
    last = float(metrics(jnp.asarray(ref["saba_u"][-1]), jnp.asarray(ref["saba_w"][-1]))["value"])
    assert last < 1e-2 * first
