"""Programs compiled and programs loaded from JAX's persistent compilation cache, per experiment of a
reproduction folder (``run.json``'s ``compilations``, written by :mod:`blojax.runner.rundir`).

After a second ``make reproduce`` every experiment should read ``compiled 0``: a program compiled again
holds a host callback (e.g. a library call with ``throw=True`` inside ``jax.jit``), which JAX's cache
never stores (docs/cli.md, "Compilation cache").

    .venv/bin/python benchmarks/reproduce_compiles.py reproduce
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys


def rows(folder: pathlib.Path) -> list[tuple[str, int | None, int | None, float | None]]:
    out = []
    for marker in sorted(folder.glob("*/run.json")):
        run = json.loads(marker.read_text())
        c = run.get("compilations") or {}
        out.append((marker.parent.name, c.get("compiled"), c.get("from_cache"), run.get("seconds")))
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("folder", type=pathlib.Path, help="a reproduction folder (holds NAME/run.json)")
    args = p.parse_args(argv)
    table = rows(args.folder)
    if not table:
        print(f"no */run.json under {args.folder}", file=sys.stderr)
        return 2
    print("| experiment | compiled | from cache | run seconds |")
    print("|---|---|---|---|")
    for name, comp, hit, sec in table:
        fmt = lambda x: "-" if x is None else str(x)  # noqa: E731
        print(f"| {name} | {fmt(comp)} | {fmt(hit)} | {'-' if sec is None else f'{sec:.1f}'} |")
    total = sum(c or 0 for _, c, _, _ in table)
    print(f"\n{total} program(s) compiled in all")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
