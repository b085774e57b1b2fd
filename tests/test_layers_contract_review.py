"""A review of the DESIGN.md Core and Spatial (NHWC) layers against torch 2.13 in float64:
forward, input and parameter gradients at odd geometries, extreme values, dtypes, memory
layouts, purity, and the errors for bad inputs, params and constructor arguments."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import funcdl as fd
from funcdl import layers as L
from funcdl.testing import check_vjp

torch = pytest.importorskip("torch")
F = torch.nn.functional
RNG = np.random.default_rng(20240917)
KEY = fd.random.key(0)


def _t(a, grad=False):
    return torch.tensor(np.asarray(a, np.float64), requires_grad=grad)


def _nchw(a):
    return np.asarray(a).transpose(0, 3, 1, 2)


def _same(n, k, s, d=1):
    out = -(-n // s)
    total = max((out - 1) * s + (k - 1) * d + 1 - n, 0)
    return total // 2, total - total // 2


def _init64(layer, in_shape):
    out_shape, params = layer.init(KEY, in_shape)
    return out_shape, fd.tree.map(lambda a: a.astype(np.float64), params)


def _close(a, b, tol=1e-10):
    np.testing.assert_allclose(a, b, rtol=tol, atol=tol, equal_nan=True)


# ------------------------------------------------------------------ convolutions vs torch
# (N, H, W, C, out, groups, kernel, stride, dilation, padding)
CONV = [
    (2, 5, 7, 3, 4, 1, (3, 2), (1, 1), (1, 1), "SAME"),
    (1, 6, 6, 2, 3, 1, (2, 2), (2, 2), (1, 1), "SAME"),        # even kernel, even H
    (2, 6, 4, 2, 3, 1, (3, 3), (2, 2), (1, 1), "SAME"),        # documented: 0 rows above, 1 below
    (2, 7, 5, 3, 2, 1, (1, 3), (3, 2), (1, 1), "VALID"),       # stride > kernel
    (1, 4, 4, 1, 1, 1, (2, 3), (4, 3), (1, 1), 5),             # padding > kernel, one output ch
    (2, 3, 8, 4, 6, 2, (3, 3), (2, 1), (2, 1), "SAME"),        # groups, dilation
    (2, 6, 5, 3, 6, 3, (2, 4), (1, 2), (1, 2), ((2, 0), (1, 3))),  # depthwise-ish, asym pads
    (1, 1, 1, 5, 2, 1, (4, 4), (1, 1), (1, 1), "SAME"),        # kernel >> 1x1 image
    (2, 9, 4, 6, 4, 2, (4, 1), (3, 1), (1, 1), ((2, 2), (0, 0))),
    (3, 5, 5, 4, 12, 4, (3, 3), (2, 2), (1, 1), 1),            # depthwise, 3 outs per group
    (1, 4, 3, 5, 3, 1, (3, 3), (1, 1), (1, 1), "VALID"),       # C > 4 fold path
    (4, 48, 47, 8, 6, 1, (5, 3), (2, 3), (2, 1), "SAME"),      # the by-offset (big) path
]


def _torch_conv(x, w, b, pads, stride, dil, g, dy):
    """torch's conv2d of NHWC x, HWIO w, pads ((t, b), (l, r)): y, dx, dw, db, funcdl's layouts."""
    xt, wt, bt = _t(_nchw(x), True), _t(w.transpose(3, 2, 0, 1), True), _t(b, True)
    yt = F.conv2d(F.pad(xt, (*pads[1], *pads[0])), wt, bt, stride=stride, dilation=dil, groups=g)
    (yt * _t(_nchw(dy))).sum().backward()
    return (yt.detach().numpy().transpose(0, 2, 3, 1), xt.grad.numpy().transpose(0, 2, 3, 1),
            wt.grad.numpy().transpose(2, 3, 1, 0), bt.grad.numpy())


@pytest.mark.parametrize("cfg", CONV, ids=[str(i) for i in range(len(CONV))])
def test_conv2d_matches_torch(cfg):
    n, h, w, c, out, g, (kh, kw), (sh, sw), (dh, dw), padding = cfg
    layer = L.Conv2D(out, (kh, kw), stride=(sh, sw), padding=padding, dilation=(dh, dw),
                     groups=g)
    out_shape, p = _init64(layer, (None, h, w, c))
    x = RNG.standard_normal((n, h, w, c))
    y, pull = layer.vjp(p, x)
    assert np.array_equal(layer.apply(p, x), y) and out_shape[1:] == y.shape[1:]
    dp, dx = pull(dy := RNG.standard_normal(y.shape))
    pads = ((_same(h, kh, sh, dh), _same(w, kw, sw, dw)) if padding == "SAME" else
            ((0, 0), (0, 0)) if padding == "VALID" else ((padding,) * 2,) * 2
            if isinstance(padding, int) else padding)
    ref = _torch_conv(x, p["w"], p["b"], pads, (sh, sw), (dh, dw), g, dy)
    for ours, theirs in zip((y, dx, dp["w"], dp["b"]), ref):
        _close(ours, theirs)


@pytest.mark.parametrize("k,d", [(2, 1), (4, 1), (2, 3), (3, 2)])
def test_conv2d_same_stride1_is_torch_padding_same(k, d):
    layer = L.Conv2D(3, (k, k + 1), padding="SAME", dilation=d)
    _, p = _init64(layer, (None, 7, 6, 2))
    x = RNG.standard_normal((2, 7, 6, 2))
    with warnings.catch_warnings():  # torch's note on even kernels' padded copy
        warnings.simplefilter("ignore", UserWarning)
        ref = F.conv2d(_t(_nchw(x)), _t(p["w"].transpose(3, 2, 0, 1)), _t(p["b"]),
                       padding="same", dilation=d)
    _close(_nchw(layer.apply(p, x)), ref.numpy())


@pytest.mark.parametrize("cfg", [
    (2, 9, 3, 4, 1, 3, 2, 1, "SAME"), (1, 5, 2, 4, 2, 2, 3, 2, 4),
    (2, 8, 6, 3, 3, 4, 1, 1, (3, 0)), (1, 1, 1, 1, 1, 5, 1, 1, "SAME")])
def test_conv1d_matches_torch(cfg):
    n, length, c, out, g, k, s, d, padding = cfg
    layer = L.Conv1D(out, (k,), stride=s, padding=padding, dilation=d, groups=g)
    _, p = _init64(layer, (None, length, c))
    x = RNG.standard_normal((n, length, c))
    y, pull = layer.vjp(p, x)
    dp, dx = pull(dy := RNG.standard_normal(y.shape))
    pads = (_same(length, k, s, d) if padding == "SAME" else
            (padding, padding) if isinstance(padding, int) else padding)
    ref = _torch_conv(x[:, None], p["w"][None], p["b"], ((0, 0), pads), (1, s), (1, d), g,
                      dy[:, None])
    for ours, theirs in zip((y[:, None], dx[:, None], dp["w"][None], dp["b"]), ref):
        _close(ours, theirs)


# DEFECT (fixed): Conv2D/Conv1D rounded a float64 bias into the float32 product (Dense promotes)
@pytest.mark.parametrize("layer,shape", [(L.Conv2D(3, 2), (2, 4, 4, 2)),
                                         (L.Conv2D(4, 2, groups=2), (2, 4, 4, 2)),
                                         (L.Conv1D(3, 2), (2, 5, 2)), (L.Dense(3), (2, 2))],
                         ids=str)
def test_float64_bias_promotes_the_output_as_numpy(layer, shape):
    # README: "Mixing float32 and float64 arrays follows NumPy's promotion in the forward"
    _, p = layer.init(KEY, (None, *shape[1:]))
    p["b"] = p["b"].astype(np.float64) + 1e-12
    x = RNG.standard_normal(shape).astype(np.float32)
    y = layer.apply(p, x)
    assert y.dtype == np.float64
    ref = layer.apply({"w": p["w"].astype(np.float64), "b": p["b"]}, x.astype(np.float64))
    np.testing.assert_allclose(y, ref, rtol=1e-6, atol=1e-7)


# ------------------------------------------------------------------ pools vs torch
# (kind, shape, window, stride, padding, dilation, ceil_mode, count_include_pad, values)
POOLS = [
    ("max", (2, 5, 7, 2), (3, 2), (2, 3), (1, 1), (1, 1), False, None, "ties"),
    ("max", (1, 6, 5, 1), (2, 3), (4, 1), (1, 1), (2, 1), True, None, "special"),
    ("max", (2, 7, 7, 3), (3, 3), (2, 2), (1, 0), (1, 2), True, None, "special"),
    ("max", (1, 3, 4, 2), (1, 1), (3, 2), (0, 0), (1, 1), False, None, "normal"),
    ("avg", (2, 5, 7, 2), (3, 2), (2, 3), (1, 1), (1, 1), False, True, "normal"),
    ("avg", (2, 5, 7, 2), (3, 2), (2, 3), (1, 1), (1, 1), True, False, "normal"),
    ("avg", (1, 8, 6, 1), (4, 3), (3, 4), (2, 1), (1, 1), True, True, "ties"),
    ("avg", (2, 3, 3, 2), (2, 2), (5, 5), (0, 0), (1, 1), True, True, "normal"),
]


@pytest.mark.parametrize("cfg", POOLS, ids=[str(i) for i in range(len(POOLS))])
def test_pools_match_torch(cfg):
    kind, shape, win, stride, pad, dil, ceil, cip, values = cfg
    x, m = RNG.standard_normal(shape), RNG.random(shape)
    x = np.round(x) if values == "ties" else x
    if values == "special":
        x[m < 0.3], x[(m > 0.3) & (m < 0.4)] = -np.inf, np.nan
    xt = _t(_nchw(x), True)
    if kind == "max":
        layer = L.MaxPool2D(win, stride, pad, dilation=dil, ceil_mode=ceil)
        yt = F.max_pool2d(xt, win, stride, pad, dil, ceil_mode=ceil)
    else:
        layer = L.AvgPool2D(win, stride, pad, count_include_pad=cip, ceil_mode=ceil)
        yt = F.avg_pool2d(xt, win, stride, pad, ceil_mode=ceil, count_include_pad=cip)
    out_shape, params = layer.init(KEY, (None, *shape[1:]))
    y, pull = layer.vjp((), x)
    assert params == () and out_shape[1:] == y.shape[1:]
    np.testing.assert_array_equal(layer.apply((), x), y)
    (yt * _t(_nchw(dy := RNG.standard_normal(y.shape)))).sum().backward()
    _close(_nchw(y), yt.detach().numpy())
    _close(_nchw(pull(dy)[1]), xt.grad.numpy())


@pytest.mark.parametrize("win,stride", [(3, 2), (2, 1), ((2, 3), (3, 1)), (5, 4)])
def test_same_pools_are_jax_semantics(win, stride):
    # 'SAME': -inf padding for the max, the real pixels as the divisor (stax, TF) by default
    x = RNG.standard_normal((2, 5, 6, 2))
    (kh, kw), (sh, sw) = ((v, v) if isinstance(v, int) else v for v in (win, stride))
    (t, b), (l, r), xt = _same(5, kh, sh), _same(6, kw, sw), _t(_nchw(x))
    mx = F.max_pool2d(F.pad(xt, (l, r, t, b), value=-np.inf), (kh, kw), (sh, sw))
    sums = F.avg_pool2d(F.pad(xt, (l, r, t, b)), (kh, kw), (sh, sw), divisor_override=1)
    cnt = F.avg_pool2d(F.pad(torch.ones_like(xt), (l, r, t, b)), (kh, kw), (sh, sw),
                       divisor_override=1)
    _close(_nchw(L.MaxPool2D(win, stride, "SAME").apply((), x)), mx.numpy())
    _close(_nchw(L.AvgPool2D(win, stride, "SAME").apply((), x)), (sums / cnt).numpy())
    incl = L.AvgPool2D(win, stride, "SAME", count_include_pad=True).apply((), x)
    _close(_nchw(incl), (sums / (kh * kw)).numpy())


def test_pool_defaults_are_the_documented_ones():
    x = RNG.standard_normal((2, 5, 7, 3))
    xt = _t(_nchw(x))
    # window 2 x 2, stride = window, 'VALID' (PyTorch's stride, Keras' pool_size)
    _close(_nchw(L.MaxPool2D().apply((), x)), F.max_pool2d(xt, 2).numpy())
    _close(_nchw(L.AvgPool2D().apply((), x)), F.avg_pool2d(xt, 2).numpy())
    assert L.MaxPool2D().init(None, (None, 5, 7, 3))[0] == (None, 2, 3, 3)
    assert L.MaxPool2D(3, 1).init(None, (None, 5, 7, 3))[0] == (None, 3, 5, 3)
    # explicit int padding counts the padding (torch's count_include_pad=True)
    _close(_nchw(L.AvgPool2D(3, 2, 1).apply((), x)), F.avg_pool2d(xt, 3, 2, 1).numpy())


def test_avgpool_nonfinite_values_as_torch():
    x = np.array([np.inf, 0, 0, 0, -np.inf, 0, 0, 0, 0]).reshape(1, 3, 3, 1)
    dy = np.array([np.inf, -np.inf, 0, 0]).reshape(1, 2, 2, 1)
    with np.errstate(invalid="ignore"):  # NumPy warns at inf - inf (MaxPool2D keeps quiet)
        y, pull = L.AvgPool2D(2, 1).vjp((), x)
        dx = pull(dy)[1]
    (yt := F.avg_pool2d(xt := _t(_nchw(x), True), 2, 1)).backward(_t(_nchw(dy)))
    _close(_nchw(y), yt.detach().numpy())
    _close(_nchw(dx), xt.grad.numpy())


def test_global_avg_pool_matches_torch():
    for shape in [(2, 5, 3, 4), (1, 7, 2), (3, 2, 2, 2, 1)]:
        x, xt = (x := RNG.standard_normal(shape)), _t(x, True)
        yt = xt.mean(dim=tuple(range(1, len(shape) - 1)))
        y, pull = L.GlobalAvgPool().vjp((), x)
        yt.backward(_t(dy := RNG.standard_normal(y.shape)))
        _close(y, yt.detach().numpy())
        _close(pull(dy)[1], xt.grad.numpy())


# ------------------------------------------------------------------ elementwise and softmax
SPECIAL = np.array([0.0, -0.0, 1e-300, -1e-300, 0.5, -0.5, 3, -3, 19.9, 20.0, 20.1, -37, 40,
                    -40, 88, -89, 700, -745, 1e10, -1e10, 1e300, -1e300, np.inf, -np.inf, np.nan])
GRID = np.concatenate([np.linspace(-30, 30, 601), SPECIAL])
ACTS = [
    (L.ReLU(), torch.relu), (L.LeakyReLU(), F.leaky_relu),
    (L.LeakyReLU(0.2), lambda t: F.leaky_relu(t, 0.2)),
    (L.LeakyReLU(3.0), lambda t: F.leaky_relu(t, 3.0)),
    (L.LeakyReLU(-0.5), lambda t: F.leaky_relu(t, -0.5)),
    (L.Tanh(), torch.tanh), (L.Sigmoid(), torch.sigmoid), (L.Softplus(), F.softplus),
    (L.Softplus(2.0, 5.0), lambda t: F.softplus(t, 2.0, 5.0)),
    (L.Softplus(0.5, -1.0), lambda t: F.softplus(t, 0.5, -1.0)),
    (L.GELU(), F.gelu), (L.ELU(), F.elu), (L.ELU(0.3), lambda t: F.elu(t, 0.3)),
    (L.ELU(2.5), lambda t: F.elu(t, 2.5)), (L.Identity(), lambda t: t * 1),
]


@pytest.mark.parametrize("layer,fn", ACTS, ids=[str(a[0]) for a in ACTS])
def test_activations_match_torch_at_extreme_values(layer, fn):
    y, pull = layer.vjp((), GRID)
    _, dx = pull(np.ones_like(GRID))
    xt = _t(GRID, True)
    yt = fn(xt)
    yt.backward(torch.ones_like(yt))
    for ours, theirs in ((y, yt.detach().numpy()), (dx, xt.grad.numpy())):
        tiny = (np.abs(ours) < 1e-300) & (np.abs(theirs) < 1e-300)
        # atol: 1 - tanh(x)^2 near |x| = 15 is set by tanh's last bit in either library
        ok = np.isclose(ours, theirs, rtol=1e-12, atol=1e-15, equal_nan=True) | tiny
        assert ok.all(), (GRID[~ok], ours[~ok], theirs[~ok])
    assert np.array_equal(layer.apply((), GRID), y, equal_nan=True)


# DEFECT (fixed): LeakyReLU(0.0)(-inf) gave 0; alpha*x, torch and JAX give 0*(-inf) = NaN
def test_leaky_relu_zero_slope_at_minus_inf_is_nan_as_torch():
    x = np.array([-np.inf, -1.0, np.inf])
    ref = F.leaky_relu(_t(x), 0.0).numpy()
    np.testing.assert_array_equal(L.LeakyReLU(0.0).apply((), x), ref)


ROWS = [[-np.inf] * 3, [np.inf, np.inf, 0.0], [0.0, -np.inf, 1.0], [np.nan, 0.0, 1.0],
        [1e308, -1e308, 0.0], [-1e308] * 3, [5.0, 5.0, 5.0]]


@pytest.mark.parametrize("log", [False, True])
def test_softmax_and_log_softmax_match_torch(log):
    x = np.array(ROWS)
    for axis in (-1, 0):
        y, pull = (L.LogSoftmax(axis) if log else L.Softmax(axis)).vjp((), x)
        dy, xt = RNG.standard_normal(x.shape), _t(x, True)
        (yt := (torch.log_softmax if log else torch.softmax)(xt, axis)).backward(_t(dy))
        _close(y, yt.detach().numpy())
        _close(pull(dy)[1], xt.grad.numpy())


# ------------------------------------------------------------------ Dense and reshaping
@pytest.mark.parametrize("shape", [(3, 4), (2, 3, 4), (4,), (0, 4), (1, 4)])
def test_dense_matches_torch(shape):
    out_shape, p = _init64(L.Dense(5), (None, 4))
    y, pull = L.Dense(5).vjp(p, x := RNG.standard_normal(shape))
    dp, dx = pull(dy := RNG.standard_normal(y.shape))
    xt, wt, bt = _t(x, True), _t(p["w"], True), _t(p["b"], True)
    (yt := xt @ wt + bt).backward(_t(dy))
    assert out_shape == (None, 5)
    for ours, theirs in zip((y, dx, dp["w"], dp["b"]), (yt.detach(), xt.grad, wt.grad, bt.grad)):
        _close(ours, theirs.numpy())


# ------------------------------------------------------------------ dtypes, layouts, purity
LAYERS = [
    (L.Dense(3), (2, 5)), (L.Dense(3, use_bias=False), (2, 4, 5)), (L.ReLU(), (2, 5)),
    (L.LeakyReLU(0.1), (2, 5)), (L.Tanh(), (2, 5)), (L.Sigmoid(), (2, 5)), (L.Softplus(), (2, 5)),
    (L.GELU(), (2, 5)), (L.GELU(approximate=True), (2, 5)), (L.ELU(), (2, 5)),
    (L.Softmax(1), (2, 5, 3)), (L.LogSoftmax(), (2, 5)), (L.Identity(), (2, 5)),
    (L.Flatten(), (2, 3, 4)), (L.Reshape((4, 3)), (2, 3, 4)), (L.Reshape((-1, 2)), (2, 3, 4)),
    (L.Dropout(0.3), (2, 5)), (L.Conv2D(4, 3), (2, 5, 6, 3)), (L.Conv2D(6, 1), (1, 3, 3, 1)),
    (L.Conv2D(4, (2, 3), stride=(3, 2), padding="VALID"), (2, 5, 6, 6)),
    (L.Conv2D(4, 3, groups=2, dilation=2), (2, 5, 6, 2)), (L.Conv1D(4, 3, stride=2), (2, 7, 3)),
    (L.MaxPool2D(), (2, 5, 6, 3)), (L.MaxPool2D(3, 2, "SAME"), (2, 5, 6, 3)),
    (L.AvgPool2D(3, 2, 1), (2, 5, 6, 3)), (L.AvgPool2D(3, 2, "SAME"), (2, 5, 6, 3)),
    (L.GlobalAvgPool(), (2, 5, 6, 3)),
]
IDS = [str(a[0]) for a in LAYERS]


def _kw(layer):
    return {"key": fd.random.key(1), "train": True} if "Dropout" in layer.name else {}


def _run(layer, p, x, dy=None):
    y, pull = layer.vjp(p, x, **_kw(layer))
    dp, dx = pull(np.ones(y.shape, y.dtype) if dy is None else dy)
    return y, dp, dx


@pytest.mark.parametrize("layer,shape", LAYERS, ids=IDS)
def test_float32_stays_float32_and_apply_is_vjp_forward(layer, shape):
    out_shape, p = layer.init(KEY, (None, *shape[1:]))
    x = RNG.standard_normal(shape).astype(np.float32)
    y, dp, dx = _run(layer, p, x)
    assert out_shape[1:] == y.shape[1:]
    assert y.dtype == dx.dtype == np.float32
    assert all(g.dtype == np.float32 and g.shape == q.shape
               for g, q in zip(fd.tree.leaves(dp), fd.tree.leaves(p)))
    np.testing.assert_array_equal(layer.apply(p, x, **_kw(layer)), y)
    assert fd.tree.structure(dp) == fd.tree.structure(p)
    y0, dp0, dx0 = _run(layer, p, x[:0])  # an empty batch: empty outputs, zero gradients
    assert y0.shape == (0, *y.shape[1:]) and dx0.shape == x[:0].shape
    assert all(g.dtype == np.float32 and g.shape == q.shape and not g.any()
               for g, q in zip(fd.tree.leaves(dp0), fd.tree.leaves(p)))


@pytest.mark.parametrize("layer,shape", LAYERS, ids=IDS)
def test_check_vjp_batch_of_one_layouts_and_nothing_written(layer, shape):
    _, p = _init64(layer, (None, *shape[1:]))
    x = RNG.standard_normal(shape)
    check_vjp(layer, p, x, **_kw(layer))
    _close(layer.apply(p, x[:1]), layer.apply(p, x)[:1], 1e-12)
    dy = RNG.standard_normal(layer.apply(p, x, **_kw(layer)).shape)
    y, dp, dx = _run(layer, p, x, dy)
    frozen, ro = fd.tree.map(np.copy, p), x.copy()
    for a in (ro, *fd.tree.leaves(frozen)):
        a.setflags(write=False)
    views = {"fortran": np.asfortranarray(x), "strided": np.repeat(x, 2, axis=-1)[..., ::2],
             "reversed": np.ascontiguousarray(x[::-1])[::-1], "read-only": ro}
    for name, xv in views.items():
        kept, dyv = xv.copy(), np.asfortranarray(dy)
        y2, dp2, dx2 = _run(layer, frozen, xv, dyv)
        np.testing.assert_array_equal(xv, kept, err_msg=name)  # nothing written to
        np.testing.assert_array_equal(dyv, dy, err_msg=name)
        for ours, ref in zip((y2, dx2, *fd.tree.leaves(dp2)), (y, dx, *fd.tree.leaves(dp))):
            _close(ours, ref, 1e-12)


@pytest.mark.parametrize("layer,shape", LAYERS, ids=IDS)
def test_integer_inputs_are_cast(layer, shape):
    _, p = layer.init(KEY, (None, *shape[1:]))
    xi = RNG.integers(-3, 4, shape)
    y = layer.apply(p, xi, **_kw(layer))
    if layer.name in ("Identity()", "Flatten()", "Reshape((4, 3))", "Reshape((-1, 2))"):
        assert y.dtype == xi.dtype  # moves values only
    else:
        assert y.dtype == np.float32  # the params' dtype, float32 without params
        np.testing.assert_allclose(y, layer.apply(p, xi.astype(np.float32), **_kw(layer)))


# ------------------------------------------------------------------ Dropout
def test_dropout_contract():
    layer = L.Dropout(0.3)
    x = np.ones((200, 250), np.float32)
    y = layer.apply((), x, key=KEY, train=True)
    assert abs((y == 0).mean() - 0.3) < 0.01  # rate is the fraction dropped
    np.testing.assert_allclose(np.unique(y), [0.0, 1 / 0.7], rtol=1e-6)
    y2, pull = layer.vjp((), x, key=KEY, train=True)
    np.testing.assert_array_equal(y, y2)
    np.testing.assert_array_equal(pull(np.ones_like(x))[1], y)
    np.testing.assert_array_equal(layer.apply((), x), x)  # inference is the identity
    with pytest.raises((ValueError, TypeError), match=r"(?s)Dropout.*key"):
        layer.apply((), x, train=True)
    yz, pz = L.Dropout(1.0).vjp((), x, key=KEY, train=True)
    assert not yz.any() and not pz(np.ones_like(x))[1].any()


# ------------------------------------------------------------------ bad inputs
def _made(layer, in_shape):
    return layer, layer.init(KEY, in_shape)[1]


def _dense():
    return _made(L.Dense(3), (None, 4))


def _conv():
    return _made(L.Conv2D(4, 3), (None, 6, 6, 3))


BAD = [  # (make, params edit, x shape, what the message must show)
    (_dense, None, (2, 5), ["Dense(3)", "(2, 5)", "4"]),
    (_dense, None, (), ["Dense(3)", "()"]),
    (_dense, lambda p: {"w": p["w"]}, (2, 4), ["Dense(3)", "'b'"]),
    (_dense, lambda p: {"w": p["w"].T, "b": p["b"]}, (2, 4), ["Dense(3)", "(3, 4)"]),
    (_dense, lambda p: [p["w"], p["b"]], (2, 4), ["Dense(3)", "list"]),
    (_dense, lambda p: (), (2, 4), ["Dense(3)"]),
    (_conv, None, (2, 6, 6, 2), ["Conv2D(4, 3)", "(2, 6, 6, 2)", "3)"]),
    (_conv, None, (6, 6, 3), ["Conv2D(4, 3)", "(6, 6, 3)"]),
    (_conv, None, (1, 2, 6, 6, 3), ["Conv2D(4, 3)", "(1, 2, 6, 6, 3)"]),
    (_conv, lambda p: {"w": p["w"][:2], "b": p["b"]}, (2, 6, 6, 3), ["Conv2D", "(2, 3, 3, 4)"]),
    (_conv, lambda p: {"w": p["w"], "b": p["b"][:2]}, (2, 6, 6, 3), ["Conv2D(4, 3)", "(2,)"]),
    (_conv, lambda p: {"w": p["w"].astype(int), "b": p["b"]}, (2, 6, 6, 3), ["Conv2D", "int64"]),
    (lambda: _made(L.Conv2D(4, 3, groups=2), (None, 6, 6, 4)), None, (2, 6, 6, 2),
     ["Conv2D(4, 3, groups=2)", "(2, 6, 6, 2)"]),
    (lambda: _made(L.Conv2D(4, 5, padding="VALID"), (None, 6, 6, 3)), None, (2, 4, 4, 3),
     ["Conv2D(4, 5, padding='VALID')", "(2, 4, 4, 3)", ">=5"]),
    (lambda: _made(L.Conv1D(2, 3), (None, 5, 3)), None, (2, 1, 5, 3),
     ["Conv1D(2, 3)", "(2, 1, 5, 3)"]),
    (lambda: (L.MaxPool2D(), ()), None, (4, 4, 3), ["MaxPool2D(2)", "(4, 4, 3)"]),
    (lambda: (L.MaxPool2D(3), ()), None, (1, 2, 5, 1), ["MaxPool2D(3)", "(1, 2, 5, 1)"]),
    (lambda: (L.AvgPool2D(), _dense()[1]), None, (1, 4, 4, 1), ["AvgPool2D(2)", "no param"]),
    (lambda: (L.GlobalAvgPool(), ()), None, (4, 3), ["GlobalAvgPool()", "(4, 3)"]),
    (lambda: (L.Softmax(2), ()), None, (4, 3), ["Softmax(axis=2)", "(4, 3)"]),
    (lambda: (L.Reshape((4, 3)), ()), None, (2, 5), ["Reshape((4, 3))", "(2, 5)"]),
    (lambda: (L.Flatten(), ()), None, (), ["Flatten()", "()"]),
]


@pytest.mark.parametrize("make,edit,shape,shown", BAD, ids=[str(i) for i in range(len(BAD))])
def test_bad_inputs_name_layer_and_shapes(make, edit, shape, shown):
    layer, p = make()
    if edit is not None:
        p = edit(p)
    x = np.ones(shape, np.float32)
    for call in (layer.apply, layer.vjp):
        with pytest.raises((ValueError, TypeError)) as info:
            call(p, x)
        assert type(info.value) in (ValueError, TypeError)
        for s in shown:
            assert s in str(info.value), (s, str(info.value))


CTOR = [
    (L.Dense, (0,)), (L.Dense, (-2,)), (L.Dense, (2.0,)), (L.Dense, (True,)), (L.Dense, ("3",)),
    (L.Conv2D, (0, 3)), (L.Conv2D, (3, 0)), (L.Conv2D, (3.0, 3)), (L.Conv2D, (True, 3)),
    (L.Conv2D, (3, (2, 0))), (L.Conv2D, (3, (2, 2, 2))), (L.Conv2D, (3, 2.5)),
    (L.Conv2D, (3, 3, 0)), (L.Conv2D, (3, 3, 1.5)), (L.Conv2D, (3, 3, 1, -1)),
    (L.Conv2D, (3, 3, 1, "full")), (L.Conv2D, (3, 3, 1, True)), (L.Conv2D, (3, 3, 1, "SAME", 0)),
    (L.Conv1D, (3, (2, 2))), (L.Conv1D, (3, True)),
    (L.MaxPool2D, (0,)), (L.MaxPool2D, (2, 0)), (L.MaxPool2D, (True,)), (L.MaxPool2D, (2.0,)),
    (L.MaxPool2D, (2, None, 2)), (L.AvgPool2D, (2, None, "SAME", "yes")),
    (L.AvgPool2D, (2, 2, -1)), (L.LeakyReLU, ("a",)), (L.LeakyReLU, (float("nan"),)),
    (L.ELU, (True,)), (L.Softplus, (0,)), (L.Softmax, (1.5,)), (L.LogSoftmax, (True,)),
    (L.Reshape, ((0,),)), (L.Reshape, ((2, -1, -1),)), (L.Reshape, (2.0,)),
    (L.Dropout, (1.5,)), (L.Dropout, (-0.1,)), (L.Dropout, (True,)), (L.Dropout, ("0.5",)),
]


@pytest.mark.parametrize("ctor,args", CTOR, ids=[f"{c.__name__}{a}" for c, a in CTOR])
def test_bad_constructor_args_are_named(ctor, args):
    with pytest.raises((ValueError, TypeError)) as info:
        ctor(*args)
    assert type(info.value) in (ValueError, TypeError)
    assert ctor.__name__ in str(info.value)
