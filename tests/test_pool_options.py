"""The pools' ceil_mode and dilation options, and MaxPool1D / AvgPool1D: against windows
looped over by hand (PyTorch's output size, tie, NaN and divisor rules, written out here
from torch's documentation and probed values), vjps against finite differences in float64,
closed forms a wrong sign or factor would miss, float32 kept, 1-D as the 1 x k 2-D pool,
the names, and bad arguments refused in errors naming the layer."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from funcdl import layers as L
from funcdl import random
from funcdl.layers.pool import AvgPool2D, MaxPool2D
from funcdl.layers.pool1d import AvgPool1D, MaxPool1D
from funcdl.testing import check_layer, check_vjp

KEY = random.key(0)


# ---------------------------------------------------------------------------- by hand

def _pair(v):
    return (v, v) if isinstance(v, int) else tuple(v)


def _pads(padding):
    """((top, bottom), (left, right)) from 'VALID', an int, a pair or a pair of pairs."""
    if padding == "VALID":
        return (0, 0), (0, 0)
    if isinstance(padding, int):
        return (padding, padding), (padding, padding)
    return tuple(_pair(p) for p in padding)


def _out(n, k, s, lo, hi, d, ceil):
    """PyTorch's pooling_output_shape: floor or ceil, and in ceil mode one fewer when the
    last window would start at or past n + lo (in the bottom/right padding)."""
    span = (k - 1) * d + 1
    o = (n + lo + hi - span + (s - 1 if ceil else 0)) // s + 1
    if ceil and (o - 1) * s >= n + lo:
        o -= 1
    return o


def _by_hand(x, kind, window, stride=None, padding="VALID", dilation=1, ceil=False):
    """y and dx for dy = 1, 2, 3, ... over NHWC ``x`` by loops over every window and cell,
    as PyTorch's CPU kernels: max from -inf, a cell wins when greater or NaN, starting at
    the window's first real cell (so padding never wins); avg divides by the window's cells
    within the padded input ('avg') or its real pixels ('avg-exclude-pad')."""
    (kh, kw), (dh, dw) = _pair(window), _pair(dilation)
    sh, sw = (kh, kw) if stride is None else _pair(stride)
    (t, b), (l, r) = _pads(padding)
    n, h, w, c = x.shape
    oh, ow = _out(h, kh, sh, t, b, dh, ceil), _out(w, kw, sw, l, r, dw, ceil)
    y = np.zeros((n, oh, ow, c))
    dy = np.arange(1.0, y.size + 1).reshape(y.shape)
    dx = np.zeros(x.shape)
    for p, q, bb, ch in itertools.product(range(oh), range(ow), range(n), range(c)):
        cells = [(p * sh - t + i * dh, q * sw - l + j * dw) for i in range(kh) for j in range(kw)]
        real = [(u, v) for u, v in cells if 0 <= u < h and 0 <= v < w]
        vals = [x[bb, u, v, ch] for u, v in real]
        if kind == "max":
            top, at = -np.inf, real[0]
            for val, cell in zip(vals, real):
                if val > top or np.isnan(val):
                    top, at = val, cell
            y[bb, p, q, ch] = top
            dx[bb, at[0], at[1], ch] += dy[bb, p, q, ch]
            continue
        if kind == "avg":  # the cells inside the padded input: PyTorch's count_include_pad
            m = sum(-t <= u < h + b and -l <= v < w + r for u, v in cells)
        else:
            m = len(real)
        y[bb, p, q, ch] = sum(vals) / m
        for u, v in real:
            dx[bb, u, v, ch] += dy[bb, p, q, ch] / m
    return y, dy, dx


def _data(shape, data, dtype, seed=7):
    rng = np.random.default_rng(seed)
    x = (rng.integers(0, 3, shape) if data in ("ties", "nan")
         else rng.standard_normal(shape)).astype(dtype)
    if data == "nan":
        x[rng.random(shape) < 0.3] = np.nan
        x[rng.random(shape) < 0.4] = -np.inf
    if data == "-inf":
        x[rng.random(shape) < 0.7] = -np.inf
    return x


def _assert_matches(layer, x, kind, ref, dtype, to_layer=lambda a: a):
    y_ref, dy, dx_ref = ref
    y, pullback = layer.vjp((), x)
    _, dx = pullback(to_layer(dy).astype(dtype))
    assert y.dtype == dx.dtype == dtype
    np.testing.assert_array_equal(layer.apply((), x), y)
    y_ref, dx_ref = to_layer(y_ref), to_layer(dx_ref)
    if kind == "max":  # values are copied, dy sums of whole numbers: exact
        np.testing.assert_array_equal(y, y_ref.astype(dtype))
        np.testing.assert_array_equal(dx, dx_ref.astype(dtype))
    else:
        tol = {"rtol": 1e-6, "atol": 1e-5} if dtype == np.float32 else {"rtol": 1e-13, "atol": 0}
        np.testing.assert_allclose(y, y_ref, **tol)
        np.testing.assert_allclose(dx, dx_ref, **tol)


# window, stride, padding, dilation, ceil_mode on a (2, 7, 8, 3) input
GEOMETRIES_2D = [
    (2, None, "VALID", 1, True),             # the last row and column: one real cell
    (3, 2, "VALID", 1, True), (3, 2, 1, 1, True), (3, 3, 1, 1, True),
    ((3, 2), (2, 3), ((1, 0), (0, 1)), 1, True),  # asymmetric pads past the padded edge
    (2, 3, 1, 1, True), (4, 3, 1, 1, True),  # gaps between windows
    (3, 1, 1, 1, True),                      # stride 1: ceil changes nothing
    # dilated (MaxPool2D only), with and without ceil_mode
    (2, 1, "VALID", 2, False), (3, 2, 1, 2, False),
    ((2, 3), (1, 2), ((1, 1), (2, 0)), (3, 2), False), (2, 2, 1, (2, 3), False),
    (3, 2, 2, 2, True), (2, 3, 1, 2, True), ((3, 2), 1, 0, (1, 4), True),
    (2, 1, (2, 1), 3, True),  # padding as wide as the window, narrower than its extent
]
KINDS = [("max", "-inf"), ("max", "nan"),
         *itertools.product(["max", "avg", "avg-exclude-pad"], ["normal", "ties"])]


def _cases(geometries):
    """Each geometry with each (kind, data), but no dilation for the averages (neither
    AvgPool2D nor PyTorch's AvgPool2d has one)."""
    return [(*g, kind, data) for g in geometries for kind, data in KINDS
            if kind == "max" or g[3] == 1]


@pytest.mark.parametrize(("window", "stride", "padding", "dilation", "ceil", "kind", "data"),
                         _cases(GEOMETRIES_2D))
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_2d_options_match_windows_by_hand(window, stride, padding, dilation, ceil, kind, data,
                                          dtype):
    x = _data((2, 7, 8, 3), data, dtype)
    layer = (MaxPool2D(window, stride, padding, dilation=dilation, ceil_mode=ceil)
             if kind == "max" else AvgPool2D(window, stride, padding, ceil_mode=ceil,
                                             count_include_pad=kind == "avg"))
    ref = _by_hand(x.astype(np.float64), kind, window, stride, padding, dilation, ceil)
    assert layer.init(KEY, (None, 7, 8, 3))[0] == (None, *ref[0].shape[1:])
    _assert_matches(layer, x, kind, ref, dtype)


# window, stride, padding, dilation, ceil_mode on a (2, 9, 3) input
GEOMETRIES_1D = [
    (2, None, "VALID", 1, False), (3, 2, "SAME", 1, False), (3, 2, 1, 1, True),
    (2, None, "VALID", 1, True), (4, 3, (1, 2), 1, True), (2, 3, 0, 1, False),
    (3, 1, (2, 0), 1, False), (3, 2, 1, 2, True), (2, 1, "VALID", 4, False),
    (3, 3, (0, 2), 3, True), (2, 2, "SAME", 3, False), (2, 1, (2, 1), 3, True),
    (4, 2, 2, 2, False),
]


@pytest.mark.parametrize(("window", "stride", "padding", "dilation", "ceil", "kind", "data"),
                         _cases(GEOMETRIES_1D))
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_1d_pools_match_windows_by_hand(window, stride, padding, dilation, ceil, kind, data,
                                        dtype):
    x = _data((2, 9, 3), data, dtype, seed=11)
    layer = (MaxPool1D(window, stride, padding, dilation=dilation, ceil_mode=ceil)
             if kind == "max" else AvgPool1D(window, stride, padding, ceil_mode=ceil,
                                             count_include_pad=kind == "avg"))
    if padding == "SAME":  # TF's SAME on one axis: ceil(L / s) outputs, the odd pad after
        span, s = (window - 1) * dilation + 1, stride
        total = max((-(-9 // s) - 1) * s + span - 9, 0)
        pad2 = ((0, 0), (total // 2, total - total // 2))
    else:
        pad2 = ((0, 0), (padding, padding) if isinstance(padding, int) else
                (0, 0) if padding == "VALID" else padding)
    ref = _by_hand(x[:, None].astype(np.float64), kind, (1, window),
                   None if stride is None else (1, stride), pad2, (1, dilation), ceil)
    assert layer.init(KEY, (None, 9, 3))[0] == (None, ref[0].shape[2], 3)
    _assert_matches(layer, x, kind, ref, dtype, to_layer=lambda a: a[:, 0])


# ---------------------------------------------------------------------------- closed forms

@pytest.mark.parametrize(("length", "window", "stride", "padding", "include", "divisors"), [
    # divisors torch 2.13's avg_pool1d used (probed: ones in, real pixels / output out)
    (6, 3, 2, 1, True, [3, 3, 3, 2]), (6, 3, 2, 1, False, [2, 3, 3, 1]),
    (7, 3, 3, 1, True, [3, 3, 3]), (7, 3, 3, 1, False, [2, 3, 2]),
    (5, 2, 2, 0, True, [2, 2, 1]), (3, 4, 2, 0, True, [3]), (2, 3, 2, 1, True, [3, 2]),
    (8, 3, 2, 1, False, [2, 3, 3, 3, 1]),
])
def test_avgpool1d_ceil_mode_divisors_as_torch(length, window, stride, padding, include, divisors):
    # x = 1 at one pixel: y is 1 / divisor at each window holding it, and dx of dy = 1 at
    # that window is the same 1 / divisor: a wrong divisor, sign or factor shows here
    layer = AvgPool1D(window, stride, padding, count_include_pad=include, ceil_mode=True)
    out = layer.init(KEY, (1, length, 1))[0]
    assert out == (1, len(divisors), 1)
    for p, m in enumerate(divisors):
        start = max(p * stride - padding, 0)  # a real pixel of window p
        x = np.zeros((1, length, 1))
        x[0, start] = 1.0
        y, pullback = layer.vjp((), x)
        assert y[0, p, 0] == pytest.approx(1.0 / m, rel=1e-15)
        dy = np.zeros_like(y)
        dy[0, p, 0] = -2.0
        assert pullback(dy)[1][0, start, 0] == pytest.approx(-2.0 / m, rel=1e-15)


def test_ceil_mode_output_sizes_as_torch():
    # output sizes torch 2.13 gave (probed): (L, window, stride, padding) -> OL
    for (length, k, s, p), want in {(5, 2, 2, 0): 3, (5, 3, 2, 0): 2, (6, 3, 2, 1): 4,
                                    (3, 4, 2, 0): 1, (5, 1, 3, 0): 2, (7, 3, 3, 1): 3,
                                    (4, 3, 3, 1): 2}.items():
        for layer in (MaxPool1D(k, s, p, ceil_mode=True), AvgPool1D(k, s, p, ceil_mode=True)):
            assert layer.init(KEY, (None, length, 2))[0] == (None, want, 2), layer.name
        got = MaxPool2D((k, 2), (s, 1), ((p, p), (0, 0)), ceil_mode=True).init(
            KEY, (None, length, 3, 2))[0]
        assert got == (None, want, 2, 2)


def test_maxpool1d_ceil_and_dilation_closed_forms():
    x = np.array([1.0, 5.0, 2.0, 7.0, 3.0]).reshape(1, 5, 1)
    # windows [1, 5], [2, 7], [3]: the last past the edge, its only real cell the max
    y, pullback = MaxPool1D(2, ceil_mode=True).vjp((), x)
    np.testing.assert_array_equal(y.ravel(), [5.0, 7.0, 3.0])
    np.testing.assert_array_equal(pullback(np.array([[[-1.0], [2.0], [-3.0]]]))[1].ravel(),
                                  [0.0, -1.0, 0.0, 2.0, -3.0])
    # dilation 3, padding 1: windows of cells (-1, 2) and (0, 3) -> 2 and 1
    y, pullback = MaxPool1D(2, 1, 1, dilation=3).vjp((), x[:, :3])
    np.testing.assert_array_equal(y.ravel(), [2.0, 1.0])
    np.testing.assert_array_equal(pullback(np.array([[[4.0], [-5.0]]]))[1].ravel(),
                                  [-5.0, 0.0, 4.0])


def test_maxpool1d_dilated_windows_of_neg_inf_send_dy_to_their_first_real_cell():
    # window 3, dilation 2, padding 2 (as wide as the window, narrower than its extent 5):
    # windows at -2 (cells -2, 0, 2) and -1 (cells -1, 1, 3) start in the padding; with
    # every value -inf each sends its dy to its first real cell, offset 1 (PyTorch's rule)
    layer = MaxPool1D(3, 1, 2, dilation=2)
    x = np.full((1, 4, 1), -np.inf)
    y, pullback = layer.vjp((), x)
    assert y.shape == (1, 4, 1) and np.all(y == -np.inf)
    dx = pullback(np.array([1.0, 10.0, 100.0, 1000.0]).reshape(1, 4, 1))[1]
    # windows at 0 (cells 0, 2, 4) and 1 (cells 1, 3, 5) start on a real cell
    np.testing.assert_array_equal(dx.ravel(), [101.0, 1010.0, 0.0, 0.0])


def test_maxpool2d_dilated_ties_go_to_the_first_cell_in_row_major_order():
    # a 2 x 2 window with dilation 2 on a 3 x 3 image reads the four corners, all equal
    x = np.full((1, 3, 3, 1), 4.0)
    x[0, 1, 1] = 9.0  # the centre is not a cell of the window
    y, pullback = MaxPool2D(2, 1, dilation=2).vjp((), x)
    assert y.ravel().tolist() == [4.0]
    dx = pullback(np.full((1, 1, 1, 1), -3.0))[1][0, :, :, 0]
    np.testing.assert_array_equal(dx, [[-3, 0, 0], [0, 0, 0], [0, 0, 0]])


# ---------------------------------------------------------------------------- float64 vjps

VJP_CASES = [
    (lambda: MaxPool2D(3, 2, 1, ceil_mode=True), (2, 6, 7, 2)),
    (lambda: MaxPool2D(2, ceil_mode=True), (2, 5, 5, 2)),
    (lambda: MaxPool2D(2, 1, dilation=2), (2, 5, 6, 2)),
    (lambda: MaxPool2D((2, 3), (2, 1), ((1, 0), (1, 1)), dilation=(2, 1), ceil_mode=True),
     (1, 6, 5, 3)),
    (lambda: AvgPool2D(3, 2, 1, ceil_mode=True), (2, 6, 7, 2)),
    (lambda: AvgPool2D(3, 2, 1, count_include_pad=False, ceil_mode=True), (2, 6, 7, 2)),
    (lambda: AvgPool2D(2, ceil_mode=True), (2, 5, 5, 2)),
    (lambda: MaxPool1D(3, 2, 1, ceil_mode=True), (2, 8, 3)),
    (lambda: MaxPool1D(2, 1, dilation=3), (2, 7, 3)),
    (lambda: MaxPool1D(), (2, 6, 3)),
    (lambda: AvgPool1D(3, 2, 1, ceil_mode=True), (2, 8, 3)),
    (lambda: AvgPool1D(3, 2, "SAME"), (2, 7, 3)),
    (lambda: AvgPool1D(4, 3, (1, 2), count_include_pad=False, ceil_mode=True), (2, 9, 3)),
]


@pytest.mark.parametrize(("make", "shape"), VJP_CASES)
def test_vjp_float64_against_finite_differences(make, shape):
    # distinct values: each window's maximum is unique, so finite differences see it
    size = int(np.prod(shape))
    x = np.random.default_rng(8).permutation(size).reshape(shape) / 9.0
    check_vjp(make(), (), x)


@pytest.mark.parametrize(("make", "shape"), VJP_CASES)
def test_check_layer_and_float32_kept(make, shape):
    layer = make()
    check_layer(layer, (None, *shape[1:]))
    x = np.random.default_rng(1).standard_normal(shape).astype(np.float32)
    y, pullback = layer.vjp((), x)
    assert y.dtype == np.float32 and layer.apply((), x).dtype == np.float32
    assert pullback(np.ones_like(y))[1].dtype == np.float32
    ints = np.arange(int(np.prod(shape))).reshape(shape)
    assert layer.apply((), ints).dtype == np.float32


def test_1d_pools_are_the_1_by_k_2d_pools():
    x = np.random.default_rng(3).standard_normal((3, 10, 4))
    pairs = [(MaxPool1D(3, 2, (1, 2), dilation=2, ceil_mode=True),
              MaxPool2D((1, 3), (1, 2), ((0, 0), (1, 2)), dilation=(1, 2), ceil_mode=True)),
             (AvgPool1D(3, 2, 1, count_include_pad=False, ceil_mode=True),
              AvgPool2D((1, 3), (1, 2), ((0, 0), (1, 1)), count_include_pad=False,
                        ceil_mode=True))]
    for one, two in pairs:
        y1, pull1 = one.vjp((), x)
        y2, pull2 = two.vjp((), x[:, None])
        np.testing.assert_array_equal(y1, y2[:, 0])
        dy = np.random.default_rng(4).standard_normal(y1.shape)
        np.testing.assert_array_equal(pull1(dy)[1], pull2(dy[:, None])[1][:, 0])


def test_relu_before_new_max_pools_fuses_to_the_same_numbers():
    # Sequential runs ReLU after a pool that selects_max: the same numbers as layer by layer
    x = _data((2, 7, 3), "-inf", np.float64) - 0.5
    for pool, x_in in ((MaxPool1D(3, 2, 1, dilation=2, ceil_mode=True), x),
                       (MaxPool2D(3, 2, 1, ceil_mode=True), _data((2, 5, 7, 2), "ties",
                                                                  np.float64) - 1)):
        model = L.Sequential(L.ReLU(), pool)
        y, pullback = model.vjp(model.init(KEY, (None, *x_in.shape[1:]))[1], x_in)
        r, pull_r = L.ReLU().vjp((), x_in)
        y_ref, pull_p = pool.vjp((), r)
        np.testing.assert_array_equal(y, y_ref)
        dy = np.arange(y.size, dtype=float).reshape(y.shape) - 3
        np.testing.assert_array_equal(pullback(dy)[1], pull_r(pull_p(dy)[1])[1])


def test_conv1d_relu_maxpool1d_stack():
    model = L.Sequential(L.Conv1D(4, 3), L.ReLU(), MaxPool1D(2, ceil_mode=True), L.Flatten(),
                         L.Dense(2))
    check_layer(model, (None, 7, 3))


def test_new_pools_of_empty_batches_and_channels_and_strided_inputs():
    for layer, shape in ((MaxPool1D(3, 2, 1, dilation=2, ceil_mode=True), (0, 7, 2)),
                         (AvgPool1D(2, ceil_mode=True), (3, 5, 0)),
                         (MaxPool2D(2, ceil_mode=True, dilation=2), (0, 5, 5, 1)),
                         (AvgPool2D(3, 2, 1, ceil_mode=True), (2, 6, 6, 0))):
        y, pullback = layer.vjp((), np.zeros(shape, np.float32))
        assert pullback(np.zeros_like(y))[1].shape == shape
    x = np.random.default_rng(9).standard_normal((3, 4, 11))
    view = x.transpose(0, 2, 1)[:, ::-1]  # (3, 11, 4), no unit stride anywhere
    for layer in (MaxPool1D(3, 2, 1, ceil_mode=True), AvgPool1D(2, 1)):
        y, pullback = layer.vjp((), view)
        y_ref, pullback_ref = layer.vjp((), np.ascontiguousarray(view))
        np.testing.assert_array_equal(y, y_ref)
        dy = np.arange(y.size, dtype=float).reshape(y.shape)
        np.testing.assert_array_equal(pullback(dy)[1], pullback_ref(dy)[1])


# ---------------------------------------------------------------------------- names

def test_names_show_options_not_at_their_default():
    for layer, name in [
            (MaxPool2D(), "MaxPool2D(2)"), (MaxPool2D(2, ceil_mode=False, dilation=1),
                                            "MaxPool2D(2)"),
            (AvgPool2D(3, 2, "SAME"), "AvgPool2D(3, stride=2, padding='SAME')"),
            (MaxPool2D(3, 2, 1, dilation=2, ceil_mode=True),
             "MaxPool2D(3, stride=2, padding=1, dilation=2, ceil_mode=True)"),
            (AvgPool2D(2, ceil_mode=True), "AvgPool2D(2, ceil_mode=True)"),
            (MaxPool1D(), "MaxPool1D(2)"), (MaxPool1D(3, dilation=2), "MaxPool1D(3, dilation=2)"),
            (AvgPool1D(3, 1, 1, count_include_pad=False, ceil_mode=True),
             "AvgPool1D(3, stride=1, padding=1, count_include_pad=False, ceil_mode=True)")]:
        assert layer.name == name == repr(layer)


# ---------------------------------------------------------------------------- bad input

BAD = [
    (lambda: MaxPool2D(3, 2, "SAME", ceil_mode=True), ValueError,
     ["MaxPool2D(3, stride=2, padding='SAME', ceil_mode=True)", "ceil_mode", "'SAME'",
      "VALID"]),
    (lambda: MaxPool2D(2, ceil_mode="yes"), TypeError,
     ["MaxPool2D", "ceil_mode must be True or False", "'yes'"]),
    (lambda: AvgPool1D(2, ceil_mode=1), TypeError, ["AvgPool1D", "ceil_mode", "int"]),
    (lambda: MaxPool2D(2, dilation=0), ValueError, ["MaxPool2D", "dilation", "positive"]),
    (lambda: MaxPool1D(2, dilation=(1, 2)), TypeError, ["MaxPool1D", "dilation", "(1, 2)"]),
    (lambda: MaxPool1D((2, 2)), TypeError, ["MaxPool1D", "window", "(2, 2)"]),
    (lambda: AvgPool1D(2, padding=((0, 0), (1, 1))), ValueError,
     ["AvgPool1D", "padding", "(left, right)"]),
    (lambda: MaxPool1D(2, padding=2), ValueError,
     ["MaxPool1D", "smaller than the window", "(2,)", "(2, 2)"]),
    (lambda: MaxPool2D(2, dilation=2, padding=3), ValueError,
     ["MaxPool2D", "extent", "(3, 3)"]),
    (lambda: MaxPool2D(2, 2, 0, 2), TypeError, ["positional"]),  # keyword-only options
    (lambda: MaxPool1D(2).apply((), np.ones((2, 1, 8, 3))), ValueError,
     ["MaxPool1D(2)", "(N, L, C)", "rank 3", "(2, 1, 8, 3)"]),
    (lambda: AvgPool1D(2).init(KEY, (None, 4, 4, 1)), ValueError,
     ["AvgPool1D(2)", "(N, L, C)", "(None, 4, 4, 1)"]),
    (lambda: MaxPool1D(5).init(KEY, (None, 3, 2)), ValueError,
     ["MaxPool1D(5)", ">=5", "(None, 3, 2)"]),
    (lambda: MaxPool1D(5, 1, ceil_mode=True).apply((), np.ones((1, 4, 2))), ValueError,
     ["MaxPool1D(5, stride=1, ceil_mode=True)", "ceil_mode=True", ">=5", "(1, 4, 2)"]),
    (lambda: MaxPool2D(3, 2, dilation=3).init(KEY, (None, 6, 6, 1)), ValueError,
     ["MaxPool2D", ">=7", "(None, 6, 6, 1)"]),
    # window 2, dilation 3, padding 1 on 2 pixels: cells -1 and 2, both padding (torch
    # returns -inf there and loses its gradient); on 3 pixels it is kept (closed forms)
    (lambda: MaxPool1D(2, 1, 1, dilation=3).init(KEY, (None, 2, 1)), ValueError,
     ["MaxPool1D(2, stride=1, padding=1, dilation=3)", "padding only", "(None, 2, 1)"]),
    (lambda: MaxPool2D(2, 1, ((0, 0), (1, 1)), dilation=(1, 3)).apply((), np.ones((1, 3, 2, 1))),
     ValueError, ["MaxPool2D", "dilation 3", "padding only", "(1, 3, 2, 1)"]),
    (lambda: MaxPool1D(2).vjp((), np.ones((1, 4, 2)))[1](np.ones((1, 3, 2))), ValueError,
     ["MaxPool1D(2)", "(1, 2, 2)", "(1, 3, 2)"]),  # the 1-D cotangent's shape, not (N, 1, ..)
]


@pytest.mark.parametrize(("call", "error", "words"), BAD)
def test_bad_arguments_and_inputs_name_the_layer(call, error, words):
    with pytest.raises(error) as info:
        call()
    for w in words:
        assert w in str(info.value), (w, str(info.value))
