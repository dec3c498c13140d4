"""Unroll's CPU default: rematerialized steps (``remat=True``) against stored residuals (``False``).

    python benchmarks/unroll_remat.py [--repeats N] [--ks 20 100] [--json PATH]

For each problem size and K, one ``blojax.hypergradient(..., Unroll(K, remat=r))`` call (compiled,
float32, from ``w_T`` after 100 SGD steps) is timed for both settings, interleaved in one process,
and the median ratio ``t(remat=True) / t(remat=False)`` printed (> 1: storing is faster). Problems:
ridge regression with d in {100, 1000} (per-feature log penalties) and tanh MLPs of increasing
width (8-w-w-1 regression, w in {8, 32, 128}). The default ``remat=None`` follows the table in
docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_util import set_threads  # noqa: E402

if __name__ == "__main__":
    _pre = argparse.ArgumentParser(add_help=False)
    _pre.add_argument("--threads", type=int, default=1)
    set_threads(_pre.parse_known_args()[0].threads)

import jax  # noqa: E402
import optax  # noqa: E402
from tqdm.auto import tqdm  # noqa: E402

import blojax as blo  # noqa: E402
from bench_util import fmt_time, format_machine, interleaved_medians, machine_info, table  # noqa: E402
from hypergrad_cost import mlp_problem, ridge_problem  # noqa: E402


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--ks", type=int, nargs="*", default=[20, 100])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--quick", action="store_true", help="smallest sizes, 2 repeats (smoke test)")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)
    print(format_machine(machine_info()), flush=True)
    problems = [("ridge d=100", lambda: ridge_problem(100)), ("ridge d=1000", lambda: ridge_problem(1000))]
    problems += [(f"mlp 8-{w}-{w}-1", lambda w=w: mlp_problem(width=w)) for w in (8, 32, 128)]
    ks, repeats = args.ks, args.repeats
    if args.quick:
        problems, ks, repeats = problems[:1] + problems[2:3], [5], 2
    rows = []
    for name, make in tqdm(problems, desc="problems"):
        problem, u0, w0, ib, ob, alpha = make()
        inner = blo.InnerLoop(optax.sgd(alpha), steps=100)
        w_T = jax.jit(lambda u, w: inner.run(problem, u, w, ib)[0])(u0, w0)
        n = sum(x.size for x in jax.tree_util.tree_leaves(w_T))
        fns = {}
        for K in ks:
            for remat in (True, False):
                m = blo.Unroll(K, remat=remat)
                f = jax.jit(
                    lambda u, w, m=m: blo.hypergradient(
                        problem, u, w, m, inner, inner_batch=ib, outer_batch=ob, diagnostics=False
                    )[0]
                )
                jax.block_until_ready(f(u0, w_T))
                fns[(K, remat)] = lambda f=f: f(u0, w_T)
        t = interleaved_medians({f"{k}": v for k, v in fns.items()}, repeats, min_time=0.02)
        for K in ks:
            tr, ts = t[f"{(K, True)}"]["median"], t[f"{(K, False)}"]["median"]
            rows.append(dict(problem=name, n=n, K=K, remat=tr, store=ts, ratio=tr / ts))
    shown = [
        dict(r, remat=fmt_time(r["remat"]), store=fmt_time(r["store"]), ratio=f"{r['ratio']:.2f}")
        for r in rows
    ]
    print(
        table(
            shown,
            [
                ("problem", "problem"),
                ("n", "size of w"),
                ("K", "K"),
                ("remat", "remat=True"),
                ("store", "remat=False"),
                ("ratio", "True / False"),
            ],
        )
    )
    faster = sum(r["ratio"] < 1 for r in rows)
    print(f"remat=True faster in {faster} of {len(rows)} rows")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
