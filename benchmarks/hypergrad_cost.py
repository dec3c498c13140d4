"""Cost of one hypergradient per strategy, against its cost floor.

    python benchmarks/hypergrad_cost.py [--quick] [--repeats N] [--json PATH]

Problems (float32, CPU):

* ``ridge-d``: ridge regression with one log-penalty per feature, ``d`` in {100, 1000, 10000}:
  ``f(u, w) = 1/(2n) ||X w - y||^2 + 1/2 sum_i exp(u_i) w_i^2`` (n = 500 training points),
  ``F(u, w) = 1/(2m) ||X_v w - y_v||^2`` (m = 500 validation points).
* ``mlp``: a 8-32-32-1 tanh MLP regression with one log-penalty per weight (u has the structure of w).

Every hypergradient is taken at the same point ``w_T`` (T = 100 SGD steps from 0 at ``u0``).

The floor of a strategy is what its products must cost at least, from measured unit times:

    floor = t_call + grads * t_grad + hvps * t_hvp            (Exact: + t_dense + t_eigh instead of n HVPs)

with ``grads``/``hvps`` the counts ``blojax.hypergradient`` reports in ``info``; ``t_grad`` and
``t_hvp`` are the per-product times of ``grad_w f`` and of a forward-over-reverse HVP, each measured
*amortized* inside one compiled loop of 50 products (so they exclude dispatch); ``t_call`` is the
dispatch cost of one compiled call with the same arguments and results (the hypergradient and the
``info`` dict, per method) doing no work (every call pays it once); ``t_dense`` is the batched build of the dense Hessian (n HVPs as one ``vmap``) and ``t_eigh``
its symmetric eigendecomposition. For ``Unroll`` the reverse pass through one inner step is counted
as one HVP (a reverse-over-reverse product of the same cost class). Ratio = measured / floor.

All rows of one problem are timed interleaved in one process and the medians reported, so that the
contention of a shared machine inflates all rows alike.

``--solve`` adds the transform table: per strategy, ``jax.grad`` of ``u -> F(u, blojax.solve(...))``
(the inner solve from ``w0`` and the strategy's pullback, one compiled call) against the direct
route, the inner solve followed by ``blojax.hypergradient(..., diagnostics=False)`` (one compiled
call, the hypergradient only), and against its floor ``t_call + T_pre * t_grad + grads * t_grad +
hvps * t_hvp`` (``T_pre`` inner steps before the strategy: T, or T - K for ``Unroll(K)``; the counts
``hypergradient`` reports without diagnostics). Targets: grad(solve) / direct <= 1.05, / floor <= 1.3.
The table also times the same gradient with ``solve(..., throw=False)`` (column ``throw=False / True``).

Dispatch: by default JAX's CPU client runs a compiled call *asynchronously* on a worker thread,
except when the program contains a host callback (``throw=True`` puts one in, the run-time check),
which runs in the calling thread. On a loaded machine the hand-off to the worker thread and back
costs up to about 1 ms per call, which is of the order of a whole d = 100 row and made
``throw=False`` look 2-10x slower than ``throw=True`` with identical compiled loops. The script
therefore sets ``jax.config.update("jax_cpu_enable_async_dispatch", False)`` before the first
computation (every row runs in the calling thread, so the rows time the computation);
``--async-dispatch`` keeps JAX's default.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_util import set_threads  # noqa: E402

if __name__ == "__main__":
    _pre = argparse.ArgumentParser(add_help=False)
    _pre.add_argument("--threads", type=int, default=1)
    _pre.add_argument("--async-dispatch", action="store_true")
    _known = _pre.parse_known_args()[0]
    set_threads(_known.threads)

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402

if __name__ == "__main__" and not _known.async_dispatch:
    # Every compiled call runs in the calling thread (module docstring, "Dispatch"); set before the
    # CPU client is created (the JAX_CPU_ENABLE_ASYNC_DISPATCH variable is not read by jax 0.10).
    jax.config.update("jax_cpu_enable_async_dispatch", False)
import numpy as np  # noqa: E402
import optax  # noqa: E402

import blojax as blo  # noqa: E402
from blojax import linalg  # noqa: E402
from bench_util import (  # noqa: E402
    blojax_ridge_problem,
    fmt_time,
    format_machine,
    grad_loop,
    hvp_loop,
    interleaved_medians,
    machine_info,
    noop_like,
    ridge_data,
    table,
)


# ------------------------------------------------------------------------------------------------ problems
def ridge_problem(d, n=500):
    data = ridge_data(d, n_train=n, n_val=n)
    ib = (jnp.asarray(data["X"]), jnp.asarray(data["y"]))
    ob = (jnp.asarray(data["Xv"]), jnp.asarray(data["yv"]))
    return blojax_ridge_problem(), jnp.asarray(data["u0"]), jnp.asarray(data["w0"]), ib, ob, data["alpha"]


def mlp_problem(width=32, n_in=8, n=256, seed=0):
    rng = np.random.default_rng(seed)
    sizes = [n_in, width, width, 1]
    w0 = [
        (jnp.asarray(rng.standard_normal((a, b)).astype(np.float32) / np.sqrt(a)), jnp.zeros(b, jnp.float32))
        for a, b in zip(sizes[:-1], sizes[1:])
    ]
    X = rng.standard_normal((n, n_in)).astype(np.float32)
    Xv = rng.standard_normal((n, n_in)).astype(np.float32)
    target = lambda Z: np.sin(Z[:, :1] * 2.0) + 0.5 * Z[:, 1:2]  # noqa: E731
    y = (target(X) + 0.1 * rng.standard_normal((n, 1))).astype(np.float32)
    yv = target(Xv).astype(np.float32)

    def net(w, Z):
        h = Z
        for i, (W, b) in enumerate(w):
            h = h @ W + b
            if i < len(w) - 1:
                h = jnp.tanh(h)
        return h

    def f(u, w, batch):
        Z, t = batch
        pen = sum(
            jnp.sum(jnp.exp(uu) * ww * ww)
            for uu, ww in zip(jax.tree_util.tree_leaves(u), jax.tree_util.tree_leaves(w))
        )
        return 0.5 * jnp.mean((net(w, Z) - t) ** 2) + 0.5 * pen

    def F(u, w, batch):
        Z, t = batch
        return 0.5 * jnp.mean((net(w, Z) - t) ** 2)

    u0 = jax.tree_util.tree_map(lambda x: jnp.full_like(x, np.log(1e-3)), w0)
    ib = (jnp.asarray(X), jnp.asarray(y))
    ob = (jnp.asarray(Xv), jnp.asarray(yv))
    return blo.Problem(f, F), u0, w0, ib, ob, 0.1


# ------------------------------------------------------------------------------------------------ units
def unit_functions(problem, u, w, ib, ob, exact=False):
    """Timed calls ``name -> (call, n)``: n gradients / HVPs in one compiled loop (bench_util's loops,
    shared with the peers benchmark), a no-op call returning one array, and with ``exact`` the dense
    Hessian (n HVPs batched in one ``vmap``) and its eigh."""
    grad = lambda w_, u_, ib_: jax.grad(problem.f, argnums=1)(u_, w_, ib_)  # noqa: E731
    units = {
        "grad": grad_loop(grad, w, u, ib),
        "hvp": hvp_loop(grad, w, u, ib),
        "call": noop_like(lambda u_, w_, ib_, ob_: u_, u, w, ib, ob),
    }
    if exact:

        @jax.jit
        def dense(u_, w_, ib_):
            _, hvp = jax.linearize(lambda x: grad(x, u_, ib_), w_)
            return linalg.dense_hessian(hvp, w_)[0]

        H = dense(u, w, ib)
        eigh = jax.jit(jnp.linalg.eigh)
        units.update({"dense H": ((lambda: dense(u, w, ib)), 1), "eigh": ((lambda: eigh(H)), 1)})
    return units


def methods_for(alpha, n_params, exact_limit):
    ms = {
        "Unroll(20)": blo.Unroll(steps=20),
        "Neumann(20)": blo.Neumann(terms=20, lr=alpha),
        "CG(20)": blo.CG(iters=20),
        "CG(20, normal)": blo.CG(iters=20, normal=True),
        "Damped(0.1)": blo.Damped(eps=0.1, rtol=1e-4),
        "Identity": blo.Identity(lr=alpha),
    }
    if n_params <= exact_limit:
        ms["Exact"] = blo.Exact()
    return ms


def bench_problem(name, problem, u0, w0, ib, ob, alpha, repeats, exact_limit, min_time, only=None):
    inner = blo.InnerLoop(optax.sgd(alpha), steps=100)
    w_T, _ = jax.jit(lambda u, w: inner.run(problem, u, w, ib))(u0, w0)
    n_params = sum(x.size for x in jax.tree_util.tree_leaves(w_T))
    methods = methods_for(alpha, n_params, exact_limit)
    if only:
        unknown = set(only) - set(methods_for(alpha, 0, 1))
        if unknown:
            raise SystemExit(
                f"--methods: unknown {sorted(unknown)}; choose from {list(methods_for(alpha, 0, 1))}"
            )
        methods = {k: v for k, v in methods.items() if k in only}

    fns, counts = {}, {}
    for label, m in methods.items():

        def hg(u, w, ib_, ob_, m=m):
            return blo.hypergradient(problem, u, w, m, inner, inner_batch=ib_, outer_batch=ob_)

        jitted = jax.jit(hg)
        g, info = jitted(u0, w_T, ib, ob)
        counts[label] = dict(
            hvps=int(info["hvps"]), grads=int(info["grads"]), residual=float(info["residual"])
        )
        # Time the full output (hypergradient and info): returning only the hypergradient would let
        # XLA drop the diagnostics that the counts include (e.g. Identity's residual product).
        fns[label] = lambda jitted=jitted: jitted(u0, w_T, ib, ob)
        # The call price of this method: a compiled call with the same arguments and results (g and
        # the info dict: about ten arrays, each costing JAX ~1.6 us of dispatch) that does no work.
        fns[f"unit: call {label}"] = noop_like(hg, u0, w_T, ib, ob)[0]

    units_fns = unit_functions(problem, u0, w_T, ib, ob, exact="Exact" in methods)
    for uname, (fn, _) in units_fns.items():
        fns[f"unit: {uname}"] = fn

    t = interleaved_medians(fns, repeats, min_time=min_time)
    t_grad = t["unit: grad"]["median"] / units_fns["grad"][1]
    t_hvp = t["unit: hvp"]["median"] / units_fns["hvp"][1]
    t_call_min = t["unit: call"]["median"]
    rows = []
    for label in methods:
        c = counts[label]
        t_call = t[f"unit: call {label}"]["median"]
        if label == "Exact":
            floor = (
                t_call
                + c["grads"] * t_grad
                + t["unit: dense H"]["median"]
                + t["unit: eigh"]["median"]
                + t_hvp
            )
            count_txt = f"{c['grads']} grads, dense H ({n_params} HVPs batched) + eigh + 1 HVP"
        else:
            floor = t_call + c["grads"] * t_grad + c["hvps"] * t_hvp
            count_txt = f"{c['grads']} grads + {c['hvps']} HVPs"
        meas = t[label]["median"]
        rows.append(
            dict(
                problem=name,
                method=label,
                time=meas,
                floor=floor,
                ratio=meas / floor,
                counts=count_txt,
                hvps=c["hvps"],
                grads=c["grads"],
                spread=_spread(t[label]["all"]),
            )
        )
    calls = [t[f"unit: call {label}"]["median"] for label in methods]
    units = dict(
        t_grad=t_grad, t_hvp=t_hvp, t_call=(min(calls), max(calls)), t_call_1=t_call_min, n_params=n_params
    )
    if "Exact" in methods:
        units.update(t_dense=t["unit: dense H"]["median"], t_eigh=t["unit: eigh"]["median"])
    return rows, units


def bench_solve(name, problem, u0, w0, ib, ob, alpha, repeats, min_time, only=None):
    """Rows of the transform table (see the module docstring)."""
    inner = blo.InnerLoop(optax.sgd(alpha), steps=100)
    methods = methods_for(alpha, 0, -1)  # no Exact (its floor has other terms)
    if only:
        methods = {k: v for k, v in methods.items() if k in only}
    fns, counts = {}, {}
    for label, m in methods.items():
        pre = m.presolver(inner)

        def direct(u, w, ib_, ob_, m=m, pre=pre):
            w_s = pre.run(problem, u, w, ib_)[0]
            return blo.hypergradient(
                problem, u, w_s, m, inner, inner_batch=ib_, outer_batch=ob_, diagnostics=False
            )[0]

        def through_solve(u, w, ib_, ob_, m=m, throw=True):
            return jax.grad(
                lambda u_: problem.F(
                    u_, blo.solve(problem, u_, w, inner=inner, method=m, batch=ib_, throw=throw), ob_
                )
            )(u)

        d, t = jax.jit(direct), jax.jit(through_solve)
        t_nothrow = jax.jit(functools.partial(through_solve, throw=False))
        w_s = pre.run(problem, u0, w0, ib)[0]
        _, info = jax.jit(
            lambda u, w: blo.hypergradient(
                problem, u, w, m, inner, inner_batch=ib, outer_batch=ob, diagnostics=False
            )
        )(u0, w_s)
        gd, gt, gn = d(u0, w0, ib, ob), t(u0, w0, ib, ob), t_nothrow(u0, w0, ib, ob)
        dev = max(
            float(jnp.max(jnp.abs(a - b)) / (jnp.max(jnp.abs(a)) + 1e-30))
            for g in (gt, gn)
            for a, b in zip(jax.tree_util.tree_leaves(gd), jax.tree_util.tree_leaves(g))
        )
        counts[label] = dict(hvps=int(info.hvps), grads=int(info.grads), T_pre=pre.steps, dev=dev)
        fns[f"direct {label}"] = lambda d=d: d(u0, w0, ib, ob)
        fns[f"solve {label}"] = lambda t=t: t(u0, w0, ib, ob)
        fns[f"solve nothrow {label}"] = lambda t=t_nothrow: t(u0, w0, ib, ob)
        fns[f"unit: call {label}"] = noop_like(direct, u0, w0, ib, ob)[0]
    units_fns = unit_functions(problem, u0, w0, ib, ob)
    for uname, (fn, _) in units_fns.items():
        fns[f"unit: {uname}"] = fn
    tm = interleaved_medians(fns, repeats, min_time=min_time)
    t_grad = tm["unit: grad"]["median"] / units_fns["grad"][1]
    t_hvp = tm["unit: hvp"]["median"] / units_fns["hvp"][1]
    rows = []
    for label in methods:
        c = counts[label]
        floor = tm[f"unit: call {label}"]["median"] + (c["T_pre"] + c["grads"]) * t_grad + c["hvps"] * t_hvp
        ts, td = tm[f"solve {label}"]["median"], tm[f"direct {label}"]["median"]
        tn = tm[f"solve nothrow {label}"]["median"]
        rows.append(
            dict(
                problem=name,
                method=label,
                solve=ts,
                direct=td,
                floor=floor,
                vs_direct=ts / td,
                solve_nothrow=tn,
                nothrow_vs_throw=tn / ts,
                nothrow_vs_direct=tn / td,
                vs_floor=ts / floor,
                rel_diff=c["dev"],
                counts=f"{c['T_pre']} steps + {c['grads']} grads + {c['hvps']} HVPs",
            )
        )
    return rows


def _spread(ts):
    q = np.percentile(ts, [25, 75])
    return f"{fmt_time(q[0])}-{fmt_time(q[1])}"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument(
        "--quick", action="store_true", help="tiny sizes (smoke test): ridge d=20, a 4-wide MLP, 2 repeats"
    )
    ap.add_argument("--repeats", type=int, default=9, help="interleaved repeats per row (median reported)")
    ap.add_argument("--dims", type=int, nargs="*", default=[100, 1000, 10000], help="ridge dimensions")
    ap.add_argument("--no-mlp", action="store_true", help="skip the MLP problem")
    ap.add_argument("--methods", nargs="*", default=None, help="subset of the rows, e.g. 'CG(20)' Identity")
    ap.add_argument("--exact-limit", type=int, default=2048, help="largest w for which Exact is timed")
    ap.add_argument("--threads", type=int, default=1, help="threads for XLA (default 1; 0: XLA's default)")
    ap.add_argument("--json", type=Path, default=None, help="write rows, units and machine facts here")
    ap.add_argument(
        "--solve", action="store_true", help="also time jax.grad through blojax.solve (transform table)"
    )
    ap.add_argument("--solve-only", action="store_true", help="only the transform table")
    ap.add_argument(
        "--async-dispatch",
        action="store_true",
        help="keep JAX's asynchronous CPU dispatch (default: off, every call runs in the calling thread)",
    )
    args = ap.parse_args(argv)

    dims = [20] if args.quick else args.dims
    repeats = 2 if args.quick else args.repeats
    min_time = 0.0 if args.quick else 0.05
    info = machine_info()
    info["xla_flags"] = os.environ.get("XLA_FLAGS", "")
    print(format_machine(info), flush=True)
    info["cpu_async_dispatch"] = jax.config.read("jax_cpu_enable_async_dispatch")
    print(f"XLA_FLAGS={info['xla_flags']}; JAX CPU async dispatch: {info['cpu_async_dispatch']}", flush=True)
    all_rows, all_units, all_solve_rows = [], {}, []
    problems = [(f"ridge d={d}", lambda d=d: ridge_problem(d, n=50 if args.quick else 500)) for d in dims]
    if not args.no_mlp:
        problems.append(
            (
                "mlp 8-32-32-1" if not args.quick else "mlp 8-4-4-1",
                lambda: mlp_problem(width=4 if args.quick else 32, n=32 if args.quick else 256),
            )
        )
    for name, make in problems:
        problem, u0, w0, ib, ob, alpha = make()
        if args.solve or args.solve_only:
            srows = bench_solve(name, problem, u0, w0, ib, ob, alpha, repeats, min_time, args.methods)
            all_solve_rows += srows
            print(f"\n{name}: jax.grad through blojax.solve vs inner solve + hypergradient", flush=True)
            shown = [
                dict(
                    r,
                    solve=fmt_time(r["solve"]),
                    direct=fmt_time(r["direct"]),
                    floor=fmt_time(r["floor"]),
                    vs_direct=f"{r['vs_direct']:.3f}",
                    vs_floor=f"{r['vs_floor']:.2f}",
                    nothrow_vs_throw=f"{r['nothrow_vs_throw']:.3f}",
                    nothrow_vs_direct=f"{r['nothrow_vs_direct']:.3f}",
                    rel_diff=f"{r['rel_diff']:.1e}",
                )
                for r in srows
            ]
            print(
                table(
                    shown,
                    [
                        ("method", "method"),
                        ("solve", "grad(solve) (median)"),
                        ("direct", "run + hypergradient"),
                        ("vs_direct", "solve / direct"),
                        ("counts", "counted work"),
                        ("floor", "floor"),
                        ("vs_floor", "solve / floor"),
                        ("nothrow_vs_throw", "throw=False / True"),
                        ("nothrow_vs_direct", "throw=False / direct"),
                        ("rel_diff", "max rel. diff of g"),
                    ],
                ),
                flush=True,
            )
            if args.solve_only:
                continue
        rows, units = bench_problem(
            name, problem, u0, w0, ib, ob, alpha, repeats, args.exact_limit, min_time, args.methods
        )
        all_rows += rows
        all_units[name] = units
        print(
            f"\n{name}: n_params={units['n_params']}, t_call={fmt_time(units['t_call'][0])}-"
            f"{fmt_time(units['t_call'][1])} (one result: {fmt_time(units['t_call_1'])}), "
            f"t_grad={fmt_time(units['t_grad'])}, t_hvp={fmt_time(units['t_hvp'])}"
            + (
                f", t_dense={fmt_time(units['t_dense'])}, t_eigh={fmt_time(units['t_eigh'])}"
                if "t_dense" in units
                else ""
            ),
            flush=True,
        )
        shown = [
            dict(r, time=fmt_time(r["time"]), floor=fmt_time(r["floor"]), ratio=f"{r['ratio']:.2f}")
            for r in rows
        ]
        print(
            table(
                shown,
                [
                    ("method", "method"),
                    ("time", "time / hypergradient (median)"),
                    ("spread", "IQR"),
                    ("counts", "counted work"),
                    ("floor", "floor"),
                    ("ratio", "measured / floor"),
                ],
            ),
            flush=True,
        )
    if all_rows:
        worst = max(all_rows, key=lambda r: r["ratio"])
        print(f"\nworst ratio: {worst['ratio']:.2f} ({worst['problem']}, {worst['method']}); target <= 1.3")
    if all_solve_rows:
        w1 = max(all_solve_rows, key=lambda r: r["vs_direct"])
        w2 = max(all_solve_rows, key=lambda r: r["vs_floor"])
        print(
            f"worst grad(solve) / direct: {w1['vs_direct']:.3f} ({w1['problem']}, {w1['method']}); target <= 1.05"
        )
        w3 = max(all_solve_rows, key=lambda r: r["nothrow_vs_throw"])
        print(
            f"worst grad(solve, throw=False) / grad(solve, throw=True): {w3['nothrow_vs_throw']:.3f} "
            f"({w3['problem']}, {w3['method']})"
        )
        print(
            f"worst grad(solve) / floor: {w2['vs_floor']:.2f} ({w2['problem']}, {w2['method']}); target <= 1.3"
        )
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(
            json.dumps(
                dict(machine=info, rows=all_rows, units=all_units, solve_rows=all_solve_rows), indent=1
            )
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
