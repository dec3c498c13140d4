"""A claim of the paper, declared next to the experiment that measures it, and the predicates claims use.

An experiment module lists its checkable findings as ``CLAIMS = (Claim(...), ...)``; the runner
(:mod:`blojax.runner.claims`) evaluates them on a run folder and writes the ledger. This module is part
of the experiment contract, so experiments never import the runner.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Callable, Iterable

__all__ = ["Claim", "gap", "monotone", "all_at_most", "mean_of"]


@dataclasses.dataclass(frozen=True)
class Claim:
    """One checkable finding of the paper.

    Attributes:
      id: short stable name, ``"<paper item>.<what>"`` (e.g. ``"E5.u-norm-falls-with-K"``).
      statement: the finding, in one sentence, with the margin our check uses.
      paper: what the paper reports (a number, or the qualitative statement when it gives none).
      ours: ``results -> value``; reads this experiment's ``Result.to_dict()`` and returns a small
        JSON-able value (usually a dict of the numbers compared). ``KeyError`` / ``IndexError`` /
        ``TypeError``: the run does not measure it (``not run``).
      holds: ``value -> bool``, the predicate with its margin.
      margin: the tolerance or margin of ``holds`` in words (shown in the ledger).
      quick: whether the quick settings support the claim; ``False`` marks it ``full run only`` in a
        quick run, which then shows the stored full-run numbers.
      not_reproduced: for a claim our full run does not support: why, and where it is documented.
        Shown as the explanation of its ``fails``.
    """

    id: str
    statement: str
    paper: str
    ours: Callable[[dict], Any]
    holds: Callable[[Any], bool]
    margin: str
    quick: bool = True
    not_reproduced: str = ""

    def check(self, results: dict) -> tuple[Any, bool]:
        """``(ours, holds)`` on ``results``; raises ``KeyError`` when the run does not measure it."""
        try:
            value = self.ours(results)
        except (KeyError, IndexError, TypeError) as err:
            raise KeyError(f"{self.id}: the results do not hold what this claim reads ({err!r})") from err
        return value, bool(self.holds(value))


# ------------------------------------------------------------------------------------ predicates
def mean_of(stats) -> float:
    """The mean of a ``{"mean", "std", ...}`` entry (or a plain number)."""
    return float(stats["mean"]) if isinstance(stats, dict) else float(stats)


def gap(hi: float, lo: float, margin: float) -> bool:
    """``hi - lo >= margin`` (both finite)."""
    return math.isfinite(hi) and math.isfinite(lo) and hi - lo >= margin


def monotone(seq: Iterable[float], *, decreasing: bool, rtol: float = 0.0) -> bool:
    """Every step of ``seq`` goes the stated way by more than ``rtol`` relative to the larger value."""
    xs = [float(x) for x in seq]
    if len(xs) < 2 or not all(math.isfinite(x) for x in xs):
        return False
    pairs = zip(xs[:-1], xs[1:])
    if decreasing:
        return all(a - b > rtol * max(abs(a), abs(b)) for a, b in pairs)
    return all(b - a > rtol * max(abs(a), abs(b)) for a, b in pairs)


def all_at_most(values: Iterable[float], bound: float) -> bool:
    xs = [float(x) for x in values]
    return bool(xs) and all(math.isfinite(x) and x <= bound for x in xs)
