"""Computations shared by the runs of one reproduction: each is done once, the others load its value.

Several experiments compute the same thing: ``distill_table`` with one synthetic sample is
``canvas_distill``'s run, and ``table3`` runs ``distill_table`` and ``augment_net`` again with their
own settings on the datasets where those coincide with the experiments' defaults. An experiment marks
such a computation with ``ctx.reuse(name, config, fn)`` (:class:`blojax.experiments.common.RunContext`);
in a reproduction (``blojax reproduce`` sets :data:`ENV` for its children) the first run to reach it
computes ``fn()`` and leaves the value in a :class:`Store` in ``OUT/.reuse/``, and every later run
with the same ``name`` and ``config`` loads it. Outside a reproduction ``fn()`` is always computed.

Identity of a computation: ``name``, ``repr(config)`` (a frozen dataclass that fixes the result,
seeds included), the blojax and JAX versions and whether float64 is on. A reproduction starts with an
empty store (``--resume`` keeps it), so values never outlive the code that computed them. Two
processes that reach the same computation at once do not both compute it: the first takes a lock
file (``<entry>.lock``, holding its process id), the other waits for the value (or takes over when
the lock's process has ended without leaving one).

What a reused value carries: the value, the histories its loops recorded (a reusing run writes them
to its own ``metrics/``), the data files it read (recorded in the reusing run's ``results.json``) and
where it was computed (``run.json`` lists every reused computation under ``"reused"``).
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import pathlib
import pickle
import sys
import time
from collections.abc import Callable
from typing import Any

from . import files

__all__ = ["ENV", "Store", "computation_key"]

#: Environment variable naming the store's folder (set by ``blojax reproduce`` for its children).
ENV = "BLOJAX_REUSE_DIR"
_FORMAT = 1


def computation_key(name: str, config) -> str:
    """sha256 of ``name``, ``repr(config)``, the blojax and JAX versions and the float64 flag."""
    import jax

    from .configs import version

    ident = "\n".join(
        [name, repr(config), version(), jax.__version__, str(bool(jax.config.read("jax_enable_x64")))]
    )
    return hashlib.sha256(ident.encode()).hexdigest()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@dataclasses.dataclass
class Store:
    """The folder of a reproduction's shared computations.

    Args:
      folder: where the entries (``<name>-<key>.pkl``) and their lock files live.
      poll: seconds between two looks at a lock held by another process.
    """

    folder: pathlib.Path
    poll: float = 0.5

    def __post_init__(self):
        self.folder = pathlib.Path(self.folder)

    def _entry(self, name: str, config) -> pathlib.Path:
        safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in name)
        return self.folder / f"{safe}-{computation_key(name, config)[:20]}.pkl"

    def load(self, path: pathlib.Path) -> dict | None:
        """The entry at ``path``, or ``None`` when there is none or it cannot be read (then the
        computation is simply done again)."""
        try:
            with open(path, "rb") as fh:
                saved = pickle.load(fh)
        except FileNotFoundError:
            return None
        except Exception as exc:  # noqa: BLE001 - an unreadable entry is recomputed, never trusted
            print(f"reuse: ignoring unreadable {path} ({type(exc).__name__})", file=sys.stderr)
            return None
        return saved if isinstance(saved, dict) and saved.get("format") == _FORMAT else None

    def _lock(self, lock: pathlib.Path) -> bool:
        """Take ``lock`` (True), or False when another live process holds it; a lock left by a process
        that has ended, or by this one (locks are not held across calls, so it is a leftover), is
        removed and taken."""
        while True:
            try:
                fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                try:
                    pid = int(lock.read_text().strip() or "0")
                except (OSError, ValueError):
                    pid = 0
                if pid and pid != os.getpid() and _alive(pid):
                    return False
                try:
                    lock.unlink()
                except FileNotFoundError:
                    pass
                continue
            with os.fdopen(fd, "w") as fh:
                fh.write(str(os.getpid()))
            return True

    def get_or_compute(
        self, name: str, config, compute: Callable[[], dict], *, who: str | None = None
    ) -> tuple[dict, bool]:
        """``(entry, reused)``: the stored entry of ``(name, config)`` (``reused=True``), or the dict
        ``compute()`` returns (it must hold ``"value"``), stored for the others (``reused=False``)."""
        self.folder.mkdir(parents=True, exist_ok=True)
        path = self._entry(name, config)
        lock = path.with_name(path.name + ".lock")
        said = False
        while True:
            saved = self.load(path)
            if saved is not None:
                return saved, True
            if self._lock(lock):
                break
            if not said:
                print(
                    f"reuse: waiting for {name} (computed by another run of this reproduction)",
                    file=sys.stderr,
                )
                said = True
            time.sleep(self.poll)
        try:
            saved = self.load(path)  # finished between our last look and the lock
            if saved is not None:
                return saved, True
            t0 = time.perf_counter()
            entry = dict(compute())
            entry.update(format=_FORMAT, name=name, computed_by=who, seconds=time.perf_counter() - t0)
            try:
                blob = pickle.dumps(entry, protocol=pickle.HIGHEST_PROTOCOL)
            except Exception as exc:  # noqa: BLE001 - a value that cannot be stored is not shared
                print(f"reuse: {name} is not shared ({type(exc).__name__}: {exc})", file=sys.stderr)
            else:
                files.atomic_write_bytes(path, blob)
            return entry, False
        finally:
            try:
                lock.unlink()
            except FileNotFoundError:
                pass

    def describe(self, name: str, config) -> dict[str, Any]:
        """``{"name", "file"}`` of the entry of ``(name, config)`` (for ``run.json``)."""
        return {"name": name, "file": str(self._entry(name, config))}
