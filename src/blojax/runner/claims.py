"""The claims ledger: which of the paper's checkable findings a run supports.

Every claim is declared once, next to the experiment that measures it, as a module attribute
``CLAIMS = (Claim(...), ...)`` of that experiment module. A claim reads one value ``ours`` from the
experiment's results (``results.json["results"]``, i.e. ``Result.to_dict()``) and states a predicate
on it with an explicit margin. :func:`evaluate` gives each claim one status:

* ``holds`` / ``fails``: the predicate on this run's numbers;
* ``full run only``: this run used the quick settings and the claim needs the full ones
  (``Claim.quick=False``); the entry then carries the stored full-run numbers
  (``full_results.json`` beside this module, with their commit and command) and their status;
* ``not run``: no finished run of the experiment in the folder, or the run does not measure it
  (a variant left out).

``blojax reproduce`` and ``blojax report`` write the ledger to ``claims.json`` and show it as the first
table of ``report.html`` / ``report.md``.

The stored full-run numbers are refreshed from finished full runs with
``python -m blojax.runner.claims store RUN_FOLDER [RUN_FOLDER ...] --command "..."``: it keeps only the
parts of each ``results.json`` that the claims read.
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import math
import pathlib
import re
from typing import Iterable

__all__ = [
    "Claim",
    "evaluate",
    "ledger",
    "STATUSES",
    "FULL_RESULTS",
    "gap",
    "monotone",
    "all_at_most",
    "load_full_results",
    "mean_of",
]

from blojax.experiments.claims import Claim, all_at_most, gap, mean_of, monotone

STATUSES = ("holds", "fails", "full run only", "not run")
FULL_RESULTS = pathlib.Path(__file__).with_name("full_results.json")


# ------------------------------------------------------------------------------------ registry
def ledger(names: Iterable[str] | None = None) -> list[tuple[str, Claim]]:
    """``[(experiment name, claim), ...]`` of every discoverable experiment module (or ``names``),
    in the order of discovery. Modules that do not import contribute nothing."""
    from . import discovery

    found, _ = discovery.discover()
    out = []
    for name, path in found.items():
        if names is not None and name not in names:
            continue
        try:
            mod = importlib.import_module(path)
        except Exception:  # noqa: BLE001 - a broken module is reported by discover(), not here
            continue
        for c in getattr(mod, "CLAIMS", ()) or ():
            if isinstance(c, Claim):
                out.append((name, c))
    out.sort(key=lambda nc: _paper_order(nc[1].id))
    ids = [c.id for _, c in out]
    dup = sorted({i for i in ids if ids.count(i) > 1})
    if dup:
        raise ValueError(f"claim ids must be unique; declared twice: {', '.join(dup)}")
    return out


def _paper_order(claim_id: str) -> tuple:
    """§4 results first (``S4.<n>``), then the experiments ``E1`` ... ``E8``; others last."""
    m = re.match(r"([SE])(\d+)(?:\.(\d+))?", claim_id)
    if not m:
        return (2, 0, 0)
    return (0 if m[1] == "S" else 1, int(m[2]), int(m[3] or 0))


def load_full_results(path: pathlib.Path | None = None) -> dict:
    """``{experiment: {"results", "commit", "command", "machine", "date"}}`` of the stored full runs."""
    try:
        return json.loads(pathlib.Path(path or FULL_RESULTS).read_text())
    except (OSError, ValueError):
        return {}


# ------------------------------------------------------------------------------------ runs
def _read(path: pathlib.Path):
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _is_quick(run: dict, results: dict, mode: str | None) -> bool:
    """A run used the quick settings: its reproduction says so, its command line has ``--quick``, or
    its config equals the experiment's ``Config.quick()``."""
    if mode is not None:
        return mode == "quick"
    if "--quick" in (run.get("argv") or []):
        return True
    try:
        from blojax.experiments import common
        from . import discovery

        mod = importlib.import_module(run.get("module") or discovery.available()[run["experiment"]])
        quick = json.loads(json.dumps(common.to_jsonable(dataclasses.asdict(mod.Config.quick()))))
        cfg = run.get("config") or results.get("config") or {}
        return {k: v for k, v in cfg.items() if k != "seed"} == {
            k: v for k, v in quick.items() if k != "seed"
        }
    except Exception:  # noqa: BLE001
        return False


def _runs(folder: pathlib.Path) -> tuple[dict, dict, str | None]:
    """``({experiment: (run folder, run.json, results)}, {experiment: why}, mode)``: the finished runs
    in ``folder`` (a reproduction, a single run, or a folder of runs), why the others did not give
    numbers, and the reproduction's mode if any."""
    folder = pathlib.Path(folder)
    rep = _read(folder / "reproduce.json")
    mode = rep.get("mode") if isinstance(rep, dict) else None
    candidates = [folder] + (sorted(p for p in folder.iterdir() if p.is_dir()) if folder.is_dir() else [])
    out, unfinished = {}, {}
    for sub in candidates:
        run = _read(sub / "run.json")
        if not isinstance(run, dict) or run.get("kind") != "run":
            continue
        name = run.get("experiment", sub.name)
        payload = _read(sub / "results.json")
        if (
            run.get("status") != "done"
            or not isinstance(payload, dict)
            or not isinstance(payload.get("results"), dict)
        ):
            why = run.get("error") or "no results.json"
            unfinished.setdefault(name, f"the run in {sub} did not finish ({run.get('status', '?')}: {why})")
            continue
        out.setdefault(name, (sub, run, payload["results"]))
    return out, unfinished, mode


def _fmt(v) -> str:
    if isinstance(v, bool) or v is None:
        return str(v)
    if isinstance(v, float):
        if v == 0 or not math.isfinite(v):
            return str(v)
        return f"{v:.4g}" if 1e-3 <= abs(v) < 1e5 else f"{v:.2e}"
    if isinstance(v, dict):
        return ", ".join(f"{k} {_fmt(x)}" for k, x in v.items())
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_fmt(x) for x in v) + "]"
    return str(v)


def show(value) -> str:
    """A claim's value as one short line (numbers to 4 significant digits)."""
    return _fmt(value)


def _jsonable(v):
    if isinstance(v, float) and not math.isfinite(v):
        return str(v)
    if isinstance(v, dict):
        return {str(k): _jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    return v


def _stored(claim: Claim, name: str, stored: dict) -> dict | None:
    entry = stored.get(name)
    if not isinstance(entry, dict) or not isinstance(entry.get("results"), dict):
        return None
    try:
        value, ok = claim.check(entry["results"])
    except KeyError:
        return None
    return {
        "ours": _jsonable(value),
        "shown": show(value),
        "status": "holds" if ok else "fails",
        "commit": entry.get("commit", "?"),
        "command": entry.get("command", "?"),
        "machine": entry.get("machine", ""),
        "date": entry.get("date", ""),
    }


def evaluate(folder, *, stored: dict | None = None, names: Iterable[str] | None = None) -> list[dict]:
    """The ledger of ``folder``: one entry per declared claim with ``id``,
    ``experiment``, ``statement``, ``paper``, ``ours`` (the value read from this run, or ``None``),
    ``shown`` (``ours`` as text), ``margin``, ``status`` (one of :data:`STATUSES`), ``run`` (the run
    folder, or ``None``), ``mode`` (``quick`` / ``full``), ``explanation`` (for ``fails`` and
    ``not run``) and ``full_run`` (the stored full-run value with its commit and command, when
    there is one), in the paper's order.

    A reproduction (``reproduce.json``) gets every claim; any other folder (one run, or a folder of
    runs) only the claims of the experiments it holds runs of."""
    folder = pathlib.Path(folder)
    runs, unfinished, mode = _runs(folder)
    if names is None and not (folder / "reproduce.json").exists():
        names = set(runs) | set(unfinished)
    stored = load_full_results() if stored is None else stored
    entries = []
    for name, claim in ledger(names):
        e = {
            "id": claim.id,
            "experiment": name,
            "statement": claim.statement,
            "paper": claim.paper,
            "margin": claim.margin,
            "ours": None,
            "shown": "-",
            "status": "not run",
            "run": None,
            "mode": None,
            "explanation": "",
            "full_run": _stored(claim, name, stored),
        }
        if name not in runs:
            e["explanation"] = unfinished.get(name, f"no run of {name} in this folder")
            entries.append(e)
            continue
        sub, run, results = runs[name]
        quick = _is_quick(run, results, mode)
        e.update(run=str(sub), mode="quick" if quick else "full")
        try:
            value, ok = claim.check(results)
        except KeyError:
            value, ok = None, None
        if value is not None:
            e.update(ours=_jsonable(value), shown=show(value))
        if quick and not claim.quick:
            e["status"] = "full run only"
            e["explanation"] = (
                "the quick settings are too short for this effect; the full-run numbers "
                "are shown beside the quick ones"
            )
            if claim.not_reproduced and e["full_run"] and e["full_run"]["status"] == "fails":
                e["explanation"] = "the full run fails it: " + claim.not_reproduced
        elif ok is None:
            e["explanation"] = f"this run of {name} does not measure it (a variant or setting left out)"
        elif ok:
            e["status"] = "holds"
        else:
            e["status"] = "fails"
            e["explanation"] = (
                claim.not_reproduced or f"ours ({show(value)}) misses the margin: {claim.margin}"
            )
        entries.append(e)
    return entries


def write(folder, entries: list[dict] | None = None) -> pathlib.Path:
    """Write ``folder/claims.json`` (``{"claims": [...], "counts": {status: n}}``)."""
    from . import files

    entries = evaluate(folder) if entries is None else entries
    counts = {s: sum(e["status"] == s for e in entries) for s in STATUSES}
    return files.atomic_write_json(
        pathlib.Path(folder) / "claims.json", {"claims": entries, "counts": counts}
    )


# ------------------------------------------------------------------------------------ storing full runs
class _Recorder(dict):
    """A dict that records which keys are read (recursively), so only those are stored."""

    def __init__(self, data: dict):
        super().__init__(data)
        self.used: dict = {}

    def __getitem__(self, key):
        value = super().__getitem__(key)
        if isinstance(value, dict):
            rec = self.used.get(key)
            if not isinstance(rec, _Recorder):
                rec = _Recorder(value)
                self.used[key] = rec
            return rec
        self.used[key] = value
        return value

    def get(self, key, default=None):
        return self[key] if key in self else default

    def kept(self) -> dict:
        return {k: (v.kept() if isinstance(v, _Recorder) else v) for k, v in self.used.items()}


def trim(name: str, results: dict) -> dict:
    """The part of ``results`` that the claims of experiment ``name`` read."""
    rec = _Recorder(results)
    for n, claim in ledger([name]):
        try:
            claim.check(rec)
        except KeyError:
            pass
    return rec.kept()


def store(
    folders, *, command: str, commit: str, machine: str = "", date: str = "", path=None
) -> pathlib.Path:
    """Add the finished full runs in ``folders`` to the stored full-run numbers."""
    from . import files

    path = pathlib.Path(path or FULL_RESULTS)
    data = load_full_results(path)
    for folder in folders:
        runs, _, _ = _runs(pathlib.Path(folder))
        for name, (sub, run, results) in runs.items():
            data[name] = {
                "results": trim(name, results),
                "commit": commit,
                "command": command.replace("{name}", name),
                "machine": machine,
                "date": date or run.get("finished", ""),
            }
    return files.atomic_write_json(path, dict(sorted(data.items())))


def _main(argv=None) -> int:
    import argparse
    import subprocess

    p = argparse.ArgumentParser(
        prog="python -m blojax.runner.claims", description=(__doc__ or "").split("\n\n")[0]
    )
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser(
        "store", help="store the claims' numbers of finished full runs (with commit and command)"
    )
    s.add_argument("folders", nargs="+")
    s.add_argument("--command", required=True, help="the command that made the runs ({name}: the experiment)")
    s.add_argument("--machine", default="")
    s.add_argument("--commit", default=None, help="the commit the runs were made at (default: HEAD)")
    e = sub.add_parser("eval", help="print the ledger of a folder")
    e.add_argument("folder")
    args = p.parse_args(argv)
    if args.cmd == "store" and args.commit:
        print(store(args.folders, command=args.command, commit=args.commit, machine=args.machine))
        return 0
    if args.cmd == "store":
        try:
            commit = subprocess.run(
                ["git", "rev-parse", "--short", "HEAD"],
                capture_output=True,
                text=True,
                cwd=pathlib.Path(__file__).parent,
                check=True,
            ).stdout.strip()
        except (OSError, subprocess.CalledProcessError):
            commit = "?"
        print(store(args.folders, command=args.command, commit=commit, machine=args.machine))
        return 0
    for ent in evaluate(args.folder):
        print(f"{ent['status']:<14} {ent['id']:<34} {ent['shown']}")
    return 0


if __name__ == "__main__":
    from blojax.runner.claims import _main as _package_main  # the experiments' Claim class is that module's

    raise SystemExit(_package_main())
