"""Tests for funcdl.data: batch sizes and coverage, key determinism, errors, the disk set."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from funcdl import data, parallel, random

# ---------------------------------------------------------------------------- batches


@pytest.mark.parametrize("n, size, drop_last, sizes", [
    (10, 3, False, [3, 3, 3, 1]),
    (10, 3, True, [3, 3, 3]),
    (9, 3, False, [3, 3, 3]),
    (9, 3, True, [3, 3, 3]),
    (2, 5, False, [2]),
    (2, 5, True, []),
    (0, 4, False, []),
    (7, 1, False, [1] * 7),
])
def test_batch_sizes_and_counts(key, n, size, drop_last, sizes):
    for shuffle in (True, False):
        out = list(data.batches(key, np.zeros((n, 2)), batch_size=size, shuffle=shuffle,
                                drop_last=drop_last))
        assert [len(b[0]) for b in out] == sizes
        assert all(b[0].shape[1:] == (2,) for b in out)


@settings(max_examples=100, deadline=None)
@given(n=st.integers(0, 120), size=st.integers(1, 40), drop_last=st.booleans(),
       seed=st.integers(0, 2**32))
def test_each_example_once_per_epoch_and_arrays_stay_aligned(n, size, drop_last, seed):
    x = np.arange(n)
    y = np.arange(n, dtype=np.float32)[:, None] * 2
    out = list(data.batches(random.key(seed), x, y, batch_size=size, drop_last=drop_last))
    assert len(out) == (n // size if drop_last else math.ceil(n / size))
    seen = np.concatenate([xb for xb, _ in out]) if out else np.zeros(0, int)
    assert len(seen) == (n - n % size if drop_last else n)
    assert len(np.unique(seen)) == len(seen)  # nothing twice
    if not drop_last:
        np.testing.assert_array_equal(np.sort(seen), x)  # everything once
    for xb, yb in out:
        assert yb.dtype == np.float32
        np.testing.assert_array_equal(yb[:, 0], 2 * xb)


def _order(key, n=50, size=7, **kw):
    return np.concatenate([b for (b,) in data.batches(key, np.arange(n), batch_size=size, **kw)])


def test_order_is_the_documented_permutation_and_deterministic(key):
    np.testing.assert_array_equal(_order(key), random.permutation(key, 50))
    np.testing.assert_array_equal(_order(key), _order(random.key(0)))


def test_different_keys_give_different_orders(key):
    orders = {tuple(_order(random.fold_in(key, epoch))) for epoch in range(5)}
    assert len(orders) == 5
    assert tuple(_order(random.key(1))) != tuple(_order(key))


def test_shuffle_false_keeps_order_and_accepts_no_key(key):
    np.testing.assert_array_equal(_order(None, shuffle=False), np.arange(50))
    np.testing.assert_array_equal(_order(key, shuffle=False), np.arange(50))


def test_always_tuples_even_for_one_array(key):
    out = list(data.batches(key, np.arange(5), batch_size=2))
    assert all(type(b) is tuple and len(b) == 1 for b in out)
    out = list(data.batches(None, np.arange(5), np.ones(5), np.zeros((5, 1)), batch_size=5,
                            shuffle=False))
    assert len(out) == 1 and len(out[0]) == 3


def test_gathers_once_per_call_and_never_touches_inputs(key):
    x = np.arange(20.0).reshape(10, 2)
    before = x.copy()
    out = list(data.batches(key, x, batch_size=3))
    gathered = out[0][0].base  # every batch is a view of one gathered copy of x
    assert isinstance(gathered, np.ndarray) and gathered.shape == x.shape
    assert gathered is not x and all(b.base is gathered for (b,) in out)
    for (b,) in out:
        b[...] = -1
    np.testing.assert_array_equal(x, before)


def test_keeps_dtypes_and_trailing_shape(key):
    x = np.ones((6, 2, 3), np.float32)
    y = np.arange(6, dtype=np.int64)
    for xb, yb in data.batches(key, x, y, batch_size=4):
        assert xb.dtype == np.float32 and xb.shape[1:] == (2, 3) and yb.dtype == np.int64


def test_mismatched_first_dims_name_the_shapes(key):
    with pytest.raises(ValueError, match=r"first dimension.*\(10, 2\), \(9, 1\)"):
        data.batches(key, np.zeros((10, 2)), np.zeros((9, 1)), batch_size=2)


def test_key_none_with_shuffle_says_how_to_pass_one():
    with pytest.raises(ValueError, match=r"funcdl\.random\.key\(seed\)"):
        data.batches(None, np.zeros(4), batch_size=2)


@pytest.mark.parametrize("arrays, kwargs, error, match", [
    ((), {"batch_size": 2}, ValueError, "at least one array"),
    ((np.zeros(4),), {"batch_size": 0}, ValueError, "positive"),
    ((np.zeros(4),), {"batch_size": -3}, ValueError, "positive"),
    ((np.zeros(4),), {"batch_size": 2.0}, TypeError, "batch_size must be an int"),
    ((np.zeros(4),), {"batch_size": True}, TypeError, "batch_size must be an int"),
    ((np.array(3.0),), {"batch_size": 1}, ValueError, r"argument 1 is 0-d .*axis 0"),
    ((np.ones(3), 2.0), {"batch_size": 1}, ValueError, r"argument 2 is 0-d .*axis 0"),
    (([[1, 2], [3]],), {"batch_size": 1}, ValueError, "not a rectangular array"),
    ((np.ones(2), [[1, 2], [3]]), {"batch_size": 1}, ValueError,
     r"data\.batches: argument 2 is not a rectangular array.*\(pass arrays, e\.g\."),
    ((np.zeros(4),), {"batch_size": 2, "shuffle": "no"}, TypeError,
     r"shuffle must be True or False, got 'no'"),  # a truthy string would shuffle
    ((np.zeros(4),), {"batch_size": 2, "drop_last": None}, TypeError,
     "drop_last must be True or False"),
    # a model's (x, mask) input: its parts as arguments of their own, not stacked silently
    (((np.zeros((4, 3)), np.ones((4, 3), bool)), np.zeros(4)), {"batch_size": 2}, TypeError,
     r"argument 1 must be one array, got a tuple of 2 \(shapes \[\(4, 3\), \(4, 3\)\]\): "
     r"pass its arrays as arguments of their own, e\.g\. batches\(key, x, mask, y, "),
])
def test_bad_arguments_raise_at_the_call(key, arrays, kwargs, error, match):
    with pytest.raises(error, match=match):
        data.batches(key, *arrays, **kwargs)  # no next(): errors are not deferred


def test_bad_key_raises_type_error():
    with pytest.raises(TypeError, match=r"random\.key"):
        data.batches(np.array([1, 2]), np.zeros(4), batch_size=2)


@pytest.mark.parametrize("batches", [
    lambda x: data.batches(x, batch_size=4),
    lambda x: parallel.batches(x, batch_size=4, rank=0, size=1),
])
def test_data_in_the_keys_place_is_named_as_such(batches):
    # the one array is taken for the key: the error must not say no array was passed
    with pytest.raises(TypeError, match=r"got an array of shape \(10, 2\) and dtype float32, "
                                        r"and no arrays: pass the key \(or None, with "
                                        r"shuffle=False\) first"):
        batches(np.ones((10, 2), np.float32))


@pytest.mark.parametrize("batches", [
    lambda *a: data.batches(*a, batch_size=4, shuffle=False),
    lambda *a: parallel.batches(*a, batch_size=4, rank=0, size=1, shuffle=False),
])
def test_without_shuffle_the_key_is_still_checked(batches):
    # batches(x, y, shuffle=False) took x for the ignored key and batched y alone
    x, y = np.ones((10, 2), np.float32), np.arange(10)
    with pytest.raises(TypeError, match=r"got an array of shape \(10, 2\) and dtype float32: "
                                        r"pass the key \(or None, with shuffle=False\) first"):
        batches(x, y)
    with pytest.raises(TypeError, match=r"got int: a seed is not a key; pass "
                                        r"funcdl\.random\.key\(0\) in its place$"):
        batches(0, x, y)
    assert len(list(batches(None, x, y))) == 3


def test_numpy_integer_batch_size(key):
    assert len(list(data.batches(key, np.zeros(10), batch_size=np.int64(4)))) == 3


# ---------------------------------------------------------------------------- disk

def test_disk_shapes_dtypes_and_range(key):
    x, y = data.disk(key, 1000)
    assert x.shape == (1000, 2) and y.shape == (1000, 1)
    assert x.dtype == np.float32 and y.dtype == np.float32
    assert x.min() >= 0.0 and x.max() < 1.0
    assert set(np.unique(y).tolist()) == {0.0, 1.0}
    x64, y64 = data.disk(key, 10, dtype=np.float64)
    assert x64.dtype == np.float64 and y64.dtype == np.float64
    x0, y0 = data.disk(key, 0)
    assert x0.shape == (0, 2) and y0.shape == (0, 1)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_disk_labels_follow_the_geometric_rule(key, dtype):
    x, y = data.disk(key, 5000, dtype=dtype)
    inside = np.hypot(x[:, 0] - 0.5, x[:, 1] - 0.5) < 1 / np.sqrt(2 * np.pi)
    np.testing.assert_array_equal(y[:, 0], inside.astype(dtype))


def test_disk_labels_at_known_points(key, monkeypatch):
    r = 1 / math.sqrt(2 * math.pi)  # 0.3989...
    points = np.array([[0.5, 0.5], [0.0, 0.0], [0.5 + 0.398, 0.5], [0.5 + 0.4, 0.5],
                       [0.5, 0.5 - 0.398], [0.5, 0.099], [0.5 + r / 1.4143, 0.5 + r / 1.4143],
                       [0.5 + r / 1.414, 0.5 + r / 1.414], [0.99, 0.99]], np.float64)
    monkeypatch.setattr(random, "uniform", lambda k, shape, dtype: points.astype(dtype))
    _, y = data.disk(key, len(points), dtype=np.float64)
    np.testing.assert_array_equal(y[:, 0], [1, 0, 1, 0, 1, 0, 1, 0, 0])


def test_disk_classes_balance_near_one_half(key):
    _, y = data.disk(key, 100_000)
    assert abs(float(y.mean()) - 0.5) < 0.01  # std of the mean is 0.0016


def test_disk_is_deterministic_in_the_key(key):
    x1, y1 = data.disk(key, 200)
    x2, y2 = data.disk(random.key(0), 200)
    np.testing.assert_array_equal(x1, x2)
    np.testing.assert_array_equal(y1, y2)
    x3, _ = data.disk(random.key(1), 200)
    assert not np.array_equal(x1, x3)


@pytest.mark.parametrize("n, dtype, error, match", [
    (-1, np.float32, ValueError, "non-negative"),
    (2.5, np.float32, TypeError, "n must be an int"),
    (True, np.float32, TypeError, "n must be an int"),
    (4, np.int32, TypeError, "float32 or float64"),
    (4, np.float16, TypeError, "float32 or float64"),
])
def test_disk_bad_arguments(key, n, dtype, error, match):
    with pytest.raises(error, match=match):
        data.disk(key, n, dtype=dtype)


@pytest.mark.parametrize("center, radius", [((0.5, 0.5), 0.25), ((0.0, 1.0), 0.6),
                                            (np.array([0.3, 0.7]), 0.1)])
def test_disk_of_another_center_and_radius(key, center, radius):
    x, y = data.disk(key, 4000, center=center, radius=radius)
    inside = np.square(x.astype(np.float64) - np.asarray(center)).sum(1) < radius**2
    np.testing.assert_array_equal(y[:, 0], inside)
    np.testing.assert_array_equal(x, data.disk(key, 4000)[0])  # the same points
    # the fraction inside is the disk's area within the unit square
    area = np.pi * radius**2 / (4 if center[0] == 0.0 else 1)
    assert abs(y.mean() - area) < 4 * np.sqrt(area * (1 - area) / 4000)


@pytest.mark.parametrize("kw, error, match", [
    ({"radius": 0}, ValueError, "radius must be a finite number > 0"),
    ({"radius": np.nan}, ValueError, "radius"),
    ({"radius": "1"}, TypeError, "radius must be a real number"),
    ({"center": (0.5,)}, ValueError, r"center must be 2 coordinates .* shape \(1,\)"),
    ({"center": (0.5, None)}, TypeError, r"center\[1\] must be a real number"),
    ({"center": (0.5, np.inf)}, ValueError, r"center\[1\] must be a finite"),
])
def test_disk_bad_center_and_radius(key, kw, error, match):
    with pytest.raises(error, match=match):
        data.disk(key, 4, **kw)


def test_disk_with_key_and_n_swapped_names_the_key(key):
    # n was checked first: "n must be an int, got array([0, 0], dtype=uint64)"
    with pytest.raises(TypeError, match=r"data.disk: expected a key .*got int"):
        data.disk(5, key)


def test_disk_dtype_none_is_the_float32_default(key):
    x, y = data.disk(key, 5, dtype=None)
    assert x.dtype == y.dtype == np.float32
    np.testing.assert_array_equal(x, data.disk(key, 5)[0])


def test_a_centre_far_out_labels_every_point_outside_without_a_warning(key):
    _, y = data.disk(key, 50, center=(1e300, 0.0))
    assert not y.any()
