"""blojax.data.synthetic: rings, sinusoid-split data and the stratified split."""

import numpy as np
import pytest

from blojax.data import synthetic
from conftest import assert_close


@pytest.mark.parametrize("C", [2, 3])
def test_rings_shapes_labels_and_radii(C):
    d = synthetic.rings(50, C, noise=0.05, seed=3)
    assert d.x.shape == (50 * C, 2) and d.x.dtype == np.float32
    assert d.y.dtype == np.int32
    np.testing.assert_array_equal(np.bincount(d.y), [50] * C)
    r = np.linalg.norm(d.x, axis=1)
    for c in range(C):
        rc = r[d.y == c]
        # radial noise 0.05: every point within 5 sigma of its ring radius c + 1
        assert np.all(np.abs(rc - (c + 1)) < 0.25)
        assert abs(rc.mean() - (c + 1)) < 0.03


def test_rings_noise_free_and_custom_radii():
    d = synthetic.rings(20, 2, noise=0.0, radii=[0.5, 3.0], seed=0)
    r = np.linalg.norm(d.x, axis=1)
    assert_close(r[d.y == 0], np.full(20, 0.5, np.float32), ulps=8)  # float32 cos/sin times the radius
    assert_close(r[d.y == 1], np.full(20, 3.0, np.float32), ulps=8)


def test_rings_seeded():
    a, b, c = synthetic.rings(30, 3, seed=1), synthetic.rings(30, 3, seed=1), synthetic.rings(30, 3, seed=2)
    np.testing.assert_array_equal(a.x, b.x)
    assert not np.array_equal(a.x, c.x)


def test_sinusoid_labels_follow_the_boundary():
    d = synthetic.sinusoid(500, amplitude=1.3, frequency=2.0, width=3.0, height=2.5, seed=4)
    assert d.x.shape == (500, 2)
    assert np.all(np.abs(d.x[:, 0]) <= 3.0) and np.all(np.abs(d.x[:, 1]) <= 2.5)
    above = d.x[:, 1] > 1.3 * np.sin(2.0 * d.x[:, 0])
    np.testing.assert_array_equal(d.y, above.astype(np.int32))
    assert 0.3 < d.y.mean() < 0.7


def test_sinusoid_label_noise_flips_about_that_share():
    clean = synthetic.sinusoid(4000, seed=5)
    noisy = synthetic.sinusoid(4000, label_noise=0.2, seed=5)
    np.testing.assert_array_equal(clean.x, noisy.x)
    flipped = np.mean(clean.y != noisy.y)
    assert 0.17 < flipped < 0.23


def test_split_is_stratified_disjoint_and_complete():
    d = synthetic.rings(40, 3, seed=0)
    tr, te = synthetic.split(d, 0.25, seed=7)
    np.testing.assert_array_equal(np.bincount(te.y), [10, 10, 10])
    np.testing.assert_array_equal(np.bincount(tr.y), [30, 30, 30])
    all_rows = np.concatenate([tr.x, te.x])
    assert len({tuple(r) for r in all_rows}) == 120
    assert {tuple(r) for r in all_rows} == {tuple(r) for r in d.x}


def test_one_hot():
    np.testing.assert_array_equal(synthetic.one_hot([2, 0], 3), [[0, 0, 1], [1, 0, 0]])


@pytest.mark.parametrize(
    "call, word",
    [
        (lambda: synthetic.rings(0), "n_per_class"),
        (lambda: synthetic.rings(10, 1), "n_classes"),
        (lambda: synthetic.rings(10, 2, noise=-1.0), "noise"),
        (lambda: synthetic.rings(10, 2, radii=[2.0, 1.0]), "radii"),
        (lambda: synthetic.rings(10, 3, radii=[1.0, 2.0]), "radii"),
        (lambda: synthetic.sinusoid(1), "n"),
        (lambda: synthetic.sinusoid(10, width=0.0), "width"),
        (lambda: synthetic.sinusoid(10, label_noise=1.5), "label_noise"),
        (lambda: synthetic.sinusoid(10, amplitude=float("nan")), "amplitude"),
        (lambda: synthetic.split(synthetic.rings(10), 1.0), "test_fraction"),
        (lambda: synthetic.split(synthetic.rings(2), 0.1), "test_fraction"),
    ],
)
def test_bad_arguments_name_themselves(call, word):
    with pytest.raises(ValueError, match=word):
        call()
