"""What one compiled chunk executes per iteration, blojax beside benchmark_bilevel (compiles only, no timing).

    .bench-stoch-venv/bin/python benchmarks/stochastic/hlo_ops.py --problem logreg [--solvers SOBA,SABA]

For each solver, both sides' chunk of ``--eval-freq`` iterations is compiled exactly as ``speed.py``
runs it (``one_epoch`` of benchmark_bilevel; blojax's ``run(history=False)`` program) and the
optimized XLA program (``.compile().as_text()``) is read: for every ``while`` loop whose body does
numerical work (a ``dot``, itself or in a nested loop): its depth (how many such loops enclose it),
the top-level operations of its body, i.e. what the CPU runtime dispatches once per trip (fusions,
copies, dots, conditionals, others), how many of them are finiteness checks, and how many copies
move a whole array of rank >= 2 (a SAGA table). On these small problems (a 64-dimensional step is a
few microseconds) the number of dispatched operations per step is what the time follows. blojax's
program is the one an eager ``run`` executes: the unguarded loop, the step sizes and (``Shuffle``)
the blocks of the whole chunk computed before it; the guarded replay, with the finiteness checks and
the state select, is a separate program that ``run`` calls only when this one reports a non-finite
step. Loops without a ``dot`` (the samplers' epochs, the threefry rounds) are not listed.
"""

from __future__ import annotations

import argparse
import collections
import os
import pathlib
import re
import sys
import tempfile

HERE = pathlib.Path(__file__).resolve().parent
TRIVIAL = {"parameter", "get-tuple-element", "tuple", "constant", "bitcast"}


def computations(text):
    comps, cur = {}, None
    for line in text.splitlines():
        m = re.match(r"^(ENTRY )?%?(\S+) .*\{$", line)
        if m and not line.startswith(" "):
            cur = m.group(2)
            comps[cur] = []
        elif line.startswith("}"):
            cur = None
        elif cur:
            comps[cur].append(line)
    return comps


def op_of(line):
    m = re.match(r"\s*(?:ROOT )?%?\S+ = (.*?) ([\w\-]+)\(", line)
    return (m.group(2), m.group(1)) if m else (None, None)


def loops(text):
    """``[(Counter of top-level ops, whole-array copies, is-finite checks, depth)]`` of the loops doing
    numerical work, in program order (``depth``: how many of them enclose it)."""
    comps = computations(text)
    bodies = {}
    for lines in comps.values():
        for line in lines:
            if " while(" in line:
                bodies[re.search(r"body=%?([\w.\-]+)", line).group(1)] = None

    def calls(c):
        out = set()
        for line in comps.get(c, []):
            for key in ("body", "condition", "calls", "branch_computations", "to_apply"):
                for m in re.finditer(rf"{key}=\{{?([^}}]*?)\}}?(?:,|$)", line):
                    out |= {x.strip().lstrip("%") for x in m.group(1).split(",")}
        return out

    def has_dot(c, seen=None):
        seen = set() if seen is None else seen
        if c in seen:
            return False
        seen.add(c)
        if any(op_of(line)[0] == "dot" for line in comps.get(c, [])):
            return True
        return any(has_dot(x, seen) for x in calls(c) if x in bodies)

    relevant = [b for b in bodies if b in comps and has_dot(b)]

    def reach(c, seen):
        for x in calls(c):
            if x not in seen:
                seen.add(x)
                reach(x, seen)
        return seen

    inside = {b: reach(b, set()) for b in relevant}
    out = []
    for b in relevant:
        ops, big, finite = collections.Counter(), 0, 0
        for line in comps[b]:
            op, shape = op_of(line)
            if op and op not in TRIVIAL:
                ops[op] += 1
                big += op == "copy" and bool(re.match(r"\w+\[\d+,\d+", shape or ""))
                finite += "is-finite" in line.split("=")[0]
        depth = sum(b in inside[a] for a in relevant if a != b)
        out.append((ops, big, finite, depth))
    return out


def fmt(ops):
    main = ("fusion", "copy", "dot", "conditional", "while")
    parts = [f"{k} {ops[k]}" for k in main if ops[k]]
    rest = sum(v for k, v in ops.items() if k not in main)
    return f"{sum(ops.values())} ({', '.join(parts)}{', other ' + str(rest) if rest else ''})"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--benchmark-bilevel", default=str(HERE.parents[1] / ".benchmark_bilevel"))
    ap.add_argument("--solvers", default="SOBA,SABA,AmIGO,StocBiO,F2SA")
    ap.add_argument("--problem", choices=("quadratic", "logreg"), default="logreg")
    ap.add_argument("--n", type=int, default=1024)
    ap.add_argument("--dim", type=int, default=100)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--outer-ratio", type=float, default=0.1)
    ap.add_argument("--eval-freq", type=int, default=512)
    ap.add_argument("--out", default=str(HERE / "results"))
    args = ap.parse_args(argv)

    import jax

    sys.path.insert(0, str(HERE))
    import speed
    from problems import setup_logreg, setup_quadratic

    from blojax.stochastic import Shuffle

    bb = pathlib.Path(args.benchmark_bilevel).resolve()
    args.out = str(pathlib.Path(args.out).resolve())
    os.chdir(tempfile.mkdtemp(prefix="bb-cache-"))
    sys.path.insert(0, str(bb))
    setup = (setup_logreg if args.problem == "logreg" else setup_quadratic)(args, bb, speed.load_module)
    b, ef = args.batch_size, args.eval_freq
    print(f"{setup['title']}; one chunk of {ef} iterations, batch {b}")
    print("| solver | side | loop depth | ops per trip (top level) | is-finite checks | whole-array copies |")
    print("|---|---|---|---|---|---|")
    for name in [s.strip() for s in args.solvers.split(",") if s.strip()]:
        fname, params = speed.bb_params(name, args.outer_ratio)
        mod = speed.load_module(bb / "solvers" / f"{fname}.py", f"bb_solver_{fname}")
        ref = mod.Solver.get_instance(**params, batch_size=b, eval_freq=ef, random_state=1)
        ref.set_objective(
            setup["f_inner"], setup["f_outer"], setup["n_in"], setup["n_out"], setup["w0"], setup["u0"]
        )
        init = ref.init()
        lowered = (
            ref.one_epoch.lower(init[1], init[0], ef) if fname == "saba" else ref.one_epoch.lower(init, ef)
        )
        algo = speed.blojax_solver(
            name, setup["problem"], Shuffle(setup["n_in"], b), Shuffle(setup["n_out"], b), args.outer_ratio
        )
        s0 = algo.init(setup["u0"], setup["w0"], jax.random.PRNGKey(1))
        texts = {
            "benchmark_bilevel": lowered.compile().as_text(),
            # the program an eager run(state, ef, history=False) executes (the guarded replay is another
            # program, run only when this one reports a non-finite step)
            "blojax": algo._jit_eager.lower(s0, ef, False).compile().as_text(),
        }
        for side, text in texts.items():
            for ops, big, finite, depth in loops(text):
                print(f"| {name} | {side} | {depth} | {fmt(ops)} | {finite} | {big} |")


if __name__ == "__main__":
    main()
