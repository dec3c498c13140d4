"""Smoke test of benchmarks/stochastic/datacleaning.py on a tiny synthetic stand-in for MNIST: every
solver runs, its curve starts at step 0 and its time axis grows, and the learned weights tell the
corrupted samples from the clean ones (the point of data cleaning). No timing is asserted."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "stochastic" / "datacleaning.py"


def _module():
    spec = importlib.util.spec_from_file_location("bench_datacleaning", SCRIPT)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_datacleaning_script_tiny(tmp_path):
    mod = _module()
    curves, status = mod.main(
        [
            "--synthetic",
            "120",
            "--time-budget",
            "0.05",
            "--chunk",
            "64",
            "--ws-chunk",
            "4",
            "--max-steps",
            "640",
        ]
        + ["--batch-size", "16", "--ws-inner-lr", "0.1", "--no-plot", "--out", str(tmp_path)]
    )
    assert set(curves) == {"SABA", "SOBA", "AmIGO", "WarmStart"}
    for name, c in curves.items():
        c = np.asarray(c, float)
        assert c[0, 0] == 0.0 and c[0, 1] == 0 and len(c) >= 2, name
        assert np.all(np.diff(c[:, 0]) > 0) and np.all(np.diff(c[:, 1]) > 0), name
        assert np.all((c[:, 2] >= 0) & (c[:, 2] <= 1)), name
        assert status[name] == "finite", (name, status[name])
    # SABA with the benchmark's step sizes down-weights the corrupted samples
    w = status["SABA_weights"]
    assert w["mean_weight_corrupted"] < w["mean_weight_clean"]
    saved = json.loads((tmp_path / "datacleaning.json").read_text())
    assert saved["meta"]["corrupted"] > 0 and set(saved["curves"]) == set(curves)


def test_datacleaning_batch_larger_than_the_data_is_an_error(tmp_path):
    mod = _module()  # 60 training points, 20 validation points: batch 32 does not fit the latter
    with pytest.raises(ValueError, match=r"batch_size \(32\) is larger than the data \(n=20"):
        mod.main(["--synthetic", "60", "--batch-size", "32", "--no-plot", "--out", str(tmp_path)])


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--solvers", "SABA,Adam"], "unknown solver 'Adam'"),
        (["--ratio", "1.5"], "--ratio is the fraction"),
        (["--saba-lr", "0"], "--saba-lr must be > 0"),
        (["--batch-size", "0"], "--batch-size must be >= 1"),
        (["--time-budget", "0"], "--time-budget must be > 0"),
    ],
)
def test_datacleaning_script_rejects_bad_arguments(tmp_path, capsys, argv, message):
    mod = _module()
    with pytest.raises(SystemExit) as err:
        mod.main(["--synthetic", "60", "--out", str(tmp_path), *argv])
    assert err.value.code == 2
    assert message in capsys.readouterr().err
