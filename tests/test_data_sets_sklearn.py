"""funcdl.data's sets and split against scikit-learn's make_moons, make_circles,
make_blobs and train_test_split: the same points (up to the shuffle) and the same sizes."""

from __future__ import annotations

import numpy as np
import pytest

sklearn = pytest.importorskip("sklearn")
from sklearn.datasets import make_blobs, make_circles, make_moons  # noqa: E402
from sklearn.model_selection import train_test_split  # noqa: E402

from funcdl import data, random  # noqa: E402

K = random.key(11)


def _sorted(x, y):
    rows = np.c_[x, y]
    return rows[np.lexsort(rows.T[::-1])]


@pytest.mark.parametrize("n", [1, 2, 3, 10, 99, 100, 257])
def test_noiseless_moons_are_make_moons_points(n):
    x, y = data.moons(K, n, dtype=np.float64)
    xs, ys = make_moons(n, shuffle=False)
    np.testing.assert_array_equal(_sorted(x, y), _sorted(xs, ys))  # bit for bit
    x32, _ = data.moons(K, n)
    np.testing.assert_array_equal(_sorted(x32, y), _sorted(xs.astype(np.float32), ys))


@pytest.mark.parametrize("n, factor", [(1, 0.8), (2, 0.8), (3, 0.5), (100, 0.8), (101, 0.1)])
def test_noiseless_circles_are_make_circles_points(n, factor):
    x, y = data.circles(K, n, factor=factor, dtype=np.float64)
    xs, ys = make_circles(n, shuffle=False, factor=factor)
    np.testing.assert_array_equal(_sorted(x, y), _sorted(xs, ys))


@pytest.mark.parametrize("n, k", [(10, 3), (100, 7), (5, 5), (3, 4)])
def test_blobs_split_the_points_between_centres_as_make_blobs(n, k):
    _, ys = make_blobs(n, centers=k, shuffle=False, random_state=0)
    _, y = data.blobs(K, n, centers=k)
    np.testing.assert_array_equal(np.bincount(y, minlength=k), np.bincount(ys, minlength=k))


def _sizes(split):
    try:
        return [len(a) for a in split()]
    except ValueError:
        return None


@pytest.mark.parametrize("n", [*range(2, 41), 97, 100, 1000, 1001])
def test_split_sizes_are_sklearns(n):
    x = np.arange(n)
    for t in [0.01, 0.1, 0.2, 0.25, 0.3, 1 / 3, 0.5, 0.7, 0.75, 0.9, 0.99, 1, 2, 5, 39]:
        ours = _sizes(lambda t=t: data.train_test_split(K, x, x, test_size=t))
        theirs = _sizes(lambda t=t: train_test_split(x, x, test_size=t, random_state=0))
        assert ours == theirs, (n, t)


@pytest.mark.parametrize("counts, test_size", [([11, 5, 4], 0.25), ([50, 30, 20], 0.3),
                                               ([7, 14], 0.5), ([40, 27, 33], 0.2),
                                               ([90, 10], 9)])
def test_stratified_class_counts_are_sklearns_when_no_ties(counts, test_size):
    y = np.repeat(np.arange(len(counts)), counts)
    n = len(y)
    n_test = test_size if isinstance(test_size, int) else int(np.ceil(test_size * n))
    rem = [n_test * c % n for c in counts]
    assert len(set(rem)) == len(rem) or max(rem) == 0  # no ties: sklearn's are at random
    ours = data.train_test_split(K, y, test_size=test_size, stratify=y)
    theirs = train_test_split(y, test_size=test_size, stratify=y, random_state=0)
    for a, b in zip(ours, theirs):
        np.testing.assert_array_equal(np.bincount(a, minlength=len(counts)),
                                      np.bincount(b, minlength=len(counts)))
