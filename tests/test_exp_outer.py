"""The outer-overparameterization lab (PAPER.md E5-E8): the claims each experiment must show."""

import dataclasses
import json

import numpy as np
import pytest

import blojax as blo

from blojax.experiments import antidistill, common, hypergrad_field, projection_sketch, spectral


# ----------------------------------------------------------------------------- E5 antidistillation
@pytest.fixture(scope="module")
def e5():
    cfg = dataclasses.replace(antidistill.Config.quick(), mlp=False)
    return antidistill.run(cfg, common.Context(progress=False))


@pytest.mark.parametrize("basis", ["exponential", "inverse"])
def test_e5_claims(e5, basis):
    r = e5.bases[basis]
    fam = r.families
    # every method except plain CG fits the original point
    assert "cgls" not in fam  # the quick setting leaves CGLS out
    for name in ("exact", "neumann", "unroll", "damped", "proximal"):
        assert np.all(fam[name].F < 1e-6), (name, fam[name].F)
        assert np.all(fam[name].diverged_step < 0)
    # Exact reaches the closed-form minimum-norm u
    assert r.exact_rel_err <= 1e-6
    ref_u, ref_w = r.u_pinv_norm, r.w_pinv_norm
    for name in ("neumann", "unroll"):
        u, w = fam[name].u_norm, fam[name].w_norm
        assert np.all(np.diff(u) < 0) and np.all(u >= ref_u * (1 - 1e-9)), (
            name,
            u,
            ref_u,
        )  # falls toward pinv
        assert np.all(np.diff(w) > 0) and np.all(w <= ref_w * (1 + 1e-9)), (
            name,
            w,
            ref_w,
        )  # rises toward pinv
    # larger eps = further from Exact: ||u|| grows with eps, ||w|| shrinks
    for name in ("damped", "proximal"):
        assert np.all(np.diff(fam[name].u_norm) > 0) and np.all(fam[name].u_norm >= ref_u * (1 - 1e-9))
        assert np.all(np.diff(fam[name].w_norm) < 0) and np.all(fam[name].w_norm <= ref_w * (1 + 1e-9))
    assert r.neumann_unroll_rel_diff <= 1e-6
    assert r.damped_prox_rel_diff <= 1e-6
    # the cold-start end point is where the method's fixed direction v meets c^T u = y_o
    for name in ("exact", "neumann", "damped"):
        assert np.all(fam[name].predicted_u_rel_err < 1e-8)
    # CG: the system is inconsistent (dF/dw has a null-space part), its Ritz values approach 0 and the
    # map blows up; K = 10 breaks down (zero curvature) and does not fit the original point
    assert r.dFdw_null_fraction > 1e-3
    cg = fam["cg"]
    assert cg.start_solve is not None and cg.ritz_min is not None and cg.max_gain_lambda_h is not None
    assert list(cg.params) == [1, 2, 5, 10]
    assert np.all(cg.F[:3] < 1e-6) and cg.F[3] > 1e-6
    assert bool(cg.start_solve.breakdown[3]) and not np.any(cg.start_solve.breakdown[:3])
    assert cg.ritz_min[3] < 1e-6 * r.lambda_max < cg.ritz_min[2]
    assert cg.max_gain_lambda_h[3] > 1e6


#: results.json keys of one basis and of one family (today's layout; the claims ledger reads them)
BASIS_KEYS = [
    "basis", "x", "lambda_max", "lambda_min_nonzero", "rank_H", "alpha", "u_pinv", "u_pinv_norm",
    "w_pinv_norm", "dFdw_null_fraction", "exact", "neumann", "unroll", "damped", "proximal", "cg",
    "exact_rel_err", "neumann_unroll_rel_diff", "damped_prox_rel_diff", "max_F", "cg_max_F",
]  # fmt: skip
FAMILY_KEYS = [
    "params", "u", "u_norm", "w_norm", "F", "kappa", "c_dot_v", "diverged_step", "predicted_u_rel_err",
]  # fmt: skip
CG_KEYS = [
    "breakdown_start", "reported_residual_start", "solution_norm_start", "true_residual_start",
    "ritz_min", "max_gain_lambda_h",
]  # fmt: skip


def test_e5_result_json_and_plots(e5, tmp_path):
    d = e5.to_dict()
    assert json.loads(json.dumps(d)) == d  # plain JSON
    assert list(d) == ["bases", "mlp"] and d["mlp"] is None
    for basis, r in d["bases"].items():
        assert list(r) == BASIS_KEYS
        for name in ("exact", "neumann", "unroll", "damped", "proximal"):
            assert list(r[name]) == FAMILY_KEYS
        assert list(r["cg"]) == FAMILY_KEYS + CG_KEYS
        assert r["exact_rel_err"] == e5.bases[basis].exact_rel_err
        assert r["cg"]["breakdown_start"] == e5.bases[basis].families["cg"].start_solve.breakdown.tolist()
    one = dataclasses.replace(e5, bases={"inverse": e5.bases["inverse"]})  # one basis: half the drawing
    paths = antidistill.plot(one, tmp_path)
    assert [p.name for p in paths] == ["antidistill_inverse_points.png", "antidistill_inverse_norms.png"]
    assert all(p.stat().st_size > 10_000 for p in paths)


def test_e5_result_is_frozen(e5):
    with pytest.raises(dataclasses.FrozenInstanceError):
        e5.mlp = None  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        e5.config.n = 3  # type: ignore[misc]


def test_e5_run_batch_slices_the_k_sweep(e5):
    """``blojax sweep``'s hook: configs differing in ``ks`` run once over the union of their K (here the
    fixture's ks = (1, 10, 100)); each gets its own K entries, its K summaries recomputed on them."""
    cfg = e5.config
    parts = antidistill.run_batch(
        [dataclasses.replace(cfg, ks=(1, 10)), dataclasses.replace(cfg, ks=(100,))],
        common.Context(progress=False),
    )
    for res, idx in zip(parts, ([0, 1], [2])):
        assert res.config.ks == tuple(int(k) for k in np.asarray(cfg.ks)[idx])
        for basis, r in res.bases.items():
            fam, full = r.families, e5.bases[basis].families
            for name in ("neumann", "unroll"):
                assert list(fam[name].params) == list(res.config.ks)
                np.testing.assert_array_equal(fam[name].u, full[name].u[idx])
                np.testing.assert_array_equal(fam[name].F_history, full[name].F_history[idx])
            nu, un = full["neumann"].u[idx], full["unroll"].u[idx]
            rel = np.linalg.norm(nu - un, axis=1) / np.linalg.norm(nu, axis=1)
            assert r.neumann_unroll_rel_diff == float(np.max(rel))
            np.testing.assert_array_equal(fam["damped"].u, full["damped"].u)
            assert r.max_F == max(float(np.max(fam[n].F)) for n in fam if n != "cg")
        d = res.to_dict()
        assert list(d["bases"]["inverse"]["unroll"]) == FAMILY_KEYS


def test_e5_nonfinite_run_stops_naming_it():
    """The toolkit's NaN policy: F overflows at the first outer step (y_o = 1e200), every run freezes
    (diverged_step = 0), and the experiment stops naming the first family instead of reporting it."""
    cfg = antidistill.Config(
        n=4, L=3, bases=("exponential",), y_orig=1e200, ks=(1,), cg_iters=(1,), eps_exponential=(1e4,),
        eps_inverse=(1.0,), outer_steps=2, prox_steps=5, cgls=False, mlp=False,
    )  # fmt: skip
    with pytest.raises(
        blo.NonFiniteError,
        match=r"antidistill exponential exact \(lower outer_eta\): non-finite .* from step 0",
    ):
        antidistill.run(cfg, common.Context(progress=False))


@pytest.mark.slow
def test_e5_full_settings():
    res = antidistill.run(antidistill.Config(), common.Context(progress=False))
    for basis, r in res.bases.items():
        fam = r.families
        assert r.exact_rel_err <= 1e-6
        assert r.neumann_unroll_rel_diff <= 1e-6 and r.damped_prox_rel_diff <= 1e-6
        assert r.max_F < 1e-6
        assert np.all(np.diff(fam["neumann"].u_norm) < 0)
        assert fam["cgls"].predicted_u_rel_err[-1] < 1e-6 and np.all(fam["cgls"].F < 1e-6)
        # CGLS with K = 10 >= rank(H) = n reaches the pseudoinverse answer
        assert abs(fam["cgls"].u_norm[-1] - r.u_pinv_norm) < 1e-6 * r.u_pinv_norm
    m = res.mlp
    assert m is not None
    for name in ("neumann", "unroll"):
        assert np.all(m.families[name].F < 1e-6), m.families[name].F
        assert np.all(np.diff(m.families[name].u_norm) < 0)
    assert np.all(m.neumann_unroll_rel_diff < 1e-2)


# ----------------------------------------------------------------------------- E6 hypergradient field
def test_e6_claims():
    r = hypergrad_field.run(hypergrad_field.Config.quick(), common.Context(progress=False))
    assert r.methods == ("Exact", "Neumann K=1", "Neumann K=100", "Neumann K=200")
    np.testing.assert_allclose(r.final_u[0], [1.0, 1.0], atol=1e-4)
    assert np.all(r.final_F < 1e-10)
    assert np.all(np.abs(r.line_residual) < 1e-6)  # every run ends on u1 + u2 = 2
    np.testing.assert_allclose(r.final_u[1], [0.5, 1.5], atol=1e-4)  # K = 1: direction Phi phi_o = (1, 3)
    d = r.dist_to_exact_point
    assert d[1] > 0.5 and d[1] > d[2] > d[3] > d[0]  # larger K ends closer to (1, 1)


# ----------------------------------------------------------------------------- E7 projection sketch
def test_e7_claims():
    r = projection_sketch.run(
        dataclasses.replace(projection_sketch.Config.quick(), sweeps=20), common.Context(progress=False)
    )
    c, i = r.consistent, r.inconsistent
    for case in (c, i):
        assert case.warm_full_vs_projections < 1e-10
        assert case.cold_vs_projections < 1e-10
        assert case.runs["cold"].period == 4 and not case.runs["cold"].converged
    assert c.lines_have_common_point and not i.lines_have_common_point
    assert c.runs["warm_full"].converged and c.runs["warm_partial"].converged
    np.testing.assert_allclose(c.runs["warm_full"].cycle_points[0], r.config.w_common, atol=1e-9)
    assert c.warm_limit_vs_dykstra is not None and c.warm_limit_vs_dykstra < 1e-9
    assert i.warm_limit_vs_dykstra is None  # no limit point: the key is left out of results.json
    assert "warm_limit_vs_dykstra" not in r.to_dict()["inconsistent"]
    assert i.runs["warm_full"].period == 4 and i.runs["warm_full"].cycle_spread > 0.1


# ----------------------------------------------------------------------------- E8 spectral
@pytest.mark.slow
def test_e8_claims():
    r = spectral.run(spectral.Config.quick(), common.Context(progress=False))
    assert max(r.max_rel_deviation().values()) < 1e-10
    assert r.to_dict()["check"]["max_rel_deviation"] == r.max_rel_deviation()


# ----------------------------------------------------------------------------- configs
@pytest.mark.parametrize(
    "mod, changes, field",
    [
        (antidistill, dict(ks=(1, 0, 10)), "ks"),
        (antidistill, dict(cg_iters=(-1,)), "cg_iters"),
        (antidistill, dict(eps_inverse=(0.1, -1.0)), "eps_inverse"),
        (antidistill, dict(eps_exponential=()), "eps_exponential"),
        (antidistill, dict(n=21), "n"),
        (antidistill, dict(n=30), "n"),
        (antidistill, dict(bases=("exponential", "legendre")), "bases"),
        (antidistill, dict(alpha_scale=2.5), "alpha_scale"),
        (antidistill, dict(mlp_ks=(1, 10_000)), "mlp_ks"),
        (hypergrad_field, dict(neumann_ks=(0,)), "neumann_ks"),
        (hypergrad_field, dict(alpha=1.0), "alpha"),
        (hypergrad_field, dict(outer_eta=0.0), "outer_eta"),
        (projection_sketch, dict(partial_steps=0), "partial_steps"),
        (projection_sketch, dict(offsets=(0.1,)), "offsets"),
        (spectral, dict(ks=(0,)), "ks"),
        (spectral, dict(eps=(-1.0,)), "eps"),
        (spectral, dict(rank=20), "rank"),
    ],
)
def test_bad_config_names_the_field(mod, changes, field):
    cfg = dataclasses.replace(mod.Config(), **changes)
    with pytest.raises(common.ConfigError, match=rf"Config\.{field} must be"):
        cfg.validate()
    with pytest.raises(common.ConfigError, match=field):
        mod.run(cfg)


@pytest.mark.parametrize("mod", [antidistill, hypergrad_field, projection_sketch, spectral])
def test_contract(mod):
    assert isinstance(mod.DESCRIPTION, str) and mod.DESCRIPTION
    mod.Config().validate()
    mod.Config.quick().validate()


# ----------------------------------------------------------------------------- end to end
@pytest.mark.slow
@pytest.mark.parametrize("mod", [antidistill, hypergrad_field, projection_sketch, spectral])
def test_cli_quick_writes_results_and_figures(mod, tmp_path):
    out = tmp_path / mod.__name__.rsplit(".", 1)[-1]
    from blojax.runner.cli import run_module

    assert run_module(mod.__name__, ["--out", str(out), "--quick", "--quiet"]) == 0
    payload = json.loads((out / "results.json").read_text())
    assert payload["results"] and payload["figures"]
    for name in payload["figures"]:
        assert (out / name).stat().st_size > 10_000
