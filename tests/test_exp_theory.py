"""experiments/theory.py: PAPER.md §4.3-4.4 on random quadratics, through the library's ColdStart/WarmStart."""

from __future__ import annotations

import dataclasses
import json

import pytest

from blojax.experiments import common, theory


def test_theory_results_and_claims():
    cfg = dataclasses.replace(theory.Config.quick(), instances=2)
    d = json.loads(json.dumps(common.to_jsonable(theory.run(cfg).to_dict())))
    m = d["cold_exact_min_norm"]
    assert m["inner_steps"] == [10, 100, 1000]
    # the distance to the min-norm outer solution falls with the inner loop's length, to round-off
    assert m["rel_err_max"][0] > 1e-3 and m["rel_err_max"][1] < 1e-6 and m["rel_err_max"][2] < 1e-12
    assert all(g >= -1e-12 for g in m["F_gap_max"])  # nobody beats min F*
    for c in theory.CLAIMS:
        value, ok = c.check(d)
        assert ok, (c.id, value)


def test_theory_config_errors_name_the_field():
    with pytest.raises(common.ConfigError, match="Config.rank"):
        dataclasses.replace(theory.Config(), rank=8).validate()
    with pytest.raises(common.ConfigError, match="Config.inner_steps"):
        dataclasses.replace(theory.Config(), inner_steps=(0,)).validate()
    with pytest.raises(common.ConfigError, match="Config.outer_rank"):
        dataclasses.replace(theory.Config(), outer_rank=6).validate()
