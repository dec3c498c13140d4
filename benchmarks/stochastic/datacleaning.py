"""Data cleaning on MNIST-10k: test error vs time for SABA, SOBA, AmIGO and the deterministic WarmStart.

    .venv/bin/python benchmarks/stochastic/datacleaning.py --out benchmarks/stochastic/results

benchmark_bilevel's data-cleaning task (its ``datasets/mnist.py``), on the offline MNIST-10k split
(``blojax.data.load_dataset("mnist")``, ``make data``): a fraction ``--ratio`` of the training labels
is replaced by a uniformly random class (seeded), and one weight ``u_i`` per training sample is learned
so that a linear multinomial logistic regression ``W`` (784 x 10) trained on the weighted samples does
well on the clean validation set::

    f(u, W) = 1/n sum_i sigmoid(u_i) CE(W; x_i, y_i) + reg ||W||^2        (corrupted training set)
    F(u, W) = 1/m sum_j CE(W; x_j, y_j)                                   (clean validation set)

with ``CE(W; x, y) = logsumexp(x^T W) - (x^T W)_y``, pixels standardized per feature with the training
statistics (constant pixels left at 0), ``u0 = 0``, ``W0 = 0``. The metric is the test error of ``W``
(the split's 2000 test images). Stochastic solvers use the step sizes of benchmark_bilevel's
``config/datacleaning0_5_best_params.yml`` (batch 64, SABA: 0.1 and outer 100; SOBA: 1/sqrt(k+1) and
outer 1e4/sqrt(k+1); AmIGO: 1e-3, outer 100, 10 inner steps); WarmStart runs full-batch: ``--ws-inner``
SGD steps per outer step from the previous ``W`` (step ``--ws-inner-lr``), ``CG(--ws-cg)`` for the
hypergradient, outer SGD with step ``--ws-outer-lr``.

Each solver runs for ``--time-budget`` seconds of compiled solver time (metric evaluations excluded,
compilation excluded), in chunks of ``--chunk`` steps (``--ws-chunk`` for WarmStart), test error
evaluated between chunks. Writes ``datacleaning.json`` (curves, settings, load average) and the figure
``datacleaning_test_error.png`` to ``--out``. ``--synthetic N`` replaces MNIST by a small Gaussian
mixture of N training points (smoke tests only).
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import platform
import sys
import time

import numpy as np

REPO = pathlib.Path(__file__).resolve().parents[2]
SOLVERS = ("SABA", "SOBA", "AmIGO", "WarmStart")


def load_data(args):
    """``(x_train, y_train_corrupted, x_val, y_val, x_test, y_test, corrupted_mask)`` as float32 / int32."""
    rng = np.random.RandomState(args.seed)
    if args.synthetic:
        n, d, k = args.synthetic, 20, 10
        centers = rng.normal(size=(k, d)) * 2

        def make(m):
            y = rng.randint(0, k, m)
            return (centers[y] + rng.normal(size=(m, d))).astype(np.float32), y.astype(np.int32)

        (xt, yt), (xv, yv), (xs, ys) = make(n), make(max(n // 3, k)), make(max(n // 3, k))
    else:
        from blojax.data import load_dataset

        ds = load_dataset("mnist", normalize="none", root=args.data_root)
        xt, yt = ds.x_train.reshape(len(ds.y_train), -1), ds.y_train
        xv, yv = ds.x_val.reshape(len(ds.y_val), -1), ds.y_val
        xs, ys = ds.x_test.reshape(len(ds.y_test), -1), ds.y_test
        if args.n_train:
            xt, yt = xt[: args.n_train], yt[: args.n_train]
    yt = np.array(yt, np.int32)
    corrupted = rng.rand(len(yt)) < args.ratio
    yt[corrupted] = rng.randint(0, 10, int(corrupted.sum()))
    mu, sd = xt.mean(0), xt.std(0)
    sd = np.where(sd > 0, sd, 1.0)
    scale = [((x - mu) / sd).astype(np.float32) for x in (xt, xv, xs)]
    return scale[0], yt, scale[1], np.asarray(yv, np.int32), scale[2], np.asarray(ys, np.int32), corrupted


def build(args):
    """The problem: ``dict(problem, full, u0, w0, test_error, n, m, corrupted)``."""
    import jax
    import jax.numpy as jnp

    import blojax as blo
    from blojax.stochastic import MinibatchProblem

    xt, yt, xv, yv, xs, ys, corrupted = load_data(args)
    n, d = xt.shape
    k = 10
    reg = args.reg

    def ce(W, x, y):
        z = x @ W
        return jax.nn.logsumexp(z, axis=1) - jnp.take_along_axis(z, y[:, None], axis=1)[:, 0]

    def f(u, W, batch):
        x, y, idx = batch
        return jnp.mean(jax.nn.sigmoid(u[idx]) * ce(W, x, y)) + reg * jnp.sum(W**2)

    def F(u, W, batch):
        x, y = batch
        return jnp.mean(ce(W, x, y))

    train = (jnp.asarray(xt), jnp.asarray(yt), jnp.arange(n, dtype=jnp.int32))
    val = (jnp.asarray(xv), jnp.asarray(yv))
    problem = MinibatchProblem(f, F, inner_data=train, outer_data=val)
    full = blo.Problem(lambda u, W: f(u, W, train), lambda u, W: F(u, W, val))
    xs_j, ys_j = jnp.asarray(xs), jnp.asarray(ys)

    @jax.jit
    def test_error(W):
        return jnp.mean(jnp.argmax(xs_j @ W, axis=1) != ys_j)

    return dict(
        problem=problem,
        full=full,
        u0=jnp.zeros(n),
        w0=jnp.zeros((d, k)),
        test_error=lambda W: float(test_error(W)),
        n=n,
        m=len(yv),
        corrupted=corrupted,
    )


def make_solver(name, built, args):
    """``(init(), run(state, steps) -> state, weights(state) -> W, u(state))`` for solver ``name``."""
    import jax
    import optax

    import blojax as blo
    from blojax.stochastic import Shuffle, inverse_power

    p, b = built["problem"], args.batch_size
    si, so = Shuffle(p.n_inner, b), Shuffle(p.n_outer, b)  # a batch larger than the data: its error
    if name == "WarmStart":
        inner = blo.InnerLoop(optax.sgd(args.ws_inner_lr), steps=args.ws_inner)
        algo = blo.WarmStart(
            built["full"], inner, blo.CG(iters=args.ws_cg), outer=optax.sgd(args.ws_outer_lr)
        )

        def run(s, steps):
            s, _ = algo.run(s, steps, on_nonfinite="stop")
            return s

        return (lambda: algo.init(built["u0"], built["w0"])), run
    if name == "SABA":
        algo = blo.SABA(p, si, so, inner_lr=args.saba_lr, outer_lr=args.saba_outer_lr)
    elif name == "SOBA":
        algo = blo.SOBA(p, si, so, inner_lr=inverse_power(1.0, 0.5), outer_lr=inverse_power(1e4, 0.5))
    elif name == "AmIGO":
        algo = blo.AmIGO(p, si, so, inner_lr=1e-3, v_lr=1e-3, outer_lr=100.0, inner_steps=10)
    else:
        raise ValueError(f"unknown solver {name!r}; expected one of {SOLVERS}")

    def run(s, steps):
        s, _ = algo.run(s, steps, history=False, throw=False)
        return s

    return (lambda: algo.init(built["u0"], built["w0"], jax.random.PRNGKey(args.seed))), run


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--solvers", default=",".join(SOLVERS))
    ap.add_argument("--ratio", type=float, default=0.5, help="fraction of corrupted training labels")
    ap.add_argument("--reg", type=float, default=0.2, help="ridge weight on W (benchmark_bilevel's 0.2)")
    ap.add_argument("--seed", type=int, default=32, help="corruption and sampler seed (benchmark's 32)")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--time-budget", type=float, default=60.0, help="compiled seconds per solver")
    ap.add_argument("--max-steps", type=int, default=10**9, help="outer-step budget per solver")
    ap.add_argument("--chunk", type=int, default=512, help="stochastic steps between evaluations")
    ap.add_argument("--ws-chunk", type=int, default=10, help="WarmStart outer steps between evaluations")
    ap.add_argument("--saba-lr", type=float, default=0.1, help="SABA's w and v step (benchmark: 0.1)")
    ap.add_argument("--saba-outer-lr", type=float, default=100.0, help="SABA's u step (benchmark: 100)")
    ap.add_argument("--ws-inner", type=int, default=10)
    ap.add_argument("--ws-inner-lr", type=float, default=0.05)
    ap.add_argument("--ws-cg", type=int, default=10)
    ap.add_argument("--ws-outer-lr", type=float, default=100.0)
    ap.add_argument("--n-train", type=int, default=0, help="keep the first N training images (0: all 6000)")
    ap.add_argument("--data-root", default=None)
    ap.add_argument("--synthetic", type=int, default=0, help=argparse.SUPPRESS)
    ap.add_argument("--no-plot", action="store_true")
    ap.add_argument("--tag", default="", help="suffix of the output file names")
    ap.add_argument("--out", default=str(REPO / "benchmarks" / "stochastic" / "results"))
    args = ap.parse_args(argv)
    names = [s.strip() for s in args.solvers.split(",") if s.strip()]
    for nm in names:
        if nm not in SOLVERS:
            ap.error(f"--solvers: unknown solver {nm!r}; expected some of {','.join(SOLVERS)}")
    if args.time_budget <= 0 or args.chunk < 1 or args.ws_chunk < 1:
        ap.error("--time-budget must be > 0 and --chunk, --ws-chunk >= 1")
    if not 0.0 <= args.ratio <= 1.0:
        ap.error(f"--ratio is the fraction of corrupted labels, in [0, 1]; got {args.ratio}")
    for flag, val in (
        ("--reg", args.reg),
        ("--saba-lr", args.saba_lr),
        ("--saba-outer-lr", args.saba_outer_lr),
    ):
        if not val > 0:
            ap.error(f"{flag} must be > 0, got {val}")
    if args.batch_size < 1:
        ap.error(f"--batch-size must be >= 1, got {args.batch_size}")

    import jax
    from tqdm.auto import tqdm

    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    built = build(args)
    load_start = os.getloadavg()
    curves, status = {}, {}
    for name in names:
        init, run = make_solver(name, built, args)
        chunk = args.ws_chunk if name == "WarmStart" else args.chunk
        s = init()
        jax.block_until_ready(run(s, chunk))  # compile (same chunk length as the timed ones)
        s = init()
        elapsed, steps = 0.0, 0
        curve = [(0.0, 0, built["test_error"](s.w))]
        with tqdm(total=round(args.time_budget, 1), desc=name, unit="s", leave=False) as bar:
            while elapsed < args.time_budget and steps < args.max_steps:
                t = time.perf_counter()
                s = run(s, chunk)
                jax.block_until_ready(s.u)
                dt = time.perf_counter() - t
                elapsed += dt
                steps += chunk
                bar.update(round(min(dt, max(args.time_budget - bar.n, 0)), 1))
                if int(np.max(np.asarray(s.diverged_step))) >= 0:
                    break
                curve.append((elapsed, steps, built["test_error"](s.w)))
        bad = int(np.max(np.asarray(s.diverged_step)))
        status[name] = "diverged at step %d" % bad if bad >= 0 else "finite"
        curves[name] = curve
        u = np.asarray(s.u)
        weights = 0.5 * (1.0 + np.tanh(0.5 * u))  # sigmoid(u), without overflow
        c = built["corrupted"]
        status[name + "_weights"] = dict(
            mean_weight_corrupted=float(weights[c].mean()) if c.any() else None,
            mean_weight_clean=float(weights[~c].mean()) if (~c).any() else None,
        )
        print(
            f"{name:9s} {steps:7d} steps in {elapsed:6.1f} s: test error {curve[-1][2]:.4f} "
            f"(start {curve[0][2]:.4f}, best {min(x[2] for x in curve):.4f}); {status[name]}; "
            f"mean sigmoid(u) corrupted {status[name + '_weights']['mean_weight_corrupted']} clean "
            f"{status[name + '_weights']['mean_weight_clean']}",
            flush=True,
        )
    meta = dict(
        command=" ".join([sys.executable, *sys.argv]),
        args=vars(args),
        machine=platform.platform(),
        cpus=os.cpu_count(),
        load_avg_start=load_start,
        load_avg_end=os.getloadavg(),
        jax=jax.__version__,
        date=time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        n_train=built["n"],
        n_val=built["m"],
        corrupted=int(built["corrupted"].sum()),
    )
    (out / f"datacleaning{args.tag}.json").write_text(
        json.dumps(dict(meta=meta, curves=curves, status=status), indent=1)
    )
    if not args.no_plot:
        plot(curves, out, meta, args.tag)
    return curves, status


def plot(curves, out, meta, tag=""):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for name, c in curves.items():
        c = np.asarray(c, float)
        ax.plot(c[:, 0], c[:, 2], label=name, ls="--" if name == "WarmStart" else "-")
    ax.set_xlabel("time (s, compiled solver steps; evaluation excluded)")
    ax.set_ylabel("test error")
    ax.set_title(
        f"data cleaning, MNIST-10k ({meta['n_train']} train, {meta['corrupted']} labels corrupted)",
        fontsize=9,
    )
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / f"datacleaning_test_error{tag}.png", dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    main()
