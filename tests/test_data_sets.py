"""Tests for funcdl.data's synthetic sets (moons, circles, spirals, blobs) and utilities
(one_hot, moments, train_test_split): exact geometry, class balance, keys, errors."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import load_example

from funcdl import data, random

K = random.key(3)
SETS = {
    "moons": lambda k, n, **kw: data.moons(k, n, **kw),
    "circles": lambda k, n, **kw: data.circles(k, n, **kw),
    "spirals": lambda k, n, **kw: data.spirals(k, n, classes=3, **kw),
    "blobs": lambda k, n, noise=0.0, **kw: data.blobs(k, n, std=noise or 1.0, **kw),
}


def _by_class(x, y, c):
    return x[y == c].astype(np.float64)


# ---------------------------------------------------------------------------- geometry

@pytest.mark.parametrize("n", [1, 2, 7, 100, 101])
def test_moons_lie_on_the_two_unit_half_circles(n):
    x, y = data.moons(K, n, dtype=np.float64)
    assert x.shape == (n, 2) and y.shape == (n,) and y.dtype == np.int64
    up, down = _by_class(x, y, 0), _by_class(x, y, 1)
    assert (len(up), len(down)) == (n // 2, n - n // 2)
    np.testing.assert_allclose(np.hypot(up[:, 0], up[:, 1]), 1.0, atol=1e-15)
    np.testing.assert_allclose(np.hypot(down[:, 0] - 1, down[:, 1] - 0.5), 1.0, atol=1e-15)
    # evenly spaced angles over [0, pi], both ends: upper half about (0, 0), lower about (1, .5)
    t_up = np.sort(np.arctan2(up[:, 1], up[:, 0]))
    t_down = np.sort(np.arctan2(0.5 - down[:, 1], 1 - down[:, 0]))
    np.testing.assert_allclose(t_up, np.linspace(0, np.pi, n // 2), atol=1e-12)
    np.testing.assert_allclose(t_down, np.linspace(0, np.pi, n - n // 2), atol=1e-12)


@pytest.mark.parametrize("n, factor", [(1, 0.8), (2, 0.5), (9, 0.8), (200, 0.3)])
def test_circles_have_radii_one_and_factor(n, factor):
    x, y = data.circles(K, n, factor=factor, dtype=np.float64)
    out, inn = _by_class(x, y, 0), _by_class(x, y, 1)
    assert (len(out), len(inn)) == (n // 2, n - n // 2)
    np.testing.assert_allclose(np.hypot(*out.T), 1.0, atol=1e-15)
    np.testing.assert_allclose(np.hypot(*inn.T), factor, atol=1e-15)
    for pts, m in ((out, n // 2), (inn, n - n // 2)):  # 0, 2 pi/m, ...: endpoint left out
        t = np.sort(np.arctan2(pts[:, 1], pts[:, 0]) % (2 * np.pi))
        np.testing.assert_allclose(t, 2 * np.pi * np.arange(m) / m, atol=1e-12)


@pytest.mark.parametrize("n, classes, turns", [(10, 2, 1.0), (301, 3, 0.64), (11, 4, -1.5),
                                               (5, 1, 2.0)])
def test_spirals_follow_the_documented_formula(n, classes, turns):
    x, y = data.spirals(K, n, classes=classes, turns=turns, dtype=np.float64)
    counts = np.bincount(y, minlength=classes)
    np.testing.assert_array_equal(counts, [n // classes + (j < n % classes)
                                           for j in range(classes)])
    for j in range(classes):
        pts = _by_class(x, y, j)
        r = np.hypot(*pts.T)
        pts, r = pts[np.argsort(r)], np.sort(r)
        m = len(pts)
        np.testing.assert_allclose(r, np.arange(1, m + 1) / m, atol=1e-14)  # radii grow
        assert np.all(np.diff(r) > 0)
        theta = 2 * np.pi * (turns * r + j / classes)
        np.testing.assert_allclose(pts, r[:, None] * np.c_[np.cos(theta), np.sin(theta)],
                                   atol=1e-14)


def test_spirals_arms_are_rotated_copies():
    x, y = data.spirals(K, 300, classes=3, dtype=np.float64)
    arms = [_by_class(x, y, j)[np.argsort(np.hypot(*_by_class(x, y, j).T))] for j in range(3)]
    c, s = np.cos(2 * np.pi / 3), np.sin(2 * np.pi / 3)
    np.testing.assert_allclose(arms[0] @ np.array([[c, s], [-s, c]]), arms[1], atol=1e-13)


def test_blobs_without_spread_sit_on_centres_inside_the_box():
    x, y = data.blobs(K, 100, centers=4, std=0.0, dim=3, box=(-2, 5), dtype=np.float64)
    assert x.shape == (100, 3) and y.dtype == np.int64
    np.testing.assert_array_equal(np.bincount(y), [25, 25, 25, 25])
    centres = np.array([x[y == j][0] for j in range(4)])
    np.testing.assert_array_equal(x, centres[y])
    assert x.min() >= -2 and x.max() < 5 and len(np.unique(centres, axis=0)) == 4


def test_blobs_of_given_centres_and_stds():
    c = np.array([[0.0, 0.0], [10.0, -10.0], [100.0, 5.0]])
    x, y = data.blobs(K, 30_001, centers=c, std=[0.5, 1.0, 2.0], dtype=np.float64)
    np.testing.assert_array_equal(np.bincount(y), [10_001, 10_000, 10_000])  # first gets more
    for j, s in enumerate([0.5, 1.0, 2.0]):
        d = x[y == j] - c[j]
        assert np.all(np.abs(d.mean(0)) < 4 * s / 100)  # 4 standard errors
        np.testing.assert_allclose(d.std(0), s, rtol=0.05)
    x0, y0 = data.blobs(K, 7, centers=c, std=0.0)
    np.testing.assert_array_equal(x0, c[y0].astype(np.float32))


@pytest.mark.parametrize("name", SETS)
def test_noise_is_gaussian_on_top_of_the_same_points(name):
    if name == "blobs":
        c = np.array([[0.0, 0.0], [3.0, 3.0]])
        clean, y0 = data.blobs(K, 20_000, centers=c, std=0.0, dtype=np.float64)
        noisy, y1 = data.blobs(K, 20_000, centers=c, std=0.3, dtype=np.float64)
    else:
        clean, y0 = SETS[name](K, 20_000, noise=0.0, dtype=np.float64)
        noisy, y1 = SETS[name](K, 20_000, noise=0.3, dtype=np.float64)
    np.testing.assert_array_equal(y0, y1)  # the same order
    d = (noisy - clean).ravel()
    assert abs(d.mean()) < 4 * 0.3 / 200 and abs(d.std() - 0.3) < 0.01


# ---------------------------------------------------------------------- common contract

@pytest.mark.parametrize("name", SETS)
def test_same_key_same_set_other_keys_other_sets(name):
    make = SETS[name]
    a, b = make(K, 50, noise=0.1), make(random.key(3), 50, noise=0.1)
    for u, v in zip(a, b):
        np.testing.assert_array_equal(u, v, strict=True)
    others = {make(random.fold_in(K, i), 50, noise=0.1)[0].tobytes() for i in range(4)}
    assert len(others) == 4 and a[0].tobytes() not in others


@pytest.mark.parametrize("name", SETS)
def test_float32_by_default_the_float64_set_rounded(name):
    x32, y32 = SETS[name](K, 64, noise=0.2)
    x64, y64 = SETS[name](K, 64, noise=0.2, dtype=np.float64)
    assert x32.dtype == np.float32 and x64.dtype == np.float64
    assert y32.dtype == y64.dtype == np.int64 and y32.shape == (64,)
    np.testing.assert_array_equal(x32, x64.astype(np.float32))
    np.testing.assert_array_equal(y32, y64)


@pytest.mark.parametrize("name", SETS)
def test_points_are_shuffled_not_grouped_by_class(name):
    _, y = SETS[name](K, 200)
    assert np.count_nonzero(np.diff(y)) > 40  # grouped by class: 1 or 2 changes


# ------------------------------------------------------------------------- one_hot

@pytest.mark.parametrize("labels", [[0, 2, 1, 2], np.arange(-3, 9).reshape(3, 4),
                                    np.array([5, 0, 7], np.uint8), np.zeros((0,), np.int64)])
def test_one_hot_against_a_loop_and_jax_rule_for_out_of_range(labels):
    lab = np.asarray(labels)
    out = data.one_hot(labels, 4)
    want = np.zeros((*lab.shape, 4), np.float32)
    for idx in np.ndindex(lab.shape):
        if 0 <= lab[idx] < 4:  # jax.nn.one_hot: outside [0, C), negative too, a zero row
            want[(*idx, int(lab[idx]))] = 1.0
    np.testing.assert_array_equal(out, want, strict=True)
    assert data.one_hot(labels, 4, np.float64).dtype == np.float64


def test_one_hot_of_a_negative_label_is_not_wrapped():
    np.testing.assert_array_equal(data.one_hot([-1, 3], 3), [[0, 0, 0], [0, 0, 0]])


# ------------------------------------------------------------------------- moments

@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_moments_are_the_population_mean_and_std(dtype):
    x = random.normal(K, (500, 3), np.float64) * [1.0, 5.0, 0.01] + [2.0, -3.0, 1.0]
    x = x.astype(dtype)
    mean, std = data.moments(x)
    assert mean.shape == std.shape == (1, 3) and mean.dtype == std.dtype == dtype
    x64 = x.astype(np.float64)
    np.testing.assert_allclose(mean, x64.mean(0, keepdims=True), rtol=1e-6 if dtype ==
                               np.float32 else 1e-13)
    np.testing.assert_allclose(std, x64.std(0, keepdims=True), rtol=1e-6 if dtype ==
                               np.float32 else 1e-12)
    z = (x - mean) / std
    np.testing.assert_allclose(z.mean(0), 0, atol=1e-5)
    np.testing.assert_allclose(z.std(0), 1, rtol=1e-5)


def test_moments_of_a_constant_feature_give_std_one_and_other_axes():
    x = np.array([[1.0, 7.0], [3.0, 7.0], [5.0, 7.0]])
    mean, std = data.moments(x)
    np.testing.assert_array_equal(mean, [[3.0, 7.0]])
    np.testing.assert_allclose(std, [[np.sqrt(8 / 3), 1.0]], rtol=1e-15)
    mean1, std1 = data.moments(x, axis=-1)
    np.testing.assert_allclose(mean1, [[4.0], [5.0], [6.0]], rtol=1e-15)
    np.testing.assert_allclose(std1, [[3.0], [2.0], [1.0]], rtol=1e-15)
    big = np.array([[-1.5e308], [1.5e308]])  # squares overflow float64: scaled first
    np.testing.assert_array_equal(data.moments(big), ([[0.0]], [[1.5e308]]))


# ------------------------------------------------------------------ train_test_split

@pytest.mark.parametrize("n, test_size, n_test", [(10, 0.25, 3), (100, 0.25, 25), (7, 0.5, 4),
                                                  (10, 0.7, 7), (10, 3, 3), (2, 0.5, 1),
                                                  (1000, 0.001, 1), (3, 2, 2)])
def test_split_sizes_disjoint_cover_and_one_permutation(n, test_size, n_test):
    x = np.arange(n)
    y = (x * 3 + 1).astype(np.float32)[:, None]
    x_tr, x_te, y_tr, y_te = data.train_test_split(K, x, y, test_size=test_size)
    assert (len(x_te), len(x_tr)) == (n_test, n - n_test)
    np.testing.assert_array_equal(np.sort(np.concatenate([x_tr, x_te])), x)  # all, once
    np.testing.assert_array_equal(y_tr[:, 0], x_tr * 3 + 1)  # the same rows of each array
    np.testing.assert_array_equal(y_te[:, 0], x_te * 3 + 1)
    assert y_tr.dtype == np.float32 and y_tr.shape[1:] == (1,)
    perm = random.permutation(K, n)  # the documented order
    np.testing.assert_array_equal(np.concatenate([x_te, x_tr]), perm)


def test_split_is_deterministic_per_key():
    a = data.train_test_split(K, np.arange(50))
    np.testing.assert_array_equal(a[1], data.train_test_split(random.key(3), np.arange(50))[1])
    assert not np.array_equal(a[1], data.train_test_split(random.key(4), np.arange(50))[1])


def _naive_shares(counts, n_test):
    n = sum(counts)
    exact = [n_test * c / n for c in counts]
    take = [int(e) for e in exact]
    by_remainder = sorted(range(len(counts)), key=lambda c: (-(n_test * counts[c] % n), c))
    for c in by_remainder[:n_test - sum(take)]:
        take[c] += 1
    return take


@pytest.mark.parametrize("counts, test_size", [([10, 5, 5], 0.25), ([50, 30, 20], 0.3),
                                               ([2, 2, 96], 0.1), ([7, 13], 0.5),
                                               ([3, 3, 3, 3, 3, 3, 3], 0.5), ([90, 10], 9)])
def test_stratified_split_keeps_the_proportions(counts, test_size):
    labels = np.repeat(np.arange(len(counts)), counts)
    labels = labels[random.permutation(random.key(9), len(labels))]
    x = np.arange(len(labels))
    x_tr, x_te, y_tr, y_te = data.train_test_split(K, x, labels, test_size=test_size,
                                                   stratify=labels)
    n = len(labels)
    n_test = test_size if isinstance(test_size, int) else int(np.ceil(test_size * n))
    np.testing.assert_array_equal(np.bincount(y_te, minlength=len(counts)),
                                  _naive_shares(counts, n_test))
    assert np.all(np.abs(np.bincount(y_te, minlength=len(counts)) - n_test * np.array(counts)
                         / n) < 1)
    np.testing.assert_array_equal(labels[x_te], y_te)
    np.testing.assert_array_equal(labels[x_tr], y_tr)
    np.testing.assert_array_equal(np.sort(np.concatenate([x_tr, x_te])), x)
    # both parts in the permutation's order, the members of each class its first ones
    pos = np.argsort(random.permutation(K, n))
    assert np.all(np.diff(pos[x_te]) > 0) and np.all(np.diff(pos[x_tr]) > 0)
    for c in range(len(counts)):
        assert pos[x_te[y_te == c]].max(initial=-1) < pos[x_tr[y_tr == c]].min()


def test_stratify_by_rows_and_strings():
    rows = np.repeat(np.eye(3), [4, 4, 8], axis=0)
    _, te = data.train_test_split(K, np.arange(16), test_size=0.25, stratify=rows)
    np.testing.assert_array_equal(np.bincount(rows[te].argmax(1)), [1, 1, 2])
    words = np.array(["a", "b"] * 5)
    _, te = data.train_test_split(K, np.arange(10), test_size=4, stratify=words)
    assert sorted(words[te].tolist()) == ["a", "a", "b", "b"]


# ---------------------------------------------------------------------------- errors

BAD = [
    (lambda: data.moons(K, 0), ValueError, r"data\.moons: n \(the number of points\) must be "
                                           r">= 1 \(positive\), got 0"),
    (lambda: data.moons(K, 2.0), TypeError, r"data\.moons: n .*must be an int, got 2\.0"),
    (lambda: data.moons(K, True), TypeError, r"data\.moons: n .*must be an int"),
    (lambda: data.moons(K, 5, noise=-0.1), ValueError,
     r"data\.moons: noise must be a finite number in \[0, .*got -0\.1"),
    (lambda: data.moons(K, 5, noise=None), TypeError, r"noise must be a real number.*noise=0\.1"),
    (lambda: data.moons(K, 5, noise=1e36), ValueError, r"data\.moons: noise"),
    (lambda: data.moons(K, 5, dtype=np.int32), TypeError, r"data\.moons: dtype must be float32"),
    (lambda: data.moons(5, K), TypeError, r"data\.moons: expected a key"),
    (lambda: data.circles(K, 5, factor=1.0), ValueError,
     r"data\.circles: factor must be a finite number in \(0, 1\), got 1\.0; pass"),
    (lambda: data.circles(K, 5, factor=0), ValueError, r"data\.circles: factor .*\(0, 1\)"),
    (lambda: data.circles(K, 5, factor=-0.5), ValueError, r"data\.circles: factor"),
    (lambda: data.spirals(K, 5, classes=0), ValueError, r"data\.spirals: classes must be >= 1"),
    (lambda: data.spirals(K, 5, classes=2.0), TypeError, r"data\.spirals: classes must be an int"),
    (lambda: data.spirals(K, 3, classes=4), ValueError, r"data\.spirals: classes=4 needs n >= "
                                                        r"4 .*got n=3; pass"),
    (lambda: data.spirals(K, 5, turns=np.inf), ValueError, r"data\.spirals: turns must be a "
                                                          r"finite"),
    (lambda: data.blobs(K, 5, centers=0), ValueError, r"data\.blobs: centers .*>= 1"),
    (lambda: data.blobs(K, 5, centers=2.0), TypeError, r"data\.blobs: centers must be an int"),
    (lambda: data.blobs(K, 5, centers=[1.0, 2.0]), ValueError, r"data\.blobs: centers .*"
                                                               r"\(k, dim\), got shape \(2,\)"),
    (lambda: data.blobs(K, 5, centers=[[1, 2]], dim=3), ValueError, r"dim=3 but the centres "
                                                                    r"have 2"),
    (lambda: data.blobs(K, 5, centers=[[np.nan, 2]]), ValueError, r"centers must be finite"),
    (lambda: data.blobs(K, 5, std=-1), ValueError, r"data\.blobs: std must be"),
    (lambda: data.blobs(K, 5, std=[1, 2]), ValueError, r"one per centre \(3\), got 2 values"),
    (lambda: data.blobs(K, 5, box=(10, -10)), ValueError, r"low <= high.*box=\(-10, 10\)"),
    (lambda: data.blobs(K, 5, box=(1, 2, 3)), ValueError, r"box must be two bounds"),
    (lambda: data.blobs(K, 5, dim=0), ValueError, r"data\.blobs: dim must be >= 1"),
    (lambda: data.one_hot([0.0, 1.0], 3), TypeError, r"data\.one_hot: labels must be integer "
                                                     r"class indices, got dtype float64; pass"),
    (lambda: data.one_hot([True], 3), TypeError, r"data\.one_hot: labels .*bool"),
    (lambda: data.one_hot([1], 0), ValueError, r"data\.one_hot: num_classes must be >= 1"),
    (lambda: data.one_hot([1], 2, np.float16), TypeError, r"data\.one_hot: dtype"),
    (lambda: data.moments(np.arange(4)), TypeError, r"data\.moments: x must be float32 or "
                                                    r"float64, got dtype int64; pass"),
    (lambda: data.moments(np.zeros((0, 2))), ValueError, r"data\.moments: axis 0 .*at least "
                                                         r"one"),
    (lambda: data.moments(np.zeros(3), axis=1), ValueError, r"data\.moments: axis 1"),
    (lambda: data.moments([1.0, np.nan]), ValueError, r"data\.moments: x holds NaN"),
    (lambda: data.train_test_split(K, np.arange(4), np.arange(3)), ValueError,
     r"data\.train_test_split: all arrays must share their first dimension.*\(4,\), \(3,\)"),
    (lambda: data.train_test_split(K), ValueError, r"data\.train_test_split: pass at least one"),
    (lambda: data.train_test_split(np.arange(4)), TypeError, r"data\.train_test_split: "
                                                             r"expected a key"),
    (lambda: data.train_test_split(K, np.arange(4), test_size=1.0), ValueError,
     r"test_size must be a finite number in \(0, 1\), got 1\.0; pass a fraction"),
    (lambda: data.train_test_split(K, np.arange(4), test_size=0), ValueError,
     r"an int test_size is a number of test examples in \[1, 4\).*got 0"),
    (lambda: data.train_test_split(K, np.arange(4), test_size=4), ValueError, r"\[1, 4\)"),
    (lambda: data.train_test_split(K, np.arange(4), test_size=True), TypeError, r"test_size"),
    (lambda: data.train_test_split(K, np.arange(4), test_size=0.9), ValueError,
     r"leaves none to train on \(ceil\(0\.9 \* 4\) = 4\)"),
    (lambda: data.train_test_split(K, np.arange(1)), ValueError, r"at least 2 examples"),
    (lambda: data.train_test_split(K, np.arange(6), stratify=[0, 0, 0, 1, 1, 2]), ValueError,
     r"a class of only 1 member.*pass stratify=None"),
    (lambda: data.train_test_split(K, np.arange(6), stratify=[0, 1, 0]), ValueError,
     r"stratify must hold one label per example, shape \(6,\), got shape \(3,\)"),
    (lambda: data.train_test_split(K, np.arange(8), test_size=2, stratify=[0, 0, 1, 1, 2, 2, 3,
                                                                           3]),
     ValueError, r"at least one place per class \(4 classes\)"),
    (lambda: data.train_test_split(K, np.arange(3), stratify=np.array([1, "a", None], object)),
     TypeError, r"stratify's labels must be sortable"),
]


@pytest.mark.parametrize("call, error, match", BAD)
def test_bad_inputs_name_the_function_and_the_fix(call, error, match):
    with pytest.raises(error, match=match):
        call()


# ---------------------------------------------------------------------------- example

def test_moons_example_learns(capsys):
    result = load_example("moons").main(["--epochs", "60", "--seed", "1"])
    assert result["test_error"] < 0.05  # its time is reported, never tested
    assert "final: train error" in capsys.readouterr().out


def test_split_with_the_data_in_the_keys_place_says_to_pass_the_key_first():
    for args in [(np.arange(10), np.arange(10)), (None, np.arange(10))]:
        with pytest.raises(TypeError, match=r"data\.train_test_split: expected a key .*: pass "
                                            r"the key first, then the arrays"):
            data.train_test_split(*args)
