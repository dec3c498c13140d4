"""The ``blojax`` command: listing, config parsing, and bad input (one line, exit code 2, no traceback).

The command is exercised on the test experiment :mod:`exp_toy` (tests/exp_toy.py), registered through the
``BLOJAX_EXPERIMENTS`` environment variable, so these tests do not depend on the paper experiments.
"""

import dataclasses
import json
import os
import subprocess
import sys
from typing import Literal

import pytest

from blojax.runner import cli, configs
from blojax.runner.errors import UsageError

TOY = "toy=exp_toy"


@pytest.fixture(autouse=True)
def _toy(monkeypatch):
    monkeypatch.setenv("BLOJAX_EXPERIMENTS", TOY)


def _err(capsys, argv):
    rc = cli.main(argv)
    cap = capsys.readouterr()
    return rc, cap.err.strip()


def test_list_shows_registered_experiment(capsys):
    assert cli.main(["list"]) == 0
    out = capsys.readouterr().out
    assert "toy" in out and "warm-start least-squares distillation" in out


@pytest.mark.parametrize(
    "argv, needle",
    [
        (["run", "nope"], "unknown experiment 'nope'; available: "),
        (["run", "toy", "--set", "foo=1"], "unknown config key 'foo' for toy.Config; valid keys: steps, lr,"),
        (["run", "toy", "--set", "lr=abc"], "toy.Config.lr expects a number, got 'abc'"),
        (["run", "toy", "--set", "steps=1.5"], "toy.Config.steps expects an integer, got '1.5'"),
        (
            ["run", "toy", "--set", "outer=rmsprop"],
            "toy.Config.outer expects one of 'adam', 'sgd', got 'rmsprop'",
        ),
        (["run", "toy", "--set", "steps=0"], "toy.Config.steps must be a positive integer, got 0"),
        (["run", "toy", "--set", "lr"], "--set expects key=value, got 'lr'"),
        (["run", "toy", "--bogus"], "unrecognized arguments: --bogus"),
        (["nosuchcommand"], "invalid choice: 'nosuchcommand'"),
        (
            ["sweep", "toy", "--grid", "lr=0.1", "--backend", "ray", "--address", "127.0.0.1:9"],
            "cannot reach a Ray cluster at 127.0.0.1:9",
        ),
        (
            ["sweep", "toy", "--grid", "lr=0.1", "--backend", "slurm"],
            "unknown --backend 'slurm'; choose local or ray",
        ),
        (["sweep", "toy", "--grid", "lr=0.1,x"], "toy.Config.lr expects a number, got 'x'"),
        (["sweep", "toy", "--seeds", "9-3"], "--seeds expects a range like 0-9"),
        (["reproduce", "--only", "nope"], "--only: unknown experiment(s) nope; available: "),
    ],
)
def test_bad_input_is_one_line_exit_2(capsys, tmp_path, argv, needle):
    rc, err = _err(
        capsys, [*argv, *(["--out", str(tmp_path / "o")] if argv[0] in ("run", "sweep", "reproduce") else [])]
    )
    assert rc == 2
    assert len(err.splitlines()) == 1, err
    assert err.startswith("blojax: error: ")
    assert needle in err


def test_output_folder_holding_a_different_run(capsys, tmp_path):
    out = str(tmp_path / "run")
    assert (
        cli.main(
            [
                "run",
                "toy",
                "--quick",
                "--set",
                "steps=20",
                "--checkpoint-every",
                "10",
                "--out",
                out,
                "--quiet",
                "--no-plots",
            ]
        )
        == 0
    )
    capsys.readouterr()
    rc, err = _err(
        capsys, ["run", "toy", "--quick", "--set", "steps=20", "--set", "lr=0.5", "--out", out, "--no-plots"]
    )
    assert rc == 2 and len(err.splitlines()) == 1
    assert "holds a different run of toy (differs in lr: 0.01 there, 0.5 asked)" in err
    # a sweep into a run folder is refused too
    rc, err = _err(capsys, ["sweep", "toy", "--quick", "--seeds", "0-1", "--out", out])
    assert rc == 2 and "holds a run of toy, not a sweep" in err
    # the same run again is fine
    assert (
        cli.main(
            [
                "run",
                "toy",
                "--quick",
                "--set",
                "steps=20",
                "--checkpoint-every",
                "10",
                "--out",
                out,
                "--quiet",
                "--no-plots",
            ]
        )
        == 0
    )


def test_console_script_bad_input_has_no_traceback(tmp_path):
    env = dict(os.environ, BLOJAX_EXPERIMENTS=TOY)
    proc = subprocess.run(
        [sys.executable, "-m", "blojax.runner.cli", "run", "toy", "--set", "dim=two", "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip() == "blojax: error: toy.Config.dim expects an integer, got 'two'"
    assert "Traceback" not in proc.stderr + proc.stdout


def test_diverging_run_stops_with_message_and_keeps_files(capsys, tmp_path):
    out = tmp_path / "div"
    rc = cli.main(
        [
            "run",
            "toy",
            "--set",
            "outer=sgd",
            "--set",
            "lr=1e6",
            "--set",
            "steps=50",
            "--checkpoint-every",
            "10",
            "--out",
            str(out),
            "--quiet",
            "--no-plots",
        ]
    )
    err = capsys.readouterr().err.strip()
    assert rc == 1
    assert "non-finite" in err and len(err.splitlines()) == 1
    run = json.loads((out / "run.json").read_text())
    assert run["status"] == "diverged"
    assert (out / "checkpoints" / "scan-toy.pkl").exists()


def test_run_folder_contents(capsys, tmp_path):
    out = tmp_path / "r"
    toml = tmp_path / "c.toml"
    toml.write_text("steps = 30\nlr = 0.02\n")
    assert (
        cli.main(
            [
                "run",
                "toy",
                "--config",
                str(toml),
                "--set",
                "lr=0.03",
                "--seed",
                "4",
                "--checkpoint-every",
                "10",
                "--out",
                str(out),
                "--quiet",
            ]
        )
        == 0
    )
    config = json.loads((out / "config.json").read_text())
    assert config["steps"] == 30 and config["lr"] == 0.03 and config["seed"] == 4  # --set wins over the file
    res = json.loads((out / "results.json").read_text())
    assert res["figures"] == ["toy_loss.png"] and (out / "toy_loss.png").stat().st_size > 1000
    assert res["environment"]["versions"]["jax"]
    lines = (out / "metrics" / "toy.csv").read_text().splitlines()
    assert lines[0] == "step,F,u_norm,w_norm" and len(lines) == 31
    assert float(lines[-1].split(",")[1]) == res["results"]["final_F"]
    assert json.loads((out / "run.json").read_text())["status"] == "done"
    assert not list(out.rglob(".*.tmp"))


def test_module_main_entry(capsys, tmp_path):
    from blojax.runner.cli import run_module

    assert (
        run_module(
            "exp_toy",
            [
                "--out",
                str(tmp_path),
                "--quick",
                "--set",
                "steps=10",
                "--checkpoint-every",
                "10",
                "--quiet",
                "--no-plots",
            ],
        )
        == 0
    )
    # the experiment is named after its module
    assert json.loads((tmp_path / "run.json").read_text())["experiment"] == "exp_toy"
    assert run_module("exp_toy", ["--out", str(tmp_path / "x"), "--set", "n_syn=0"]) == 2
    assert "toy.Config.n_syn must be a positive integer, got 0" in capsys.readouterr().err


# ------------------------------------------------------------------------------------ configs
@dataclasses.dataclass(frozen=True)
class _Inner:
    width: int = 8
    act: Literal["relu", "tanh"] = "relu"


@dataclasses.dataclass(frozen=True)
class _Cfg:
    ks: tuple[int, ...] = (1, 10)
    eps: float | None = None
    flag: bool = False
    name: str = "a"
    model: _Inner = _Inner()
    pair: tuple[float, float] = (0.0, 1.0)


def test_coerce_types():
    c = configs.apply_overrides(
        _Cfg(),
        {
            "ks": "[1, 2,3]",
            "eps": "1e-3",
            "flag": "yes",
            "name": "b",
            "model.width": "16",
            "model.act": "tanh",
            "pair": "2,3",
        },
        "X",
    )
    assert c == _Cfg(ks=(1, 2, 3), eps=1e-3, flag=True, name="b", model=_Inner(16, "tanh"), pair=(2.0, 3.0))
    assert configs.apply_overrides(c, {"eps": "none"}, "X").eps is None
    # TOML-typed values
    c2 = configs.apply_overrides(_Cfg(), {"ks": [5], "eps": 2, "model": {"width": 3}}, "X")
    assert c2.ks == (5,) and c2.eps == 2.0 and isinstance(c2.eps, float) and c2.model.width == 3
    # round trip through a plain dict
    assert configs.from_dict(_Cfg, configs.to_dict(c), "X") == c
    for bad, msg in [
        ({"flag": "maybe"}, "X.flag expects true or false"),
        ({"pair": "1,2,3"}, "X.pair expects 2 values"),
        ({"model.depth": "2"}, "unknown config key 'depth' for X.model; valid keys: width, act"),
        ({"name.x": "1"}, "X.name is not a nested config"),
        ({"ks": "1,b"}, "X.ks[1] expects an integer"),
        ({"flag": 1.5}, "X.flag expects true or false"),
    ]:
        with pytest.raises(UsageError, match=__import__("re").escape(msg)):
            configs.apply_overrides(_Cfg(), bad, "X")


def test_grid_and_seeds():
    grid = configs.parse_grid(["ks=[1,2],[3]", "eps=0.1,1"], _Cfg(), "X")
    assert grid == {"ks": [(1, 2), (3,)], "eps": [0.1, 1.0]}
    assert configs.parse_seeds("0-3,7") == [0, 1, 2, 3, 7]
    pts = configs.grid_points(_Cfg(), grid, None, "X")
    assert [p[0] for p in pts] == [
        {"ks": (1, 2), "eps": 0.1},
        {"ks": (1, 2), "eps": 1.0},
        {"ks": (3,), "eps": 0.1},
        {"ks": (3,), "eps": 1.0},
    ]
    with pytest.raises(UsageError, match="has no 'seed' field"):
        configs.grid_points(_Cfg(), grid, [0, 1], "X")


def test_broken_module_is_reported_not_hidden(monkeypatch, capsys):
    monkeypatch.setenv("BLOJAX_EXPERIMENTS", TOY + ",bad=blojax.no_such_module")
    assert cli.main(["list", "--all"]) == 0
    out = capsys.readouterr().out
    assert "toy" in out and "bad" in out and "(unusable: import failed: ModuleNotFoundError" in out
    rc, err = _err(capsys, ["run", "bad"])
    assert (
        rc == 2
        and "unknown experiment 'bad' (import failed: ModuleNotFoundError" in err
        and "; available: " in err
        and err.endswith("toy")
    )
