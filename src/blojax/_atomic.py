"""Atomic file writes: a file is either the old one or the whole new one, never half-written.

Used by the experiments' figure saving (:func:`blojax.experiments.common.save_figure`) and by the run
folders of :mod:`blojax.runner.files`. Nothing here knows about experiments.
"""

from __future__ import annotations

import os
import pathlib
import tempfile

__all__ = ["atomic_write_bytes", "atomic_write_text"]

_UMASK = os.umask(0o022)  # read once (os.umask can only be read by setting it)
os.umask(_UMASK)


def atomic_write_bytes(path, data: bytes) -> pathlib.Path:
    """Write ``data`` to ``path`` via a temporary file in the same folder and ``os.replace``: an
    interruption never leaves a half-written file behind."""
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, 0o666 & ~_UMASK)  # mkstemp makes 0600; give the file the usual permissions
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    return path


def atomic_write_text(path, text: str) -> pathlib.Path:
    """:func:`atomic_write_bytes` of ``text`` encoded as UTF-8."""
    return atomic_write_bytes(path, text.encode("utf-8"))
