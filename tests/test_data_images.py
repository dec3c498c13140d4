"""Data layer: IDX and CIFAR readers on small files of our own, every lookup path, clear errors, and
the real digits / Fashion-MNIST files when present."""

import gzip
import os
import pathlib
import pickle
import tarfile

import numpy as np
import pytest

from blojax.data import DataError, DatasetNotFoundError, ImageDataset, load_dataset
from blojax.data import download as dl
from blojax.data.cifar import FOLDER, TEST_BATCH, TRAIN_BATCHES, write_batch
from blojax.data.idx import read_idx, write_idx
from conftest import assert_close

FASHION_SYSTEM = pathlib.Path("/usr/share/datasets/fashion-mnist")


@pytest.fixture(autouse=True)
def _isolated(monkeypatch, tmp_path):
    """No environment leaks into the lookup: empty cache, no BLOJAX_DATA, no downloads, no system dirs
    (tests that want them set them explicitly)."""
    monkeypatch.delenv("BLOJAX_DATA", raising=False)
    monkeypatch.delenv("BLOJAX_DOWNLOAD", raising=False)
    monkeypatch.setenv("BLOJAX_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(dl, "SYSTEM_DIRS", {})


def make_idx_dataset(folder, n_train=60, n_test=20, seed=0, gz=True):
    """Small MNIST-style files: the image of example i is filled with the value 10 * label + (i % 7)."""
    rng = np.random.default_rng(seed)
    folder = pathlib.Path(folder)
    out = {}
    for split, n in (("train", n_train), ("t10k", n_test)):
        y = (np.arange(n) % 10).astype(np.uint8)
        rng.shuffle(y)
        x = (10 * y[:, None, None] + (np.arange(n) % 7)[:, None, None]).astype(np.uint8) * np.ones(
            (1, 28, 28), np.uint8
        )
        sfx = ".gz" if gz else ""
        write_idx(folder / f"{split}-images-idx3-ubyte{sfx}", x)
        write_idx(folder / f"{split}-labels-idx1-ubyte{sfx}", y)
        out[split] = (x, y)
    return out


def make_cifar(folder, n_per_batch=12, seed=0):
    rng = np.random.default_rng(seed)
    folder = pathlib.Path(folder) / FOLDER
    all_x, all_y = [], []
    for name in TRAIN_BATCHES + (TEST_BATCH,):
        x = rng.integers(0, 256, size=(n_per_batch, 32, 32, 3), dtype=np.uint8)
        y = rng.integers(0, 10, size=n_per_batch)
        write_batch(folder / name, x, y)
        all_x.append(x)
        all_y.append(y)
    return folder, all_x, all_y


# ------------------------------------------------------------------------------------ IDX
@pytest.mark.parametrize("gz", [True, False])
def test_idx_roundtrip(tmp_path, gz):
    a = np.random.default_rng(1).integers(0, 256, size=(5, 3, 4), dtype=np.uint8)
    p = write_idx(tmp_path / ("a.idx" + (".gz" if gz else "")), a)
    b = read_idx(p, ndim=3)
    assert b.dtype == np.uint8 and np.array_equal(a, b)
    f = np.arange(6, dtype=np.float32).reshape(2, 3)
    assert np.array_equal(read_idx(write_idx(tmp_path / "f.idx", f)), f)


def test_idx_corrupt_files_raise(tmp_path):
    a = np.zeros((4, 28, 28), np.uint8)
    raw = tmp_path / "x.idx"
    write_idx(raw, a)
    data = raw.read_bytes()
    (tmp_path / "trunc.idx").write_bytes(data[:-5])
    with pytest.raises(DataError, match="truncated"):
        read_idx(tmp_path / "trunc.idx")
    (tmp_path / "pad.idx").write_bytes(data + b"\0")
    with pytest.raises(DataError, match="trailing"):
        read_idx(tmp_path / "pad.idx")
    (tmp_path / "magic.idx").write_bytes(b"\x01\x02" + data[2:])
    with pytest.raises(DataError, match="not an IDX"):
        read_idx(tmp_path / "magic.idx")
    with pytest.raises(DataError, match="1 dimensions"):
        read_idx(raw, ndim=1)
    gz = gzip.compress(data)
    (tmp_path / "trunc.gz").write_bytes(gz[: len(gz) // 2])
    with pytest.raises(DataError, match="trunc.gz"):
        read_idx(tmp_path / "trunc.gz")
    (tmp_path / "garbage.gz").write_bytes(b"\x1f\x8b" + b"garbage" * 10)
    with pytest.raises(DataError, match="garbage.gz"):
        read_idx(tmp_path / "garbage.gz")


@pytest.mark.parametrize("name", ["mnist", "fashion_mnist", "kmnist"])
def test_idx_dataset_from_root(tmp_path, name):
    made = make_idx_dataset(tmp_path / name)  # sub-folder named after the dataset
    d = load_dataset(name, root=tmp_path, val_size=10, normalize="none")
    assert isinstance(d, ImageDataset) and d.name == name
    assert d.sizes() == {"train": 50, "val": 10, "test": 20}
    assert d.image_shape == (28, 28, 1) and d.x_train.shape == (50, 28, 28, 1)
    assert d.x_train.dtype == np.float32 and d.y_train.dtype == np.int32
    # Every training example's pixels encode its label (10 * y + i % 7): train+val hold all of them.
    for x, y in ((d.x_train, d.y_train), (d.x_val, d.y_val), (d.x_test, d.y_test)):
        assert np.array_equal(x[:, 0, 0, 0] // 10, y)
    x_te, y_te = made["t10k"]
    assert np.array_equal(d.x_test[..., 0], x_te) and np.array_equal(d.y_test, y_te)
    # train + val is exactly the training file
    both = np.sort(np.concatenate([d.x_train[:, 0, 0, 0], d.x_val[:, 0, 0, 0]]))
    assert np.array_equal(both, np.sort(made["train"][0][:, 0, 0]))


def test_plain_files_env_var_and_normalization(tmp_path, monkeypatch):
    make_idx_dataset(tmp_path / "data", gz=False)
    monkeypatch.setenv("BLOJAX_DATA", str(tmp_path / "data"))
    d = load_dataset("mnist", val_size=10)  # standard normalization
    assert abs(d.x_train.mean()) < 1e-4 and abs(d.x_train.std() - 1) < 1e-3
    u = load_dataset("mnist", val_size=10, normalize="unit")
    assert 0 <= u.x_train.min() and u.x_train.max() <= 1
    assert_close((u.x_test - d.mean) / d.std, d.x_test, ulps=64)  # the two normalizations, float32


def test_system_dir_and_cache(tmp_path, monkeypatch):
    make_idx_dataset(tmp_path / "sys")
    monkeypatch.setattr(dl, "SYSTEM_DIRS", {"kmnist": (str(tmp_path / "sys"),)})
    assert load_dataset("kmnist", val_size=5).source == str(tmp_path / "sys")
    make_idx_dataset(tmp_path / "cache" / "mnist")
    assert load_dataset("mnist", val_size=5).source == str(tmp_path / "cache" / "mnist")


def test_subsets_are_seeded_balanced_and_bounded(tmp_path):
    make_idx_dataset(tmp_path, n_train=200)
    a = load_dataset("mnist", root=tmp_path, val_size=50, train_subset=40, test_subset=10, seed=3)
    b = load_dataset("mnist", root=tmp_path, val_size=50, train_subset=40, test_subset=10, seed=3)
    c = load_dataset("mnist", root=tmp_path, val_size=50, train_subset=40, test_subset=10, seed=4)
    assert np.array_equal(a.x_train, b.x_train) and not np.array_equal(a.x_train, c.x_train)
    assert np.array_equal(np.bincount(a.y_train, minlength=10), np.full(10, 4))
    assert len(a.y_test) == 10 and len(a.y_val) == 50
    with pytest.raises(ValueError, match=r"train_subset=151.*only 150"):
        load_dataset("mnist", root=tmp_path, val_size=50, train_subset=151)
    with pytest.raises(ValueError, match="test_subset"):
        load_dataset("mnist", root=tmp_path, val_size=50, test_subset=0)
    with pytest.raises(ValueError, match="val_size"):
        load_dataset("mnist", root=tmp_path, val_size=200)


def test_missing_files_one_clear_error(tmp_path):
    # a folder the user names is the only place searched, and the error says so
    with pytest.raises(DatasetNotFoundError) as err:
        load_dataset("kmnist", root=tmp_path / "nowhere")
    msg = str(err.value)
    assert str(tmp_path / "nowhere") in msg and "does not exist" in msg
    # nothing named: every place is searched, and the error lists them and how to provide the files
    with pytest.raises(DatasetNotFoundError) as err:
        load_dataset("kmnist")
    msg = str(err.value)
    assert "train-images-idx3-ubyte.gz" in msg and str(tmp_path / "cache" / "kmnist") in msg
    assert "BLOJAX_DATA" in msg and "download=True" in msg
    # half the files present is still "not found" (no partial dataset)
    make_idx_dataset(tmp_path / "half")
    (tmp_path / "half" / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(DatasetNotFoundError):
        load_dataset("mnist", root=tmp_path / "half")


def test_download_failure_is_reported(tmp_path, monkeypatch):
    def boom(*a, **k):
        raise ConnectionError("network unreachable")

    import pooch

    monkeypatch.setattr(pooch, "retrieve", boom)
    with pytest.raises(DatasetNotFoundError, match="network unreachable"):
        load_dataset("kmnist", download=True)


def test_download_goes_through_pooch_with_checksums(tmp_path, monkeypatch):
    calls = []
    src = tmp_path / "src"
    make_idx_dataset(src)

    def fake_retrieve(url, known_hash, fname, path, progressbar):
        calls.append((url, known_hash))
        target = pathlib.Path(path) / fname
        target.write_bytes((src / fname).read_bytes())
        return str(target)

    import pooch

    monkeypatch.setattr(pooch, "retrieve", fake_retrieve)
    d = load_dataset("fashion_mnist", download=True, val_size=10)
    assert d.sizes()["test"] == 20
    assert len(calls) == 4 and all(h.startswith("md5:") and len(h) == 36 for _, h in calls)
    assert (
        "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/train-images-idx3-ubyte.gz",
        "md5:8d4fb7e6c68d591d4c3dfef9ec88bf0d",
    ) in calls


def test_corrupt_dataset_files(tmp_path):
    make_idx_dataset(tmp_path)
    p = tmp_path / "train-images-idx3-ubyte.gz"
    raw = gzip.decompress(p.read_bytes())
    p.write_bytes(gzip.compress(raw[:-100]))
    with pytest.raises(DataError, match="train-images.*truncated"):
        load_dataset("mnist", root=tmp_path, val_size=5)
    make_idx_dataset(tmp_path)
    write_idx(tmp_path / "train-labels-idx1-ubyte.gz", np.zeros(59, np.uint8))
    with pytest.raises(DataError, match="60 images but"):
        load_dataset("mnist", root=tmp_path, val_size=5)
    write_idx(tmp_path / "train-labels-idx1-ubyte.gz", np.full(60, 12, np.uint8))
    with pytest.raises(DataError, match="labels outside"):
        load_dataset("mnist", root=tmp_path, val_size=5)


def test_unknown_name_and_options():
    with pytest.raises(ValueError, match="unknown dataset 'svhn'.*fashion_mnist"):
        load_dataset("svhn")
    with pytest.raises(ValueError, match="normalize"):
        load_dataset("digits", normalize="zscore")


# ------------------------------------------------------------------------------------ CIFAR-10
def test_cifar_folder_and_archive(tmp_path):
    folder, xs, ys = make_cifar(tmp_path / "cifar-10")
    d = load_dataset("cifar10", root=tmp_path, val_size=6, normalize="none")
    assert d.image_shape == (32, 32, 3) and d.sizes() == {"train": 54, "val": 6, "test": 12}
    assert np.array_equal(d.x_test, xs[-1].astype(np.float32)) and np.array_equal(d.y_test, ys[-1])
    archive = tmp_path / "arch" / "cifar-10-python.tar.gz"
    archive.parent.mkdir()
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(folder, arcname=FOLDER)
    e = load_dataset("cifar10", root=tmp_path / "arch", val_size=6, normalize="none")
    assert np.array_equal(e.x_train, d.x_train) and e.source == str(archive)


def test_cifar_corrupt(tmp_path):
    folder, _, _ = make_cifar(tmp_path)
    (folder / "data_batch_3").write_bytes((folder / "data_batch_3").read_bytes()[:500])
    with pytest.raises(DataError, match="data_batch_3"):
        load_dataset("cifar10", root=tmp_path, val_size=6)
    # a pickle that would run code is refused, not executed
    (folder / "data_batch_3").write_bytes(pickle.dumps(os.getcwd))
    with pytest.raises(DataError, match="data_batch_3"):
        load_dataset("cifar10", root=tmp_path, val_size=6)
    write_batch(folder / "data_batch_3", np.zeros((3, 32, 32, 3), np.uint8), [0, 1])
    with pytest.raises(DataError, match="labels for 3 images"):
        load_dataset("cifar10", root=tmp_path, val_size=6)
    archive = tmp_path / "a" / "cifar-10-python.tar.gz"
    archive.parent.mkdir()
    archive.write_bytes(b"\x1f\x8b" + b"\0" * 100)
    with pytest.raises(DataError, match="cifar-10-python.tar.gz"):
        load_dataset("cifar10", root=tmp_path / "a", val_size=6)


# ------------------------------------------------------------------------------------ real files
def test_digits_real():
    d = load_dataset("digits")
    assert d.sizes() == {"train": 1077, "val": 360, "test": 360}
    assert d.image_shape == (8, 8, 1) and d.num_classes == 10
    assert set(np.unique(d.y_test)) == set(range(10))
    # splits are disjoint: no image appears twice across them (digits has a few exact duplicates
    # in the raw set, so compare counts of distinct rows against the raw set)
    from sklearn.datasets import load_digits

    assert sum(d.sizes().values()) == len(load_digits().target)


@pytest.mark.skipif(
    not (FASHION_SYSTEM / "t10k-labels-idx1-ubyte.gz").exists(),
    reason="dataset-fashion-mnist (apt) not installed",
)
def test_fashion_mnist_real(monkeypatch):
    monkeypatch.setattr(dl, "SYSTEM_DIRS", {"fashion_mnist": (str(FASHION_SYSTEM),)})
    d = load_dataset("fashion_mnist", train_subset=500)
    assert d.source == str(FASHION_SYSTEM)
    assert d.sizes() == {"train": 500, "val": 10_000, "test": 10_000}
    assert np.array_equal(np.bincount(d.y_test), np.full(10, 1000))  # the official test set is balanced
    assert np.isfinite(d.x_train).all() and abs(float(d.x_val.mean())) < 0.05
