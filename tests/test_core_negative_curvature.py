"""Negative curvature on real data (slow: about a minute alone): at ``w_T`` of a 64-128-10 tanh MLP
distilling scikit-learn's digits (T = 100 SGD steps, weight decay 1e-3; benchmarks/negative_curvature.py)
the inner Hessian is indefinite, undamped CG reports BREAKDOWN in float32 and float64, and damping
above ``|lambda_min|`` gives a CONVERGED solve whose float32 and float64 answers agree and match the
exact damped answer (MINRES). docs/hypergradients.md records the full table."""

import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("sklearn")
pytest.importorskip("scipy")
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

pytestmark = pytest.mark.slow


def test_digits_mlp_indefinite_breakdown_and_damping():
    import negative_curvature as nc

    facts, rows = nc.run_case(seed=0, lr=0.1, eps_list=[0.1])
    by = {(r["strategy"], r["dtype"]): r for r in rows}
    lam_min = facts["lam_min"][0]
    assert lam_min < -1e-3, facts  # indefinite: a real negative eigenvalue, not round-off
    assert 0.1 > abs(lam_min)  # the damping below is above |lambda_min|
    for dtype in ("float32", "float64"):
        assert by[("CG(20)", dtype)]["status"] == "BREAKDOWN"
        assert by[("CG(20, stop_at_breakdown)", dtype)]["status"] == "BREAKDOWN"
        assert by[("CG(20, stop_at_breakdown)", dtype)]["iters"] < 20
        for name in ("CG(20, damping=0.1)", "Damped(0.1)"):
            assert by[(name, dtype)]["status"] == "CONVERGED", (name, dtype)
    for name in ("CG(20, damping=0.1)", "Damped(0.1)"):
        assert by[(name, "float64")]["to_g_eps"] < 1e-5, name
        assert by[(name, "float32")]["f32_vs_f64"] < 1e-3, name
    # undamped, the float32 answer is not the float64 one (rounding noise amplified past breakdown)
    assert by[("CG(20)", "float32")]["f32_vs_f64"] > 100 * by[("Damped(0.1)", "float32")]["f32_vs_f64"]
    assert np.isfinite(by[("CG(20)", "float64")]["to_g_star"])
