"""docs/cli.md's transcripts are the real output: every ```console block is replayed in a fresh folder
(``$ blojax ...`` through the command in this process, ``$ rm FILE`` and ``$ ls DIR`` by hand) and its
printed lines compared with the documented ones, ``...`` standing for any text (times, sizes)."""

import pathlib
import re
import shlex

import pytest

from blojax.runner import cli

DOC = pathlib.Path(__file__).parents[1] / "docs" / "cli.md"


def _blocks():
    text = DOC.read_text()
    return [m.group(1) for m in re.finditer(r"```console\n(.*?)```", text, re.S)]


def _steps(block):
    steps = []
    for line in block.splitlines():
        if line.startswith("$ "):
            steps.append((line[2:], []))
        elif steps:
            steps[-1][1].append(line)
    return steps


def _pattern(line):
    return re.compile("^" + ".*".join(re.escape(part) for part in line.split("...")) + "$")


def test_doc_has_transcripts():
    assert len(_blocks()) >= 3


@pytest.mark.parametrize("index", range(len(_blocks())))
def test_transcript_matches_the_command(index, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("BLOJAX_EXPERIMENTS", "toy=exp_toy")
    monkeypatch.chdir(tmp_path)
    for command, expected in _steps(_blocks()[index]):
        argv = shlex.split(command)
        if argv[0] == "blojax":
            cli.main(argv[1:])
            cap = capsys.readouterr()
            got = [line for line in (cap.out + cap.err).splitlines() if line.strip()]
        elif argv[0] == "rm":
            pathlib.Path(argv[1]).unlink()
            got = []
        elif argv[0] == "ls":
            got = [" ".join(sorted(p.name for p in pathlib.Path(argv[1]).iterdir()))]
        else:
            raise AssertionError(f"docs/cli.md: unknown command in a transcript: {command}")
        assert len(got) == len(expected), (command, got, expected)
        for g, e in zip(got, expected):
            assert _pattern(e).match(g), f"{command}\n  documented: {e}\n  printed:    {g}"
