"""MaxPool2D and AvgPool2D by window offset: every geometry against windows looped over by
hand (ties, -inf, NaN, float32 and float64), vjps against finite differences, where the
max's gradient goes, strided and integer inputs, empty batches and channels."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from funcdl import layers as L
from funcdl.testing import check_vjp

# ---------------------------------------------------------------------------- pools, by offset
# MaxPool2D and AvgPool2D copy each window offset's slice pixel by pixel into a contiguous
# buffer (funcdl.layers._pooling) and scatter the shares back by classes of disjoint
# offsets: every geometry (padding, stride below, at and above the window) against windows
# looped over by hand, with ties and -inf, in float32 and float64.

POOL_GEOMETRIES = [  # window, stride, padding
    (2, None, "VALID"), (3, 2, "SAME"), (3, 2, "VALID"), (2, 1, "SAME"), ((2, 3), (1, 2), 1),
    ((3, 2), (2, 1), ((2, 0), (0, 1))), (2, 3, "VALID"), (1, 1, "VALID"), (3, 1, 1),
    ((1, 3), (2, 3), ((0, 0), (1, 1))), (2, None, "SAME"),
    # padding 2 with strides (1, 2) and (2, 1): where a window's real cells start depends
    # on each axis's own stride (as test_conv's all -inf windows check by hand)
    (3, (1, 2), 2), (3, (2, 1), 2),
]


def _pads_by_hand(size, k, s, padding, axis):
    """(before, after) along one axis: SAME as TF/JAX (the odd pixel after), VALID none, or
    the explicit int, (rows, cols) pair or pair of pairs."""
    if padding == "SAME":
        total = max((-(-size // s) - 1) * s + k - size, 0)
        return total // 2, total - total // 2
    if padding == "VALID":
        return 0, 0
    p = padding if isinstance(padding, int) else padding[axis]
    return (p, p) if isinstance(p, int) else tuple(p)


def _pool_by_hand(x, window, stride, padding, kind):
    """y and dx for dy = 1, 2, 3, ... by loops over windows, as PyTorch's CPU kernel: from a
    maximum of -inf at the first real cell, a cell wins when it is greater than the maximum
    so far or NaN (the first maximum wins ties, the last NaN any window holding one; a window
    of -inf sends dy to its first real cell, padding never wins). The output size and
    padding are worked out here, not taken from funcdl."""
    kh, kw = (window, window) if isinstance(window, int) else window
    stride = (kh, kw) if stride is None else stride
    sh, sw = (stride, stride) if isinstance(stride, int) else stride
    n, h, w, c = x.shape
    (t, bottom), (l, right) = (_pads_by_hand(h, kh, sh, padding, 0),
                               _pads_by_hand(w, kw, sw, padding, 1))
    oh, ow = (h + t + bottom - kh) // sh + 1, (w + l + right - kw) // sw + 1
    y = np.zeros((n, oh, ow, c))
    dy = np.arange(1.0, y.size + 1).reshape(y.shape)
    dx = np.zeros(x.shape)
    for p, q, b, ch in itertools.product(range(oh), range(ow), range(n), range(c)):
        cells = [(p * sh + i - t, q * sw + j - l) for i in range(kh) for j in range(kw)]
        real = [(r, s) for r, s in cells if 0 <= r < h and 0 <= s < w]
        vals = [x[b, r, s, ch] for r, s in real]
        if kind == "max":
            top, at = -np.inf, real[0]
            for v, cell in zip(vals, real):
                if v > top or np.isnan(v):
                    top, at = v, cell
            y[b, p, q, ch] = top
            dx[b, at[0], at[1], ch] += dy[b, p, q, ch]
            continue
        m = kh * kw if kind == "avg" else len(real)
        y[b, p, q, ch] = sum(vals) / m
        for r, s in real:
            dx[b, r, s, ch] += dy[b, p, q, ch] / m
    return y, dy, dx


@pytest.mark.parametrize(("window", "stride", "padding"), POOL_GEOMETRIES)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize(("kind", "data"), [  # -inf, NaN for max only: a mean has no route
    ("max", "-inf"), ("max", "nan"),
    *itertools.product(["max", "avg", "avg-exclude-pad"], ["normal", "ties"])])
def test_pools_by_offset_match_windows_by_hand(window, stride, padding, dtype, data, kind):
    rng = np.random.default_rng(7)
    x = (rng.integers(0, 3, (2, 7, 8, 3)) if data in ("ties", "nan")
         else rng.standard_normal((2, 7, 8, 3))).astype(dtype)
    if data == "nan":  # ties, NaN (the last NaN wins) and windows of -inf only
        x[rng.random(x.shape) < 0.3] = np.nan
        x[rng.random(x.shape) < 0.5] = -np.inf
    if data == "-inf":
        x[rng.random(x.shape) < 0.7] = -np.inf
    layer = (L.MaxPool2D(window, stride, padding) if kind == "max" else
             L.AvgPool2D(window, stride, padding, count_include_pad=kind == "avg"))
    y_ref, dy, dx_ref = _pool_by_hand(x.astype(np.float64), window, stride, padding, kind)
    y, pullback = layer.vjp((), x)
    _, dx = pullback(dy.astype(dtype))
    assert y.dtype == dx.dtype == dtype
    np.testing.assert_array_equal(layer.apply((), x), y)
    tol = {"rtol": 1e-6, "atol": 1e-5} if dtype == np.float32 else {"rtol": 1e-14, "atol": 0}
    if kind == "max":  # exact: values are copied, and each x gets dy sums of whole numbers
        np.testing.assert_array_equal(y, y_ref.astype(dtype))
        np.testing.assert_array_equal(dx, dx_ref.astype(dtype))
    else:
        np.testing.assert_allclose(y, y_ref, **tol)
        np.testing.assert_allclose(dx, dx_ref, **tol)


@pytest.mark.parametrize(("window", "stride", "padding"), POOL_GEOMETRIES)
@pytest.mark.parametrize("make", [L.MaxPool2D, L.AvgPool2D,
                                  lambda *a: L.AvgPool2D(*a, count_include_pad=False)])
def test_pools_by_offset_vjp_float64(window, stride, padding, make):
    # distinct values: each window's maximum is unique, so finite differences see it
    x = np.random.default_rng(8).permutation(2 * 7 * 8 * 3).reshape(2, 7, 8, 3) / 9.0
    check_vjp(make(window, stride, padding), (), x)


def test_maxpool_gradient_goes_to_the_first_maximum_with_its_sign_and_size():
    # a window of four equal maxima and one of a single maximum; dy = -3 and 5
    x = np.array([[7.0, 7.0, 1.0, 2.0], [7.0, 7.0, 9.0, 0.0]]).reshape(1, 2, 4, 1)
    y, pullback = L.MaxPool2D(2).vjp((), x)
    np.testing.assert_array_equal(y[0, :, :, 0], [[7.0, 9.0]])
    _, dx = pullback(np.array([-3.0, 5.0]).reshape(1, 1, 2, 1))
    np.testing.assert_array_equal(dx[0, :, :, 0], [[-3, 0, 0, 0], [0, 0, 5, 0]])


def test_maxpool_non_contiguous_and_integer_inputs():
    x = np.random.default_rng(9).standard_normal((3, 6, 8, 4))
    layer = L.MaxPool2D(3, 2, "SAME")
    y, pullback = layer.vjp((), x[:, :, ::-1].transpose(0, 2, 1, 3))  # a strided view
    y_ref, pullback_ref = layer.vjp((), np.ascontiguousarray(x[:, :, ::-1].transpose(0, 2, 1, 3)))
    np.testing.assert_array_equal(y, y_ref)
    dy = np.ones_like(y)
    np.testing.assert_array_equal(pullback(dy)[1], pullback_ref(dy)[1])
    ints = np.arange(2 * 4 * 4 * 1).reshape(2, 4, 4, 1)
    assert layer.apply((), ints).dtype == np.float32
    assert L.AvgPool2D(2).vjp((), ints)[1](np.ones((2, 2, 2, 1), np.float32))[1].dtype == \
        np.float32


def test_pools_of_empty_batches_and_channels():
    for shape in ((0, 4, 4, 2), (2, 4, 4, 0)):
        for layer in (L.MaxPool2D(3, 2, "SAME"), L.AvgPool2D(2)):
            y, pullback = layer.vjp((), np.zeros(shape, np.float32))
            assert pullback(np.zeros_like(y))[1].shape == shape



@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_maxpool_sends_a_nan_or_inf_cotangent_to_its_windows_max_only(bad):
    # dy times each cell's 0/1 winner mask made NaN (inf·0) at every cell of the window,
    # with NumPy's warning for inf; torch and jax.lax.reduce_window give dy to the max only
    x = np.array([[1.0, 4.0], [2.0, 3.0]], np.float32).reshape(1, 2, 2, 1)
    layer = L.MaxPool2D(2)
    _, params = layer.init(None, x.shape)
    _, pullback = layer.vjp(params, x)
    _, dx = pullback(np.full((1, 1, 1, 1), bad, np.float32))
    np.testing.assert_array_equal(dx.ravel(), [0, bad, 0, 0])
    # overlapping windows: each max gets its own dy, the cells between them nothing
    pool = L.MaxPool1D(3, 2)
    _, p1 = pool.init(None, (1, 5, 1))
    _, pb = pool.vjp(p1, np.array([0, 5, 1, 2, 3], np.float64).reshape(1, 5, 1))
    _, dx = pb(np.array([bad, 1.0]).reshape(1, 2, 1))
    np.testing.assert_array_equal(dx.ravel(), [0, bad, 0, 0, 1])


def test_maxpool_overlapping_winners_of_inf_and_minus_inf_cotangents_give_nan_silently():
    # one cell wins two overlapping windows: inf + -inf (NaN) or 3e38 + 3e38 (inf), as torch,
    # where NumPy's warnings escaped the scatter
    pool = L.MaxPool1D(3, 2)
    _, params = pool.init(None, (1, 5, 1))
    x = np.array([0, 1, 5, 1, 0], np.float32).reshape(1, 5, 1)
    _, pullback = pool.vjp(params, x)
    for dy, winner in (([np.inf, -np.inf], np.nan), ([3e38, 3e38], np.inf)):
        _, dx = pullback(np.array(dy, np.float32).reshape(1, 2, 1))
        np.testing.assert_array_equal(dx.ravel(), [0, 0, winner, 0, 0])
