"""The claims ledger (blojax.runner.claims): every claim holds on the stored full-run numbers (or fails
there, for the ones documented as not reproduced), every predicate turns on deliberately wrong results,
and the ledger reaches claims.json and the first table of the report."""

from __future__ import annotations

import copy
import json
import pathlib

import pytest

from blojax.runner import claims, report

STORED = claims.load_full_results()
LEDGER = claims.ledger()


def _swap(d: dict, a, b) -> None:
    d[a], d[b] = d[b], d[a]


def _set(path: tuple, value):
    def f(r):
        d = r
        for k in path[:-1]:
            d = d[k]
        d[path[-1]] = value
        return r

    return f


def _swapper(path: tuple, a, b):
    def f(r):
        d = r
        for k in path:
            d = d[k]
        _swap(d, a, b)
        return r

    return f


def _reverse(path: tuple):
    def f(r):
        d = r
        for k in path[:-1]:
            d = d[k]
        d[path[-1]] = d[path[-1]][::-1]
        return r

    return f


def _both_bases(fn):
    def f(r):
        for b in ("exponential", "inverse"):
            r = fn(b)(r)
        return r

    return f


def _neumann_distances_reversed(r):
    d = r["dist_to_exact_point"]
    r["dist_to_exact_point"] = d[:1] + d[1:][::-1]
    return r


def _partial_moved(r):
    p = r["consistent"]["warm_partial"]["cycle_points"][0]
    r["consistent"]["warm_partial"]["cycle_points"][0] = [p[0] + 1e-3, p[1]]
    return r


def _long_and_short_swapped(r):
    d = r["cold_exact_min_norm"]
    d["rel_err_min"], d["rel_err_max"] = d["rel_err_max"][::-1], d["rel_err_min"][::-1]
    return r


# One deliberately wrong version of the stored results per claim: warm and cold (or retrain) swapped,
# a norm sequence reversed, a cycle period off by one, an error grown past its tolerance.
WRONG = {
    "S4.3-cold-exact-min-norm-quadratic": lambda r: _set(
        ("cold_exact_min_norm", "rel_err_max"), r["cold_exact_min_norm"]["rel_err_max"][:-1] + [1e-3]
    )(r),
    "S4.4-warm-equals-cold-strongly-convex": _set(("warm_equals_cold_strongly_convex", "rel_diff_max"), 1e-3),
    "S3-cold-start-needs-long-inner-loops": _long_and_short_swapped,
    "S4.5-partial-equals-full": _partial_moved,
    "S4.6-neumann-equals-unroll": _set(("bases", "inverse", "neumann_unroll_rel_diff"), 1e-6),
    "S4.7-damped-equals-proximal": _set(("bases", "exponential", "damped_prox_rel_diff"), 1e-6),
    "S4.8-kaczmarz-converges": _set(("consistent", "warm_full", "converged"), False),
    "S4.8-limit-cycle-period-4": _set(("inconsistent", "warm_full", "period"), 5),
    "S4.8-warm-is-alternating-projection": _set(("inconsistent", "warm_full_vs_projections"), 1e-3),
    "E1.warm-beats-cold": _swapper(("test_accuracy",), "warm", "cold"),
    "E1.optimistic-beats-pessimistic": _swapper(("test_accuracy",), "optimistic", "pessimistic"),
    "E2.warm-separates-rings": _swapper(
        ("variants", "2rings-fixed", "test_accuracy"), "warm", "warm_retrain_final_points"
    ),
    "E2.outer-loss-warm-vs-retrain": _swapper(
        ("variants", "2rings-fixed", "outer_loss_final"), "warm", "warm_retrain_final_points"
    ),
    "E2.no-single-snapshot-suffices": _swapper(
        ("variants", "2rings-fixed", "information_leak"), "warm_accuracy", "best_single_snapshot_accuracy"
    ),
    "E2.three-rings": _swapper(("variants", "3rings-fixed", "test_accuracy"), "warm", "cold"),
    "E2.soft-labels-switch": _set(("variants", "2rings-soft", "soft_label_switches", "mean_per_point"), 0.0),
    "E3.canvas-warm-beats-cold": _swapper(("test_accuracy_percent",), "warm", "cold"),
    "E3.canvas-retrain-collapses": _swapper(("test_accuracy_percent",), "warm", "warm_retrain"),
    "E3.soft-label-keeps-moving": _swapper(("soft_label",), "warm", "cold"),
    "E4.distill-1-warm-beats-cold": _swapper(("test_accuracy_percent", "1"), "warm", "cold"),
    "E4.distill-10-warm-beats-cold": _swapper(("test_accuracy_percent", "10"), "warm", "cold"),
    "E4.distill-retrain-collapses": _swapper(("test_accuracy_percent", "10"), "warm", "warm_retrain"),
    "E4.augment-warm-beats-cold": _swapper(("test_accuracy_percent",), "warm", "cold"),
    "E4.augment-retrain-collapses": _set(("test_accuracy_percent", "warm_retrain", "mean"), 10.0),
    "E4.augment-helps": _swapper(("test_accuracy_percent",), "warm", "no_aug"),
    "E5.exact-reaches-min-norm": _set(("bases", "exponential", "exact_rel_err"), 1e-6),
    "E5.every-method-fits": _set(("bases", "inverse", "max_F"), 1e-8),
    "E5.u-norm-falls-with-K": _both_bases(lambda b: _reverse(("bases", b, "neumann", "u_norm"))),
    "E5.u-norm-falls-as-eps-shrinks": _both_bases(lambda b: _reverse(("bases", b, "damped", "u_norm"))),
    "E5.w-norm-smaller": _both_bases(lambda b: _reverse(("bases", b, "neumann", "w_norm"))),
    "E6.exact-ends-at-1-1": lambda r: _swap(r["dist_to_exact_point"], 0, 1) or r,
    "E6.neumann-ends-elsewhere": _neumann_distances_reversed,
    "E8.spectral-maps": lambda r: _set(
        ("check", "max_rel_deviation", next(iter(r["check"]["max_rel_deviation"]))), 1e-6
    )(r),
}

_IDS = [c.id for _, c in LEDGER]


def test_ledger_has_at_least_15_claims_with_unique_ids():
    assert len(LEDGER) >= 15
    assert len(set(_IDS)) == len(_IDS)
    for _, c in LEDGER:
        assert c.id and c.statement and c.paper and c.margin


def test_every_claim_has_a_wrong_version_and_stored_full_numbers():
    assert sorted(WRONG) == sorted(_IDS)
    assert {name for name, _ in LEDGER} <= set(STORED)
    for name in STORED:
        assert STORED[name]["commit"] and STORED[name]["command"]


@pytest.mark.parametrize("name,claim", LEDGER, ids=_IDS)
def test_claim_on_stored_full_results(name, claim):
    """Holds on the stored full run, except the claims documented as not reproduced, which fail there."""
    value, ok = claim.check(STORED[name]["results"])
    assert ok is (not claim.not_reproduced), (claim.id, value)


@pytest.mark.parametrize("name,claim", LEDGER, ids=_IDS)
def test_claim_turns_on_wrong_results(name, claim):
    _, ok = claim.check(STORED[name]["results"])
    wrong = WRONG[claim.id](copy.deepcopy(STORED[name]["results"]))
    value, bad = claim.check(wrong)
    assert bad is (not ok), (claim.id, value)


def test_predicate_helpers():
    assert claims.monotone([3.0, 2.0, 1.0], decreasing=True)
    assert not claims.monotone([3.0, 2.0, 2.0], decreasing=True)
    assert not claims.monotone([1.0, 2.0, 3.0], decreasing=True)
    assert claims.monotone([1.0, 2.0, 3.0], decreasing=False)
    assert not claims.monotone([1.0], decreasing=False)
    assert not claims.monotone([1.0, float("nan")], decreasing=False)
    assert (
        claims.gap(10.0, 4.0, 6.0)
        and not claims.gap(10.0, 4.5, 6.0)
        and not claims.gap(float("nan"), 0.0, 0.0)
    )
    assert claims.all_at_most([1e-12, 0.0], 1e-10) and not claims.all_at_most([], 1.0)
    assert not claims.all_at_most([float("inf")], 1.0)


def test_missing_results_read_as_not_measured():
    name, claim = LEDGER[0]
    with pytest.raises(KeyError, match=claim.id):
        claim.check({})


# ------------------------------------------------------------------------------------ folders
def _fake_reproduction(root: pathlib.Path, mode: str, skip=()) -> pathlib.Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "reproduce.json").write_text(
        json.dumps({"kind": "reproduce", "mode": mode, "experiments": sorted(STORED)})
    )
    for name, entry in STORED.items():
        if name in skip:
            continue
        d = root / name
        d.mkdir()
        (d / "run.json").write_text(
            json.dumps({"kind": "run", "experiment": name, "status": "done", "config": {}})
        )
        (d / "results.json").write_text(json.dumps({"experiment": name, "results": entry["results"]}))
    return root


def test_evaluate_quick_full_and_not_run(tmp_path):
    skipped = sorted(STORED)[0]
    quick = {
        e["id"]: e for e in claims.evaluate(_fake_reproduction(tmp_path / "q", "quick", skip=(skipped,)))
    }
    full = {e["id"]: e for e in claims.evaluate(_fake_reproduction(tmp_path / "f", "full"))}
    for name, c in LEDGER:
        q, f = quick[c.id], full[c.id]
        assert f["status"] == ("fails" if c.not_reproduced else "holds")
        assert f["mode"] == "full" and f["run"].endswith(name)
        if c.not_reproduced:
            assert f["explanation"] == c.not_reproduced
        if name == skipped:
            assert q["status"] == "not run" and q["run"] is None
        elif not c.quick:
            assert q["status"] == "full run only"
            assert (
                q["full_run"]["status"] == f["status"]
                and q["full_run"]["commit"]
                and q["full_run"]["command"]
            )
        else:
            assert q["status"] == f["status"] and q["mode"] == "quick"
        assert set(q) >= {"id", "statement", "paper", "ours", "status", "run"}


def test_report_writes_claims_json_and_puts_the_ledger_first(tmp_path):
    folder = _fake_reproduction(tmp_path / "r", "quick")
    html_path, md_path = report.write_report(folder)
    data = json.loads((folder / "claims.json").read_text())
    assert len(data["claims"]) == len(LEDGER) >= 15
    assert sum(data["counts"].values()) == len(LEDGER)
    assert all(e["status"] in claims.STATUSES for e in data["claims"])
    md = md_path.read_text()
    assert md.split("\n## ")[1].startswith("Claims ledger")
    html = html_path.read_text()
    assert html.index("<h2 id='claims'>") == html.index("<h2")
    for e in data["claims"]:
        assert e["id"] in md and e["id"] in html
    # the sections of full-run-only claims carry the stored full-run numbers, labelled
    assert "Quick settings." in md and "Stored full run: commit" in md


def test_store_keeps_only_what_the_claims_read(tmp_path):
    name = "projection_sketch"
    folder = _fake_reproduction(tmp_path / "s", "full")
    run_folder = folder / name
    payload = json.loads((run_folder / "results.json").read_text())
    payload["results"]["unused"] = list(range(1000))
    (run_folder / "results.json").write_text(json.dumps(payload))
    out = claims.store(
        [run_folder], command="blojax run {name}", commit="abc1234", path=tmp_path / "full.json"
    )
    data = json.loads(out.read_text())
    assert data[name]["command"] == f"blojax run {name}" and data[name]["commit"] == "abc1234"
    assert "unused" not in data[name]["results"]
    for n, c in claims.ledger([name]):
        assert c.check(data[name]["results"])[1]


def test_a_single_run_folder_gets_only_its_own_claims(tmp_path):
    root = _fake_reproduction(tmp_path / "one", "full")
    (root / "reproduce.json").unlink()
    single = root / "spectral"
    entries = claims.evaluate(single)
    assert [e["id"] for e in entries] == [c.id for n, c in LEDGER if n == "spectral"]
    assert all(e["status"] == "holds" and e["mode"] == "full" for e in entries)
    # a failed run: its claims are 'not run' and say why
    run = json.loads((single / "run.json").read_text())
    (single / "run.json").write_text(json.dumps({**run, "status": "failed", "error": "ValueError: boom"}))
    entries = claims.evaluate(single)
    assert entries and all(e["status"] == "not run" and "boom" in e["explanation"] for e in entries)
