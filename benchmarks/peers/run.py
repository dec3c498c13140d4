"""Side-by-side benchmark of blojax against jaxopt, optimistix (+ lineax), torchopt, higher and Betty.

    make bench-peers                       # creates .bench-venv with the peers, then runs this
    .bench-venv/bin/python benchmarks/peers/run.py [--quick] [--repeats N] [--problems 1 2 3 4]

Problems (problems.py): 1 ridge hyperparameters (d = 100, 1000, 10000; T = 100 inner steps, then
CG / normal CG / Neumann with K = 20, or unrolling the T steps), 2 warm-start ring distillation
(2000 outer steps of 1-step unrolling), 3 a cold-start antidistillation step (Neumann K = 100),
4 peak memory of unrolled versus implicit hypergradients (T = 100, 1000).

Everything runs in this one process (problem 4: one child process per row), single-threaded by
default (``--threads``; XLA and torch alike) because the benchmark machine is shared, rows are timed
interleaved and medians reported. A library that does not install, import or offer a method shows
the reason in its row. Hypergradients of problem 1 are cross-checked against blojax (relative error
``||g_peer - g_ours|| / ||g_ours||``). Problem 1 also times ``jax.grad`` through ``blojax.solve``
(row ``blojax grad(solve)``) against the direct ``blojax.hypergradient`` row (median of the paired
per-repeat ratios; target <= 1.05) and the floor (target <= 1.3).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def _parse(argv):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="tiny sizes and few repeats (smoke test)")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--dims", type=int, nargs="*", default=[100, 1000, 10000])
    ap.add_argument("--problems", type=int, nargs="*", default=[1, 2, 3, 4])
    ap.add_argument("--threads", type=int, default=1, help="threads for XLA and torch (0: library default)")
    ap.add_argument(
        "--device",
        choices=("cpu", "cuda"),
        default="cpu",
        help="cuda: JAX on its GPU backend and the torch peers on torch.device('cuda') (GPU table)",
    )
    ap.add_argument("--libs", nargs="*", default=None, help="subset of peers to run (default: all)")
    ap.add_argument(
        "--tasks", nargs="*", default=None, help="problem 1: subset of cg normal_cg neumann unroll"
    )
    ap.add_argument(
        "--sync-dispatch",
        action="store_true",
        help="run every compiled JAX call in the calling thread (jax_cpu_enable_async_dispatch off; "
        "docs/benchmarks.md section 6)",
    )
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--mem-child", nargs=4, metavar=("LIB", "TASK", "T", "D"), help=argparse.SUPPRESS)
    return ap.parse_args(argv)


sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

from bench_util import set_threads  # noqa: E402

ARGS = _parse(sys.argv[1:]) if __name__ == "__main__" else None
if ARGS is not None:
    set_threads(ARGS.threads)
    if ARGS.device == "cuda":
        os.environ["BLOJAX_BENCH_TORCH_DEVICE"] = "cuda"  # read by impl_torch_peers at import
    else:
        os.environ.setdefault("JAX_PLATFORMS", "cpu")
    if ARGS.sync_dispatch:
        import jax

        jax.config.update("jax_cpu_enable_async_dispatch", False)  # before the first computation

import numpy as np  # noqa: E402

import problems  # noqa: E402
from bench_util import block, fmt_time, format_machine, interleaved_medians, machine_info, table  # noqa: E402

#: Problem 1's extra blojax row: ``jax.grad`` through ``blojax.solve`` (targets: <= 1.05x the direct
#: ``blojax.hypergradient`` row, <= 1.3x the floor).
SOLVE = "blojax grad(solve)"

TASKS = {
    "cg": "IFT + CG, K=20",
    "normal_cg": "IFT + normal-equation CG, K=20",
    "neumann": "IFT + Neumann, K=20",
    "unroll": "unroll T=100",
}


def load_libraries(only=None):
    """Import every library; returns {name: object or error string}."""
    libs = {}
    import impl_blojax

    libs["blojax"] = impl_blojax
    specs = [
        ("jaxopt", "impl_jax_peers", "JaxOpt"),
        ("optimistix", "impl_jax_peers", "Optimistix"),
        ("torchopt", "impl_torch_peers", "TorchOpt"),
        ("higher", "impl_torch_peers", "Higher"),
        ("betty", "impl_torch_peers", "Betty"),
    ]
    for name, mod, cls in specs:
        if only is not None and name not in only:
            continue
        try:
            m = __import__(mod)
            obj = getattr(m, cls)
            __import__(name)  # the peer package itself (same name as its row)
            obj.version()
            libs[name] = obj
        except Exception as exc:  # noqa: BLE001 - reported in the table
            libs[name] = f"does not import: {type(exc).__name__}: {str(exc).splitlines()[0][:160]}"
    if "torchopt" in libs and not isinstance(libs["torchopt"], str) and ARGS is not None and ARGS.threads:
        import torch

        torch.set_num_threads(ARGS.threads)
    return libs


def _version(lib):
    if isinstance(lib, str):
        return "n/a"
    return lib.version() if hasattr(lib, "version") else "?"


def _reason(exc):
    return f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}" if str(exc) else type(exc).__name__


def _rel(a, b):
    a, b = np.ravel(np.asarray(a, np.float64)), np.ravel(np.asarray(b, np.float64))
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-30))


# ------------------------------------------------------------------------------------------------ problem 1
class _SolveRow:
    """Problem 1's ``SOLVE`` row: the same unit through ``jax.grad`` of ``blojax.solve``."""

    @staticmethod
    def p1(task, data):
        import impl_blojax

        return impl_blojax.p1_solve(task, data)


def problem1(libs, dims, repeats, min_time):
    import impl_blojax as ours

    libs = {"blojax": libs["blojax"], SOLVE: _SolveRow, **libs}  # the grad(solve) row next to blojax
    rows = []
    for d in dims:
        data = problems.ridge(d, n_train=50 if ARGS.quick else 500, n_val=50 if ARGS.quick else 500)
        fns, refs, entries = {}, {}, []
        for task in TASKS:
            if ARGS.tasks and task not in ARGS.tasks:
                continue
            for name, lib in libs.items():
                key = (task, name)
                row = dict(problem=f"1 ridge d={d}", task=TASKS[task], library=name)
                if isinstance(lib, str):
                    row["status"] = lib
                    entries.append((key, row))
                    continue
                try:
                    fn, conv = lib.p1(task, data)
                    out = conv(fn())
                    if not np.all(np.isfinite(out)):
                        raise FloatingPointError("non-finite hypergradient")
                    refs[key] = out
                    fns[key] = fn
                    row["status"] = "ok"
                except Exception as exc:  # noqa: BLE001 - reported
                    row["status"] = _reason(exc)
                entries.append((key, row))
        units = {f"jax_{k}": v for k, v in ours.p1_units(data).items()}
        if any(not isinstance(libs.get(t), (str, type(None))) for t in ("torchopt", "higher", "betty")):
            from impl_torch_peers import p1_units_torch

            units.update({f"torch_{k}": v for k, v in p1_units_torch(data).items()})
        timed = {f"{t}|{n}": fn for (t, n), fn in fns.items()}
        for uname, (fn, _) in units.items():
            timed[f"unit|{uname}"] = fn
        print(f"  timing problem 1, d={d}: {len(fns)} rows x {repeats} repeats", flush=True)
        meds = interleaved_medians(timed, repeats, min_time=min_time)
        unit_t = {u: meds[f"unit|{u}"]["median"] / n for u, (_, n) in units.items()}
        for (task, name), row in entries:
            key = f"{task}|{name}"
            if key not in meds:
                rows.append(row)
                continue
            row["time"] = meds[key]["median"]
            c = ours.p1_counts(task)
            floor = unit_t["jax_call"] + c["grads"] * unit_t["jax_grad"] + c["hvps"] * unit_t["jax_hvp"]
            ref = refs.get((task, "blojax"))
            if name == SOLVE:
                if f"{task}|blojax" in meds:
                    # the two rows are timed next to each other in every repeat: the median of the
                    # per-repeat ratios cancels the load drifts that move both (the ratio of the
                    # medians is kept too)
                    pairs = zip(meds[key]["all"], meds[f"{task}|blojax"]["all"])
                    row["solve_over_direct"] = float(np.median([a / b for a, b in pairs]))
                    row["solve_over_direct_medians"] = row["time"] / meds[f"{task}|blojax"]["median"]
                if ref is not None:
                    row["rel_err"] = _rel(refs[(task, name)], ref)
                row["floor"] = floor
                row["over_floor"] = row["time"] / floor
                row["counts"] = f"{c['grads']} grads + {c['hvps']} HVPs"
            elif ref is not None and name != "blojax":
                row["rel_err"] = _rel(refs[(task, name)], ref)
                row["ours_over_peer"] = meds[f"{task}|blojax"]["median"] / row["time"]
                if f"{task}|{SOLVE}" in meds:
                    row["solve_over_peer"] = meds[f"{task}|{SOLVE}"]["median"] / row["time"]
                row["ours_over_peer_min"] = meds[f"{task}|blojax"]["min"] / meds[key]["min"]
                # The largest speed-up over this peer that doing the counted work at JAX's unit prices
                # allows: blojax / peer cannot go below floor / peer time.
                row["peer_over_floor"] = row["time"] / floor
                if name in ("torchopt", "higher", "betty") and "torch_grad" in unit_t:
                    row["peer_floor"] = c["grads"] * unit_t["torch_grad"] + c["hvps"] * unit_t["torch_hvp"]
            if name == "blojax":
                row["floor"] = floor
                row["over_floor"] = row["time"] / floor
                row["counts"] = f"{c['grads']} grads + {c['hvps']} HVPs"
            rows.append(row)
        rows.append(
            dict(
                problem=f"1 ridge d={d}",
                task="(units)",
                library="blojax",
                status="ok",
                units={k: v for k, v in unit_t.items()},
            )
        )
    return rows


# ------------------------------------------------------------------------------------------------ problem 2 / 3
def problem2(libs, repeats):
    import impl_blojax as ours

    data = problems.rings()
    steps = 20 if ARGS.quick else data["steps"]
    fns, rows, outs = {}, [], {}
    for name, lib in libs.items():
        row = dict(
            problem=f"2 ring distillation, warm start, {steps} outer steps",
            task="1-step unroll",
            library=name,
        )
        if isinstance(lib, str):
            rows.append(dict(row, status=lib))
            continue
        try:
            if not hasattr(lib, "p2"):
                raise NotImplementedError(
                    "no warm-start bilevel loop or 1-step unrolled hypergradient: it solves single-level problems "
                    "and differentiates their solutions"
                )
            fn, conv = lib.p2(data, steps=steps)
            outs[name] = conv(fn())
            short, sconv = lib.p2(data, steps=10)
            outs[name + "@10"] = sconv(short())[0]
            fns[name] = fn
            rows.append(dict(row, status="ok"))
        except Exception as exc:  # noqa: BLE001
            rows.append(dict(row, status=_reason(exc)))
    # Reference row: the same loop hand-written in plain JAX (what the library's step compiles against).
    row = dict(
        problem=f"2 ring distillation, warm start, {steps} outer steps",
        task="1-step unroll",
        library="plain JAX (hand-written scan)",
    )
    fn, conv = ours.p2_plain_jax(data, steps=steps)
    outs[row["library"]] = conv(fn())
    short, sconv = ours.p2_plain_jax(data, steps=10)
    outs[row["library"] + "@10"] = sconv(short())[0]
    fns[row["library"]] = fn
    rows.append(dict(row, status="ok"))
    units = ours.p2_units(data)
    for uname, (fn, _) in units.items():
        fns[f"unit|{uname}"] = fn
    print(f"  timing problem 2: {len(fns)} rows x {repeats} repeats", flush=True)
    meds = interleaved_medians(fns, repeats, min_time=0.05)
    unit_t = {u: meds[f"unit|{u}"]["median"] / n for u, (_, n) in units.items()}
    rows.append(dict(problem=rows[0]["problem"], task="(units)", library="blojax", status="ok", units=unit_t))
    for row in rows:
        n = row["library"]
        if n in meds:
            row["time"] = meds[n]["median"] / steps
            row["steps_per_s"] = steps / meds[n]["median"]
            if n == "blojax":
                row["floor"], row["counts"] = ours.p2_floor(unit_t, steps)
                row["over_floor"] = row["time"] / row["floor"]
            if n != "blojax" and "blojax" in meds:
                row["ours_over_peer"] = meds["blojax"]["median"] / meds[n]["median"]
                row["rel_err"] = _rel(outs[n + "@10"], outs["blojax@10"])
                row["peer_over_floor"] = row["time"] / ours.p2_floor(unit_t, steps)[0]
    return rows


def problem3(libs, repeats, min_time):
    import impl_blojax as ours

    data = problems.antidistillation()
    fns, rows, outs = {}, [], {}
    for name, lib in libs.items():
        row = dict(
            problem="3 antidistillation, cold start",
            task="T=100 + Neumann K=100, one outer step",
            library=name,
        )
        if isinstance(lib, str):
            rows.append(dict(row, status=lib))
            continue
        try:
            if not hasattr(lib, "p3"):
                raise NotImplementedError("no Neumann-series linear solver")
            fn, conv = lib.p3(data)
            outs[name] = conv(fn())
            fns[name] = fn
            rows.append(dict(row, status="ok"))
        except Exception as exc:  # noqa: BLE001
            rows.append(dict(row, status=_reason(exc)))
    units = ours.p3_units(data)
    for uname, (fn, _) in units.items():
        fns[f"unit|{uname}"] = fn
    print(f"  timing problem 3: {len(fns)} rows x {repeats} repeats", flush=True)
    meds = interleaved_medians(fns, repeats, min_time=min_time)
    unit_t = {u: meds[f"unit|{u}"]["median"] / n for u, (_, n) in units.items()}
    rows.append(dict(problem=rows[0]["problem"], task="(units)", library="blojax", status="ok", units=unit_t))
    for row in rows:
        n = row["library"]
        if n in meds:
            row["time"] = meds[n]["median"]
            if n == "blojax":
                row["floor"], row["counts"] = ours.p3_floor(unit_t, data)
                row["over_floor"] = row["time"] / row["floor"]
            if n != "blojax" and "blojax" in meds:
                row["ours_over_peer"] = meds["blojax"]["median"] / meds[n]["median"]
                row["rel_err"] = _rel(outs[n], outs["blojax"])
                row["peer_over_floor"] = row["time"] / ours.p3_floor(unit_t, data)[0]
    return rows


# ------------------------------------------------------------------------------------------------ problem 4
def _rss_kib(field):
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return -1


def mem_child(lib_name, task, T, d):
    """Child process: peak RSS growth (KiB) during one call, and XLA's temp bytes where known."""
    libs = load_libraries(only=[lib_name] if lib_name != "blojax" else [])
    lib = libs[lib_name]
    if isinstance(lib, str):
        raise SystemExit(json.dumps(dict(error=lib)))
    data = problems.ridge(d)
    xla_temp = None
    if hasattr(lib, "p4_memory"):
        xla_temp, fn = lib.p4_memory(task, data, T)
    else:
        sys.modules[lib.__module__].T_INNER = T  # the torch implementations read it at call time
        fn, _ = lib.p1(task, data)
    import gc

    gc.collect()
    with open("/proc/self/clear_refs", "w") as fh:
        fh.write("5")  # reset the peak-RSS counter (VmHWM)
    base = _rss_kib("VmRSS")
    dev_base = _device_bytes(reset=True)
    t0 = time.perf_counter()
    block(fn())
    dt = time.perf_counter() - t0
    peak = _rss_kib("VmHWM")
    dev_peak = _device_bytes(reset=False)
    print(
        json.dumps(
            dict(
                peak_growth_kib=peak - base,
                xla_temp_bytes=xla_temp,
                seconds=dt,
                device_peak_growth_bytes=None if dev_base is None else dev_peak - dev_base,
            )
        )
    )


def _device_bytes(reset):
    """--device cuda: bytes in use on the GPU (``reset``: now, resetting torch's peak) or the peak
    since (torch: ``max_memory_allocated``; JAX: the allocator's ``peak_bytes_in_use``). None on CPU.

    JAX's allocator keeps one peak for the process (it cannot be reset); each row runs in a fresh
    child whose only earlier allocations are the problem's inputs, so its peak is the call's."""
    if ARGS.device != "cuda":
        return None
    total = 0
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        torch.cuda.synchronize()
        if reset:
            torch.cuda.reset_peak_memory_stats()
        total += torch.cuda.memory_allocated() if reset else torch.cuda.max_memory_allocated()
    if "jax" in sys.modules:
        import jax

        stats = jax.devices()[0].memory_stats() or {}
        total += stats.get("bytes_in_use" if reset else "peak_bytes_in_use", 0)
    return total


def problem4(libs, Ts, d):
    rows = []
    for task in ("unroll", "cg"):
        for T in Ts:
            for name, lib in libs.items():
                row = dict(
                    problem=f"4 memory, ridge d={d}",
                    task=("unroll" if task == "unroll" else "IFT + CG K=20") + f", T={T}",
                    library=name,
                )
                if isinstance(lib, str):
                    rows.append(dict(row, status=lib))
                    continue
                cmd = [
                    sys.executable,
                    str(Path(__file__).resolve()),
                    "--threads",
                    str(ARGS.threads),
                    "--device",
                    ARGS.device,
                    "--mem-child",
                    name,
                    task,
                    str(T),
                    str(d),
                ]
                res = subprocess.run(cmd, capture_output=True, text=True)
                lines = [ln for ln in res.stdout.splitlines() if ln.startswith("{")]
                if res.returncode == 0 and lines:
                    rep = json.loads(lines[-1])
                    dev = rep.get("device_peak_growth_bytes")
                    rows.append(
                        dict(
                            row,
                            status="ok",
                            peak_mib=rep["peak_growth_kib"] / 1024,
                            xla_temp_mib=None
                            if rep["xla_temp_bytes"] is None
                            else rep["xla_temp_bytes"] / 2**20,
                            **({} if dev is None else dict(device_mib=dev / 2**20)),
                        )
                    )
                else:
                    err = (
                        res.stderr.strip().splitlines()
                        or [f"child process ended with code {res.returncode} and no message"]
                    )[-1]
                    try:
                        err = json.loads(res.stderr.strip().splitlines()[-1]).get("error", err)
                    except Exception:  # noqa: BLE001
                        pass
                    rows.append(dict(row, status=err[:200]))
    return rows


# ------------------------------------------------------------------------------------------------ output
def print_tables(rows):
    def show(r, keys):
        out = dict(r)
        if "time" in r:
            out["time"] = fmt_time(r["time"])
        for k in (
            "ours_over_peer",
            "ours_over_peer_min",
            "over_floor",
            "solve_over_direct",
            "solve_over_direct_medians",
            "solve_over_peer",
        ):
            if k in r:
                out[k] = f"{r[k]:.2f}"
        if "peer_over_floor" in r:
            out["peer_over_floor"] = f"{r['peer_over_floor']:.1f}x"
        if "peer_floor" in r:
            out["peer_floor"] = f"{fmt_time(r['peer_floor'])} ({r['time'] / r['peer_floor']:.2f})"
        if "rel_err" in r:
            out["rel_err"] = f"{r['rel_err']:.1e}"
        if "steps_per_s" in r:
            out["steps_per_s"] = f"{r['steps_per_s']:.0f}"
        for k in ("peak_mib", "xla_temp_mib", "device_mib"):
            if r.get(k) is not None:
                out[k] = f"{r[k]:.1f}"
        if r.get("status") != "ok":
            out["time"] = "—"
            out["note"] = r.get("status", "")
        elif r["library"] in ("blojax", SOLVE) and "floor" in r:
            out["note"] = f"floor {fmt_time(r['floor'])} ({r['counts']})"
        return out

    groups = {}
    for r in rows:
        if r.get("task") == "(units)":
            continue
        groups.setdefault(r["problem"], []).append(r)
    text = []
    for prob, rs in groups.items():
        text.append(f"\n### {prob}\n")
        if prob.startswith("4"):
            cols = [
                ("task", "method"),
                ("library", "library"),
                ("peak_mib", "peak RSS growth (MiB)"),
                ("xla_temp_mib", "XLA temp buffers (MiB)"),
                *(
                    [("device_mib", "peak GPU memory growth (MiB)")]
                    if any("device_mib" in r for r in rs)
                    else []
                ),
                ("note", "note"),
            ]
        else:
            cols = [("task", "method"), ("library", "library"), ("time", "time / unit (median)")]
            if prob.startswith("2"):
                cols.append(("steps_per_s", "outer steps / s"))
            cols += [
                ("ours_over_peer", "blojax / peer time"),
                *([("ours_over_peer_min", "same, fastest repeats")] if prob.startswith("1") else []),
                *(
                    [
                        ("solve_over_peer", "grad(solve) / peer time"),
                        ("solve_over_direct", "grad(solve) / direct (median of paired ratios)"),
                        ("solve_over_direct_medians", "same, ratio of medians"),
                    ]
                    if prob.startswith("1")
                    else []
                ),
                ("over_floor", "blojax / floor"),
                ("peer_over_floor", "peer / blojax floor (max. speed-up)"),
                *(
                    [("peer_floor", "peer's work at torch unit prices (peer / that)")]
                    if prob.startswith("1") and any("peer_floor" in r for r in rs)
                    else []
                ),
                ("rel_err", "rel. diff. to blojax"),
                ("note", "note"),
            ]
        text.append(table([show(r, cols) for r in rs], cols))
        units = next((r["units"] for r in rows if r["problem"] == prob and r.get("task") == "(units)"), None)
        if units:
            text.append("unit prices: " + ", ".join(f"{k} {fmt_time(v)}" for k, v in units.items()) + "\n")
    solve_rows = [r for r in rows if r.get("library") == SOLVE and "solve_over_direct" in r]
    if solve_rows:
        worst = max(solve_rows, key=lambda r: r["solve_over_direct"])
        worst_f = max(solve_rows, key=lambda r: r["over_floor"])
        text.append(
            f"\nworst grad(solve) / direct: {worst['solve_over_direct']:.3f} ({worst['problem']}, {worst['task']}); "
            "target <= 1.05"
        )
        text.append(
            f"worst grad(solve) / floor: {worst_f['over_floor']:.2f} ({worst_f['problem']}, {worst_f['task']}); "
            "target <= 1.3"
        )
    s = "\n".join(text)
    print(s, flush=True)
    return s


def main():
    if ARGS.mem_child:
        lib, task, T, d = ARGS.mem_child
        mem_child(lib, task, int(T), int(d))
        return 0
    libs = load_libraries(ARGS.libs)
    info = machine_info(
        (
            "jax",
            "jaxlib",
            "optax",
            "lineax",
            "equinox",
            "optimistix",
            "jaxopt",
            "torch",
            "torchopt",
            "higher",
            "betty-ml",
            "numpy",
        )
    )
    print(format_machine(info))
    import jax

    print(f"device: {ARGS.device}; JAX backend {jax.default_backend()} ({jax.devices()[0].device_kind})")
    if ARGS.device == "cuda":
        if jax.default_backend() != "gpu":
            print(
                "--device cuda: JAX sees no GPU (install a CUDA jaxlib, or run without --device)",
                file=sys.stderr,
            )
            return 2
        if "torch" in sys.modules:
            import torch

            if not torch.cuda.is_available():
                print("--device cuda: torch sees no GPU; the torch peers' rows will fail", file=sys.stderr)
            else:
                print(f"  torch device: {torch.cuda.get_device_name(0)}")
    print(
        f"threads per process: {ARGS.threads or 'library default'}; XLA_FLAGS={os.environ.get('XLA_FLAGS', '')}"
    )
    for name, lib in libs.items():
        print(f"  {name}: {_version(lib) if not isinstance(lib, str) else lib}")
    repeats = 2 if ARGS.quick else ARGS.repeats
    min_time = 0.0 if ARGS.quick else 0.05
    rows = []
    t0 = time.time()
    if 1 in ARGS.problems:
        rows += problem1(libs, [8] if ARGS.quick else ARGS.dims, repeats, min_time)
    if 2 in ARGS.problems:
        rows += problem2(libs, repeats)
    if 3 in ARGS.problems:
        rows += problem3(libs, repeats, min_time)
    if 4 in ARGS.problems:
        rows += problem4(libs, [5, 10] if ARGS.quick else [100, 1000], 50 if ARGS.quick else 10000)
    text = print_tables(rows)
    print(f"\ntotal {time.time() - t0:.0f} s")
    if ARGS.json:
        ARGS.json.parent.mkdir(parents=True, exist_ok=True)
        ARGS.json.write_text(
            json.dumps(
                dict(machine=info, threads=ARGS.threads, rows=rows, tables=text), indent=1, default=str
            )
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
