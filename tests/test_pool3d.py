"""MaxPool3D and AvgPool3D: finite differences in float64; PyTorch's max_pool3d/avg_pool3d
(NCDHW) for the forward and dx over windows, strides, paddings, dilation, ceil_mode and
count_include_pad, with ties and NaN; small cases worked by hand (tie routing in (d, h, w)
order, the divisor); the dtypes; bad inputs named."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from _torch_util import same_pads, t64

import funcdl as fd
from funcdl import layers as L
from funcdl.testing import check_vjp

RNG = np.random.default_rng(11)

MAX = [  # window, stride, padding, dilation, ceil_mode, (d, h, w, c)
    (2, None, "VALID", 1, False, (4, 4, 6, 2)),
    (3, 2, 1, 1, False, (5, 6, 5, 3)),
    ((2, 3, 2), (1, 2, 1), (1, 1, 0), 1, True, (5, 7, 4, 2)),
    (3, 2, 1, (2, 1, 2), True, (6, 5, 6, 2)),
    ((3, 2, 2), (2, 1, 2), "SAME", 1, False, (5, 4, 5, 1)),
    ((1, 2, 2), 1, "VALID", 1, False, (3, 3, 3, 2)),
]
AVG = [  # window, stride, padding, count_include_pad, ceil_mode, (d, h, w, c)
    (2, None, "VALID", None, False, (4, 4, 6, 2)),
    (3, 2, 1, True, False, (5, 6, 5, 3)),
    (3, 2, 1, False, True, (6, 5, 6, 2)),
    ((2, 3, 2), (1, 2, 3), (1, 1, 0), False, False, (5, 7, 7, 2)),
    ((3, 2, 3), 2, (1, 0, 1), True, True, (6, 5, 6, 1)),
    ((3, 2, 2), (2, 1, 2), "SAME", None, False, (5, 4, 5, 2)),
    ((3, 2, 2), (2, 1, 2), "SAME", True, False, (5, 4, 5, 2)),
]


def _max(window, stride, padding, dilation, ceil_mode):
    return L.MaxPool3D(window, stride, padding, dilation=dilation, ceil_mode=ceil_mode)


def _avg(window, stride, padding, count, ceil_mode):
    return L.AvgPool3D(window, stride, padding, count, ceil_mode=ceil_mode)


@pytest.mark.parametrize("window, stride, padding, dilation, ceil_mode, dhwc", MAX)
def test_max_check_vjp(window, stride, padding, dilation, ceil_mode, dhwc):
    check_vjp(_max(window, stride, padding, dilation, ceil_mode), (),
              RNG.standard_normal((2, *dhwc)))


@pytest.mark.parametrize("window, stride, padding, count, ceil_mode, dhwc", AVG)
def test_avg_check_vjp(window, stride, padding, count, ceil_mode, dhwc):
    check_vjp(_avg(window, stride, padding, count, ceil_mode), (),
              RNG.standard_normal((2, *dhwc)))


def _torch(fn, x, dy, *args, pads=None, value=0.0, **kw):
    """torch's pool of x (NDHWC; explicit ``pads`` per axis by F.pad with ``value``
    first), its output and dx back in NDHWC."""
    torch = pytest.importorskip("torch")
    xt = t64(np.moveaxis(x, -1, 1), grad=True)
    xin = xt if pads is None else torch.nn.functional.pad(
        xt, (*pads[2], *pads[1], *pads[0]), value=value)
    yt = fn(xin, *args, **kw)
    yt.backward(t64(np.moveaxis(dy, -1, 1)))
    return np.moveaxis(yt.detach().numpy(), 1, -1), np.moveaxis(xt.grad.numpy(), 1, -1)


def _same(dhwc, window, stride, dilation=1):
    k3, s3, d3 = (np.broadcast_to(v, 3).tolist() for v in (window, stride, dilation))
    return [same_pads(n, k, s, d) for n, k, s, d in zip(dhwc, k3, s3, d3)]


def _inputs(dhwc, ties):
    x = RNG.standard_normal((2, *dhwc))
    return np.round(x) if ties else x  # small integers: many ties in every window


@pytest.mark.parametrize("ties", [False, True])
@pytest.mark.parametrize("window, stride, padding, dilation, ceil_mode, dhwc", MAX)
def test_max_matches_torch(window, stride, padding, dilation, ceil_mode, dhwc, ties):
    torch = pytest.importorskip("torch")
    x = _inputs(dhwc, ties)
    layer = _max(window, stride, padding, dilation, ceil_mode)
    y, pullback = layer.vjp((), x)
    dy = RNG.standard_normal(y.shape)
    dx = pullback(dy)[1]
    fn = torch.nn.functional.max_pool3d
    if padding == "SAME":
        yt, dxt = _torch(fn, x, dy, window, stride, pads=_same(dhwc, window, stride),
                         value=-np.inf)
    else:
        yt, dxt = _torch(fn, x, dy, window, stride, 0 if padding == "VALID" else padding,
                         dilation=dilation, ceil_mode=ceil_mode)
    np.testing.assert_array_equal(y, yt)
    np.testing.assert_allclose(dx, dxt, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("ties", [False, True])
@pytest.mark.parametrize("window, stride, padding, count, ceil_mode, dhwc", AVG)
def test_avg_matches_torch(window, stride, padding, count, ceil_mode, dhwc, ties):
    torch = pytest.importorskip("torch")
    x = _inputs(dhwc, ties)
    layer = _avg(window, stride, padding, count, ceil_mode)
    y, pullback = layer.vjp((), x)
    dy = RNG.standard_normal(y.shape)
    dx = pullback(dy)[1]
    fn = torch.nn.functional.avg_pool3d
    if padding == "SAME":  # asymmetric pads: torch's mean of the zero-padded input,
        # times the window's size over the cells that count (all of it, or the real ones)
        scale = np.prod(window) / _same_counts(dhwc, window, stride, count)
        yt, dxt = _torch(fn, x, dy * scale, window, stride, pads=_same(dhwc, window, stride))
        yt = yt * scale
    else:
        yt, dxt = _torch(fn, x, dy, window, stride, 0 if padding == "VALID" else padding,
                         ceil_mode=ceil_mode, count_include_pad=count is not False)
    np.testing.assert_allclose(y, yt, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(dx, dxt, rtol=1e-12, atol=1e-12)


def _same_counts(dhwc, window, stride, count):
    """Per output (1, OD, OH, OW, 1): the cells 'SAME' pooling divides by (all of the
    window with count_include_pad, else its real cells), from pooling ones."""
    torch = pytest.importorskip("torch")
    pads = _same(dhwc, window, stride)
    ones = np.pad(np.ones((1, *dhwc[:3], 1)), ((0, 0), *pads, (0, 0)))
    if count:
        ones = np.ones_like(ones)
    m = torch.nn.functional.avg_pool3d(t64(np.moveaxis(ones, -1, 1)), window, stride).numpy()
    return np.moveaxis(m, 1, -1) * np.prod(window)


def test_max_nan_and_all_neg_inf_match_torch():
    torch = pytest.importorskip("torch")
    x = np.round(RNG.standard_normal((2, 4, 5, 4, 2)))
    x[0, 1, 2, 1, 0] = x[0, 0, 3, 2, 0] = x[1, 3, 0, 0, 1] = np.nan
    x[1, :2, :2, :2, 0] = -np.inf  # a window of -inf, and padding around it
    layer = L.MaxPool3D(3, 2, 1)
    y, pullback = layer.vjp((), x)
    dy = RNG.standard_normal(y.shape)
    yt, dxt = _torch(torch.nn.functional.max_pool3d, x, dy, 3, 2, 1)
    np.testing.assert_array_equal(y, yt)
    np.testing.assert_allclose(pullback(dy)[1], dxt, rtol=1e-12, atol=1e-12)


def test_max_ties_by_hand():
    """Two equal maxima, at (d, h, w) = (0, 1, 0) and (1, 0, 0): the first in (d, h, w)
    order, (0, 1, 0), takes dy (a plane-first-by-(h, w) order would pick (1, 0, 0)); a
    window of zeros sends dy to its first cell."""
    x = np.zeros((1, 2, 2, 4, 1))
    x[0, 0, 1, 0, 0] = x[0, 1, 0, 0, 0] = 5.0
    y, pullback = L.MaxPool3D(2).vjp((), x)
    np.testing.assert_array_equal(y.ravel(), [5.0, 0.0])
    dx = pullback(np.array([3.0, -2.0]).reshape(y.shape))[1]
    want = np.zeros_like(x)
    want[0, 0, 1, 0, 0] = 3.0
    want[0, 0, 0, 2, 0] = -2.0
    np.testing.assert_array_equal(dx, want)


def test_avg_divisor_by_hand():
    """A 2 x 2 x 2 cube of ones, window 2, stride 2, padding 1: each of the 8 windows holds
    one real cell of 8, so y = 1/8 counting the padding and 1 not; dx = dy times that."""
    x = np.ones((1, 2, 2, 2, 1))
    for count, want in ((True, 0.125), (False, 1.0)):
        y, pullback = L.AvgPool3D(2, 2, 1, count_include_pad=count).vjp((), x)
        np.testing.assert_array_equal(y, np.full((1, 2, 2, 2, 1), want))
        dx = pullback(np.full(y.shape, 2.0))[1]
        np.testing.assert_array_equal(dx, np.full(x.shape, 2.0 * want))
    y = L.AvgPool3D((1, 2, 2)).apply((), np.arange(8.0).reshape(1, 2, 2, 2, 1))
    np.testing.assert_array_equal(y.ravel(), [1.5, 5.5])


@pytest.mark.parametrize("layer", [L.MaxPool3D(2), L.AvgPool3D(3, 2, 1)])
def test_dtypes(layer):
    x = RNG.standard_normal((2, 4, 4, 4, 3)).astype(np.float32)
    y, pullback = layer.vjp((), x)
    dx = pullback(np.ones_like(y))[1]
    assert y.dtype == dx.dtype == layer.apply((), x).dtype == np.float32
    xi = np.arange(2 * 4 * 4 * 4 * 3).reshape(2, 4, 4, 4, 3) % 7
    assert layer.apply((), xi).dtype == np.float32
    np.testing.assert_array_equal(layer.apply((), xi), layer.apply((), xi.astype(np.float32)))
    assert layer.init(fd.random.key(0), (None, 4, 4, 4, 3)) == ((None, *y.shape[1:]), ())


def _error(fn: Any) -> str:
    with pytest.raises((ValueError, TypeError)) as e:
        fn()
    return str(e.value)


@pytest.mark.parametrize("ctor, flat", [(L.MaxPool3D, "MaxPool2D"), (L.AvgPool3D, "AvgPool2D")])
def test_bad_inputs_named(ctor, flat):
    layer = ctor(2)
    tag = f"{ctor.__name__}(2):"
    msg = _error(lambda: layer.apply((), np.zeros((2, 4, 4, 3))))
    assert msg.startswith(tag) and "(N, D, H, W, C)" in msg and flat in msg
    msg = _error(lambda: layer.init(fd.random.key(0), (None, 4, 4, 3)))
    assert msg.startswith(tag) and "rank 5" in msg and flat in msg
    msg = _error(lambda: layer.apply((), np.zeros((2, 1, 4, 4, 3))))
    assert msg.startswith(tag) and "(N, >=2, >=2, >=2, C)" in msg and "(2, 1, 4, 4, 3)" in msg
    msg = _error(lambda: ctor(2, padding=(1, 2, 0)))
    assert msg.startswith(f"{ctor.__name__}(") and "smaller than the window" in msg
    msg = _error(lambda: ctor(2, padding="SAME", ceil_mode=True))
    assert "ceil_mode=True needs padding 'VALID'" in msg
    msg = _error(lambda: ctor((2, 2)))
    assert "window must be a positive int or 3 positive ints" in msg
    msg = _error(lambda: layer.apply((1, 2), np.zeros((2, 4, 4, 4, 3))))
    assert msg.startswith(tag) and "no parameters" in msg


@pytest.mark.parametrize("dilation, shape", [((1, 1, 3), (1, 3, 3, 2, 1)),
                                             ((3, 1, 1), (1, 2, 3, 3, 1))])
def test_dilated_window_of_padding_only_named(dilation, shape):
    """Window 2, dilation 3, padding 1 on an axis of 2: cells -1 and 2 are both padding
    (torch gives -inf there and drops its gradient): refused, on the plane or on depth,
    naming the 5-D shape."""
    layer = L.MaxPool3D(2, 1, 1, dilation=dilation)
    for fn in (lambda: layer.apply((), np.zeros(shape)),
               lambda: layer.init(fd.random.key(0), (None, *shape[1:]))):
        msg = _error(fn)
        assert msg.startswith("MaxPool3D(") and "dilation 3" in msg and "padding only" in msg
        assert ", ".join(map(str, shape[1:])) + ")" in msg, msg  # the 5-D shape, not a view
