"""Alternating A/B timing of one solver, blojax vs benchmark_bilevel, on the simulated quadratic.

    .bench-stoch-venv/bin/python benchmarks/stochastic/ab.py F2SA --samples 10 --iters 8

Each sample runs ``--iters`` compiled iterations on one side, then on the other (the order flips every
sample), so that a busy machine's load changes hit both sides alike; prints the median and minimum of
each side and their ratios. Same problem, objective code and defaults as speed.py.
"""

from __future__ import annotations

import argparse
import os
import pathlib
import statistics
import sys
import tempfile
import time

HERE = pathlib.Path(__file__).resolve().parent


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("solver", choices=["SOBA", "SABA", "AmIGO", "StocBiO", "F2SA"])
    ap.add_argument("--benchmark-bilevel", default=str(HERE.parents[1] / ".benchmark_bilevel"))
    ap.add_argument("--n", type=int, default=1024)
    ap.add_argument("--dim", type=int, default=100)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--iters", type=int, default=8)
    ap.add_argument("--samples", type=int, default=10)
    ap.add_argument("--problem", choices=("quadratic", "logreg"), default="quadratic")
    ap.add_argument("--outer-ratio", type=float, default=1.0, help="as speed.py's (its logreg table: 0.1)")
    ap.add_argument(
        "--history", action="store_true", help="blojax records its per-step metrics (default: not, as bb)"
    )
    ap.add_argument(
        "--no-freeze", action="store_true", help="blojax run(freeze=False): detect NaN without the select"
    )
    ap.add_argument(
        "--saba-direct-rows",
        action="store_true",
        help="SABA: write each SAGA table row in the step that reads it (the alternative to deferring it "
        "to the next step, see blojax.stochastic.solvers.SABA._fast_begin)",
    )
    ap.add_argument(
        "--guard-every",
        type=int,
        default=None,
        help="blojax: steps per unguarded chunk of run()'s in-graph non-finite guard (default: the solver's, "
        "1024); 0 or 1: the per-step guard. An eager run() with any value > 1 runs its own program "
        "(the whole call unguarded, replayed with the guard only if it went non-finite)",
    )
    ap.add_argument(
        "--bare",
        action="store_true",
        help="blojax: call the compiled program directly instead of run() (no argument checks, no host read "
        "of the finiteness flag): what run()'s Python side costs",
    )
    args = ap.parse_args(argv)

    import jax
    import jax.numpy as jnp

    sys.path.insert(0, str(HERE))
    import speed

    bb = pathlib.Path(args.benchmark_bilevel).resolve()
    os.chdir(tempfile.mkdtemp(prefix="bb-cache-"))
    sys.path.insert(0, str(bb))
    from benchmark_utils.gen_matrices import gen_matrices

    from blojax.stochastic import MinibatchProblem, Shuffle

    sim = speed.load_module(bb / "datasets" / "simulated.py", "bb_simulated")
    n, d, b, it = args.n, args.dim, args.batch_size, args.iters
    keys = jax.random.split(jax.random.PRNGKey(2442), 2)
    ri = gen_matrices(n, d, d, 1.0, 1.0, 0.1, 0.1, keys[0])
    ro = gen_matrices(n, d, d, 1.0, 1.0, 0.1, 0.1, keys[1])

    def objective(u, w, batch):
        return sim.batched_quadratic(w, u, *batch)

    problem = MinibatchProblem(objective, objective, inner_data=tuple(ri), outer_data=tuple(ro))
    w0, u0 = jnp.zeros(d), -2 * jnp.ones(d)
    f_in, f_out, n_in, n_out = sim.get_function(*ri), sim.get_function(*ro), n, n
    if args.problem == "logreg":
        from problems import logreg_objectives

        lr = logreg_objectives()
        f_in, f_out, problem = lr["f_inner"], lr["f_outer"], lr["problem"]
        n_in, n_out, u0, w0 = lr["n_in"], lr["n_out"], lr["u0"], lr["w0"]
    fname, params = speed.bb_params(args.solver, args.outer_ratio)
    mod = speed.load_module(bb / "solvers" / f"{fname}.py", f"bb_solver_{fname}")
    ref = mod.Solver.get_instance(**params, batch_size=b, eval_freq=it, random_state=1)
    ref.set_objective(f_in, f_out, n_in, n_out, w0, u0)
    init = ref.init()
    st = {"ref": init if fname == "saba" else (None, init)}
    algo = speed.blojax_solver(args.solver, problem, Shuffle(n_in, b), Shuffle(n_out, b), args.outer_ratio)
    if args.saba_direct_rows:
        object.__setattr__(algo, "_DEFER_ROW_WRITES", False)
    if args.guard_every is not None:
        object.__setattr__(algo, "_GUARD_EVERY", args.guard_every)
    st["blojax"] = algo.init(u0, w0, jax.random.PRNGKey(1))

    def run_ref():
        mem, carry = st["ref"]
        st["ref"] = ref.one_epoch(carry, mem, it) if fname == "saba" else (None, ref.one_epoch(carry, it))
        jax.block_until_ready(st["ref"][1]["outer_var"])

    def run_blojax():
        if args.bare:  # run()'s compiled program for an eager call, without run()'s Python side
            if args.no_freeze or args.guard_every is not None:
                st["blojax"], _ = algo._jit_scan(st["blojax"], it, args.history, not args.no_freeze, True)
            else:
                st["blojax"], _, _ = algo._jit_eager(st["blojax"], it, args.history)
        else:
            st["blojax"], _ = algo.run(st["blojax"], it, history=args.history, freeze=not args.no_freeze)
        jax.block_until_ready(st["blojax"].u)

    sides = {"benchmark_bilevel": run_ref, "blojax": run_blojax}
    for fn in sides.values():
        fn()
    times = {k: [] for k in sides}
    order = list(sides)
    for i in range(args.samples):
        for k in order if i % 2 == 0 else order[::-1]:
            t = time.perf_counter()
            sides[k]()
            times[k].append(time.perf_counter() - t)
    for k, v in times.items():
        print(f"{k:18s} median {statistics.median(v):.4f} s  min {min(v):.4f} s  ({it} iterations)")
    med = statistics.median(times["blojax"]) / statistics.median(times["benchmark_bilevel"])
    mn = min(times["blojax"]) / min(times["benchmark_bilevel"])
    print(
        f"{args.solver} ({args.problem}, history={args.history}, freeze={not args.no_freeze}"
        f"{', direct rows' if args.saba_direct_rows else ''}"
        f"{f', guard every {args.guard_every}' if args.guard_every is not None else ''}"
        f"{', bare compiled scan' if args.bare else ''}): blojax / benchmark_bilevel  median {med:.2f}  min {mn:.2f}  (load average {os.getloadavg()})"
    )


if __name__ == "__main__":
    main()
