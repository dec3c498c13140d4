"""The S1 experiment module (stochastic solvers vs the min-norm solution): contract and findings."""

import numpy as np
import pytest

from blojax.experiments import common
from blojax.experiments import stochastic_bias as s1


def test_config_validation_names_the_field():
    with pytest.raises(common.ConfigError, match="Config.n_train must be < n_features"):
        s1.Config(n_train=10, n_features=10).validate()
    with pytest.raises(common.ConfigError, match="Config.n_val must be < n_train"):
        s1.Config(n_val=16).validate()
    with pytest.raises(common.ConfigError, match="Config.batch_sizes"):
        s1.Config(batch_sizes=(32,)).validate()
    with pytest.raises(common.ConfigError, match="Config.solvers"):
        s1.Config(solvers=("Adam",)).validate()
    s1.Config.quick().validate()


def test_small_run_and_plot(tmp_path):
    cfg = s1.Config(
        n_train=6,
        n_features=12,
        n_val=2,
        solvers=("SABA", "AmIGO-warm", "StocBiO", "F2SA"),
        batch_sizes=(6, 2),
        step_scales=(1.0,),
        steps=400,
        seeds=2,
        inner_steps=3,
    )
    res = s1.run(cfg)
    rows = {(r.solver, r.batch): r for r in res.table}
    assert len(rows) == 8 and not any(r.diverged for r in rows.values())
    for r in rows.values():  # the exactly invariant quantity: w stays in row(X) except for F2SA
        assert r.w_null is not None
        assert (r.w_null > 1e-6) if r.solver == "F2SA" else (r.w_null < 1e-10)
        assert r.v_null is None if r.solver == "F2SA" else (r.v_null is not None and r.v_null >= 0)
    # warm v accumulates a null(H) component, StocBiO's cold v does not keep one across steps
    saba, stocbio = rows[("SABA", 6)].v_null, rows[("StocBiO", 6)].v_null
    assert saba is not None and stocbio is not None and saba > 10 * stocbio
    assert res.curve("SABA", 2, 1.0) is res.curves[1] and res.curve("SABA", 3, 1.0) is None
    d = res.to_dict()
    assert d["table"][0]["solver"] == "SABA" and np.isfinite(d["u_mn_norm"])
    paths = s1.plot(res, tmp_path)
    assert all(p.exists() and p.stat().st_size > 1000 for p in paths) and len(paths) == 2
