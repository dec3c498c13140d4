"""Readers for the IDX format of the MNIST family (MNIST, Fashion-MNIST, KMNIST).

An IDX file is a big-endian header ``0x00 0x00 <type code> <ndim>`` followed by ``ndim`` uint32
dimensions and the data in C order. The files are usually gzip-compressed (``*.gz``). Every check that
can fail on a corrupt or truncated file raises :class:`DataError` naming the file; nothing is returned
unless the payload has exactly the size the header promises.
"""

from __future__ import annotations

import gzip
import os
import pathlib
import zlib

import numpy as np

__all__ = ["DataError", "read_idx", "write_idx"]


class DataError(ValueError):
    """A data file exists but is corrupt, truncated or not what was expected; the message names it."""


_TYPES = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_CODES = {np.dtype(v).newbyteorder("="): k for k, v in _TYPES.items()}


def _read_bytes(path: pathlib.Path) -> bytes:
    try:
        with open(path, "rb") as fh:
            head = fh.read(2)
            fh.seek(0)
            if head == b"\x1f\x8b":
                with gzip.GzipFile(fileobj=fh) as gz:
                    return gz.read()
            return fh.read()
    except (OSError, EOFError, zlib.error) as exc:
        # gzip.BadGzipFile is an OSError; a truncated stream raises EOFError.
        raise DataError(
            f"{path}: cannot decompress ({type(exc).__name__}: {exc}); the file is corrupt or truncated"
        ) from exc


def read_idx(path: str | os.PathLike, *, ndim: int | None = None) -> np.ndarray:
    """Read an IDX file (plain or gzip) into a numpy array of native byte order.

    Args:
      path: the file.
      ndim: expected number of dimensions (3 for images, 1 for labels); checked when given.

    Raises:
      DataError: wrong magic number, unknown type code, unexpected ``ndim``, or a payload whose size
        differs from the header's dimensions (truncated or padded file).
    """
    path = pathlib.Path(path)
    raw = _read_bytes(path)
    if len(raw) < 4:
        raise DataError(f"{path}: only {len(raw)} bytes, too short for an IDX header")
    if raw[0] != 0 or raw[1] != 0:
        raise DataError(f"{path}: not an IDX file (magic bytes {raw[:4].hex()}, expected 0000<type><ndim>)")
    code, nd = raw[2], raw[3]
    if code not in _TYPES:
        raise DataError(f"{path}: unknown IDX type code 0x{code:02x}")
    if ndim is not None and nd != ndim:
        raise DataError(f"{path}: expected an IDX file with {ndim} dimensions, the header says {nd}")
    header = 4 + 4 * nd
    if len(raw) < header:
        raise DataError(f"{path}: truncated header ({len(raw)} bytes, need {header})")
    dims = tuple(int(d) for d in np.frombuffer(raw, dtype=">u4", count=nd, offset=4))
    dtype = _TYPES[code]
    expected = int(np.prod(dims, dtype=np.int64)) * dtype.itemsize
    got = len(raw) - header
    if got != expected:
        what = "truncated" if got < expected else "has trailing bytes"
        raise DataError(
            f"{path}: {what}: the header promises shape {dims} ({expected} bytes of data), found {got} bytes"
        )
    arr = np.frombuffer(raw, dtype=dtype, offset=header).reshape(dims)
    return arr.astype(dtype.newbyteorder("="))


def write_idx(path: str | os.PathLike, array, *, compress: bool | None = None) -> pathlib.Path:
    """Write ``array`` as an IDX file (gzip when ``compress`` or when the name ends in ``.gz``).
    Used by tests and to make stand-in files."""
    path = pathlib.Path(path)
    arr = np.asarray(array)
    code = _CODES.get(arr.dtype.newbyteorder("="))
    if code is None:
        raise ValueError(f"write_idx: unsupported dtype {arr.dtype}")
    payload = (
        bytes([0, 0, code, arr.ndim])
        + np.asarray(arr.shape, dtype=">u4").tobytes()
        + arr.astype(_TYPES[code]).tobytes()
    )
    if compress is None:
        compress = path.suffix == ".gz"
    path.parent.mkdir(parents=True, exist_ok=True)
    if compress:
        with gzip.open(path, "wb") as fh:
            fh.write(payload)
    else:
        path.write_bytes(payload)
    return path
