"""The pools' ceil_mode, dilation and padding options and MaxPool1D / AvgPool1D against
torch.nn.functional's max_pool2d, avg_pool2d, max_pool1d and avg_pool1d in float64:
output and input gradient (NHWC / NLC here, NCHW / NCL there), ties, -inf and NaN
included, and the same geometries refused (torch's "Output size is too small")."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

torch = pytest.importorskip("torch")
F = torch.nn.functional

from funcdl.layers.pool import AvgPool2D, MaxPool2D  # noqa: E402
from funcdl.layers.pool1d import AvgPool1D, MaxPool1D  # noqa: E402

TOL = {"rtol": 1e-10, "atol": 1e-12}


def _x(shape, data, seed):
    rng = np.random.default_rng(seed)
    if data == "normal":
        return rng.standard_normal(shape)
    x = rng.integers(0, 3, shape).astype(np.float64)  # ties in most windows
    if data == "nan":
        x[rng.random(shape) < 0.2] = np.nan
    if data in ("nan", "-inf"):  # many windows of -inf only
        x[rng.random(shape) < (0.5 if data == "nan" else 0.8)] = -np.inf
    return x


def _torch_pool(fn, x_cf, dy_cf, **kw):
    """y and dx of torch's ``fn`` on a channels-first float64 copy, or None where torch
    refuses the geometry."""
    xt = torch.tensor(x_cf, requires_grad=True)
    try:
        yt = fn(xt, **kw)
    except RuntimeError as e:
        assert "too small" in str(e) or "output size: 0" in str(e), e
        return None
    if dy_cf is None:
        return yt.detach().numpy(), None
    yt.backward(torch.tensor(dy_cf))
    return yt.detach().numpy(), xt.grad.numpy()


def _compare(ours, fn, x, to_cf, from_cf, **kw):
    """Our layer against torch's ``fn``: both refuse, or y and dx agree (exactly for a max,
    to TOL for a mean); NaN where torch has NaN."""
    probe = _torch_pool(fn, to_cf(x), None, **kw)
    if probe is None:
        with pytest.raises(ValueError, match="does not fit"):
            ours.vjp((), x)
        return
    y, pullback = ours.vjp((), x)
    y_t = from_cf(probe[0])
    assert y.shape == y_t.shape
    dy = np.random.default_rng(0).standard_normal(y.shape)
    _, dx_t = _torch_pool(fn, to_cf(x), to_cf(dy), **kw)
    dx = pullback(dy)[1]
    if fn in (F.max_pool2d, F.max_pool1d):
        np.testing.assert_array_equal(y, y_t)
        np.testing.assert_allclose(dx, from_cf(dx_t), rtol=0, atol=1e-15)  # dy sums
    else:
        np.testing.assert_allclose(y, y_t, **TOL)
        np.testing.assert_allclose(dx, from_cf(dx_t), **TOL)


def nchw(a):
    return np.ascontiguousarray(a.transpose(0, 3, 1, 2))


def nhwc(a):
    return np.ascontiguousarray(a.transpose(0, 2, 3, 1))


def ncl(a):
    return np.ascontiguousarray(a.transpose(0, 2, 1))


# (H, W), window, stride, padding (torch: at most half the window), dilation
GRID_2D = [
    ((7, 8), 2, 2, 0, 1), ((7, 8), 3, 2, 1, 1), ((6, 7), 3, 3, 1, 1), ((5, 5), (3, 2), (2, 1),
                                                                         (1, 0), 1),
    ((7, 6), 2, 3, 1, 1), ((4, 9), 4, 3, 2, 1), ((3, 3), 4, 2, 0, 1), ((6, 6), 3, 1, 1, 1),
    ((7, 8), 2, 1, 0, 2), ((7, 8), 3, 2, 1, 2), ((8, 7), (2, 3), (1, 2), (1, 1), (3, 2)),
    ((6, 9), 2, 3, 1, (2, 3)), ((5, 7), 3, 2, 1, 3),
    # padding 2 with dilation: a window's first real cell is not at the offset of its
    # first real row or column (torch's autograd takes padding up to half the window)
    ((9, 8), 4, 2, 2, 2), ((8, 9), 5, (3, 2), 2, (3, 2)), ((9, 7), (4, 2), 1, (2, 1), (2, 3)),
]


@pytest.mark.parametrize(("hw", "window", "stride", "padding", "dilation"), GRID_2D)
@pytest.mark.parametrize("ceil", [False, True])
@pytest.mark.parametrize("data", ["normal", "ties", "-inf", "nan"])
def test_maxpool2d_as_torch(hw, window, stride, padding, dilation, ceil, data):
    x = _x((2, *hw, 3), data, seed=hw[0] * 10 + hw[1])
    ours = MaxPool2D(window, stride, padding, dilation=dilation, ceil_mode=ceil)
    _compare(ours, F.max_pool2d, x, nchw, nhwc, kernel_size=window, stride=stride,
             padding=padding, dilation=dilation, ceil_mode=ceil)


@pytest.mark.parametrize(("hw", "window", "stride", "padding"),
                         [g[:4] for g in GRID_2D if g[4] == 1])
@pytest.mark.parametrize("ceil", [False, True])
@pytest.mark.parametrize("include", [True, False])
def test_avgpool2d_as_torch(hw, window, stride, padding, ceil, include):
    x = _x((2, *hw, 3), "normal", seed=5)
    ours = AvgPool2D(window, stride, padding, count_include_pad=include, ceil_mode=ceil)
    _compare(ours, F.avg_pool2d, x, nchw, nhwc, kernel_size=window, stride=stride,
             padding=padding, ceil_mode=ceil, count_include_pad=include)


# L, window, stride, padding, dilation
GRID_1D = [
    (9, 2, 2, 0, 1), (9, 3, 2, 1, 1), (6, 3, 2, 1, 1), (8, 3, 3, 1, 1), (7, 4, 3, 2, 1),
    (3, 4, 2, 0, 1), (5, 1, 3, 0, 1), (7, 2, 3, 1, 1), (9, 2, 1, 0, 3), (9, 3, 2, 1, 2),
    (10, 3, 3, 1, 3), (3, 2, 1, 1, 2), (9, 4, 2, 2, 2), (10, 5, 3, 2, 3), (11, 4, 1, 2, 3),
]


@pytest.mark.parametrize(("length", "window", "stride", "padding", "dilation"), GRID_1D)
@pytest.mark.parametrize("ceil", [False, True])
@pytest.mark.parametrize("data", ["normal", "ties", "-inf", "nan"])
def test_maxpool1d_as_torch(length, window, stride, padding, dilation, ceil, data):
    x = _x((2, length, 3), data, seed=length * 10 + window)
    ours = MaxPool1D(window, stride, padding, dilation=dilation, ceil_mode=ceil)
    _compare(ours, F.max_pool1d, x, ncl, ncl, kernel_size=window, stride=stride,
             padding=padding, dilation=dilation, ceil_mode=ceil)


@pytest.mark.parametrize(("length", "window", "stride", "padding"),
                         [g[:4] for g in GRID_1D if g[4] == 1])
@pytest.mark.parametrize(("ceil", "include"), list(itertools.product([False, True], repeat=2)))
def test_avgpool1d_as_torch(length, window, stride, padding, ceil, include):
    x = _x((2, length, 3), "normal", seed=3)
    ours = AvgPool1D(window, stride, padding, count_include_pad=include, ceil_mode=ceil)
    _compare(ours, F.avg_pool1d, x, ncl, ncl, kernel_size=window, stride=stride,
             padding=padding, ceil_mode=ceil, count_include_pad=include)


def test_grids_reach_windows_past_the_padded_edge_and_refusals():
    # the grids are not vacuous: in some geometries ceil_mode adds a window (running past
    # the padded edge, where the divisor is PyTorch's special case), in some torch refuses
    def size(n, k, s, p, d, ceil):
        out = _torch_pool(F.max_pool1d, np.ones((1, 1, n)), None, kernel_size=k, stride=s,
                          padding=p, dilation=d, ceil_mode=ceil)
        return None if out is None else out[0].shape[-1]

    grids = [(n, k, s, p, d) for n, k, s, p, d in GRID_1D] + [
        (h, k, s, p, d) for (h, _), k, s, p, d in GRID_2D
        if isinstance(k, int) and isinstance(d, int)]
    added = sum(size(*g, False) != size(*g, True) for g in grids)
    refused = sum(size(*g, False) is None for g in grids)
    assert added >= 6 and refused >= 1, (added, refused)


def test_torch_dilated_window_of_padding_only_is_refused_here():
    # torch returns -inf for a window whose dilated cells all fall in the padding (and
    # drops its gradient); funcdl refuses the geometry instead of returning -inf
    x = torch.tensor([[[1.0, 2.0]]], dtype=torch.float64)
    assert F.max_pool1d(x, 2, 1, 1, dilation=3).item() == -np.inf
    with pytest.raises(ValueError, match="padding only"):
        MaxPool1D(2, 1, 1, dilation=3).apply((), np.array([[[1.0], [2.0]]]))


@pytest.mark.parametrize(("length", "window", "stride", "padding", "dilation"), [
    (9, 3, 2, 2, 2), (9, 2, 1, 2, 3), (8, 3, 3, 2, 2), (7, 2, 2, (1, 3), 3)])
@pytest.mark.parametrize("ceil", [False, True])
@pytest.mark.parametrize("data", ["normal", "ties"])
def test_maxpool1d_padding_past_half_the_window_as_torch_on_a_padded_input(
        length, window, stride, padding, dilation, ceil, data):
    # padding narrower than the dilated window's extent but wider than half the window:
    # torch's autograd refuses it, so torch pools the input padded with -inf by hand
    # (padding 0), the same numbers wherever a window holds a value above -inf
    x = _x((2, length, 3), data, seed=length + window)
    lo, hi = (padding, padding) if isinstance(padding, int) else padding
    ours = MaxPool1D(window, stride, padding, dilation=dilation, ceil_mode=ceil)
    y, pullback = ours.vjp((), x)
    xt = torch.tensor(ncl(x), requires_grad=True)
    # ceil_mode's rule drops a last window starting at or past L + lo, which the padded
    # input cannot tell from its own right padding: pool it with ceil_mode off and room
    # for every window ours has
    extra = max(0, (y.shape[1] - 1) * stride + (window - 1) * dilation + 1 - (length + lo + hi))
    xp = F.pad(xt, (lo, hi + extra), value=-np.inf)
    yt = F.max_pool1d(xp, window, stride, 0, dilation=dilation)[..., :y.shape[1]]
    np.testing.assert_array_equal(y, ncl(yt.detach().numpy()))
    dy = np.random.default_rng(1).standard_normal(y.shape)
    yt.backward(torch.tensor(ncl(dy)))
    np.testing.assert_allclose(pullback(dy)[1], ncl(xt.grad.numpy()), rtol=0, atol=1e-15)
