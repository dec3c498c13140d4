"""report.html / report.md of a folder of runs; ``blojax reproduce`` end to end and the report in
headless Chromium (slow: needs Debian's chromium)."""

import base64
import json
import os
import re
import shutil
import subprocess
import sys

import pytest

from blojax.runner import cli

TOY = "toy=exp_toy"


@pytest.fixture(autouse=True)
def _toy(monkeypatch):
    monkeypatch.setenv("BLOJAX_EXPERIMENTS", TOY)


def test_report_of_runs(tmp_path, capsys):
    assert (
        cli.main(
            [
                "run",
                "toy",
                "--set",
                "steps=20",
                "--checkpoint-every",
                "10",
                "--quiet",
                "--out",
                str(tmp_path / "toy"),
            ]
        )
        == 0
    )
    assert (
        cli.main(
            [
                "run",
                "toy",
                "--set",
                "outer=sgd",
                "--set",
                "lr=1e6",
                "--set",
                "steps=20",
                "--checkpoint-every",
                "10",
                "--quiet",
                "--out",
                str(tmp_path / "broken"),
            ]
        )
        == 1
    )
    assert cli.main(["report", str(tmp_path)]) == 0
    page = (tmp_path / "report.html").read_text()
    assert 'src="http' not in page and "<link" not in page  # self-contained
    imgs = re.findall(r'src="data:image/png;base64,([^"]+)"', page)
    assert len(imgs) == 1 and base64.b64decode(imgs[0])[:8] == b"\x89PNG\r\n\x1a\n"
    assert (
        page.count("<table") >= 4
        and "<h2 id='toy'>toy</h2>" in page
        and "<h2 id='broken'>toy (broken)</h2>" in page
    )
    assert "diverged" in page and "non-finite" in page  # the failed run is shown with its reason
    assert "final outer loss" in page and "n/a (test experiment)" in page  # ours beside the paper
    md = (tmp_path / "report.md").read_text()
    assert "![toy_loss.png](toy/toy_loss.png)" in md and "| toy | - | done | " in md
    # a single run folder is a report of its own
    assert cli.main(["report", str(tmp_path / "toy")]) == 0
    assert "toy_loss.png" in (tmp_path / "toy" / "report.html").read_text()
    assert cli.main(["report", str(tmp_path / "nope")]) == 2


@pytest.mark.slow
def test_reproduce_report_in_chromium(tmp_path):
    from blojax.runner import browser

    chromium = browser.find_chromium()
    if chromium is None:
        pytest.skip("no chromium (apt-get install chromium)")
    out = tmp_path / "rep"
    env = dict(os.environ, BLOJAX_EXPERIMENTS=TOY)
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "blojax.runner.cli",
            "reproduce",
            "--quick",
            "--only",
            "toy",
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert re.search(r"reproduce: total [0-9.]+ s", proc.stdout)
    meta = json.loads((out / "reproduce.json").read_text())
    assert meta["runs"]["toy"]["status"] == "done" and meta["total_seconds"] > 0
    assert "Part 1: quadratic bilevel problem" in (out / "demo" / "output.txt").read_text()
    r = browser.check_report(out / "report.html", chromium=chromium)
    assert r["loaded"] and r["images"] >= 1 and r["broken"] == [] and r["tables"] >= 3, r
    # a page with a broken image is caught
    bad = tmp_path / "bad.html"
    bad.write_text(
        (out / "report.html").read_text().replace("data:image/png;base64,", "data:image/png;base64,AAAA", 1)
    )
    r = browser.check_report(bad, chromium=chromium)
    assert r["loaded"] and len(r["broken"]) == 1
    shutil.rmtree(out)


def test_auto_comparison_and_text_figures(tmp_path):
    from blojax.runner import report

    rows = report.auto_comparison(
        {
            "ours": {"mnist": {"cold": {"mean": 30.0, "std": 1.5}}},
            "paper": {"mnist": {"cold": 30.7, "warm": 90.8}},
        }
    )
    assert rows == [
        {"quantity": "mnist.cold", "ours": "30 ± 1.5", "paper": 30.7},
        {"quantity": "mnist.warm", "ours": "not run", "paper": 90.8},
    ]
    assert report.auto_comparison({"final_F": 1.0}) is None
    table = tmp_path / "t.md"
    table.write_text("| a | <b> |\n")
    assert (
        report._figure(table) == "<h4>t.md</h4><pre>| a | &lt;b&gt; |\n</pre>"
    )  # inline, escaped, never an <img>
