"""Which numbers of docs/experiments/*.md a reproduction wrote: every number in the pages' text,
looked up among the numbers of the run folders' ``results.json`` and ``config.json``.

    python benchmarks/docs_numbers.py OUT [PAGE.md ...]     # OUT: a `blojax reproduce --full` folder

A number printed with ``d`` decimals (``92.81``, ``0.0034``, ``1.6e-13``) matches a value of the runs
that rounds to it at the same precision, also as a percentage (``100 v``); an integer matches an equal
value. Skipped: numbers with fewer than :data:`MIN_DIGITS` significant digits, numbers inside link targets and image paths, and those on lines that
cite a commit, a date, a time of day or a machine load (they describe a measurement, not a result).
Prints, per page, how many numbers were found and every one that was not (line number, number,
line), so each can be traced to its source (another command, a benchmark, a hand calculation).
"""

from __future__ import annotations

import argparse
import json
import math
import pathlib
import re
import sys

NUMBER = re.compile(r"(?<![\w.\-/])-?\d+(?:\.\d+)?(?:e[-+]?\d+)?(?![\w/])")
LINK = re.compile(r"\]\([^)]*\)|figures/\S+|`[^`]*\.(?:png|json|csv|md|npz)`")
#: Longer lists (curves, histories) are left out: with thousands of values nearly any short number
#: would be found in them by chance.
MAX_LIST = 12
#: Numbers with fewer significant digits are not checked (``0.5``, ``12``, ``1e-3``: settings, or found
#: anywhere by chance).
MIN_DIGITS = 3
SKIP_LINE = re.compile(r"commit|UTC|load average|load \d|\b20\d\d-\d\d-\d\d\b|sha256|[0-9a-f]{7,40}\b")


def _values(x, out: list[float]) -> None:
    if isinstance(x, bool):
        return
    if isinstance(x, (int, float)):
        if math.isfinite(x):
            out.append(float(x))
    elif isinstance(x, dict):
        for v in x.values():
            _values(v, out)
    elif isinstance(x, (list, tuple)) and len(x) <= MAX_LIST:
        for v in x:
            _values(v, out)


def run_values(out: pathlib.Path) -> list[float]:
    """Every finite number in ``OUT/*/results.json`` and ``OUT/*/config.json`` (and 100x each)."""
    vals: list[float] = []
    for path in sorted(out.glob("*/results.json")) + sorted(out.glob("*/config.json")):
        _values(json.loads(path.read_text()), vals)
    return vals + [100 * v for v in vals]


def _significant(token: str) -> int:
    """Significant digits of a printed number (``0.0034`` -> 2, ``92.81`` -> 4, ``1.6e-13`` -> 2)."""
    mant = token.lower().lstrip("-").split("e")[0].replace(".", "").lstrip("0")
    return len(mant)


def _matches(token: str, values: list[float]) -> bool:
    x = float(token)
    if "e" in token.lower():
        mant = token.lower().split("e")[0]
        digits = len(mant.split(".")[1]) if "." in mant else 0
        scale = 10 ** (int(math.floor(math.log10(abs(x)))) - digits) if x else 1e-300
        return any(abs(v - x) <= 0.5 * scale * (1 + 1e-9) for v in values)
    if "." in token:
        d = len(token.split(".")[1])
        return any(abs(v - x) <= 0.5 * 10**-d * (1 + 1e-9) for v in values)
    return any(v == x for v in values)


def check_page(page: pathlib.Path, values: list[float]):
    found, missing = 0, []
    for i, line in enumerate(page.read_text().splitlines(), 1):
        if SKIP_LINE.search(line):
            continue
        text = LINK.sub(" ", line)
        for m in NUMBER.finditer(text):
            tok = m.group(0)
            if _significant(tok) < MIN_DIGITS:
                continue
            if _matches(tok, values):
                found += 1
            else:
                missing.append((i, tok, line.strip()))
    return found, missing


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "out", type=pathlib.Path, help="a reproduction folder (blojax reproduce --full --out OUT)"
    )
    ap.add_argument("pages", nargs="*", type=pathlib.Path, help="default: docs/experiments/*.md")
    ap.add_argument("--quiet", action="store_true", help="totals only")
    ap.add_argument(
        "--null",
        action="store_true",
        help="also count the matches with every value scaled by 1.0137: how many numbers are found by chance",
    )
    args = ap.parse_args(argv)
    if not any(args.out.glob("*/results.json")):
        ap.error(f"{args.out} holds no run folders with results.json")
    pages = args.pages or sorted(pathlib.Path(__file__).resolve().parents[1].glob("docs/experiments/*.md"))
    values = run_values(args.out)
    total_f = total_m = 0
    for page in pages:
        found, missing = check_page(page, values)
        total_f, total_m = total_f + found, total_m + len(missing)
        print(f"{page}: {found} of {found + len(missing)} numbers found in {args.out}")
        if not args.quiet:
            for i, tok, line in missing:
                print(f"  {page.name}:{i}: {tok}    | {line[:110]}")
    print(f"total: {total_f} of {total_f + total_m} numbers found")
    if args.null:
        shifted = [1.0137 * v for v in values]
        chance = sum(check_page(p, shifted)[0] for p in pages)
        print(f"by chance (every value x 1.0137): {chance} of {total_f + total_m}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
