"""The 2-D inner-overparameterization lab: experiments.rings (E2) and experiments.solution_concepts (E1).

Tiny configurations only (seconds); the claims themselves are checked by the full runs recorded in
docs/experiments/inner-2d.md and by the slow test at the bottom.
"""

import dataclasses
import json

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import blojax as blo
from blojax.data import synthetic
from blojax.experiments import _distill2d, _rings_variant, common, rings, solution_concepts, toolkit
from blojax.experiments.common import ConfigError
from blojax.models.mlp import init_mlp, mlp_apply
from conftest import assert_close

TINY_RINGS = rings.Config(
    classes=(2,),
    soft_labels=(True,),
    n_per_class=20,
    width=4,
    depth=1,
    warm_steps=24,
    snapshots=4,
    cold_steps=2,
    cold_inner_steps=8,
    cold_unroll=2,
    retrain_steps=8,
    seeds=2,
    point_bound=1.0,
)
TINY_E1 = solution_concepts.Config(
    n=60,
    width=4,
    depth=1,
    warm_steps=10,
    cold_steps=2,
    cold_inner_steps=8,
    cold_unroll=2,
    pairs=3,
    models=4,
    fit_steps=30,
    seeds=2,
)


# ------------------------------------------------------------------------------------ configs
@pytest.mark.parametrize(
    "changes, field",
    [
        ({"width": 0}, "width"),
        ({"inner_lr": -0.1}, "inner_lr"),
        ({"outer_lr": float("nan")}, "outer_lr"),
        ({"classes": (1,)}, "classes"),
        ({"classes": ()}, "classes"),
        ({"soft_labels": (0,)}, "soft_labels"),
        ({"snapshots": 7}, "snapshots"),
        ({"cold_unroll": 2000}, "cold_unroll"),
        ({"test_fraction": 1.0}, "test_fraction"),
        ({"outer_b2": 1.0}, "outer_b2"),
        ({"point_bound": -1.0}, "point_bound"),
        ({"seeds": 0}, "seeds"),
        ({"inner_loss": "hinge"}, "inner_loss"),
        ({"point_init": "corner"}, "point_init"),
    ],
)
def test_rings_bad_config_names_the_field(changes, field):
    with pytest.raises(ConfigError, match=rf"Config\.{field} must be"):
        dataclasses.replace(rings.Config(), **changes).validate()


@pytest.mark.parametrize(
    "changes, field",
    [
        ({"pairs": 0}, "pairs"),
        ({"init_scales": ()}, "init_scales"),
        ({"fit_tol": 0.0}, "fit_tol"),
        ({"cold_unroll": 5000}, "cold_unroll"),
        ({"n": 3}, "n"),
    ],
)
def test_solution_concepts_bad_config_names_the_field(changes, field):
    with pytest.raises(ConfigError, match=rf"Config\.{field} must be"):
        dataclasses.replace(solution_concepts.Config(), **changes).validate()


def test_defaults_and_quick_configs_validate():
    for mod in (rings, solution_concepts):
        assert mod.Config().validate() is None  # one convention: validate() returns None
        assert mod.Config.quick().validate() is None


def test_solution_concepts_imports_nothing_private_from_rings():
    """E1 shares E2's pieces through the public functions of ``_distill2d``, not rings' private names."""
    import ast
    import inspect

    tree = ast.parse(inspect.getsource(solution_concepts))
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            assert node.module is None or "rings" not in node.module, node.module
            if node.module == "blojax.experiments._distill2d":
                assert all(not a.name.startswith("_") for a in node.names)


# ------------------------------------------------------------------------------------ pieces
@pytest.mark.parametrize("inner_loss", ["ce", "mse"])
def test_retrain_is_the_cold_start_inner_solve(inner_loss):
    """A fresh model trained on u from w0 (retrain) is exactly Xi^T(u, w0), the cold-start inner solution."""
    data = synthetic.rings(10, 2, seed=0)
    problem = _distill2d.make_problem(data.x, data.y, 2, inner_loss)
    w0 = init_mlp(0, [2, 6, 2], bias_scale=1.0)
    u = {"x": jnp.asarray([[0.3, -0.9], [1.8, 0.4]])}
    w_fresh = _distill2d.fit_points(w0, u["x"], jnp.eye(2), 0.1, 25, inner_loss)
    w_inner, info = blo.InnerLoop(optax.sgd(0.1), steps=25).run(problem, u, w0)
    for a, b in zip(jax.tree_util.tree_leaves(w_fresh), jax.tree_util.tree_leaves(w_inner)):
        assert_close(a, b, ulps=256)  # 25 float32 SGD steps by two code paths
    assert float(info.f) < float(problem.f(u, w0))


@pytest.mark.parametrize("inner_loss", ["ce", "mse"])
def test_fit_points_is_plain_sgd_on_the_point_loss(inner_loss):
    """fit_points (toolkit.retrain, optax.sgd: w + (-lr) g) equals a hand-written loop w <- w - lr g on
    the point loss with soft targets; in IEEE arithmetic w + (-(lr g)) = w - lr g, so only the
    compiled order of the gradient's sums can differ."""
    x = jnp.asarray([[0.3, -0.9], [1.8, 0.4], [-1.0, 1.2]])
    targets = jax.nn.softmax(jnp.asarray([[2.0, 0.0], [0.0, 1.0], [0.5, 0.5]]), axis=-1)
    w0 = init_mlp(3, [2, 6, 2], bias_scale=1.0)

    def loss(w):
        return _distill2d.point_loss(mlp_apply(w, x), targets, inner_loss)

    def body(w, _):
        g = jax.grad(loss)(w)
        return jax.tree_util.tree_map(lambda p, q: p - 0.1 * q, w, g), None

    w_hand, _ = jax.jit(lambda w: jax.lax.scan(body, w, None, length=40))(w0)
    w_fit = jax.jit(lambda w: _distill2d.fit_points(w, x, targets, 0.1, 40, inner_loss))(w0)
    for a, b in zip(jax.tree_util.tree_leaves(w_fit), jax.tree_util.tree_leaves(w_hand)):
        assert_close(a, b, ulps=64)  # 40 float32 SGD steps, same update, possibly another fusion
    assert float(loss(w_fit)) < float(loss(w0))


def test_fit_points_raises_on_divergence():
    x = jnp.asarray([[0.3, -0.9], [1.8, 0.4]])
    w0 = init_mlp(0, [2, 6, 2], bias_scale=1.0)
    with pytest.raises(Exception, match="non-finite"):
        jax.block_until_ready(_distill2d.fit_points(w0, x, jnp.eye(2), 1e38, 5))
    w = _distill2d.fit_points(w0, x, jnp.eye(2), 1e38, 5, throw=False)  # sampling: no raise
    assert not all(bool(np.all(np.isfinite(np.asarray(a)))) for a in jax.tree_util.tree_leaves(w))


def test_soft_labels_start_uniform_and_fixed_labels_are_one_hot():
    x = jnp.zeros((3, 2))
    assert_close(
        _distill2d.labels_of({"x": x, "logits": jnp.zeros((3, 3))}, 3), np.full((3, 3), 1 / 3), ulps=4
    )
    np.testing.assert_array_equal(_distill2d.labels_of({"x": x}, 3), np.eye(3))


def test_switch_count():
    # point 0: argmax 0,1,1,0 -> 2 switches; point 1: always 1 -> 0
    probs = np.array(
        [
            [[0.9, 0.1], [0.2, 0.8]],
            [[0.4, 0.6], [0.1, 0.9]],
            [[0.3, 0.7], [0.3, 0.7]],
            [[0.6, 0.4], [0.4, 0.6]],
        ]
    )
    np.testing.assert_array_equal(np.asarray(_rings_variant.switches(jnp.asarray(probs))), [2, 0])


def test_disk_projection_only_moves_points_outside():
    opt = _distill2d.disk_projection(2.0)
    params = {"x": jnp.asarray([[0.0, 0.0], [1.9, 0.0]]), "logits": jnp.zeros((2, 2))}
    upd = {"x": jnp.asarray([[0.5, 0.5], [1.0, 0.0]]), "logits": jnp.ones((2, 2))}
    new, _ = opt.update(upd, opt.init(params), params)
    x = params["x"] + new["x"]
    np.testing.assert_allclose(x[0], [0.5, 0.5])  # inside: untouched
    assert_close(x[1], np.array([2.0, 0.0]), ulps=8)  # outside: onto the circle
    np.testing.assert_array_equal(new["logits"], upd["logits"])


def test_init_points_lie_on_their_ring():
    data = synthetic.rings(30, 3, noise=0.0, seed=1)
    u = _distill2d.init_points(3, data.x, data.y, 3, True)
    assert_close(np.linalg.norm(np.asarray(u["x"]), axis=1), np.array([1.0, 2.0, 3.0], np.float32), ulps=16)
    assert u["logits"].shape == (3, 3)


# ------------------------------------------------------------------------------------ end to end
@pytest.fixture(scope="module")
def rings_result():
    return rings.run(TINY_RINGS, common.Context(progress=False))


def test_rings_run_reports_every_number(rings_result):
    d = json.loads(json.dumps(common.to_jsonable(rings_result.to_dict())))
    assert set(d["variants"]) == {"2rings-soft"}
    for tag, v in d["variants"].items():
        for algo in ("warm", "warm_retrain_final_points", "cold"):
            acc = v["test_accuracy"][algo]
            assert len(acc["values"]) == 2 and all(0.0 <= a <= 1.0 for a in acc["values"])
            assert np.isfinite(v["outer_loss_final"][algo]["mean"])
        leak = v["information_leak"]
        assert leak["snapshots"] == 4
        assert (
            leak["best_single_snapshot_accuracy"]["mean"]
            >= leak["mean_single_snapshot_accuracy"]["mean"] - 1e-9
        )
    sw = d["variants"]["2rings-soft"]["soft_label_switches"]
    assert len(sw["per_point_mean"]) == 2 and all(x >= 0 for x in sw["per_point_mean"])


def test_rings_result_is_a_typed_frozen_record(rings_result):
    """Result and Variant are frozen dataclasses; the variant is found by its tag; to_dict's numbers
    are the seed statistics of the typed fields."""
    assert dataclasses.is_dataclass(rings_result) and dataclasses.is_dataclass(rings_result.variants[0])
    with pytest.raises(dataclasses.FrozenInstanceError):
        rings_result.seconds = 0.0  # type: ignore[misc]
    v = rings_result.variant("2rings-soft")
    assert v is rings_result.variants[0] and v.tag == "2rings-soft"
    with pytest.raises(KeyError, match="3rings-fixed"):
        rings_result.variant("3rings-fixed")
    d = rings_result.to_dict()["variants"]["2rings-soft"]
    assert d["test_accuracy"]["cold"] == toolkit.seed_stats(v.cold_acc)
    assert d["outer_loss_final"]["warm"]["values"] == np.asarray(v.warm_F[:, -1], np.float64).tolist()
    assert set(rings_result.to_dict()["seconds"]["2rings-soft"]) == {
        "warm_s",
        "retrain_s",
        "cold_s",
        "total_s",
    }


def test_paper_comparison_rows(rings_result):
    d = json.loads(json.dumps(common.to_jsonable(rings_result.to_dict())))
    as_fixed = {"variants": {"2rings-fixed": d["variants"]["2rings-soft"]}}
    rows = rings.paper_comparison(as_fixed)
    assert len(rows) == 3 and all(set(r) == {"quantity", "ours", "paper"} for r in rows)
    assert rows[0]["ours"] == pytest.approx(
        d["variants"]["2rings-soft"]["outer_loss_final"]["warm"]["mean"], abs=1e-3
    )


def test_rings_numbers_match_a_recomputation(rings_result):
    """The reported warm accuracy is the test accuracy of the final warm model, the last snapshot
    is the final state, and the vmapped chunked scan equals a plain single-seed run."""
    v = rings_result.variant("2rings-soft")
    cfg = TINY_RINGS
    test = v.test
    for s in range(cfg.seeds):
        w = jax.tree_util.tree_map(lambda a: a[s], v.w_warm)  # noqa: B023 - used in this iteration
        acc = float(_distill2d.mlp_accuracy(w, test.x, test.y))
        assert acc == pytest.approx(float(v.snap_acc[s, -1]))
        np.testing.assert_allclose(v.snap_x[s, -1], v.u_warm["x"][s])
    # seed index 1, recomputed without vmap or chunks
    train = v.train
    problem = _distill2d.make_problem(train.x, train.y, 2)
    radius = float(np.max(np.linalg.norm(train.x, axis=1)))
    rng = np.random.default_rng(cfg.seed + 1)
    w0 = _rings_variant.init_model(rng, [2] + [cfg.width] * cfg.depth + [2], cfg)
    u0 = _distill2d.init_points(rng, train.x, train.y, 2, True)
    algo = blo.WarmStart(
        problem,
        blo.InnerLoop(optax.sgd(cfg.inner_lr), steps=1),
        blo.Unroll(1),
        _rings_variant.outer_optimizer(cfg, True, radius),
    )
    st, hist = algo.run(algo.init(u0, w0), cfg.warm_steps)
    # vmapped + chunked vs one plain scan over the warm steps, float32: ~1e-4 of each quantity's scale
    assert_close(st.u["x"], v.u_warm["x"][1], ulps=1024)
    assert_close(hist["F"], v.warm_F[1], ulps=1024)
    # the points never leave the data disk
    assert np.all(np.linalg.norm(v.x_traj, axis=-1) <= radius * (1 + 1e-5))


def test_rings_plots(rings_result, tmp_path):
    paths = rings.plot(rings_result, tmp_path)
    names = sorted(p.name for p in paths)
    assert "outer_loss_warm_vs_retrain.png" in names and "soft_label_trajectories.png" in names
    assert sum(n.endswith(".gif") for n in names) == 1
    for p in paths:
        assert p.exists() and p.stat().st_size > 1000


def test_rings_divergence_stops_with_a_message():
    cfg = dataclasses.replace(TINY_RINGS, inner_lr=1e38, seeds=1)
    with pytest.raises(
        blo.NonFiniteError, match=r"2rings-soft warm-start \(lower inner_lr / outer_lr\): non-finite"
    ):
        rings.run(cfg, common.Context(progress=False))


def test_solution_concepts_sampling_picks_the_extremes():
    """Optimistic = lowest F over all fitting samples; pessimistic = the pair whose worst fitting
    sample is least bad — checked against a brute-force loop over the same samples."""
    cfg = TINY_E1
    data = synthetic.sinusoid(cfg.n, seed=0)
    problem = _distill2d.make_problem(data.x, data.y, 2)
    pairs, inits = solution_concepts.draw_samples(cfg, np.random.default_rng(5), data.x, data.y)
    assert pairs.shape == (cfg.pairs, 2, 2) and inits[0]["w"].shape == (cfg.pairs, cfg.models, 2, cfg.width)
    u_o, w_o, u_p, w_p, frac = jax.jit(lambda p, i: solution_concepts.sample_solutions(cfg, p, i, problem))(
        pairs, inits
    )
    eye = jnp.eye(2)
    table = np.full((cfg.pairs, cfg.models), np.nan)
    for p in range(cfg.pairs):
        for m in range(cfg.models):
            w0 = jax.tree_util.tree_map(lambda a: a[p, m], inits)  # noqa: B023 - used in this iteration
            w = _distill2d.fit_points(w0, pairs[p], eye, cfg.fit_lr, cfg.fit_steps, throw=False)
            lg = mlp_apply(w, pairs[p])
            if float(toolkit.prob_cross_entropy(lg, eye)) < cfg.fit_tol and np.all(
                np.asarray(jnp.argmax(lg, -1)) == [0, 1]
            ):
                table[p, m] = float(problem.F({"x": pairs[p]}, w))
    assert float(frac) == pytest.approx(np.mean(~np.isnan(table)))
    assert np.any(~np.isnan(table)), "no sampled model fitted its two points; the test would be vacuous"
    F_opt = float(problem.F({"x": u_o}, w_o))
    F_pes = float(problem.F({"x": u_p}, w_p))
    assert F_opt == pytest.approx(np.nanmin(table), rel=1e-4)
    worst = np.where(
        np.all(np.isnan(table), 1), np.inf, np.nanmax(np.where(np.isnan(table), -np.inf, table), 1)
    )
    assert F_pes == pytest.approx(np.min(worst), rel=1e-4)
    assert F_opt <= F_pes


def test_solution_concepts_run_and_plot(tmp_path):
    res = solution_concepts.run(TINY_E1, common.Context(progress=False))
    d = res.to_dict()
    assert set(d["test_accuracy"]) == {"optimistic", "pessimistic", "cold", "warm"}
    for c, a in d["test_accuracy"].items():
        assert len(a["values"]) == 2 and all(0 <= x <= 1 for x in a["values"])
    assert sorted(d["order_by_mean_accuracy"]) == sorted(solution_concepts.CONCEPTS)
    assert dataclasses.is_dataclass(res) and set(res.acc) == set(solution_concepts.CONCEPTS)
    assert d["test_accuracy"]["warm"] == toolkit.seed_stats(res.acc["warm"])
    with pytest.raises(dataclasses.FrozenInstanceError):
        res.seconds = {}  # type: ignore[misc]
    rows = solution_concepts.paper_comparison(d)
    assert rows[0]["ours"] == " > ".join(d["order_by_mean_accuracy"])
    (png,) = solution_concepts.plot(res, tmp_path)
    assert png.exists() and png.stat().st_size > 1000


def test_solution_concepts_divergence_stops_with_a_message():
    cfg = dataclasses.replace(TINY_E1, inner_lr=1e38, seeds=1)
    with pytest.raises(blo.NonFiniteError, match=r"^warm-start \(lower inner_lr / outer_lr\): non-finite"):
        solution_concepts.run(cfg, common.Context(progress=False))


# ------------------------------------------------------------------------------------ the claims (slow)
@pytest.mark.slow
def test_two_rings_claims_full_settings():
    """E2 with the default settings, 2 rings, fixed labels, 5 seeds (about a minute): warm-start
    separates the rings, retraining on its final points and cold-start do not, and training on all
    trajectory snapshots together beats every single snapshot."""
    cfg = dataclasses.replace(rings.Config(), classes=(2,), soft_labels=(False,))
    d = rings.run(cfg, common.Context(progress=False)).to_dict()["variants"]["2rings-fixed"]
    acc = d["test_accuracy"]
    assert acc["warm"]["mean"] >= 0.95
    assert acc["warm_retrain_final_points"]["mean"] <= 0.75
    assert acc["cold"]["mean"] <= 0.75
    leak = d["information_leak"]
    assert (
        leak["all_snapshots_together_accuracy"]["mean"] >= leak["best_single_snapshot_accuracy"]["mean"] + 0.1
    )
    assert (
        d["outer_loss_final"]["warm"]["mean"]
        < 0.5
        < d["outer_loss_final"]["warm_retrain_final_points"]["mean"]
    )
