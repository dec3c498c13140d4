"""Reliability of the ``blojax`` command: every bad or hostile input gives one clear line and the right
exit code (2 bad input, 1 a failed run, 130/143 interrupted), never a traceback, never another run's
numbers, never lost results. Cases by category (counted in docs/reliability.md):

identity, results-first / file system, validation, data provenance, report, signals, resource guard,
missing extra; then hypothesis fuzz of ``--set``/``--grid`` values and of the Python API's constructors.

Runs use the test experiment :mod:`exp_toy` (tests/exp_toy.py, registered through ``BLOJAX_EXPERIMENTS``) and
the fixtures ``tests/exp_*.py``, so they take seconds. The kill/resume soak is in test_reliability_soak.py.
"""

import errno
import json
import os
import pathlib
import pickle
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

import blojax as blo
from blojax import _atomic
import exp_toy as toy
from blojax.runner import cli, configs
from blojax.runner.errors import UsageError
from blojax.runner.rundir import nonfinite_keys

TESTS = pathlib.Path(__file__).parent
EXPS = "toy=exp_toy,slowtoy=exp_slowtoy,dataexp=exp_data,nanexp=exp_nan,jitnan=exp_jitnan"
FAST = ["--quiet", "--no-plots", "--checkpoint-every", "10"]


@pytest.fixture(autouse=True)
def _exps(monkeypatch):
    monkeypatch.setenv("BLOJAX_EXPERIMENTS", EXPS)
    monkeypatch.syspath_prepend(str(TESTS))


def _env():
    return dict(
        os.environ,
        BLOJAX_EXPERIMENTS=EXPS,
        PYTHONPATH=os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")]),
    )


def blojax(capsys, *argv):
    """``(exit code, stderr)`` of ``blojax argv`` run in this process."""
    rc = cli.main([str(a) for a in argv])
    cap = capsys.readouterr()
    return rc, cap.err.strip()


def one_line(err, *needles):
    assert len(err.splitlines()) == 1, err
    assert "Traceback" not in err
    for n in needles:
        assert n in err, (n, err)


def toy_run(capsys, out, *extra, code=0):
    rc, err = blojax(capsys, "run", "toy", "--quick", "--set", "steps=20", *FAST, "--out", out, *extra)
    assert rc == code, err
    return err


# ------------------------------------------------------------------------------------ identity
def test_resume_with_another_config_is_refused_even_without_run_json(capsys, tmp_path):
    """The issue's case: run n=8, delete run.json, resume with n=12: exit 2, not another run's numbers."""
    out = tmp_path / "X"
    toy_run(capsys, out, "--set", "n_syn=3")
    (out / "run.json").unlink()
    rc, err = blojax(capsys, "run", "toy", "--quick", "--set", "steps=20", *FAST, "--out", out, "--resume")
    assert rc == 2
    one_line(err, "holds results.json and checkpoints but no run.json", "--force")
    assert json.loads((out / "results.json").read_text())["config"]["n_syn"] == 3  # untouched


def test_plain_run_never_overwrites_another_runs_results(capsys, tmp_path):
    out = tmp_path / "X"
    toy_run(capsys, out, "--set", "n_syn=3")
    before = (out / "results.json").read_bytes()
    for remove in (None, "run.json"):
        if remove:
            (out / remove).unlink()
        rc, err = blojax(capsys, "run", "toy", "--quick", "--set", "steps=20", *FAST, "--out", out)
        assert rc == 2
        one_line(err, "--force")
        assert (out / "results.json").read_bytes() == before


def test_resume_of_another_config_is_refused_and_force_clears(capsys, tmp_path):
    out = tmp_path / "X"
    toy_run(capsys, out, "--set", "n_syn=3")
    rc, err = blojax(capsys, "run", "toy", "--quick", "--set", "steps=20", *FAST, "--out", out, "--resume")
    assert rc == 2
    one_line(err, "holds a different run of toy (differs in n_syn: 3 there, 2 asked)", "--force clears it")
    (out / "toy_loss.png").write_bytes(b"old figure")
    res = json.loads((out / "results.json").read_text())
    res["figures"] = ["toy_loss.png"]
    (out / "results.json").write_text(json.dumps(res))
    (out / "notes.txt").write_text("mine")
    toy_run(capsys, out, "--force")
    res = json.loads((out / "results.json").read_text())
    assert (
        res["config"]["n_syn"] == 2
        and res["fingerprint"] == json.loads((out / "run.json").read_text())["fingerprint"]
    )
    assert not (out / "toy_loss.png").exists()  # the other run's figure went with it
    assert (out / "notes.txt").read_text() == "mine"  # what no run wrote stays


def test_same_run_resumes_and_fingerprint_covers_version(capsys, tmp_path, monkeypatch):
    out = tmp_path / "X"
    toy_run(capsys, out)
    toy_run(capsys, out, "--resume")
    fp = json.loads((out / "run.json").read_text())["fingerprint"]
    assert fp == configs.fingerprint("toy", toy.Config(steps=20))
    monkeypatch.setattr(configs, "version", lambda: "9.9.9")
    assert configs.fingerprint("toy", toy.Config(steps=20)) != fp
    rc, err = blojax(capsys, "run", "toy", "--quick", "--set", "steps=20", *FAST, "--out", out, "--resume")
    assert rc == 2
    one_line(err, "blojax version: 0.1.0 there, 9.9.9 here")


def _ckpt(out):
    return out / "checkpoints" / "scan-toy.pkl"


@pytest.mark.parametrize(
    "damage, needle",
    [
        ("truncate", "is unreadable (UnpicklingError"),
        ("garbage", "is unreadable"),
        ("list", "is not a blojax checkpoint of format 3 (found a list)"),
        ("old-format", "is not a blojax checkpoint of format 3 (found format 2)"),
        ("other-run", "belongs to another run"),
        ("other-data", "was computed from other data files"),
        ("other-shape", "holds a state of another shape"),
    ],
)
def test_damaged_or_foreign_checkpoint_is_one_line_naming_the_file(capsys, tmp_path, damage, needle):
    out = tmp_path / "X"
    toy_run(capsys, out)
    path = _ckpt(out)
    d = pickle.loads(path.read_bytes())
    if damage == "truncate":
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    elif damage == "garbage":
        path.write_bytes(b"\x00not a pickle")
    elif damage == "list":
        path.write_bytes(pickle.dumps([1, 2, 3]))
    elif damage == "old-format":
        d["format"] = 2
        path.write_bytes(pickle.dumps(d))
    elif damage == "other-run":
        d["fingerprint"] = "0123456789abcdef"
        path.write_bytes(pickle.dumps(d))
    elif damage == "other-data":
        d["data"] = [{"dataset": "mnist", "role": "x", "name": "f", "size": 1, "sha256": "00"}]
        path.write_bytes(pickle.dumps(d))
    elif damage == "other-shape":
        d["done"] = 10
        d["carry"] = [np.zeros(3)]
        path.write_bytes(pickle.dumps(d))
    rc, err = blojax(capsys, "run", "toy", "--quick", "--set", "steps=20", *FAST, "--out", out, "--resume")
    assert rc == 2
    one_line(err, str(path), needle)
    assert json.loads((out / "run.json").read_text())["status"] == "refused"


# ------------------------------------------------------------------------------------ results first, file system
def test_figure_failure_keeps_results_and_says_so(capsys, tmp_path):
    out = tmp_path / "X"
    (out / "toy_loss.png").mkdir(parents=True)  # a folder where the figure should go
    rc, err = blojax(capsys, "run", "toy", "--quick", "--set", "steps=20", "--quiet", "--out", out)
    assert rc == 1
    one_line(err, "figures failed", "results.json is written")
    res = json.loads((out / "results.json").read_text())
    assert res["results"]["final_F"] > 0 and res["figures"] == []
    assert json.loads((out / "run.json").read_text())["status"].startswith("done (figures failed: ")
    assert (out / "metrics" / "toy.csv").exists()


@pytest.mark.parametrize("make", ["file", "through-file"])
def test_bad_out_path_is_exit_2_naming_it(capsys, tmp_path, make):
    f = tmp_path / "afile"
    f.write_text("x")
    out = f if make == "file" else f / "sub"
    rc, err = blojax(capsys, "run", "toy", "--quick", *FAST, "--out", out)
    assert rc == 2
    one_line(err, str(out) if make == "file" else "Not a directory")


@pytest.mark.parametrize(
    "err_no, when",
    [
        (errno.EACCES, "start"),
        (errno.EROFS, "start"),
        (errno.ENOSPC, "checkpoint"),
        (errno.ENOSPC, "results"),
        (errno.EIO, "figure"),
    ],
)
def test_file_system_errors_are_one_line_naming_the_path(capsys, tmp_path, monkeypatch, err_no, when):
    """Read-only or full disks cannot be made here (root, no quota): the write function fails instead,
    as the OS would, at the moment named by ``when``."""
    out = tmp_path / "X"
    real = _atomic.atomic_write_bytes

    def failing(path, data):
        p = pathlib.Path(path)
        hit = {
            "start": p.name == "run.json",
            "checkpoint": p.suffix == ".pkl",
            "results": p.name == "results.json",
            "figure": p.suffix == ".png",
        }[when]
        if hit:
            raise OSError(err_no, os.strerror(err_no), str(p))
        return real(path, data)

    monkeypatch.setattr(_atomic, "atomic_write_bytes", failing)
    if when == "start":
        import tempfile

        monkeypatch.setattr(
            tempfile,
            "mkstemp",
            lambda *a, **k: (_ for _ in ()).throw(OSError(err_no, os.strerror(err_no), str(out))),
        )
    rc, err = blojax(
        capsys,
        "run",
        "toy",
        "--quick",
        "--set",
        "steps=20",
        "--quiet",
        "--checkpoint-every",
        "10",
        "--out",
        out,
    )
    assert rc == (2 if when == "start" else 1)
    one_line(err, os.strerror(err_no), str(out))


def test_debug_shows_the_traceback_of_an_unexpected_error(capsys, tmp_path, monkeypatch):
    monkeypatch.setattr(cli, "cmd_list", lambda args: 1 / 0)
    rc, err = blojax(capsys, "list")
    assert rc == 1
    one_line(err, "ZeroDivisionError", "--debug")
    with pytest.raises(ZeroDivisionError):
        cli.main(["list", "--debug"])


# ------------------------------------------------------------------------------------ validation
BAD_ARGS = [
    (["run", "toy", "--set", "lr=nan"], "toy.Config.lr expects a finite number, got 'nan'"),
    (["run", "toy", "--set", "lr=inf"], "toy.Config.lr expects a finite number, got 'inf'"),
    (["run", "toy", "--set", "lr=-inf"], "expects a finite number"),
    (["run", "toy", "--set", "lr=1e999"], "expects a finite number"),
    (["run", "toy", "--set", "inner_lr=NaN"], "toy.Config.inner_lr expects a finite number"),
    (["run", "toy", "--set", "lr=0.1", "--set", "lr=0.2"], "--set lr given twice"),
    (["run", "toy", "--set", "lr=-1"], "toy.Config.lr must be positive"),
    (["run", "toy", "--set", "steps=-5"], "toy.Config.steps must be a positive integer"),
    (["run", "toy", "--set", "steps=true"], "toy.Config.steps expects an integer"),
    (["run", "toy", "--set", "=3"], "--set expects key=value"),
    (["run", "toy", "--seed", "x"], "invalid int value"),
    (["run", "toy", "--checkpoint-every", "0"], "--checkpoint-every expects a positive integer"),
    (["run", "toy", "--time-budget", "-1"], "--time-budget expects a positive number"),
    (["run", "toy", "--time-budget", "nan"], "--time-budget expects a positive number"),
    (["sweep", "toy", "--grid", "lr=0.01", "--grid", "lr=0.03"], "--grid lr given twice"),
    (["sweep", "toy", "--grid", "lr=0.01,nan"], "toy.Config.lr expects a finite number"),
    (["sweep", "toy", "--grid", "lr="], "--grid lr: no values given"),
    (["sweep", "toy", "--grid", "nope=1"], "unknown config key 'nope'"),
    (["sweep", "toy", "--seeds", "a-b"], "--seeds expects a range"),
    (["sweep", "toy", "--seeds", "0-2", "--ray-cpus", "0"], "--ray-cpus expects a positive integer"),
    (["sweep", "toy", "--seeds", "0-2", "--force"], "--force and --time-budget apply to blojax run only"),
    (["reproduce", "--timeout", "-1"], "--timeout expects a positive number of seconds, got -1"),
    (["reproduce", "--timeout", "0"], "--timeout expects a positive number"),
    (["reproduce", "--timeout", "nan"], "--timeout expects a positive number"),
    (["reproduce", "--jobs", "0"], "--jobs expects a positive integer"),
    (["reproduce", "--quick", "--full"], "not allowed with argument"),
    (["run"], "the following arguments are required: experiment"),
    (["report"], "the following arguments are required: folder"),
    ([], "the following arguments are required: COMMAND"),
]


@pytest.mark.parametrize("argv, needle", BAD_ARGS, ids=[" ".join(a) or "(none)" for a, _ in BAD_ARGS])
def test_bad_input_one_line_exit_2(capsys, tmp_path, argv, needle):
    out = (
        ["--out", str(tmp_path / "o")]
        if argv[:1] in (["run"], ["sweep"], ["reproduce"]) and len(argv) > 1
        else []
    )
    rc, err = blojax(capsys, *argv, *out)
    assert rc == 2
    one_line(err, "blojax: error: ", needle)
    assert not (tmp_path / "o").exists()  # refused before anything was written


def test_nonfinite_config_fields_only_where_declared():
    import dataclasses

    @dataclasses.dataclass(frozen=True)
    class C:
        a: float = 1.0
        b: float = dataclasses.field(default=1.0, metadata={"nonfinite": True})
        c: tuple[float, ...] = (1.0,)
        d: float | None = None

    assert (
        configs.apply_overrides(C(), {"b": "nan"}, "C").b != configs.apply_overrides(C(), {"b": "nan"}, "C").b
    )
    assert configs.apply_overrides(C(), {"b": "-inf"}, "C").b == float("-inf")
    for key, value in (("a", "nan"), ("c", "1,inf"), ("d", "inf"), ("a", float("nan"))):
        with pytest.raises(UsageError, match=f"C.{key}.* expects a finite number"):
            configs.apply_overrides(C(), {key: value}, "C")
    assert configs.apply_overrides(C(), {"d": "none", "c": "[1, 2.5]"}, "C") == C(d=None, c=(1.0, 2.5))


def test_nonfinite_results_are_flagged_not_reported_done(capsys, tmp_path):
    out = tmp_path / "N"
    rc, err = blojax(capsys, "run", "nanexp", "--quiet", "--out", out)
    assert rc == 1
    one_line(err, "non-finite numbers in the results (gap, curve)")
    assert json.loads((out / "run.json").read_text())["status"] == "done (non-finite results: gap, curve)"
    assert json.loads((out / "results.json").read_text())["results"]["gap"] == "nan"  # kept, as written
    assert nonfinite_keys({"a": 1.0, "b": {"c": [1, "nan"]}, "d": "inf"}) == ["b.c", "d"]
    assert nonfinite_keys({"a": "nan", "b": 2.0}, allowed=("a",)) == []


def test_diverging_toy_with_huge_lr_stops_with_message(capsys, tmp_path):
    out = tmp_path / "D"
    rc, err = blojax(
        capsys,
        "run",
        "toy",
        "--set",
        "outer=sgd",
        "--set",
        "lr=1e300",
        "--set",
        "steps=30",
        *FAST,
        "--out",
        out,
    )
    assert rc == 1
    one_line(err, "non-finite")
    assert json.loads((out / "run.json").read_text())["status"] == "diverged"


def test_a_jitted_library_check_is_reported_as_divergence_in_one_line(capsys, tmp_path):
    """A ``throw=True`` check raising under ``jit`` arrives as a long JAX runtime error; the run
    reports the check's own message as "diverged", with the traceback in error.txt."""
    out = tmp_path / "J"
    rc, err = blojax(capsys, "run", "jitnan", "--quiet", "--out", out)
    assert rc == 1
    one_line(err, "InnerLoop: non-finite inner iterate", "error.txt")
    assert "CpuCallback" not in err
    assert json.loads((out / "run.json").read_text())["status"] == "diverged"
    assert "Traceback" in (out / "error.txt").read_text()
    # a real process: JAX's own log of the failed callback must not reach the terminal either
    proc = subprocess.run(
        [sys.executable, "-m", "blojax.runner.cli", "run", "jitnan", "--quiet", "--out", str(tmp_path / "K")],
        env=_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 1
    one_line(proc.stderr.strip(), "InnerLoop: non-finite inner iterate")


def test_runtime_message_finds_the_check_or_nothing():
    from blojax.status import runtime_message

    wrapped = RuntimeError("INTERNAL: CpuCallback error\n  ...\n_EquinoxRuntimeError: CG: bad field\n  ...")
    assert runtime_message(wrapped) == "CG: bad field"
    assert runtime_message(ValueError("nothing to see")) is None


# ------------------------------------------------------------------------------------ data provenance
def _mnist(folder):
    from test_data_images import make_idx_dataset

    make_idx_dataset(folder, gz=False)
    return folder


def test_results_and_checkpoints_record_the_data_files(capsys, tmp_path):
    data = _mnist(tmp_path / "data")
    out = tmp_path / "R"
    rc, err = blojax(capsys, "run", "dataexp", "--set", f"root={data}", *FAST, "--out", out)
    assert rc == 0, err
    files = json.loads((out / "results.json").read_text())["data"]
    assert sorted(f["name"] for f in files) == sorted(p.name for p in data.iterdir())
    for f in files:
        p = pathlib.Path(f["path"])
        assert f["size"] == p.stat().st_size and f["found_in"] == "root argument"
        assert f["sha256"] == __import__("hashlib").sha256(p.read_bytes()).hexdigest()
    # resume against changed data files is refused, naming the checkpoint
    img = data / "train-images-idx3-ubyte"
    raw = bytearray(img.read_bytes())
    raw[-1] ^= 1
    img.write_bytes(bytes(raw))
    rc, err = blojax(capsys, "run", "dataexp", "--set", f"root={data}", *FAST, "--out", out, "--resume")
    assert rc == 2
    one_line(err, "was computed from other data files", "scan-count.pkl")


@pytest.mark.parametrize("how", ["root-missing", "root-incomplete", "env-missing", "env-incomplete"])
def test_explicit_data_location_missing_or_incomplete_is_an_error(tmp_path, monkeypatch, how):
    from blojax.data import DatasetNotFoundError, load_dataset

    place = tmp_path / "d"
    if how.endswith("incomplete"):
        _mnist(place)
        (place / "t10k-labels-idx1-ubyte").unlink()
    sysdir = _mnist(tmp_path / "system")  # a complete copy elsewhere must not be used instead
    monkeypatch.setattr("blojax.data.download.SYSTEM_DIRS", {"mnist": (str(sysdir),)})
    kw = {}
    if how.startswith("root"):
        kw["root"] = place
        monkeypatch.delenv("BLOJAX_DATA", raising=False)
    else:
        monkeypatch.setenv("BLOJAX_DATA", str(place))
    with pytest.raises(DatasetNotFoundError) as e:
        load_dataset("mnist", val_size=10, **kw)
    first = str(e.value).splitlines()[0]  # the line the command shows (further lines: how to fetch the files)
    assert str(place) in first and str(sysdir) not in str(e.value)
    assert ("does not exist" if how.endswith("missing") else "lacks some of the files") in first


def test_missing_data_extra_is_named(monkeypatch):
    from blojax.data import load_dataset

    monkeypatch.setitem(sys.modules, "sklearn", None)
    monkeypatch.setitem(sys.modules, "sklearn.datasets", None)
    with pytest.raises(ImportError, match=r"pip install 'blojax\[data\]'"):
        load_dataset("digits")


# ------------------------------------------------------------------------------------ report
def test_report_of_a_folder_without_runs_is_exit_2(capsys, tmp_path):
    (tmp_path / "empty").mkdir()
    rc, err = blojax(capsys, "report", tmp_path / "empty")
    assert rc == 2
    one_line(err, "holds no runs")


@pytest.mark.parametrize("corrupt", ["truncated", "no-results", "run-json"])
def test_corrupt_files_are_shown_as_corrupt_in_the_report(capsys, tmp_path, corrupt):
    out = tmp_path / "R"
    toy_run(capsys, out)
    if corrupt == "truncated":
        (out / "results.json").write_text((out / "results.json").read_text()[:50])
    elif corrupt == "no-results":
        (out / "results.json").write_text("{}")
    else:
        (out / "run.json").write_text("{not json")
    rc, err = blojax(capsys, "report", out)
    assert rc == 0, err
    md = (out / "report.md").read_text()
    assert ("corrupt run.json" if corrupt == "run-json" else "but results.json is corrupt") in md


# ------------------------------------------------------------------------------------ signals
def _wait_for(pred, timeout=120):
    t0 = time.monotonic()
    while not pred():
        if time.monotonic() - t0 > timeout:
            raise AssertionError("timed out waiting")
        time.sleep(0.05)


# The child resets SIGINT to Python's default handler before the CLI starts. A shell without job
# control starts background commands with SIGINT ignored, a child inherits that, and Python keeps an
# inherited SIG_IGN, so under ``make test &`` the child would never see the interrupt. (Done in the
# child's own Python, not with ``preexec_fn``, which forks a multithreaded JAX process.)
_CLI_DEFAULT_SIGINT = (
    "import runpy, signal, sys; signal.signal(signal.SIGINT, signal.default_int_handler); "
    "sys.argv = ['blojax'] + sys.argv[1:]; runpy.run_module('blojax.runner.cli', run_name='__main__')"
)


@pytest.mark.parametrize("sig, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_signal_exit_code_and_run_json_interrupted(tmp_path, sig, code):
    out = tmp_path / "S"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-c",
            _CLI_DEFAULT_SIGINT,
            "run",
            "toy",
            "--set",
            "steps=400",
            "--set",
            "chunk_delay=0.1",
            "--checkpoint-every",
            "10",
            "--quiet",
            "--no-plots",
            "--out",
            str(out),
        ],
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        _wait_for(lambda: _ckpt(out).exists() or proc.poll() is not None)
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == code, err
    one_line(err.strip(), "interrupted")
    run = json.loads((out / "run.json").read_text())
    assert run["status"] == "interrupted" and run["checkpointed"]["scan-toy"].endswith("/400")


def test_reproduce_parent_ends_its_children_on_sigterm(tmp_path):
    out = tmp_path / "P"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "blojax.runner.cli",
            "reproduce",
            "--only",
            "slowtoy",
            "--no-demo",
            "--out",
            str(out),
        ],
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        _wait_for(
            lambda: (
                (
                    (out / "slowtoy" / "checkpoints").is_dir()
                    and any((out / "slowtoy" / "checkpoints").glob("*.pkl"))
                )
                or proc.poll() is not None
            )
        )
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 143
    assert json.loads((out / "reproduce.json").read_text())["status"] == "interrupted"
    child = json.loads((out / "slowtoy" / "run.json").read_text())
    assert child["status"] == "interrupted", child  # the child was told, and said so
    leftovers = subprocess.run(["pgrep", "-f", str(out)], capture_output=True, text=True).stdout.split()
    assert leftovers == []


# ------------------------------------------------------------------------------------ resource guard
def test_huge_step_count_is_refused_before_starting(capsys, tmp_path):
    out = tmp_path / "G"
    t0 = time.perf_counter()
    rc, err = blojax(capsys, "run", "toy", "--set", "steps=1000000000", "--quiet", "--no-plots", "--out", out)
    assert rc == 2
    one_line(err, "1000000000 steps x", "of per-step history", "--force")
    assert time.perf_counter() - t0 < 60
    assert json.loads((out / "run.json").read_text())["status"] == "refused"


def test_time_budget_refuses_a_loop_estimated_longer(capsys, tmp_path):
    rc, err = blojax(
        capsys,
        "run",
        "toy",
        "--set",
        "steps=200000",
        "--time-budget",
        "0.001",
        "--quiet",
        "--no-plots",
        "--out",
        tmp_path / "T",
    )
    assert rc == 2
    one_line(err, "200000 steps x", "per compiled step", "above the time budget of 0.001 s")


# ------------------------------------------------------------------------------------ fuzz
_text = st.one_of(
    st.text(max_size=12),
    st.sampled_from(
        [
            "nan",
            "inf",
            "-inf",
            "1e999",
            "1e-999",
            "0",
            "-0",
            "1_000",
            "0x10",
            "1e3",
            " 3 ",
            "[1]",
            "true",
            "none",
            "",
        ]
    ),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.integers(-(10**20), 10**20).map(str),
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    key=st.sampled_from(["steps", "lr", "inner_lr", "outer", "n_syn", "dim", "seed", "chunk_delay"]),
    value=_text,
)
def test_fuzz_set_values_give_a_valid_config_or_one_clear_line(key, value):
    try:
        config = cli._build_config(
            toy, "toy", quick=True, config_file=None, sets=[f"{key}={value}"], seed=None
        )
        from blojax.runner import rundir

        rundir.validate(config, "toy.Config")
    except UsageError as exc:
        msg = str(exc)
        assert len(msg.splitlines()) == 1 and (f"toy.Config.{key}" in msg or "--set" in msg), msg
        return
    v = getattr(config, key)
    if isinstance(v, float):
        assert np.isfinite(v)
    if key in ("steps", "n_syn", "dim"):
        assert isinstance(v, int) and not isinstance(v, bool) and v >= 1
    if key in ("lr", "inner_lr"):
        assert v > 0
    if key == "outer":
        assert v in ("adam", "sgd")


@settings(max_examples=100, deadline=None)
@given(values=st.lists(_text, min_size=1, max_size=4))
def test_fuzz_grid_values_parse_to_typed_finite_values_or_one_clear_line(values):
    item = "lr=" + ",".join(values)
    try:
        grid = configs.parse_grid([item], toy.Config(), "toy.Config")
    except UsageError as exc:
        assert len(str(exc).splitlines()) == 1 and ("toy.Config.lr" in str(exc) or "--grid" in str(exc)), str(
            exc
        )
        return
    assert all(isinstance(v, float) and np.isfinite(v) for v in grid["lr"]) and grid["lr"]


_num = st.one_of(
    st.integers(-5, 10**6),
    st.floats(allow_nan=True, allow_infinity=True),
    st.booleans(),
    st.none(),
    st.text(max_size=3),
)
_CTORS = {
    "Neumann": (lambda a, b: blo.Neumann(terms=a, lr=b), lambda m: m.terms >= 1 and 0 < m.lr < np.inf),
    "Unroll": (lambda a, b: blo.Unroll(steps=a), lambda m: m.steps >= 1),
    "CG": (lambda a, b: blo.CG(a, damping=b), lambda m: m.iters >= 1 if hasattr(m, "iters") else True),
    # eps = 0 is valid: CG to tolerance on H itself
    "Damped": (lambda a, b: blo.Damped(eps=b, max_iters=a), lambda m: np.isfinite(m.eps) and m.eps >= 0),
    "Identity": (lambda a, b: blo.Identity(b), lambda m: np.isfinite(m.lr)),
    "Exact": (lambda a, b: blo.Exact(max_size=a), lambda m: m.max_size >= 1),
}


@settings(max_examples=60, deadline=None)
@given(name=st.sampled_from(sorted(_CTORS)), a=_num, b=_num)
@example(name="Damped", a=1, b=0)
def test_fuzz_api_constructors_accept_valid_or_name_the_class(name, a, b):
    make, valid = _CTORS[name]
    try:
        m = make(a, b)
    except (ValueError, TypeError) as exc:
        assert str(exc).startswith(name), str(exc)
        return
    assert valid(m), m
