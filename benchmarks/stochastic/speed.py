"""blojax's stochastic solvers beside benchmark_bilevel's, side by side in one process.

    make bench-stochastic          # = .bench-stoch-venv/bin/python benchmarks/stochastic/speed.py

On benchmark_bilevel's simulated quadratic (its defaults: n = m = 1024 samples, dimensions 100,
float32, batch 64, each solver's default step sizes), for SOBA, SABA, AmIGO, StocBiO and F2SA:

* time per 1000 iterations (compiled chunks of ``--eval-freq`` iterations, as benchmark_bilevel's
  runner does; compilation excluded; median and minimum over ``--repeats`` samples of ``--iters``
  iterations, the two sides alternating sample by sample so that load changes hit both, and which
  side goes first flipping every sample);
* time and iterations to reach the benchmark's metric ``||grad h(u)||^2 <= --target`` (metric
  evaluated between chunks, outside the timer, with benchmark_bilevel's own metric function);
* oracle calls per iteration; the ratio blojax / benchmark_bilevel of both times;
* figures: suboptimality vs time and vs oracle calls.

Both sides use the *same* objective code (benchmark_bilevel's ``batched_quadratic``), so the ratio
measures the solvers, not the user's loss. Each side draws its minibatches from its own sampler
(blojax: ``Shuffle``), so their trajectories differ statistically, not in law; the iteration counts
to the target are reported to separate per-iteration speed from trajectory luck.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import pathlib
import platform
import statistics
import sys
import tempfile
import time

import numpy as np

REPO = pathlib.Path(__file__).resolve().parents[2]

DEFAULTS = {  # benchmark_bilevel's solver defaults -> (its parameters, blojax's)
    "SOBA": ("soba", dict(step_size=0.1, outer_ratio=1.0)),
    "SABA": ("saba", dict(step_size=0.1, outer_ratio=1.0, mode_init_memory="zero")),
    "AmIGO": ("amigo", dict(step_size=0.1, outer_ratio=1.0, n_inner_steps=10)),
    "StocBiO": ("stocbio", dict(step_size=0.1, outer_ratio=1.0, n_inner_steps=10, n_shia_steps=10)),
    "F2SA": ("f2sa", dict(step_size=0.01, outer_ratio=1.0, lmbda0=1.0, delta_lmbda=0.1, n_inner_steps=10)),
}


def bb_params(name, outer_ratio=1.0):
    """benchmark_bilevel's parameters of ``name`` with its ``outer_ratio`` (outer step = step / ratio)."""
    fname, params = DEFAULTS[name]
    return fname, dict(params, outer_ratio=outer_ratio)


def blojax_solver(name, problem, sampler_in, sampler_out, outer_ratio=1.0):
    """blojax's solver ``name`` with benchmark_bilevel's defaults (outer steps divided by ``outer_ratio``)."""
    import blojax as blo
    from blojax.stochastic import inverse_power

    r = outer_ratio

    if name == "SOBA":
        return blo.SOBA(
            problem,
            sampler_in,
            sampler_out,
            inner_lr=inverse_power(0.1, 0.5),
            outer_lr=inverse_power(0.1 / r, 0.5),
        )
    if name == "SABA":
        return blo.SABA(problem, sampler_in, sampler_out, inner_lr=0.1, outer_lr=0.1 / r)
    if name == "AmIGO":
        return blo.AmIGO(
            problem, sampler_in, sampler_out, inner_lr=0.1, v_lr=0.1, outer_lr=0.1 / r, inner_steps=10
        )
    if name == "StocBiO":
        return blo.StocBiO(
            problem, sampler_in, sampler_out, inner_lr=0.1, outer_lr=0.1 / r, inner_steps=10, neumann_steps=10
        )
    return blo.F2SA(
        problem,
        sampler_in,
        sampler_out,
        inner_lr=inverse_power(0.01, 5 / 7),
        z_lr=inverse_power(0.01, 4 / 7),
        outer_lr=inverse_power(0.01 / r, 4 / 7),
        lam_lr=inverse_power(0.1, 1 / 7),
        lam0=1.0,
        inner_steps=10,
    )


def load_module(path, name):
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


class Side:
    """One implementation of one solver: ``reset()``, ``chunk()`` (eval_freq iterations), ``uw()``."""

    def __init__(self, reset, chunk, uw):
        self.reset, self.chunk, self.uw = reset, chunk, uw


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--benchmark-bilevel", default=str(REPO / ".benchmark_bilevel"))
    ap.add_argument("--solvers", default="SOBA,SABA,AmIGO,StocBiO,F2SA")
    ap.add_argument(
        "--problem",
        choices=("quadratic", "logreg"),
        default="quadratic",
        help="quadratic: benchmark_bilevel's simulated quadratic; logreg: logistic regression with one "
        "exp-penalty per feature on scikit-learn's bundled digits (problems.py)",
    )
    ap.add_argument("--n", type=int, default=1024, help="samples per data set (quadratic)")
    ap.add_argument("--dim", type=int, default=100, help="inner and outer dimension (quadratic)")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument(
        "--outer-ratio",
        type=float,
        default=1.0,
        help="benchmark_bilevel's outer_ratio for every solver, on both sides (outer step = step / ratio)",
    )
    ap.add_argument("--eval-freq", type=int, default=128)
    ap.add_argument("--iters", type=int, default=128, help="iterations timed per sample (reported per 1000)")
    ap.add_argument(
        "--repeats", type=int, default=15, help="timing samples per side, the two sides alternating"
    )
    ap.add_argument("--target-repeats", type=int, default=3, help="time-to-target runs per side (median)")
    ap.add_argument("--target", type=float, default=1e-3)
    ap.add_argument(
        "--max-iters",
        type=int,
        default=4096,
        help="iteration budget for the time-to-target runs (0: skip them)",
    )
    ap.add_argument("--out", default=str(REPO / "benchmarks" / "stochastic" / "results"))
    args = ap.parse_args(argv)

    import jax
    from tqdm.auto import tqdm

    bb = pathlib.Path(args.benchmark_bilevel).resolve()
    out = pathlib.Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    os.chdir(tempfile.mkdtemp(prefix="bb-cache-"))
    sys.path.insert(0, str(bb))

    import blojax
    from blojax.stochastic import Shuffle
    from problems import setup_logreg, setup_quadratic

    b, ef = args.batch_size, args.eval_freq
    setup = (setup_logreg if args.problem == "logreg" else setup_quadratic)(args, bb, load_module)
    f_inner, f_outer, problem = setup["f_inner"], setup["f_outer"], setup["problem"]
    n_in, n_out, u0, w0, value = setup["n_in"], setup["n_out"], setup["u0"], setup["w0"], setup["value"]
    load_start = os.getloadavg()

    results = {}
    names = [s.strip() for s in args.solvers.split(",") if s.strip()]
    for name in names:
        fname, params = bb_params(name, args.outer_ratio)
        mod = load_module(bb / "solvers" / f"{fname}.py", f"bb_solver_{fname}")
        ref = mod.Solver.get_instance(**params, batch_size=b, eval_freq=ef, random_state=1)
        ref.set_objective(f_inner, f_outer, n_in, n_out, w0, u0)  # compiles (its own warm-up)
        saba = fname == "saba"
        rstate = {}

        def r_reset():
            init = ref.init()
            rstate["mem"], rstate["carry"] = init if saba else (None, init)

        def r_chunk():
            if saba:
                rstate["mem"], rstate["carry"] = ref.one_epoch(rstate["carry"], rstate["mem"], ef)
            else:
                rstate["carry"] = ref.one_epoch(rstate["carry"], ef)
            jax.block_until_ready(rstate["carry"]["outer_var"])

        algo = blojax_solver(name, problem, Shuffle(n_in, b), Shuffle(n_out, b), args.outer_ratio)
        bstate = {}

        def b_reset():
            bstate["s"] = algo.init(u0, w0, jax.random.PRNGKey(1))

        def b_chunk():
            bstate["s"], _ = algo.run(bstate["s"], ef, history=False)  # as its runner: no per-step record
            jax.block_until_ready(bstate["s"].u)

        sides = {
            "benchmark_bilevel": Side(
                r_reset, r_chunk, lambda: (rstate["carry"]["outer_var"], rstate["carry"]["inner_var"])
            ),
            "blojax": Side(b_reset, b_chunk, lambda: (bstate["s"].u, bstate["s"].w)),
        }
        for s in sides.values():  # compile
            s.reset()
            s.chunk()

        per1000 = {k: [] for k in sides}
        n_chunks = max(1, -(-args.iters // ef))
        order = list(sides)
        for rep in tqdm(range(args.repeats), desc=f"{name} per-iteration", leave=False):
            for k in order if rep % 2 == 0 else order[::-1]:  # who goes first flips every sample
                s = sides[k]
                s.reset()
                t = time.perf_counter()
                for _ in range(n_chunks):
                    s.chunk()
                per1000[k].append((time.perf_counter() - t) * 1000 / (n_chunks * ef))

        to_target = {k: [] for k in sides}
        curves = {}
        for rep in tqdm(
            range(args.target_repeats if args.max_iters > 0 else 0), desc=f"{name} to target", leave=False
        ):
            for k in order if rep % 2 == 0 else order[::-1]:
                s = sides[k]
                s.reset()
                elapsed, it = 0.0, 0
                curve = [(0.0, 0, value(*s.uw()))]
                while it < args.max_iters and curve[-1][2] > args.target and np.isfinite(curve[-1][2]):
                    t = time.perf_counter()
                    s.chunk()
                    elapsed += time.perf_counter() - t
                    it += ef
                    curve.append((elapsed, it, value(*s.uw())))
                reached = curve[-1][2] <= args.target
                to_target[k].append((elapsed if reached else float("inf"), it if reached else None))
                if rep == 0:
                    curves[k] = curve

        calls = algo.oracle_calls
        row = dict(
            oracle_calls_per_iter=calls,
            oracle_calls_per_iter_total=sum(calls.values()),
            samples_per_iter=algo.draws_per_step[0] * b + algo.draws_per_step[1] * b,
            per1000_s={k: statistics.median(v) for k, v in per1000.items()},
            per1000_min_s={k: min(v) for k, v in per1000.items()},
            per1000_all={k: v for k, v in per1000.items()},
            to_target_s={
                k: statistics.median([t for t, _ in v]) if v else float("nan") for k, v in to_target.items()
            },
            to_target_iters={k: v[0][1] if v else None for k, v in to_target.items()},
            curves=curves,
        )
        row["ratio_per1000"] = row["per1000_s"]["blojax"] / row["per1000_s"]["benchmark_bilevel"]
        row["ratio_per1000_min"] = row["per1000_min_s"]["blojax"] / row["per1000_min_s"]["benchmark_bilevel"]
        tt = row["to_target_s"]
        row["ratio_to_target"] = (
            (tt["blojax"] / tt["benchmark_bilevel"])
            if np.isfinite(tt["blojax"]) and np.isfinite(tt["benchmark_bilevel"])
            else None
        )
        results[name] = row
        (out / f"speed{setup['tag']}.partial.json").write_text(json.dumps(results, indent=1, default=str))
        print(
            f"{name:8s} per 1000 it: blojax {row['per1000_s']['blojax']:.3f}s  bb {row['per1000_s']['benchmark_bilevel']:.3f}s  "
            f"ratio {row['ratio_per1000']:.2f} | to {args.target:g}: blojax {tt['blojax']:.2f}s "
            f"({row['to_target_iters']['blojax']} it)  bb {tt['benchmark_bilevel']:.2f}s "
            f"({row['to_target_iters']['benchmark_bilevel']} it)",
            flush=True,
        )

    meta = dict(
        command=" ".join([sys.executable, *sys.argv]),
        args=vars(args),
        machine=platform.platform(),
        processor=platform.processor(),
        cpus=os.cpu_count(),
        load_avg_start=load_start,
        load_avg_end=os.getloadavg(),
        problem=setup["title"],
        jax=jax.__version__,
        blojax=blojax.__version__,
        date=time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    )
    tag = setup["tag"]
    (out / f"speed{tag}.json").write_text(json.dumps(dict(meta=meta, results=results), indent=1, default=str))
    table = print_table(results, args.target)
    (out / f"speed{tag}.md").write_text(table + "\n")
    if args.max_iters > 0:
        plot(results, out, args.target, setup["title"], tag, setup["ylabel"])
    print(f"load average at the end: {os.getloadavg()}; wrote {out}/speed{tag}.json, .md and the figure")


def fmt(x, p=2):
    return "not reached" if x is None or not np.isfinite(x) else f"{x:.{p}f}"


def print_table(results, target):
    lines = [
        f"| solver | oracle calls / it | blojax s / 1000 it | benchmark_bilevel s / 1000 it | ratio (median) | ratio (min) | blojax s to {target:g} (it) | benchmark_bilevel s to {target:g} (it) | ratio |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, r in results.items():
        c = r["oracle_calls_per_iter"]
        calls = ", ".join(f"{k} {v}" for k, v in c.items() if v)
        tt, ti = r["to_target_s"], r["to_target_iters"]
        lines.append(
            f"| {name} | {calls} | {fmt(r['per1000_s']['blojax'], 3)} | {fmt(r['per1000_s']['benchmark_bilevel'], 3)} | "
            f"{fmt(r['ratio_per1000'])} | {fmt(r['ratio_per1000_min'])} | {fmt(tt['blojax'])} ({ti['blojax']}) | {fmt(tt['benchmark_bilevel'])} "
            f"({ti['benchmark_bilevel']}) | {fmt(r['ratio_to_target'])} |"
        )
    table = "\n".join(lines)
    print(table)
    return table


def plot(results, out, target, title, tag, ylabel):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, (name, r) in enumerate(results.items()):
        calls = r["oracle_calls_per_iter_total"]
        for side, ls in (("blojax", "-"), ("benchmark_bilevel", "--")):
            c = np.asarray(r["curves"][side], float)
            label = f"{name} ({side})"
            axes[0].semilogy(c[:, 0], c[:, 2], ls, color=colors[i % len(colors)], label=label)
            axes[1].semilogy(c[:, 1] * calls, c[:, 2], ls, color=colors[i % len(colors)], label=label)
    for ax, xl in zip(axes, ("time (s, compiled chunks, metric excluded)", "minibatch oracle calls")):
        ax.axhline(target, color="k", lw=0.5)
        ax.set_xlabel(xl)
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
    axes[1].legend(fontsize=6, ncol=2)
    fig.suptitle(f"{title}\nsolid: blojax, dashed: benchmark_bilevel", fontsize=9)
    fig.tight_layout()
    fig.savefig(out / f"speed_suboptimality{tag}.png", dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    main()
