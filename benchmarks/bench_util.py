"""Shared helpers of the benchmarks: interleaved timing, the ridge-regression data, machine facts.

Timing on a shared machine: every row of a table is timed in the same process, the rows are
*interleaved* (repeat r times row 1, row 2, ..., row n, then again), and the median over repeats is
reported, so that contention from other processes inflates all rows alike and ratios stay meaningful.
"""

from __future__ import annotations

import os
import platform
import statistics
import subprocess
import sys
import time
from typing import Callable

import numpy as np


def set_threads(n: int):
    """Limit XLA (and torch/OpenMP) to ``n`` threads; call before importing jax. 0: library default.

    On a shared 2-core machine multi-threaded kernels of several processes oversubscribe the cores
    and timings swing wildly (torch's OpenMP spin-waits made one call 40x slower under load); one
    thread per process gives stable, comparable numbers.
    """
    if not n:
        return
    flags = os.environ.get("XLA_FLAGS", "")
    if "intra_op_parallelism_threads" not in flags:
        os.environ["XLA_FLAGS"] = (
            flags + f" --xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads={n}"
        ).strip()
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):  # torch, LAPACK (eigh)
        os.environ.setdefault(var, str(n))


def block(x):
    """Wait for every array in ``x``: JAX arrays by ``block_until_ready``; torch's CUDA stream by
    ``torch.cuda.synchronize`` when torch has started CUDA (CPU tensors are computed already)."""
    try:
        import jax

        jax.block_until_ready(x)
    except Exception:  # noqa: BLE001 - non-JAX outputs
        pass
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.synchronize()
    return x


def interleaved_medians(
    fns: dict[str, Callable[[], object]], repeats: int, *, min_time: float = 0.0, warmup: int = 1
) -> dict[str, dict]:
    """Time every callable ``repeats`` times, interleaved; return per-name ``median``, ``min``, ``all``
    (seconds per call).

    A call shorter than ``min_time`` is repeated inside one timing until ``min_time`` has passed (the
    count is fixed after the warm-up) so that short calls are not dominated by the clock's resolution.
    """
    inner = {}
    for name, fn in fns.items():
        for _ in range(warmup):
            block(fn())
        t0 = time.perf_counter()
        block(fn())
        dt = time.perf_counter() - t0
        inner[name] = max(1, int(np.ceil(min_time / max(dt, 1e-9)))) if min_time > 0 else 1
    times = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            n = inner[name]
            t0 = time.perf_counter()
            for _ in range(n):
                out = fn()
            block(out)
            times[name].append((time.perf_counter() - t0) / n)
    return {
        name: dict(median=statistics.median(ts), min=min(ts), all=ts, inner=inner[name])
        for name, ts in times.items()
    }


# ------------------------------------------------------------------------------------------------
# Ridge regression with one log-penalty per feature (problem 1 of the peer benchmark).
# ------------------------------------------------------------------------------------------------


def blojax_ridge_problem():
    """The ridge hyperparameter problem as a ``blojax.Problem`` (data passed as batches):
    ``f(u, w) = 1/(2n) ||X w - y||^2 + 1/2 sum_i exp(u_i) w_i^2``, ``F(u, w) = 1/(2m) ||X_v w - y_v||^2``."""
    import jax.numpy as jnp

    import blojax as blo

    def f(u, w, batch):
        X, y = batch
        r = X @ w - y
        return 0.5 * jnp.mean(r * r) + 0.5 * jnp.sum(jnp.exp(u) * w * w)

    def F(u, w, batch):
        Xv, yv = batch
        r = Xv @ w - yv
        return 0.5 * jnp.mean(r * r)

    return blo.Problem(f, F)


def ridge_data(d: int, n_train: int = 500, n_val: int = 500, seed: int = 0):
    """Synthetic linear-regression data in float32 (numpy), shared by every library.

    ``y = X w_true + 0.1 noise`` with Gaussian ``X``; returns a dict with ``X, y, Xv, yv`` (train and
    validation), the starting point ``u0 = log(1e-2)`` per feature, ``w0 = 0`` and the inner step size
    ``alpha = 1 / L`` with ``L`` the largest eigenvalue of the inner Hessian at ``u0``
    (``X^T X / n + diag(exp(u0))``), so that plain gradient descent is stable for every library alike.
    """
    rng = np.random.default_rng(seed)
    w_true = rng.standard_normal(d).astype(np.float32) / np.sqrt(d)
    X = rng.standard_normal((n_train, d)).astype(np.float32)
    Xv = rng.standard_normal((n_val, d)).astype(np.float32)
    y = (X @ w_true + 0.1 * rng.standard_normal(n_train)).astype(np.float32)
    yv = (Xv @ w_true + 0.1 * rng.standard_normal(n_val)).astype(np.float32)
    u0 = np.full(d, np.log(1e-2), np.float32)
    # Largest eigenvalue of X^T X / n = largest squared singular value of X / sqrt(n).
    smax = np.linalg.norm(X.astype(np.float64), 2) / np.sqrt(n_train)
    L = smax**2 + float(np.exp(u0).max())
    return dict(X=X, y=y, Xv=Xv, yv=yv, u0=u0, w0=np.zeros(d, np.float32), alpha=float(1.0 / L))


# ------------------------------------------------------------------------------------------------
# Machine facts for the tables.
# ------------------------------------------------------------------------------------------------


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _loadavg() -> str:
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "n/a"


def machine_info(packages=("jax", "jaxlib", "optax", "numpy")) -> dict:
    """Machine, core count, load average and package versions (those importable)."""
    from importlib import metadata

    versions = {}
    for p in packages:
        try:
            versions[p] = metadata.version(p)
        except metadata.PackageNotFoundError:
            versions[p] = "not installed"
    try:
        rev = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            cwd=os.path.dirname(os.path.abspath(__file__)),
        ).stdout.strip()
    except OSError:
        rev = "?"
    return dict(
        cpu=_cpu_model(),
        cores=os.cpu_count(),
        loadavg_1_5_15=_loadavg(),
        python=sys.version.split()[0],
        platform=platform.platform(),
        versions=versions,
        git=rev,
        date=time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    )


def format_machine(info: dict) -> str:
    v = ", ".join(f"{k} {val}" for k, val in info["versions"].items())
    return (
        f"machine: {info['cpu']}, {info['cores']} cores, load average {info['loadavg_1_5_15']}; "
        f"Python {info['python']}; {v}; git {info['git']}; {info['date']}"
    )


def table(rows: list[dict], columns: list[tuple[str, str]]) -> str:
    """A Markdown table of ``rows`` (dicts) with ``columns`` = [(key, header)]."""
    head = "| " + " | ".join(h for _, h in columns) + " |"
    sep = "|" + "|".join("---" for _ in columns) + "|"
    body = ["| " + " | ".join(str(r.get(k, "")) for k, _ in columns) + " |" for r in rows]
    return "\n".join([head, sep, *body])


def fmt_time(s: float) -> str:
    if s != s:  # NaN
        return "n/a"
    if s >= 1:
        return f"{s:.2f} s"
    if s >= 1e-3:
        return f"{s * 1e3:.2f} ms"
    if s >= 1e-5:
        return f"{s * 1e6:.0f} us"
    return f"{s * 1e6:.2f} us"


# ------------------------------------------------------------------------------------------------ unit prices
UNIT_LOOP = 50


def grad_loop(grad_fn, w, *args, n: int = UNIT_LOOP):
    """``(call, n)``: ``call()`` runs ``n`` gradient steps ``w <- w - 1e-3 grad_fn(w, *args)`` in one
    compiled loop, so ``time / n`` is the amortized price of one gradient (no dispatch). The arrays
    are arguments of the compiled loop, not constants baked into it."""
    import jax

    @jax.jit
    def loop(w_, *a):
        step = lambda _, x: jax.tree_util.tree_map(lambda p, g: p - 1e-3 * g, x, grad_fn(x, *a))  # noqa: E731
        return jax.lax.fori_loop(0, n, step, w_)

    return (lambda: loop(w, *args)), n


def hvp_loop(grad_fn, w, *args, n: int = UNIT_LOOP):
    """``(call, n)``: ``n`` forward-over-reverse Hessian-vector products of ``grad_fn(., *args)`` at
    ``w`` from one linearization (normalized between products), in one compiled loop."""
    import jax
    import jax.numpy as jnp

    @jax.jit
    def loop(w_, *a):
        _, hvp = jax.linearize(lambda x: grad_fn(x, *a), w_)

        def body(_, v):
            h = hvp(v)
            nrm = jnp.sqrt(sum(jnp.vdot(x, x) for x in jax.tree_util.tree_leaves(h)))
            return jax.tree_util.tree_map(lambda x: x / (nrm + 1e-30), h)

        return jax.lax.fori_loop(0, n, body, w_)

    return (lambda: loop(w, *args)), n


def noop_like(fn, *args):
    """``(call, 1)``: a compiled call with the arguments and the results (shapes, dtypes) of
    ``fn(*args)`` that does no work -- the dispatch price every call of ``fn`` pays (JAX: about
    1.6 us per result array on the benchmark machine)."""
    import jax
    import jax.numpy as jnp

    shapes = jax.eval_shape(fn, *args)
    call = jax.jit(lambda *a: jax.tree_util.tree_map(lambda s: jnp.zeros(s.shape, s.dtype), shapes))
    return (lambda: call(*args)), 1
