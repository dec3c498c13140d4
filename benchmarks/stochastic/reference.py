"""Reference iterates from benchmark_bilevel's own solvers, for tests/test_stochastic_agreement.py.

Runs in the benchmark venv (``make bench-stochastic-venv``), never in the package::

    make bench-stochastic-reference        # = .bench-stoch-venv/bin/python benchmarks/stochastic/reference.py \
                                           #     --benchmark-bilevel .benchmark_bilevel --out tests/data/...

What it does, in float64:

1. builds benchmark_bilevel's simulated quadratic (``benchmark_utils.gen_matrices`` with the
   ``datasets/simulated.py`` defaults, shrunk to ``n = m = 64`` samples and dimensions 8 / 6 so the
   stored file stays small) and keeps the raw per-sample matrices;
2. draws the block index streams of benchmark_bilevel's own minibatch sampler
   (``benchmark_utils.minibatch_sampler.init_sampler`` with the keys its ``StochasticJaxSolver`` uses)
   and checks that each solver's final sampler state equals the one after that many draws;
3. runs the benchmark's ``Solver`` classes (``solvers/{soba,saba,amigo,stocbio,f2sa}.py``) one
   step at a time through their own compiled ``one_epoch`` and records ``outer_var``, ``inner_var``
   and ``v`` after every step;
4. writes everything to one ``.npz``.

The blojax side (the test) feeds the same data, block streams and step sizes to blojax's solvers.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import pathlib
import sys
import tempfile

import numpy as np

REPO = pathlib.Path(__file__).resolve().parents[2]

# Small instance of the simulated quadratic (the benchmark's defaults except the sizes).
SIZES = dict(n=64, dim_inner=8, dim_outer=6, batch_size=8, steps=200, random_state=2442, solver_seed=1)
SOLVERS = {  # benchmark_bilevel file -> parameters (its defaults, batch size shrunk)
    "soba": dict(step_size=0.1, outer_ratio=1.0),
    "saba": dict(step_size=0.1, outer_ratio=1.0, mode_init_memory="zero"),
    "amigo": dict(step_size=0.1, outer_ratio=1.0, n_inner_steps=10),
    "stocbio": dict(step_size=0.1, outer_ratio=1.0, n_inner_steps=10, n_shia_steps=10),
    "f2sa": dict(step_size=0.01, outer_ratio=1.0, lmbda0=1.0, delta_lmbda=0.1, n_inner_steps=10),
}
DRAWS = {  # batches drawn per outer step (inner, outer), from each solver's get_step
    "soba": (1, 1),
    "saba": (1, 1),
    "amigo": (21, 1),
    "stocbio": (21, 1),
    "f2sa": (22, 11),
}


def load_module(path: pathlib.Path, name: str):
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--benchmark-bilevel",
        default=str(REPO / ".benchmark_bilevel"),
        help="a checkout of github.com/benchopt/benchmark_bilevel",
    )
    ap.add_argument("--out", default=str(REPO / "tests" / "data" / "stochastic_reference.npz"))
    args = ap.parse_args(argv)

    import jax

    jax.config.update("jax_enable_x64", True)
    import jax.numpy as jnp

    bb = pathlib.Path(args.benchmark_bilevel).resolve()
    out = pathlib.Path(args.out).resolve()
    os.chdir(tempfile.mkdtemp(prefix="bb-cache-"))  # gen_matrices' joblib cache lands here, not in the repo
    sys.path.insert(0, str(bb))
    from benchmark_utils.gen_matrices import gen_matrices
    from benchmark_utils.minibatch_sampler import init_sampler

    simulated = load_module(bb / "datasets" / "simulated.py", "bb_simulated")
    S = SIZES
    n, di, do, b, steps = S["n"], S["dim_inner"], S["dim_outer"], S["batch_size"], S["steps"]

    # 1. data, as datasets/simulated.py builds it (first trial)
    keys = jax.random.split(jax.random.PRNGKey(S["random_state"]), 2)
    inner = gen_matrices(n, di, do, 1.0, 1.0, 0.1, 0.1, keys[0])
    outer = gen_matrices(n, di, do, 1.0, 1.0, 0.1, 0.1, keys[1])
    eig = simulated.get_hessian_min_eigval(
        inner[0].mean(0), inner[2].mean(0), outer[0].mean(0), outer[1].mean(0), outer[2].mean(0)
    )
    assert eig > 1e-12, eig
    f_inner = simulated.get_function(*inner)
    f_outer = simulated.get_function(*outer)
    inner_var0 = jnp.zeros(di)
    outer_var0 = -2 * jnp.ones(do)  # objective.py's default start

    record = dict(
        inner_H=inner[0],
        inner_C=inner[1],
        inner_X=inner[2],
        inner_a=inner[3],
        inner_c=inner[4],
        outer_H=outer[0],
        outer_C=outer[1],
        outer_X=outer[2],
        outer_a=outer[3],
        outer_c=outer[4],
        u0=outer_var0,
        w0=inner_var0,
        batch_size=b,
        steps=steps,
    )

    # 2. the sampler streams (keys as in StochasticJaxSolver.set_objective)
    skeys = jax.random.split(jax.random.PRNGKey(S["solver_seed"]), 2)

    def stream(key, draws):
        sampler, state = init_sampler(n_samples=n, batch_size=b, key=key)
        sampler = jax.jit(sampler)
        idx = []
        for _ in range(draws):
            start, i, _, state = sampler(state)
            assert int(start) == b * int(i)
            idx.append(int(i))
        return np.asarray(idx, np.int32), state

    # 3. the benchmark's solvers
    for name, params in SOLVERS.items():
        mod = load_module(bb / "solvers" / f"{name}.py", f"bb_solver_{name}")
        solver = mod.Solver.get_instance(**params, batch_size=b, eval_freq=1, random_state=S["solver_seed"])
        solver.set_objective(f_inner, f_outer, n, n, inner_var0, outer_var0)
        init = solver.init()
        is_saba = name == "saba"
        memory, carry = init if is_saba else (None, init)
        us, ws, vs = [], [], []
        for _ in range(steps):
            if is_saba:
                memory, carry = solver.one_epoch(carry, memory, 1)
            else:
                carry = solver.one_epoch(carry, 1)
            us.append(np.asarray(carry["outer_var"]))
            ws.append(np.asarray(carry["inner_var"]))
            if name != "stocbio":  # StocBiO keeps no v (its Neumann series is rebuilt every step)
                vs.append(np.asarray(carry["inner_approx_star"] if name == "f2sa" else carry["v"]))
        di_, do_ = DRAWS[name]
        inner_idx, inner_state = stream(skeys[0], steps * di_)
        outer_idx, outer_state = stream(skeys[1], steps * do_)
        for which, mine in (("inner", inner_state), ("outer", outer_state)):
            theirs = carry[f"state_{which}_sampler"]
            for k in ("i_batch", "batch_order", "key"):
                assert np.array_equal(np.asarray(theirs[k]), np.asarray(mine[k])), (name, which, k)
        if vs:  # v (SOBA, SABA, AmIGO; AmIGO's sign is the opposite of blojax's) or F2SA's z
            record[f"{name}_v"] = np.stack(vs)
        record.update(
            {
                f"{name}_u": np.stack(us),
                f"{name}_w": np.stack(ws),
                f"{name}_inner_blocks": inner_idx,
                f"{name}_outer_blocks": outer_idx,
            }
        )
        if name == "f2sa":
            record["f2sa_lam"] = np.asarray(carry["lmbda"])
        print(f"{name}: {steps} steps, |u_T| = {np.linalg.norm(us[-1]):.6g}, sampler streams verified")

    out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(out, **{k: np.asarray(v) for k, v in record.items()})
    print(f"wrote {out} ({out.stat().st_size / 1024:.0f} KiB)")


if __name__ == "__main__":
    main()
