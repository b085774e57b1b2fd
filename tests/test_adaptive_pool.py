"""AdaptiveAvgPool2D/1D and AdaptiveMaxPool2D/1D (funcdl.layers.adaptive_pool): forward and
vjp against a naive loop over the output bins, finite differences in float64, PyTorch's
tie and NaN rules by hand, the non-finite inputs the BLAS mean cannot take, float32,
and bad arguments and inputs. PyTorch cross-checks: test_adaptive_pool_torch.py."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest

from funcdl import random
from funcdl.layers import _adaptive
from funcdl.layers.adaptive_pool import (
    AdaptiveAvgPool1D,
    AdaptiveAvgPool2D,
    AdaptiveMaxPool1D,
    AdaptiveMaxPool2D,
)
from funcdl.testing import check_layer, check_vjp

KEY = random.key(0)
# (n, m) per side: m not dividing n, dividing, equal, m > n, global (m = 1), n = 1
PAIRS = [(7, 3), (6, 3), (4, 4), (3, 5), (5, 1), (1, 2), (30, 7)]
SIDES = [((7, 3), (5, 2)), ((6, 3), (4, 4)), ((3, 5), (7, 3)), ((5, 1), (5, 1)),
         ((4, 4), (1, 2)), ((2, 3), (6, 4))]


def _bin(i, n, m):
    return math.floor(i * n / m), math.ceil((i + 1) * n / m)


def naive(x, oh, ow, is_max, dy):
    """y and dx of a 2-D adaptive pool by a loop over output bins and (for the max) over
    each window's cells in row-major order, PyTorch's rule: a cell wins when it is greater
    than the best so far or NaN."""
    n, h, w, c = x.shape
    y, dx = np.zeros((n, oh, ow, c)), np.zeros_like(x)
    for p in range(oh):
        r0, r1 = _bin(p, h, oh)
        for q in range(ow):
            c0, c1 = _bin(q, w, ow)
            win = x[:, r0:r1, c0:c1]
            if not is_max:
                y[:, p, q] = win.sum(axis=(1, 2)) / win[0, ..., 0].size
                dx[:, r0:r1, c0:c1] += dy[:, None, None, p, q] / win[0, ..., 0].size
                continue
            for b in range(n):
                for ch in range(c):
                    best, at = -np.inf, (r0, c0)
                    for i in range(r0, r1):
                        for j in range(c0, c1):
                            v = x[b, i, j, ch]
                            if v > best or np.isnan(v):
                                best, at = v, (i, j)
                    y[b, p, q, ch] = best
                    dx[b, at[0], at[1], ch] += dy[b, p, q, ch]
    return y, dx


def _run(layer, x, dy):
    y, pullback = layer.vjp((), x)
    return y, pullback(dy)[1]


def _ties(shape, seed):
    return np.random.default_rng(seed).integers(0, 3, shape).astype(np.float64)


# ---------------------------------------------------------------------------- against a loop

@pytest.mark.parametrize("is_max", [False, True])
@pytest.mark.parametrize("sides", SIDES)
@pytest.mark.parametrize("data", ["normal", "ties"])
def test_2d_matches_naive(is_max, sides, data):
    (h, oh), (w, ow) = sides
    rng = np.random.default_rng(h * 10 + w)
    x = rng.standard_normal((2, h, w, 3)) if data == "normal" else _ties((2, h, w, 3), h)
    dy = rng.standard_normal((2, oh, ow, 3))
    layer = (AdaptiveMaxPool2D if is_max else AdaptiveAvgPool2D)((oh, ow))
    want_y, want_dx = naive(x, oh, ow, is_max, dy)
    y, dx = _run(layer, x, dy)
    np.testing.assert_allclose(y, want_y, rtol=1e-13, atol=1e-13)
    np.testing.assert_allclose(dx, want_dx, rtol=1e-13, atol=1e-13)
    np.testing.assert_array_equal(layer.apply((), x), y)


@pytest.mark.parametrize("is_max", [False, True])
@pytest.mark.parametrize("n,m", PAIRS)
def test_1d_matches_naive(is_max, n, m):
    rng = np.random.default_rng(n * 7 + m)
    x, dy = rng.standard_normal((3, n, 2)), rng.standard_normal((3, m, 2))
    layer = (AdaptiveMaxPool1D if is_max else AdaptiveAvgPool1D)(m)
    want_y, want_dx = naive(x[:, None], 1, m, is_max, dy[:, None])
    y, dx = _run(layer, x, dy)
    assert y.shape == (3, m, 2)
    np.testing.assert_allclose(y, want_y[:, 0], rtol=1e-13, atol=1e-13)
    np.testing.assert_allclose(dx, want_dx[:, 0], rtol=1e-13, atol=1e-13)


@pytest.mark.parametrize("size,in_shape", [((None, 3), (None, 5, 6, 2)),
                                           ((4, None), (None, 6, 5, 2)),
                                           ((None, None), (None, 3, 4, 2))])
@pytest.mark.parametrize("is_max", [False, True])
def test_none_keeps_a_side(size, in_shape, is_max):
    layer = (AdaptiveMaxPool2D if is_max else AdaptiveAvgPool2D)(size)
    out_shape, _ = layer.init(KEY, in_shape)
    want = tuple(d if s is None else s for d, s in zip(in_shape[1:3], size))
    assert out_shape == (None, *want, 2)
    x = np.random.default_rng(1).standard_normal((2, *in_shape[1:]))
    dy = np.random.default_rng(2).standard_normal((2, *want, 2))
    want_y, want_dx = naive(x, *want, is_max, dy)
    y, dx = _run(layer, x, dy)
    np.testing.assert_allclose(y, want_y, rtol=1e-13, atol=1e-13)
    np.testing.assert_allclose(dx, want_dx, rtol=1e-13, atol=1e-13)
    y[...] = 7.0  # the identity still gives a fresh array, not the input
    assert not (x == 7.0).any()


def test_global_pool_is_the_mean_and_max():
    x = np.random.default_rng(3).standard_normal((4, 5, 6, 3))
    np.testing.assert_allclose(AdaptiveAvgPool2D(1).apply((), x)[:, 0, 0], x.mean(axis=(1, 2)),
                               rtol=1e-13)
    np.testing.assert_array_equal(AdaptiveMaxPool2D(1).apply((), x)[:, 0, 0], x.max(axis=(1, 2)))


# ---------------------------------------------------------------------------- vjp checks

@pytest.mark.parametrize("ctor", [AdaptiveAvgPool2D, AdaptiveMaxPool2D])
@pytest.mark.parametrize("sides", SIDES[:4])
def test_check_layer_2d(ctor, sides):
    (h, oh), (w, ow) = sides
    check_layer(ctor((oh, ow)), (None, h, w, 2))
    x = np.random.default_rng(4).standard_normal((2, h, w, 3))
    check_vjp(ctor((oh, ow)), (), x)


@pytest.mark.parametrize("ctor", [AdaptiveAvgPool1D, AdaptiveMaxPool1D])
@pytest.mark.parametrize("n,m", PAIRS)
def test_check_layer_1d(ctor, n, m):
    check_layer(ctor(m), (None, n, 3))
    check_vjp(ctor(m), (), np.random.default_rng(5).standard_normal((2, n, 3)))


# ---------------------------------------------------------------------------- ties and NaN

def test_max_ties_take_the_first_in_row_major_order():
    # windows of 2 x 2 over 3 x 3 (bins [0, 2), [1, 3)); PyTorch's indices: 1, 1, 3, 5
    x = np.array([[1., 3., 3.], [3., 2., 3.], [0., 3., 1.]])[None, :, :, None]
    y, dx = _run(AdaptiveMaxPool2D(2), x, np.array([1., 10., 100., 1000.]).reshape(1, 2, 2, 1))
    np.testing.assert_array_equal(y[0, ..., 0], [[3., 3.], [3., 3.]])
    np.testing.assert_array_equal(dx[0, ..., 0], [[0., 11., 0.], [100., 0., 1000.], [0., 0., 0.]])


def test_max_nan_is_the_last_nan_and_all_neg_inf_the_first_cell():
    nan, inf = np.nan, np.inf
    x = np.array([[1., nan, 3.], [nan, 2., 3.], [0., 3., 1.]])[None, :, :, None]
    y, dx = _run(AdaptiveMaxPool2D(1), x, np.ones((1, 1, 1, 1)))
    assert np.isnan(y).all()
    assert dx[0, 1, 0, 0] == 1 and dx.sum() == 1  # PyTorch's index 3: the last NaN
    x = np.full((1, 3, 3, 1), -inf)
    _, dx = _run(AdaptiveMaxPool2D(2), x, np.ones((1, 2, 2, 1)))
    # each window's first cell: (0, 0), (0, 1), (1, 0), (1, 1)
    np.testing.assert_array_equal(dx[0, ..., 0], [[1., 1., 0.], [1., 1., 0.], [0., 0., 0.]])


@pytest.mark.parametrize("sides", SIDES)
def test_max_nan_and_neg_inf_match_the_loop(sides):
    (h, oh), (w, ow) = sides
    rng = np.random.default_rng(6)
    x = _ties((2, h, w, 3), 7)
    x[rng.random(x.shape) < 0.3] = np.nan
    x[rng.random(x.shape) < 0.3] = -np.inf
    dy = rng.standard_normal((2, oh, ow, 3))
    want_y, want_dx = naive(x, oh, ow, True, dy)
    y, dx = _run(AdaptiveMaxPool2D((oh, ow)), x, dy)
    np.testing.assert_array_equal(y, want_y)
    np.testing.assert_allclose(dx, want_dx, rtol=1e-13, atol=1e-13)


# ---------------------------------------------------------------------------- non-finite sums

def test_avg_inf_stays_in_its_windows():
    # the product by the bins' 0/1 matrix makes 0·inf = NaN of every bin: summed bin by bin
    x = np.random.default_rng(8).standard_normal((2, 7, 9, 2))
    x[0, 1, 2, 0], x[1, 5, 7, 1] = np.inf, -np.inf
    x[0, 6, 8, 1] = np.nan
    dy = np.random.default_rng(9).standard_normal((2, 3, 4, 2))
    want_y, want_dx = naive(x, 3, 4, False, dy)
    y, dx = _run(AdaptiveAvgPool2D((3, 4)), x, dy)
    np.testing.assert_allclose(y, want_y, rtol=1e-13, atol=1e-13)
    assert np.isfinite(y).sum() == np.isfinite(want_y).sum() > 0
    np.testing.assert_allclose(dx, want_dx, rtol=1e-13, atol=1e-13)


def test_avg_vjp_inf_cotangent_stays_in_its_windows():
    x = np.zeros((1, 7, 1))
    dy = np.array([1.0, np.inf, 2.0])[None, :, None]
    dx = _run(AdaptiveAvgPool1D(3), x, dy)[1]
    want = naive(x[:, None], 1, 3, False, dy[:, None])[1][:, 0]
    np.testing.assert_array_equal(dx, want)
    assert np.isfinite(dx).sum() == 4  # bins [0, 3), [2, 5), [4, 7): cells 0, 1, 5, 6


def test_avg_float32_huge_values_do_not_overflow_other_windows():
    x = np.ones((1, 7, 1), np.float32)
    x[0, :2] = 3e38  # the first window's sum overflows; the others must not see it
    y = AdaptiveAvgPool1D(3).apply((), x)
    assert y.dtype == np.float32 and np.isfinite(y[0, 1:]).all()
    np.testing.assert_allclose(y[0, 2:, 0], 1.0)


# ---------------------------------------------------------------------------- dtypes

@pytest.mark.parametrize("ctor,size,shape", [(AdaptiveAvgPool2D, (7, 7), (2, 30, 30, 3)),
                                             (AdaptiveMaxPool2D, (4, 3), (2, 9, 7, 3)),
                                             (AdaptiveAvgPool1D, 3, (2, 7, 3)),
                                             (AdaptiveMaxPool1D, 4, (2, 6, 3))])
def test_float32_stays_float32_and_close_to_float64(ctor, size, shape):
    x = np.random.default_rng(10).standard_normal(shape)
    layer = ctor(size)
    y32, pb = layer.vjp((), x.astype(np.float32))
    dx32 = pb(np.ones(y32.shape, np.float32))[1]
    y64, pb = layer.vjp((), x)
    dx64 = pb(np.ones(y64.shape))[1]
    assert y32.dtype == dx32.dtype == np.float32
    np.testing.assert_allclose(y32, y64, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(dx32, dx64, rtol=1e-5, atol=1e-6)
    assert layer.apply((), x.astype(np.int64)).dtype == np.float32  # integers as float32


def test_empty_batch_and_channels():
    for x in (np.zeros((0, 5, 4, 2)), np.zeros((2, 5, 4, 0))):
        for ctor in (AdaptiveAvgPool2D, AdaptiveMaxPool2D):
            y, pb = ctor((2, 3)).vjp((), x)
            assert y.shape == (x.shape[0], 2, 3, x.shape[3])
            assert pb(np.zeros(y.shape))[1].shape == x.shape


# ---------------------------------------------------------------------------- bad arguments

@pytest.mark.parametrize("ctor", [AdaptiveAvgPool2D, AdaptiveMaxPool2D])
@pytest.mark.parametrize("size,err", [(0, ValueError), (-1, ValueError), ((2, 0), ValueError),
                                      ((None, -3), ValueError), (2.5, TypeError),
                                      ("3", TypeError), (True, TypeError), ((2,), TypeError),
                                      ((1, 2, 3), TypeError), (None, TypeError),
                                      ((2, 1.0), TypeError)])
def test_bad_output_size_2d(ctor, size, err):
    with pytest.raises(err, match=r"Adaptive\w+Pool2D\(.*output_size must be a positive int"):
        ctor(size)


@pytest.mark.parametrize("ctor", [AdaptiveAvgPool1D, AdaptiveMaxPool1D])
@pytest.mark.parametrize("size,err", [(0, ValueError), (-2, ValueError), (None, TypeError),
                                      ((2, 3), TypeError), (1.5, TypeError), (False, TypeError)])
def test_bad_output_size_1d(ctor, size, err):
    with pytest.raises(err, match=r"Adaptive\w+Pool1D\(.*output_size must be a positive int"):
        ctor(size)


@pytest.mark.parametrize("layer,in_shape", [(AdaptiveAvgPool2D(2), (None, 4, 4)),
                                            (AdaptiveMaxPool2D(2), (None, 4, 4, 2, 1)),
                                            (AdaptiveAvgPool1D(2), (None, 4, 4, 2)),
                                            (AdaptiveMaxPool1D(2), (None, 4)),
                                            (AdaptiveAvgPool2D(2), (None, 0, 4, 2)),
                                            (AdaptiveMaxPool1D(2), (None, 0, 2))])
def test_bad_in_shape_and_input(layer, in_shape):
    with pytest.raises(ValueError, match=re.escape(layer.name)):
        layer.init(KEY, in_shape)
    x = np.zeros(tuple(2 if d is None else d for d in in_shape))
    with pytest.raises(ValueError, match=re.escape(layer.name) + r": expected an input \(N, "):
        layer.apply((), x)
    with pytest.raises(ValueError, match=re.escape(layer.name)):
        layer.vjp((), x)


def test_bad_cotangent_and_params():
    layer = AdaptiveMaxPool2D(2)
    _, pb = layer.vjp((), np.zeros((1, 4, 4, 1)))
    with pytest.raises(ValueError, match=r"AdaptiveMaxPool2D\(2\): pullback expected dy"):
        pb(np.zeros((1, 3, 3, 1)))
    with pytest.raises(ValueError, match=r"AdaptiveMaxPool2D\(2\): this layer has no param"):
        layer.apply({"w": np.zeros(2)}, np.zeros((1, 4, 4, 1)))


def test_bins_are_torchs():
    for n in range(1, 12):
        for m in range(1, 14):
            s, e = _adaptive.bins(n, m)
            assert [(int(a), int(b)) for a, b in zip(s, e)] == [_bin(i, n, m) for i in range(m)]



@pytest.mark.parametrize("data", ["ties", "nan"])
def test_tiling_windows_match_the_loop(data):
    """28 -> 7 (windows of 4 x 4 that tile x, run as MaxPool2D(4) by offsets): the same
    maxima, first tie and last NaN as the loop, and as MaxPool2D(4) bit for bit."""
    rng = np.random.default_rng(11)
    x = _ties((2, 28, 28, 3), 5)
    if data == "nan":
        x[rng.random(x.shape) < 0.2] = np.nan
        x[rng.random(x.shape) < 0.2] = -np.inf
    dy = rng.standard_normal((2, 7, 7, 3))
    want_y, want_dx = naive(x, 7, 7, True, dy)
    y, dx = _run(AdaptiveMaxPool2D(7), x, dy)
    np.testing.assert_array_equal(y, want_y)
    np.testing.assert_allclose(dx, want_dx, rtol=1e-13, atol=1e-13)
    from funcdl.layers import MaxPool2D
    y4, dx4 = _run(MaxPool2D(4), x, dy)
    np.testing.assert_array_equal(y, y4)
    np.testing.assert_array_equal(dx, dx4)


def test_a_global_max_pool_goes_by_bins_not_by_offsets():
    """AdaptiveMaxPool2D(1) on 64 x 64: two steps by bins, no mask per offset kept (as
    MaxPool2D(64) it took 4,096 Python steps and kept 4,095 masks)."""
    import tracemalloc

    x = np.random.default_rng(12).standard_normal((2, 64, 64, 4)).astype(np.float32)
    layer = AdaptiveMaxPool2D(1)
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        y, pullback = layer.vjp((), x)
        held = tracemalloc.get_traced_memory()[0] - base - y.nbytes
    finally:
        tracemalloc.stop()
    assert held < x.nbytes // 8, held
    want_y, want_dx = naive(x.astype(np.float64), 1, 1, True, np.ones((2, 1, 1, 4)))
    np.testing.assert_array_equal(y, want_y)
    np.testing.assert_array_equal(pullback(np.ones_like(y))[1], want_dx)
