"""The ``blojax`` command: ``list``, ``run``, ``sweep``, ``reproduce``, ``report`` (see docs/cli.md).

Exit codes: 0 done; 1 a run failed, diverged, gave non-finite results or its figures failed (its folder
keeps what was written); 2 bad input, including an --out folder that holds another run or cannot be
written (one line on stderr naming the valid choices, no traceback); 130 interrupted by SIGINT (Ctrl-C),
143 by SIGTERM. ``--debug`` anywhere on the line shows the traceback of an unexpected error.
"""

from __future__ import annotations

import argparse
import pathlib
import signal
import sys

from .errors import UsageError


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors (exit code 2)."""

    def error(self, message):  # noqa: D401
        raise UsageError(f"{message} (see {self.prog} --help)")


def _build_config(mod, name: str, *, quick: bool, config_file, sets, seed):
    from . import configs

    label = f"{name}.Config"
    config = mod.Config.quick() if quick else mod.Config()
    if config_file:
        config = configs.apply_overrides(config, configs.flatten(configs.load_toml(config_file, name)), label)
    config = configs.apply_overrides(config, configs.parse_set(sets), label)
    if seed is not None:
        if "seed" not in configs.field_names(config):
            raise UsageError(
                f"{name} has no 'seed' field, so --seed does not apply; valid keys: {', '.join(configs.field_names(config))}"
            )
        config = configs.apply_overrides(config, {"seed": seed}, label)
    return config


def _load(name: str):
    from . import discovery

    try:
        return discovery.load_experiment(name)
    except KeyError as exc:
        raise UsageError(exc.args[0]) from None


def _progress(args):
    return False if args.quiet else None


def _add_config_args(p, *, seed=True):
    p.add_argument(
        "--set",
        action="append",
        metavar="KEY=VALUE",
        default=[],
        help="override a config field (repeatable; dotted keys for nested configs)",
    )
    p.add_argument(
        "--config", metavar="FILE.toml", help="config fields from a TOML file (applied before --set)"
    )
    p.add_argument(
        "--quick",
        action="store_true",
        help="start from Config.quick(): shrunken settings that run in seconds",
    )
    if seed:
        p.add_argument("--seed", type=int, default=None, help="random seed (sets the config's seed field)")
    p.add_argument(
        "--quiet",
        action="store_true",
        help="no progress bars (they are also off when stderr is not a terminal)",
    )
    p.add_argument(
        "--checkpoint-every",
        type=int,
        default=None,
        metavar="N",
        help="outer steps per compiled chunk and checkpoint (default: 1/20 of each loop)",
    )
    p.add_argument(
        "--time-budget",
        type=float,
        default=None,
        metavar="S",
        help="seconds one loop may take: one compiled step is timed first and a longer loop is refused",
    )
    p.add_argument(
        "--force",
        action="store_true",
        help="clear an --out folder holding another run, and run past the memory/time guard",
    )


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="blojax",
        description="Bilevel optimization experiments: run, sweep, reproduce the paper, report.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True

    p = sub.add_parser("list", help="experiments with one-line descriptions")
    p.add_argument("--all", action="store_true", help="also list modules that fail to import, and why")

    p = sub.add_parser("run", help="run one experiment into a run folder")
    p.add_argument("experiment")
    _add_config_args(p)
    p.add_argument(
        "--out", metavar="DIR", help="run folder (default: runs/<experiment>-<config fingerprint>)"
    )
    p.add_argument("--resume", action="store_true", help="continue from the checkpoints in --out")
    p.add_argument("--no-plots", action="store_true", help="skip the figures")

    p = sub.add_parser("sweep", help="run a grid of configurations, gather one results table")
    p.add_argument("experiment")
    p.add_argument(
        "--grid",
        action="append",
        metavar="KEY=V1,V2,...",
        default=[],
        help="values of one field (repeatable: cartesian product)",
    )
    p.add_argument("--seeds", metavar="RANGE", help="seeds, e.g. 0-9 or 0,3,7 (innermost grid axis)")
    p.add_argument("--backend", default="local", help="local (vmapped where the experiment allows) or ray")
    p.add_argument("--address", help="Ray cluster address host:port (default: start a local cluster)")
    p.add_argument("--ray-cpus", type=int, default=None, help="CPUs of the local Ray cluster (default: all)")
    p.add_argument("--out", metavar="DIR", help="sweep folder (default: sweeps/<experiment>-<fingerprint>)")
    p.add_argument("--plots", action="store_true", help="write each point's figures too")
    _add_config_args(p, seed=False)

    p = sub.add_parser(
        "reproduce", help="every implemented experiment of PAPER.md §5, then report.html and report.md"
    )
    g = p.add_mutually_exclusive_group()
    g.add_argument("--quick", action="store_true", help="Config.quick() of every experiment (default)")
    g.add_argument("--full", action="store_true", help="the full configurations (slow)")
    p.add_argument("--only", metavar="EXP,...", help="a comma-separated subset of experiments")
    p.add_argument("--out", metavar="DIR", default="reproduce", help="output folder (default: reproduce)")
    p.add_argument("--resume", action="store_true", help="keep finished experiments, resume the others")
    p.add_argument("--no-demo", action="store_true", help="leave out the core demo (python -m blojax.demo)")
    p.add_argument("--timeout", type=float, default=None, metavar="S", help="seconds allowed per experiment")
    p.add_argument(
        "--jobs",
        type=int,
        default=None,
        metavar="N",
        help="experiments run at a time (default: 2, or 1 on one core)",
    )

    p = sub.add_parser("report", help="(re)write report.html and report.md of a folder of runs")
    p.add_argument("folder")

    # internal: the shared process of `reproduce` (runs OUT/NAME for each NAME in turn)
    p = sub.add_parser("run-group")
    p.add_argument("names", nargs="+")
    p.add_argument("--out", required=True)
    p.add_argument("--quick", action="store_true")
    p.add_argument("--resume", action="store_true")
    return parser


def cmd_list(args) -> int:
    from . import discovery

    found, broken = discovery.discover()
    if not found:
        print("no experiments found")
    width = max((len(n) for n in found), default=0)
    for name, desc in discovery.available().items():
        print(f"{name:<{width}}  {desc}")
    if args.all:
        for name, why in broken.items():
            print(f"{name:<{width}}  (unusable: {why})")
    return 0


def cmd_run(args, argv) -> int:
    mod = _load(args.experiment)
    return _run_module(mod, args.experiment, args, argv, default_out=None)


def _run_module(mod, name, args, argv, default_out=None) -> int:
    from . import configs, rundir

    config = _build_config(
        mod, name, quick=args.quick, config_file=args.config, sets=args.set, seed=args.seed
    )
    rundir.validate(config, f"{name}.Config")
    _check_common(args)
    out = pathlib.Path(args.out or default_out or f"runs/{name}-{configs.fingerprint(name, config)[:8]}")
    payload = rundir.execute(
        mod,
        name,
        config,
        out,
        resume=args.resume,
        force=args.force,
        progress=_progress(args),
        checkpoint_every=args.checkpoint_every,
        plots=not getattr(args, "no_plots", False),
        argv=argv,
        time_budget=args.time_budget,
    )
    n_fig = len(payload["figures"])
    print(
        f"{name}: {payload['seconds']:.1f} s (+{payload['plot_seconds']:.1f} s plots); wrote {out}/results.json"
        f"{f' and {n_fig} figure(s)' if n_fig else ''}"
    )
    return 0


def _check_common(args) -> None:
    import math

    if args.checkpoint_every is not None and args.checkpoint_every < 1:
        raise UsageError(f"--checkpoint-every expects a positive integer, got {args.checkpoint_every}")
    tb = getattr(args, "time_budget", None)
    if tb is not None and not (math.isfinite(tb) and tb > 0):
        raise UsageError(f"--time-budget expects a positive number of seconds, got {tb}")


def cmd_sweep(args, argv) -> int:
    from . import configs, sweep

    mod = _load(args.experiment)
    _check_common(args)
    if args.force or args.time_budget is not None:
        raise UsageError(
            "--force and --time-budget apply to blojax run only; a sweep folder keeps finished points "
            "(choose another --out to start afresh)"
        )
    if args.ray_cpus is not None and args.ray_cpus < 1:
        raise UsageError(f"--ray-cpus expects a positive integer, got {args.ray_cpus}")
    if not args.grid and args.seeds is None:
        raise UsageError("sweep: give at least one --grid KEY=V1,V2,... or --seeds")
    if args.backend not in ("local", "ray"):
        raise UsageError(f"unknown --backend {args.backend!r}; choose local or ray")
    if args.address and args.backend != "ray":
        raise UsageError("--address applies to --backend ray only")
    if args.backend == "ray":
        if args.address:
            sweep._check_address(args.address)
        try:
            import ray  # noqa: F401  # pyright: ignore[reportMissingImports]
        except ImportError:
            raise UsageError("the ray backend needs the optional extra: pip install 'blojax[ray]'") from None
    label = f"{args.experiment}.Config"
    base = _build_config(
        mod, args.experiment, quick=args.quick, config_file=args.config, sets=args.set, seed=None
    )
    grid = configs.parse_grid(args.grid, base, label)
    seeds = configs.parse_seeds(args.seeds)
    spec = {"base": configs.to_dict(base), "grid": grid, "seeds": seeds}
    out = pathlib.Path(
        args.out or f"sweeps/{args.experiment}-{configs.fingerprint(args.experiment, spec)[:8]}"
    )
    rows = sweep.run_sweep(
        mod,
        args.experiment,
        base,
        grid,
        seeds,
        out,
        backend=args.backend,
        address=args.address,
        plots=args.plots,
        progress=_progress(args),
        checkpoint_every=args.checkpoint_every,
        quiet=args.quiet,
        argv=argv,
        num_cpus=args.ray_cpus,
    )
    failed = [r for r in rows if r.get("status") != "done"]
    print(f"{args.experiment}: {len(rows)} grid point(s), {len(failed)} failed; wrote {out}/results.csv")
    return 1 if failed else 0


def cmd_reproduce(args, argv) -> int:
    import math

    from . import reproduce

    if args.timeout is not None and not (math.isfinite(args.timeout) and args.timeout > 0):
        raise UsageError(f"--timeout expects a positive number of seconds, got {args.timeout:g}")
    only = [s.strip() for s in args.only.split(",") if s.strip()] if args.only else None
    ok = reproduce.reproduce(
        pathlib.Path(args.out),
        quick=not args.full,
        only=only,
        resume=args.resume,
        demo=not args.no_demo,
        timeout=args.timeout,
        argv=argv,
        jobs=args.jobs,
    )
    return 0 if ok else 1


def cmd_report(args) -> int:
    from . import report

    folder = pathlib.Path(args.folder)
    if not folder.is_dir():
        raise UsageError(f"report: no such folder {folder}")
    if not report.has_runs(folder):
        raise UsageError(
            f"report: {folder} holds no runs (no run.json, sweep.json or reproduce.json in it or its sub-folders)"
        )
    html, md = report.write_report(folder)
    print(f"wrote {html} and {md}")
    return 0


def _on_sigterm(signum, frame):
    from .rundir import Terminated

    raise Terminated()


def _guarded(fn, argv, prefix: str) -> int:
    """Run ``fn()`` mapping every outcome to an exit code and at most one line on stderr: bad input 2,
    failed run 1, SIGINT 130, SIGTERM 143, a file-system error 1 (naming the path), any other error 1
    (``--debug`` in ``argv`` re-raises it with its traceback)."""
    from .rundir import RunFailed, os_error

    debug = "--debug" in argv
    if not debug:
        # a library check raising under jit (throw=True) is logged by JAX with its whole traceback
        # before it reaches us; the run reports its message in one line and keeps the traceback in
        # error.txt, so the log says nothing new (``--debug`` shows it)
        import logging

        logging.getLogger("jax._src.callback").setLevel(logging.CRITICAL)
    previous = None
    try:
        previous = signal.signal(signal.SIGTERM, _on_sigterm)
    except ValueError:  # not the main thread: leave signals alone
        pass
    try:
        return fn()
    except UsageError as exc:
        print(f"{prefix}error: {exc}", file=sys.stderr)
        return 2
    except RunFailed as exc:
        print(f"{prefix}{exc}", file=sys.stderr)
        return exc.code
    except KeyboardInterrupt as exc:
        from .rundir import Terminated

        print(f"{prefix}interrupted", file=sys.stderr)
        return 143 if isinstance(exc, Terminated) else 130
    except OSError as exc:
        if debug:
            raise
        print(f"{prefix}error: {os_error(exc)}", file=sys.stderr)
        return 1
    except Exception as exc:  # noqa: BLE001
        if debug:
            raise
        print(
            f"{prefix}error: {type(exc).__name__}: {exc}".splitlines()[0]
            + " (run again with --debug for the traceback)",
            file=sys.stderr,
        )
        return 1
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)

    def go() -> int:
        args = _parser().parse_args([a for a in argv if a != "--debug"])
        if args.command in ("run", "sweep", "reproduce", "run-group"):
            from .jaxcache import enable

            enable()
        if args.command == "run-group":
            from .reproduce import run_group

            return run_group(pathlib.Path(args.out), args.names, quick=args.quick, resume=args.resume)
        if args.command == "list":
            return cmd_list(args)
        if args.command == "run":
            return cmd_run(args, argv)
        if args.command == "sweep":
            return cmd_sweep(args, argv)
        if args.command == "reproduce":
            return cmd_reproduce(args, argv)
        if args.command == "report":
            return cmd_report(args)
        return 2

    return _guarded(go, argv, "blojax: ")


def run_module(module_name: str, argv=None) -> int:
    """``python -m blojax.experiments.<name> --out DIR [--quick] [--seed N] [--set key=value ...]
    [--resume] [--quiet]``: the same run folder as ``blojax run <name>`` (see ``docs/cli.md``).

    Every experiment module ends with ``if __name__ == "__main__":`` importing this and calling
    ``raise SystemExit(run_module(__name__))`` (the only place an experiment imports the runner)."""
    import importlib

    mod = sys.modules.get(module_name) or importlib.import_module(module_name)
    if module_name == "__main__":
        spec = getattr(mod, "__spec__", None)
        module_name = spec.name if spec is not None else module_name
    name = module_name.rsplit(".", 1)[-1]
    return module_main(mod, name, argv)


def module_main(mod, name: str, argv=None) -> int:
    """``python -m blojax.experiments.<name> --out DIR [--quick] [--seed N] [--set k=v] [--resume]``."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = _Parser(
        prog=f"python -m {getattr(getattr(mod, '__spec__', None), 'name', name)}",
        description=getattr(mod, "DESCRIPTION", ""),
    )
    _add_config_args(parser)
    parser.add_argument(
        "--out", required=True, metavar="DIR", help="run folder (results.json, figures, metrics)"
    )
    parser.add_argument("--resume", action="store_true", help="continue from the checkpoints in --out")
    parser.add_argument("--no-plots", action="store_true", help="skip the figures")

    def go() -> int:
        args = parser.parse_args([a for a in argv if a != "--debug"])
        from .jaxcache import enable

        enable()
        return _run_module(mod, name, args, [name, *argv])

    return _guarded(go, argv, "")


if __name__ == "__main__":
    raise SystemExit(main())
