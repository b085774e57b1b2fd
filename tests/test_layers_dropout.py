"""Dropout: the fraction dropped and the scaling, rate 0 and 1, the key it needs in
training, and the same mask and a float32 or float64 result whatever the input's dtype."""

from __future__ import annotations

import numpy as np
import pytest

from funcdl import layers as L
from funcdl import random
from funcdl.testing import check_vjp


def test_dropout_rate_is_fraction_dropped_and_scaled(key):
    layer = L.Dropout(0.25)
    x = np.ones((200, 500), np.float32)
    y = layer.apply((), x, key=key, train=True)
    dropped = np.mean(y == 0)
    assert abs(dropped - 0.25) < 0.01
    np.testing.assert_allclose(np.unique(y), [0.0, 1 / 0.75], rtol=1e-6)
    # same key -> same mask; vjp uses the same mask as apply
    y2, pullback = layer.vjp((), x, key=key, train=True)
    np.testing.assert_array_equal(y, y2)
    np.testing.assert_array_equal(pullback(np.ones_like(x))[1], y)
    assert np.array_equal(layer.apply((), x, train=False), x)


def test_dropout_of_rate_one_drops_everything_in_training(key):
    x = random.normal(random.key(1), (3, 4), np.float64)
    layer = L.Dropout(1.0)
    y, pullback = layer.vjp((), x, key=key, train=True)
    np.testing.assert_array_equal(y, np.zeros((3, 4)))
    np.testing.assert_array_equal(layer.apply((), x, key=key, train=True), np.zeros((3, 4)))
    np.testing.assert_array_equal(pullback(np.ones((3, 4)))[1], np.zeros((3, 4)))
    assert y.dtype == np.float64


def test_dropout_scales_float64_inputs_in_float64(key):
    # the kept entries are scaled by 1/(1 - rate) in the input's dtype, not float32's
    x = np.ones((50, 40))
    y, pullback = L.Dropout(0.3).vjp((), x, key=key, train=True)
    assert y.dtype == np.float64
    kept = y != 0
    assert 0 < kept.mean() < 1
    np.testing.assert_array_equal(y[kept], 1 / (1 - 0.3))
    np.testing.assert_array_equal(L.Dropout(0.3).apply((), x, key=key, train=True), y)
    np.testing.assert_array_equal(pullback(np.full_like(x, -2.0))[1], -2.0 * y)


@pytest.mark.parametrize("rate", [0.0, 0.5, 1.0])
def test_dropout_train_without_key_explains(rate):
    # At every rate, so that changing the rate cannot break a script that ran before.
    for call in (L.Dropout(rate).apply, L.Dropout(rate).vjp):
        with pytest.raises(ValueError, match=r"key=funcdl\.random\.key"):
            call((), np.ones((2, 2)), train=True)
    x = np.ones((2, 2))
    assert L.Dropout(rate).apply((), x, train=False) is x


def test_integer_inputs_to_dropout_and_residual_give_float32(key):
    x = np.array([[1, 2, 3, 4]])
    assert L.Dropout(0.5).apply((), x, key=key, train=True).dtype == np.float32
    res = L.Residual(L.Dense(4))
    _, params = res.init(key, (None, 4))
    assert res.apply(params, x).dtype == np.float32


def test_dropout_drops_the_same_entries_whatever_the_input_dtype():
    # the draws are float32 whatever x holds (they were in x's dtype: a float64 rerun, or
    # check_vjp's, dropped other entries), and a big-endian input (np.load of a '>f4' file)
    # trains like a native one
    key = random.key(7)
    x32 = np.ones((4, 64), np.float32)
    layer = L.Dropout(0.5)
    want = layer.apply((), x32, key=key, train=True)
    assert 0 < np.count_nonzero(want) < want.size
    for x in (x32.astype(np.float64), x32.astype(">f4"), np.ones((4, 64), np.int64)):
        y = layer.apply((), x, key=key, train=True)
        np.testing.assert_array_equal(y != 0, want != 0)
        assert y.dtype == (np.float64 if x.dtype == np.float64 else np.float32)



def test_broadcast_dims_drop_whole_channels_as_dropout2d():
    # Flax's broadcast_dims: one draw per (example, channel) on NHWC is PyTorch's Dropout2d
    layer = L.Dropout(0.5, broadcast_dims=(1, 2))
    assert layer.name == "Dropout(0.5, broadcast_dims=(1, 2))"
    x = np.ones((64, 4, 4, 8), np.float32)
    key = random.key(3)
    y, pullback = layer.vjp((), x, key=key, train=True)
    assert y.shape == x.shape and y.dtype == np.float32
    per_pixel = y.reshape(64, 16, 8)
    assert (per_pixel == per_pixel[:, :1, :]).all()  # a channel all kept or all dropped
    assert set(np.unique(y)) == {0.0, 2.0} and 0.4 < (per_pixel[:, 0] == 0).mean() < 0.6
    np.testing.assert_array_equal(layer.apply((), x, key=key, train=True), y)
    np.testing.assert_array_equal(pullback(np.ones_like(x))[1], y)
    check_vjp(layer, (), np.linspace(-1, 1, 2 * 3 * 3 * 4).reshape(2, 3, 3, 4), key=key,
              train=True)
    np.testing.assert_array_equal(layer.apply((), x), x)  # inference: the identity


@pytest.mark.parametrize("dims, error, match", [
    ((5,), ValueError, r"broadcast_dims \(5,\) are out of range for an input of shape"),
    ("a", TypeError, r"broadcast_dims must be a tuple of axes"),
    ((1.5,), TypeError, r"broadcast_dims must be an int"),
])
def test_bad_broadcast_dims_are_named(dims, error, match):
    with pytest.raises(error, match=match):
        L.Dropout(0.5, broadcast_dims=dims).apply((), np.ones((2, 3, 3, 4)),
                                                  key=random.key(0), train=True)


@pytest.mark.parametrize("make", [lambda: L.Dropout(0.5),
                                  lambda: L.Dropout(0.5, broadcast_dims=(1,)),
                                  lambda: L.AlphaDropout(0.5), lambda: L.FeatureAlphaDropout(0.5)])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_dropout_of_inf_and_huge_inputs_gives_torchs_values_without_warnings(make, dtype, key):
    # a dropped inf (inf·0) and a kept value past max / (1 - rate) warned from NumPy, which
    # the suite's -W error (and a user's) turned into an exception; torch is silent
    layer = make()
    big = np.finfo(dtype).max
    x = np.tile(np.array([np.inf, -np.inf, big, -big, 1.0], dtype), (8, 4, 1))
    y = layer.apply((), x, key=key, train=True)
    y2, pullback = layer.vjp((), x, key=key, train=True)
    np.testing.assert_array_equal(y, y2)
    _, dx = pullback(np.ones_like(y))
    kept = dx != 0  # the pullback's factor is nonzero exactly where the entry was kept
    assert kept.any() and (~kept).any() and y.dtype == dtype
    if isinstance(layer.name, str) and layer.name.startswith("Dropout"):
        np.testing.assert_array_equal(np.isnan(y), ~kept & np.isinf(x))  # inf·0 only
        np.testing.assert_array_equal(y[kept & (np.abs(x) == big)],
                                      np.sign(x[kept & (np.abs(x) == big)]) * np.inf)
        np.testing.assert_array_equal(y[~kept & np.isfinite(x)], 0)
