"""JAX's persistent compilation cache for runs and reproductions.

Most of a quick run is compilation (the experiments' own computation is seconds); XLA can keep the
compiled programs on disk and load them instead of compiling again, across processes. The command
line turns this on for every run, sweep and reproduction in a cache folder chosen by:

1. ``BLOJAX_JAX_CACHE``: a folder, or ``off`` (also ``0``, ``none``, empty) to turn the cache off;
2. otherwise ``$BLOJAX_CACHE/jax`` when ``BLOJAX_CACHE`` is set (the folder of the dataset cache);
3. otherwise the user's cache folder, ``$XDG_CACHE_HOME/blojax/jax`` (``~/.cache/blojax/jax``).

``make`` points it at the project's own ``.cache/jax`` (removed by ``make clean``). A cached program is
the same program XLA would compile (the key covers the computation, the compiler options, the JAX
version and the device), so results are unchanged, bit for bit; only the time to get it differs.
Every compilation is cached, however short (quick runs compile many small programs), except a
program that holds a host callback: JAX never stores one (its key names the callback's address in
this process), so it is compiled again in every process. ``throw=True`` in the library raises
through such a callback (``equinox.error_if``); the experiments therefore call the library with
``throw=False`` inside compiled programs and check on the host (the NaN policy of
:mod:`blojax.experiments.toolkit`). :func:`counts` tells how many programs a run compiled and how
many it loaded; ``run.json`` records it as ``compilations``.
"""

from __future__ import annotations

import os
import pathlib

ENV = "BLOJAX_JAX_CACHE"
_OFF = {"", "0", "off", "none", "false", "no"}


def cache_dir() -> pathlib.Path | None:
    """The compilation cache folder (``None``: turned off)."""
    env = os.environ.get(ENV)
    if env is not None:
        return None if env.strip().lower() in _OFF else pathlib.Path(env).expanduser()
    if os.environ.get("BLOJAX_CACHE"):
        return pathlib.Path(os.environ["BLOJAX_CACHE"]).expanduser() / "jax"
    base = os.environ.get("XDG_CACHE_HOME") or pathlib.Path.home() / ".cache"
    return pathlib.Path(base) / "blojax" / "jax"


def child_env(env: dict | None = None) -> dict:
    """``env`` (default: this process's) with the cache folder passed on to a child process in the
    variables JAX reads itself, so children that are not the command line (the demo) use it too."""
    env = dict(os.environ if env is None else env)
    d = cache_dir()
    if d is not None:
        env[ENV] = str(d)
        env["JAX_COMPILATION_CACHE_DIR"] = str(d)
        env["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0"
        env["JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES"] = "0"
    return env


_COUNTS = {"requests": 0, "hits": 0}
_LISTENING = [False]
_REQUEST = "/jax/compilation_cache/compile_requests_use_cache"
_HIT = "/jax/compilation_cache/cache_hits"


def _on_event(event: str, **_kwargs) -> None:
    if event == _REQUEST:
        _COUNTS["requests"] += 1
    elif event == _HIT:
        _COUNTS["hits"] += 1


def _listen() -> None:
    if not _LISTENING[0]:
        import jax.monitoring

        jax.monitoring.register_event_listener(_on_event)
        _LISTENING[0] = True


def counts() -> dict[str, int]:
    """Programs this process asked the cache for since :func:`enable`: ``{"compiled": n, "from_cache":
    m}`` (``compiled``: not found, compiled here and stored unless it holds a host callback;
    ``from_cache``: loaded from the folder). Zeros while the cache is off."""
    return {"compiled": _COUNTS["requests"] - _COUNTS["hits"], "from_cache": _COUNTS["hits"]}


def enable() -> pathlib.Path | None:
    """Turn the persistent compilation cache on in this process (idempotent); returns its folder, or
    ``None`` when it is off or the folder cannot be created (then runs compile as usual)."""
    d = cache_dir()
    if d is None:
        return None
    try:
        d.mkdir(parents=True, exist_ok=True)
    except OSError:
        return None
    import jax

    jax.config.update("jax_compilation_cache_dir", str(d))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    _listen()
    return d
