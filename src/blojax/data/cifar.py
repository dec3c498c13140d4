"""Reader for CIFAR-10 in its "python version" form: pickled batches ``data_batch_1..5`` and
``test_batch`` in a folder ``cifar-10-batches-py`` (or inside ``cifar-10-python.tar.gz``).

Each batch is a pickled dict with ``b"data"`` (uint8, N x 3072, channel-major 3 x 32 x 32 rows) and
``b"labels"`` (N ints in 0..9). The pickles are read with a restricted unpickler that only builds
plain containers and numpy arrays, so a tampered file cannot run code; anything unexpected raises
:class:`~blojax.data.idx.DataError` naming the file.
"""

from __future__ import annotations

import io
import os
import pathlib
import pickle
import tarfile

import numpy as np

from .idx import DataError

__all__ = ["TRAIN_BATCHES", "TEST_BATCH", "FOLDER", "ARCHIVE", "read_batch", "load_cifar10", "write_batch"]

FOLDER = "cifar-10-batches-py"
ARCHIVE = "cifar-10-python.tar.gz"
TRAIN_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_BATCH = "test_batch"

_ALLOWED = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("_codecs", "encode"),
}


class _SafeUnpickler(pickle.Unpickler):
    def find_class(self, module, name):
        if (module, name) in _ALLOWED:
            if module == "numpy.core.multiarray":  # written by numpy 1.x; numpy 2 moved it to _core
                try:
                    return super().find_class("numpy._core.multiarray", name)
                except (ImportError, AttributeError):
                    pass
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name} from a data file")


def _decode(raw: bytes, where: str):
    try:
        return _SafeUnpickler(io.BytesIO(raw), encoding="bytes").load()
    except Exception as exc:  # noqa: BLE001 - any unpickling failure means a bad file
        raise DataError(
            f"{where}: not a readable CIFAR-10 batch ({type(exc).__name__}: {exc}); "
            "the file is corrupt, truncated or not a CIFAR-10 python batch"
        ) from exc


def read_batch(raw: bytes, where: str) -> tuple[np.ndarray, np.ndarray]:
    """Decode one pickled batch: ``(images uint8 (N, 32, 32, 3), labels int32 (N,))``."""
    obj = _decode(raw, where)
    if not isinstance(obj, dict):
        raise DataError(f"{where}: expected a pickled dict, got {type(obj).__name__}")
    key = lambda k: obj.get(k.encode(), obj.get(k))  # noqa: E731 - py2 pickles use bytes keys
    data, labels = key("data"), key("labels")
    if data is None or labels is None:
        raise DataError(f"{where}: missing 'data' or 'labels' entry (keys: {sorted(map(str, obj))})")
    data = np.asarray(data)
    labels = np.asarray(labels)
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
        raise DataError(f"{where}: 'data' must be uint8 of shape (N, 3072), got {data.dtype}{data.shape}")
    if labels.shape != (data.shape[0],):
        raise DataError(f"{where}: {labels.shape} labels for {data.shape[0]} images")
    if labels.size and (labels.min() < 0 or labels.max() > 9):
        raise DataError(f"{where}: labels outside 0..9 (min {labels.min()}, max {labels.max()})")
    images = data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    return np.ascontiguousarray(images), labels.astype(np.int32)


def write_batch(path: str | os.PathLike, images: np.ndarray, labels) -> pathlib.Path:
    """Write a batch in the CIFAR-10 python format (``images`` uint8 (N, 32, 32, 3)). For tests and
    stand-in files."""
    path = pathlib.Path(path)
    images = np.asarray(images, dtype=np.uint8)
    data = images.transpose(0, 3, 1, 2).reshape(len(images), 3072)
    obj = {
        b"batch_label": b"stand-in",
        b"labels": [int(v) for v in labels],
        b"data": data,
        b"filenames": [b"img%d.png" % i for i in range(len(images))],
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(pickle.dumps(obj, protocol=2))
    return path


def load_cifar10(location: pathlib.Path):
    """Load the 50 000 training and 10 000 test images from a ``cifar-10-batches-py`` folder or the
    ``cifar-10-python.tar.gz`` archive. Returns ``(x_train, y_train, x_test, y_test)`` (uint8 NHWC)."""
    names = TRAIN_BATCHES + (TEST_BATCH,)
    blobs = {}
    if location.is_dir():
        for n in names:
            p = location / n
            if not p.is_file():
                raise DataError(f"{location}: CIFAR-10 folder lacks {n}")
            blobs[n] = (p.read_bytes(), str(p))
    else:
        try:
            with tarfile.open(location, "r:*") as tar:
                members = {pathlib.PurePosixPath(m.name).name: m for m in tar.getmembers() if m.isfile()}
                for n in names:
                    if n not in members:
                        raise DataError(f"{location}: archive lacks {FOLDER}/{n}")
                    data = tar.extractfile(members[n]).read()  # pyright: ignore[reportOptionalMemberAccess]
                    blobs[n] = (data, f"{location}:{members[n].name}")
        except (tarfile.TarError, EOFError, OSError) as exc:
            raise DataError(
                f"{location}: cannot read the archive ({type(exc).__name__}: {exc}); "
                "it is corrupt or truncated"
            ) from exc
    parts = [read_batch(*blobs[n]) for n in TRAIN_BATCHES]
    x_tr = np.concatenate([p[0] for p in parts])
    y_tr = np.concatenate([p[1] for p in parts])
    x_te, y_te = read_batch(*blobs[TEST_BATCH])
    return x_tr, y_tr, x_te, y_te
