"""Where dataset files come from, in this order:

1. an explicit directory (the ``root`` argument of :func:`blojax.data.load_dataset`);
2. the environment variable ``BLOJAX_DATA`` (a directory);
3. known system locations (the Debian package ``dataset-fashion-mnist`` installs
   ``/usr/share/datasets/fashion-mnist``);
4. the download cache (``BLOJAX_CACHE`` or the platform cache folder ``.../blojax``), filled on request
   by a download through ``pooch`` that verifies each file's published MD5 checksum.

A directory "has" a dataset when it holds the files directly or in a sub-folder named after the
dataset (``mnist/``, ``fashion-mnist/``, ``kmnist/``, ``cifar-10/``, also the torchvision-style
``FashionMNIST/raw`` and the like). When nothing is found and the download is off or fails,
:class:`DatasetNotFoundError` lists every place that was searched and how to provide the files.
"""

from __future__ import annotations

import dataclasses
import os
import pathlib

__all__ = [
    "DatasetNotFoundError",
    "Source",
    "SOURCES",
    "find_files",
    "cache_dir",
    "SYSTEM_DIRS",
    "files_used",
    "add_files_used",
    "reset_files_used",
    "record_source",
]


class DatasetNotFoundError(FileNotFoundError):
    """No copy of the dataset's files was found (and none could be downloaded)."""


@dataclasses.dataclass(frozen=True)
class Source:
    """Files of one dataset: ``files`` maps a role (``train_images`` ...) to a file name; ``md5`` the
    published checksums used to verify downloads; ``folders`` the sub-folder names searched."""

    name: str
    files: dict
    md5: dict
    urls: tuple
    folders: tuple
    homepage: str


_IDX = {
    "train_images": "train-images-idx3-ubyte.gz",
    "train_labels": "train-labels-idx1-ubyte.gz",
    "test_images": "t10k-images-idx3-ubyte.gz",
    "test_labels": "t10k-labels-idx1-ubyte.gz",
}

SOURCES = {
    "mnist": Source(
        "mnist",
        _IDX,
        {
            "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
            "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
            "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
            "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
        },
        (
            "https://ossci-datasets.s3.amazonaws.com/mnist/",
            "https://storage.googleapis.com/cvdf-datasets/mnist/",
        ),
        ("mnist", "MNIST", "MNIST/raw"),
        "http://yann.lecun.com/exdb/mnist/",
    ),
    "fashion_mnist": Source(
        "fashion_mnist",
        _IDX,
        {
            "train-images-idx3-ubyte.gz": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
            "train-labels-idx1-ubyte.gz": "25c81989df183df01b3e8a0aad5dffbe",
            "t10k-images-idx3-ubyte.gz": "bef4ecab320f06d8554ea6380940ec79",
            "t10k-labels-idx1-ubyte.gz": "bb300cfdad3c16e7a12a480ee83cd310",
        },
        ("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",),
        ("fashion-mnist", "fashion_mnist", "FashionMNIST", "FashionMNIST/raw"),
        "https://github.com/zalandoresearch/fashion-mnist",
    ),
    "kmnist": Source(
        "kmnist",
        _IDX,
        {
            "train-images-idx3-ubyte.gz": "bdb82020997e1d708af4cf47b453dcf7",
            "train-labels-idx1-ubyte.gz": "e144d726b3acfaa3e44228e80efcd344",
            "t10k-images-idx3-ubyte.gz": "5c965bf0a639b31b8f53240b1b52f4d7",
            "t10k-labels-idx1-ubyte.gz": "7320c461ea6c1c855c0b718fb2a4b134",
        },
        ("http://codh.rois.ac.jp/kmnist/dataset/kmnist/",),
        ("kmnist", "KMNIST", "KMNIST/raw"),
        "https://github.com/rois-codh/kmnist",
    ),
    "cifar10": Source(
        "cifar10",
        {"archive": "cifar-10-python.tar.gz"},
        {"cifar-10-python.tar.gz": "c58f30108f718f92721af3b95e74349a"},
        ("https://www.cs.toronto.edu/~kriz/",),
        ("cifar10", "cifar-10", "CIFAR10"),
        "https://www.cs.toronto.edu/~kriz/cifar.html",
    ),
}

#: Known system locations per dataset (searched after ``root`` and ``BLOJAX_DATA``).
SYSTEM_DIRS = {
    "fashion_mnist": ("/usr/share/datasets/fashion-mnist",),
    "mnist": ("/usr/share/datasets/mnist",),
    "kmnist": ("/usr/share/datasets/kmnist",),
    "cifar10": ("/usr/share/datasets/cifar-10", "/usr/share/datasets/cifar10"),
}


# ------------------------------------------------------------------------------------ provenance
_USED: list[dict] = []
_DIGESTS: dict = {}


def _digest(path: pathlib.Path) -> tuple[int, str]:
    """``(size in bytes, sha256 hex)`` of a file, or of every file under a folder (names and contents,
    sorted); cached by path, size and modification time."""
    import hashlib

    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    stamp = (str(path), tuple((str(p), p.stat().st_size, p.stat().st_mtime_ns) for p in files))
    if stamp not in _DIGESTS:
        h, size = hashlib.sha256(), 0
        for p in files:
            if path.is_dir():
                h.update(str(p.relative_to(path)).encode() + b"\0")
            with open(p, "rb") as fh:
                for block in iter(lambda: fh.read(1 << 20), b""):
                    h.update(block)
                    size += len(block)
        _DIGESTS[stamp] = (size, h.hexdigest())
    return _DIGESTS[stamp]


def _record(dataset: str, found_in: str, files: dict) -> dict:
    for role, path in files.items():
        path = pathlib.Path(path)
        size, sha = _digest(path)
        entry = {
            "dataset": dataset,
            "role": role,
            "name": path.name,
            "size": size,
            "sha256": sha,
            "path": str(path.resolve()),
            "found_in": found_in,
        }
        if not any(e["path"] == entry["path"] and e["role"] == role for e in _USED):
            _USED.append(entry)
    return files


def record_source(dataset: str, description: str, version: str) -> None:
    """Record a dataset that comes from a package rather than files (e.g. scikit-learn's digits)."""
    entry = {
        "dataset": dataset,
        "role": "package",
        "name": description,
        "size": None,
        "sha256": version,
        "path": None,
        "found_in": "package",
    }
    if entry not in _USED:
        _USED.append(entry)


def files_used(full: bool = False) -> list[dict]:
    """The dataset files this process has read through :func:`find_files`, in order: ``{dataset, role,
    name, size, sha256}`` each (``full``: also ``path`` and ``found_in``). Run folders record them in
    results.json, and checkpoints carry them so a resume with other data is refused."""
    keys = ("dataset", "role", "name", "size", "sha256") + (("path", "found_in") if full else ())
    return [{k: e[k] for k in keys} for e in _USED]


def add_files_used(entries: list[dict]) -> None:
    """Record ``entries`` (as :func:`files_used` ``(full=True)`` returns them) as read by this run: a
    run that loads a computation another run did records the files that computation read."""
    for e in entries:
        if e not in _USED:
            _USED.append(dict(e))


def reset_files_used() -> None:
    """Forget the recorded files (a new run in the same process starts from none)."""
    _USED.clear()


def cache_dir() -> pathlib.Path:
    """The download cache: ``$BLOJAX_CACHE`` or the platform cache folder for ``blojax``."""
    env = os.environ.get("BLOJAX_CACHE")
    if env:
        return pathlib.Path(env).expanduser()
    try:
        import pooch
    except ImportError:  # without the data extra: the same folder pooch would use on Linux
        return pathlib.Path(os.environ.get("XDG_CACHE_HOME") or pathlib.Path.home() / ".cache") / "blojax"
    return pathlib.Path(pooch.os_cache("blojax"))


def _candidates(base: pathlib.Path, source: Source):
    yield base
    for sub in source.folders:
        yield base / sub


def _resolve_in(base: pathlib.Path, source: Source, want):
    """``{role: path}`` if every wanted file is in one candidate folder of ``base`` (a name without
    ``.gz`` is accepted too), else ``None``. ``want(folder)`` may accept other layouts (CIFAR folder)."""
    for folder in _candidates(base, source):
        if not folder.is_dir():
            continue
        got = want(folder)
        if got is not None:
            return got
    return None


def _want_files(source: Source):
    def want(folder: pathlib.Path):
        found = {}
        for role, fname in source.files.items():
            options = [folder / fname]
            if fname.endswith(".gz"):
                options.append(folder / fname[:-3])
            hit = next((p for p in options if p.is_file()), None)
            if hit is None:
                return None
            found[role] = hit
        return found

    if source.name == "cifar10":
        from .cifar import FOLDER

        inner = want

        def want(folder: pathlib.Path):  # noqa: F811 - an unpacked folder wins over the archive
            for unpacked in (folder / FOLDER, folder):
                if (unpacked / "data_batch_1").is_file():
                    return {"archive": unpacked}
            return inner(folder)

    return want


def find_files(name: str, root=None, *, download: bool = False) -> dict:
    """Locate (and optionally download) the files of dataset ``name``: ``{role: path}``.

    Raises:
      DatasetNotFoundError: nothing found, with the list of places searched and how to fix it.
    """
    source = SOURCES[name]
    want = _want_files(source)
    searched = []
    places = []
    if root is not None:
        places.append(("root argument", pathlib.Path(root).expanduser()))
    env = os.environ.get("BLOJAX_DATA")
    if env:
        places.append(("BLOJAX_DATA", pathlib.Path(env).expanduser()))
    for d in SYSTEM_DIRS.get(name, ()):
        places.append(("system", pathlib.Path(d)))
    cache = cache_dir() / name
    places.append(("download cache", cache))
    for label, base in places:
        got = _resolve_in(base, source, want)
        if got is not None:
            return _record(name, label, got)
        searched.append(f"{label}: {base}" + ("" if base.exists() else " (does not exist)"))
        if label in ("root argument", "BLOJAX_DATA"):  # named by the user: never fall back to another copy
            if download:
                break  # asked for: download (and checksum) into the cache instead
            why = "does not exist" if not base.exists() else "lacks some of the files"
            raise DatasetNotFoundError(
                f"dataset {name!r}: files not found: {label} {base} {why} ({', '.join(source.files.values())}; searched it and its "
                f"sub-folders {', '.join(source.folders)}); "
                f"point root= or BLOJAX_DATA at a folder holding the files, leave both unset to use the system copy "
                f"or the download cache, or pass download=True"
            )

    error = None
    if download:
        try:
            return _record(name, "download", _download(source, cache))
        except Exception as exc:  # noqa: BLE001 - reported below with the search list
            error = f"{type(exc).__name__}: {exc}"
    files = ", ".join(source.files.values())
    lines = [
        f"dataset {name!r}: files not found ({files}).",
        "Searched (each folder and its sub-folders " + ", ".join(source.folders) + "):",
        *[f"  - {s}" for s in searched],
    ]
    if download:
        lines.append(f"Download from {source.urls[0]} failed: {error}")
    else:
        lines.append("Download is off (load_dataset(..., download=True) fetches and checksums them).")
    lines.append(
        f"To provide them: put the files in a folder and pass root=FOLDER or set BLOJAX_DATA=FOLDER "
        f"(source: {source.homepage})"
        + ("; on Debian/Ubuntu: apt-get install dataset-fashion-mnist" if name == "fashion_mnist" else "")
    )
    raise DatasetNotFoundError("\n".join(lines))


def _download(source: Source, cache: pathlib.Path) -> dict:
    try:
        import pooch
    except ImportError:
        raise ImportError(
            "downloading datasets needs pooch, which is in the optional extra: pip install 'blojax[data]'"
        ) from None

    cache.mkdir(parents=True, exist_ok=True)
    found = {}
    for role, fname in source.files.items():
        last = None
        for base in source.urls:
            try:
                path = pooch.retrieve(
                    base + fname,
                    known_hash=f"md5:{source.md5[fname]}",
                    fname=fname,
                    path=cache,
                    progressbar=False,
                )
                break
            except Exception as exc:  # noqa: BLE001 - try the next mirror
                last = exc
        else:
            raise last or DatasetNotFoundError(f"{source.name}: no download address for {fname}")
        found[role] = pathlib.Path(path)
    return found
