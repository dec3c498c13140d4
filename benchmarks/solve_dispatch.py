"""``jax.grad`` through ``blojax.solve`` with ``throw=True`` against ``throw=False``, per dispatch mode.

    python benchmarks/solve_dispatch.py [--async-dispatch] [--repeats N] [--d D]

Ridge problem of ``hypergrad_cost.py`` (float32, T = 100 SGD steps, one XLA thread). Per strategy the
two compiled gradients are called alternately, ``repeats`` times each; for every call the script
records when the call *returned* to Python and when its result was *ready*
(``block_until_ready``), and prints the medians and the ratio throw=False / throw=True of the
latter.

Why both: a program with a host callback (``throw=True`` adds one, the run-time check) runs in the
calling thread; one without (``throw=False``) is handed to a worker thread when JAX's CPU dispatch is
asynchronous (its default). Then the call returns at once and the wait for the worker, on a loaded
machine, adds up to about 1 ms. Without ``--async-dispatch`` the script turns asynchronous dispatch
off, so both programs run in the calling thread and the ratio compares the computation alone.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_util import set_threads  # noqa: E402

ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
ap.add_argument("--async-dispatch", action="store_true", help="keep JAX's asynchronous CPU dispatch")
ap.add_argument("--repeats", type=int, default=100, help="calls per function (alternated)")
ap.add_argument("--d", type=int, default=100, help="ridge dimension")
ap.add_argument("--threads", type=int, default=1, help="XLA threads (0: XLA's default)")
ARGS = ap.parse_args() if __name__ == "__main__" else ap.parse_args([])
if __name__ == "__main__":
    set_threads(ARGS.threads)

import jax  # noqa: E402

if __name__ == "__main__" and not ARGS.async_dispatch:
    jax.config.update("jax_cpu_enable_async_dispatch", False)

import numpy as np  # noqa: E402
import optax  # noqa: E402
from tqdm import tqdm  # noqa: E402

import blojax as blo  # noqa: E402
from bench_util import format_machine, machine_info, table  # noqa: E402
from hypergrad_cost import ridge_problem  # noqa: E402


def main():
    info = machine_info()
    print(format_machine(info), flush=True)
    print(f"JAX CPU async dispatch: {jax.config.read('jax_cpu_enable_async_dispatch')}", flush=True)
    problem, u0, w0, ib, ob, alpha = ridge_problem(ARGS.d)
    inner = blo.InnerLoop(optax.sgd(alpha), steps=100)
    fns = {}
    for label, m in {
        "Unroll(20)": blo.Unroll(20),
        "CG(20)": blo.CG(20),
        "Identity": blo.Identity(alpha),
    }.items():
        for throw in (True, False):

            def grad(u, w, ib_, ob_, m=m, throw=throw):
                return jax.grad(
                    lambda v: problem.F(
                        v, blo.solve(problem, v, w, inner=inner, method=m, batch=ib_, throw=throw), ob_
                    )
                )(u)

            fns[label, throw] = jax.jit(grad)
            jax.block_until_ready(fns[label, throw](u0, w0, ib, ob))
    returned = {k: [] for k in fns}
    ready = {k: [] for k in fns}
    for _ in tqdm(range(ARGS.repeats), desc="alternated calls", leave=False):
        for k, f in fns.items():
            t0 = time.perf_counter()
            y = f(u0, w0, ib, ob)
            t1 = time.perf_counter()
            jax.block_until_ready(y)
            t2 = time.perf_counter()
            returned[k].append(t1 - t0)
            ready[k].append(t2 - t0)
    rows = []
    for label in dict.fromkeys(k[0] for k in fns):
        med = {
            t: (np.median(returned[label, t]) * 1e3, np.median(ready[label, t]) * 1e3) for t in (True, False)
        }
        rows.append(
            dict(
                method=label,
                on_ret=f"{med[True][0]:.3f} ms",
                on_ready=f"{med[True][1]:.3f} ms",
                off_ret=f"{med[False][0]:.3f} ms",
                off_ready=f"{med[False][1]:.3f} ms",
                ratio=f"{med[False][1] / med[True][1]:.3f}",
            )
        )
    print(
        table(
            rows,
            [
                ("method", "method"),
                ("on_ret", "throw=True returned"),
                ("on_ready", "throw=True ready"),
                ("off_ret", "throw=False returned"),
                ("off_ready", "throw=False ready"),
                ("ratio", "throw=False / True (ready)"),
            ],
        )
    )


if __name__ == "__main__":
    main()
