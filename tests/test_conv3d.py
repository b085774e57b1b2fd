"""Conv3D: finite differences in float64 over kernels, strides, paddings, dilations and groups;
PyTorch's conv3d (NCDHW, weight (out, C/groups, kd, kh, kw)) for the forward and every
gradient, on both ways the Conv2D underneath runs; small integer cases worked by hand; the
dtypes; per-example gradients against a loop; bad inputs named."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from _torch_util import same_pads, t64

import funcdl as fd
from funcdl import layers as L
from funcdl.layers import conv3d
from funcdl.testing import check_vjp

RNG = np.random.default_rng(7)


@pytest.fixture(params=["one product", "by depth"])
def path(request: Any, monkeypatch: Any) -> str:
    """Both ways Conv3D runs with groups = 1: one product of every depth offset's columns
    (small buffers), and a Conv2D per depth offset (large ones, and groups > 1), forced."""
    if request.param == "by depth":
        monkeypatch.setattr(conv3d, "_COLS3_BYTES", 0)
    return str(request.param)

# kernel, stride, padding, dilation, (d, h, w, c), out, groups
CASES = [
    (3, 1, "SAME", 1, (4, 5, 5, 3), 4, 1),
    (3, 2, "SAME", 1, (5, 6, 4, 2), 3, 1),
    ((2, 3, 1), (2, 1, 2), "VALID", (1, 2, 1), (5, 6, 4, 2), 3, 1),
    (2, 1, 1, 2, (4, 4, 5, 4), 4, 2),
    ((3, 2, 2), (3, 1, 1), (2, 0, 1), 1, (5, 4, 4, 6), 6, 6),           # depthwise
    ((2, 2, 3), 1, ((1, 0), (0, 1), (2, 1)), (2, 1, 1), (4, 3, 5, 4), 8, 2),
    (1, (1, 2, 2), "VALID", 1, (3, 4, 4, 5), 2, 1),
    ((3, 1, 1), (1, 1, 1), ((0, 3), (0, 0), (0, 0)), (2, 1, 1), (2, 2, 2, 2), 2, 1),
]


def _layer(kernel, stride, padding, dilation, out, groups, **kw):
    return L.Conv3D(out, kernel, stride=stride, padding=padding, dilation=dilation,
                    groups=groups, **kw)


def _params(layer, x, dtype=np.float64):
    _, params = layer.init(fd.random.key(0), (None, *x.shape[1:]))
    return fd.tree.astype(params, dtype)


@pytest.mark.parametrize("kernel, stride, padding, dilation, dhwc, out, groups", CASES)
def test_check_vjp(kernel, stride, padding, dilation, dhwc, out, groups, path):
    layer = _layer(kernel, stride, padding, dilation, out, groups)
    x = RNG.standard_normal((2, *dhwc))
    check_vjp(layer, _params(layer, x), x)


def _torch_pads(padding, dhwc, kernel, stride, dilation):
    k3, s3, d3 = (np.broadcast_to(v, 3).tolist() for v in (kernel, stride, dilation))
    if padding == "SAME":
        return [same_pads(n, k, s, d) for n, k, s, d in zip(dhwc, k3, s3, d3)]
    if padding == "VALID":
        return [(0, 0)] * 3
    if isinstance(padding, int):
        return [(padding, padding)] * 3
    return [p if isinstance(p, tuple) else (p, p) for p in padding]


@pytest.mark.parametrize("kernel, stride, padding, dilation, dhwc, out, groups", CASES)
def test_matches_torch(kernel, stride, padding, dilation, dhwc, out, groups, conv_path,
                       path):
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    layer = _layer(kernel, stride, padding, dilation, out, groups)
    x = RNG.standard_normal((2, *dhwc))
    params = _params(layer, x)
    y, pullback = layer.vjp(params, x)
    dy = RNG.standard_normal(y.shape)
    grads, dx = pullback(dy)
    pads = _torch_pads(padding, dhwc, kernel, stride, dilation)
    xt = t64(np.moveaxis(x, -1, 1), grad=True)
    wt = t64(params["w"].transpose(4, 3, 0, 1, 2), grad=True)  # DHWIO -> OIDHW
    bt = t64(params["b"], grad=True)
    yt = F.conv3d(F.pad(xt, (*pads[2], *pads[1], *pads[0])), wt, bt, stride=stride,
                  dilation=dilation, groups=groups)
    yt.backward(t64(np.moveaxis(dy, -1, 1)))
    tol = {"rtol": 1e-10, "atol": 1e-12}
    np.testing.assert_allclose(y, np.moveaxis(yt.detach().numpy(), 1, -1), **tol)
    np.testing.assert_allclose(dx, np.moveaxis(xt.grad.numpy(), 1, -1), **tol)
    np.testing.assert_allclose(grads["w"], wt.grad.numpy().transpose(2, 3, 4, 1, 0), **tol)
    np.testing.assert_allclose(grads["b"], bt.grad.numpy(), **tol)


def test_depth_by_hand(path):
    """x = [1, 2, 3] along depth, w = [10, 100] (a 2 x 1 x 1 kernel), VALID:
    y = [1·10 + 2·100, 2·10 + 3·100]; with dy = [1, -1], dw = [1 - 2, 2 - 3] and
    dx = [10, 100 - 10, -100], db = 0. A depth offset in the wrong place, a sign or a factor
    changes every one of them."""
    layer = L.Conv3D(1, (2, 1, 1), padding="VALID")
    x = np.array([1.0, 2.0, 3.0]).reshape(1, 3, 1, 1, 1)
    params = {"w": np.array([10.0, 100.0]).reshape(2, 1, 1, 1, 1), "b": np.array([0.5])}
    y, pullback = layer.vjp(params, x)
    np.testing.assert_array_equal(y.ravel(), [210.5, 320.5])
    grads, dx = pullback(np.array([1.0, -1.0]).reshape(y.shape))
    np.testing.assert_array_equal(grads["w"].ravel(), [-1.0, -1.0])
    np.testing.assert_array_equal(grads["b"], [0.0])
    np.testing.assert_array_equal(dx.ravel(), [10.0, 90.0, -100.0])


def test_same_stride_by_hand(path):
    """A 3 x 3 x 3 kernel of ones at stride 2, 'SAME' on a 4 x 4 x 4 cube of ones: outputs
    2 x 2 x 2, padding (0, 1) on each axis (the odd pad after), so along each axis output 0
    reads cells 0..2 (3 of them) and output 1 cells 2..3 and the padding (2): y is the
    product of those counts, 27 at the first corner, 8 at the last."""
    layer = L.Conv3D(1, 3, stride=2, use_bias=False)
    x = np.ones((1, 4, 4, 4, 1))
    params = {"w": np.ones((3, 3, 3, 1, 1))}
    y, pullback = layer.vjp(params, x)
    inside = np.array([3.0, 2.0])
    np.testing.assert_array_equal(y[0, ..., 0], np.einsum("i,j,k->ijk", inside, inside,
                                                          inside))
    grads, dx = pullback(np.ones_like(y))
    reads = np.array([1.0, 1.0, 2.0, 1.0])  # cell 2 is in both windows of its axis
    np.testing.assert_array_equal(dx[0, ..., 0], np.einsum("i,j,k->ijk", reads, reads, reads))
    # dw[a, i, j] = the cells offset (a, i, j) reads over the 8 outputs: per axis, offsets
    # 0 and 1 read 2 real cells, offset 2 reads 1 (cell 4 is padding)
    per_axis = np.array([2.0, 2.0, 1.0])
    np.testing.assert_array_equal(grads["w"][..., 0, 0],
                                  np.einsum("i,j,k->ijk", per_axis, per_axis, per_axis))


def test_kernel_depth_one_is_conv2d(path):
    """kd = 1 on one depth: Conv2D's numbers exactly, the kernel with a leading axis."""
    x = RNG.standard_normal((3, 1, 6, 5, 4)).astype(np.float32)
    c3 = L.Conv3D(6, (1, 3, 3), stride=(1, 2, 1), groups=2)
    c2 = L.Conv2D(6, 3, stride=(2, 1), groups=2)
    params = _params(c3, x, np.float32)
    p2 = {"w": params["w"][0], "b": params["b"]}
    y3, pb3 = c3.vjp(params, x)
    y2, pb2 = c2.vjp(p2, x[:, 0])
    np.testing.assert_array_equal(y3[:, 0], y2)
    dy = RNG.standard_normal(y3.shape).astype(np.float32)
    (g3, dx3), (g2, dx2) = pb3(dy), pb2(dy[:, 0])
    np.testing.assert_array_equal(g3["w"][0], g2["w"])
    np.testing.assert_array_equal(dx3[:, 0], dx2)


def test_float32_stays_float32_and_ints_cast(path):
    layer = L.Conv3D(3, 2, stride=(1, 2, 1))
    x = RNG.standard_normal((2, 3, 4, 3, 2)).astype(np.float32)
    params = _params(layer, x, np.float32)
    y, pullback = layer.vjp(params, x)
    grads, dx = pullback(np.ones_like(y))
    assert {y.dtype, dx.dtype, grads["w"].dtype, grads["b"].dtype} == {np.dtype(np.float32)}
    assert layer.apply(params, x).dtype == np.float32
    xi = np.arange(2 * 3 * 4 * 3 * 2).reshape(2, 3, 4, 3, 2) % 5
    np.testing.assert_allclose(layer.apply(params, xi), layer.apply(params, xi.astype(
        np.float32)), rtol=0, atol=0)
    assert layer.apply(params, xi).dtype == np.float32


def test_need_dx_false_and_init_shape(path):
    layer = L.Conv3D(4, 3, stride=2, padding=1)
    out_shape, params = layer.init(fd.random.key(1), (None, 5, 6, 7, 2))
    assert out_shape == (None, 3, 3, 4, 4)
    assert params["w"].shape == (3, 3, 3, 2, 4) and params["w"].dtype == np.float32
    bound = 1 / np.sqrt(27 * 2)  # PyTorch's Conv3d init: U(±1/sqrt(fan_in))
    assert np.abs(params["w"]).max() <= bound and np.abs(params["b"]).max() <= bound
    x = RNG.standard_normal((2, 5, 6, 7, 2)).astype(np.float32)
    y, pullback = layer.vjp(params, x)
    assert y.shape == (2, 3, 3, 4, 4)
    dy = RNG.standard_normal(y.shape).astype(np.float32)
    g_all, dx = pullback(dy)
    g_only, none = pullback(dy, need_dx=False)
    assert none is None and dx.shape == x.shape
    for k in g_all:
        np.testing.assert_array_equal(g_all[k], g_only[k])


@pytest.mark.parametrize("layer", [
    L.Conv3D(4, 3), L.Conv3D(4, (2, 3, 2), stride=(2, 1, 2), padding=1, groups=2),
    L.Conv3D(2, 2, dilation=(2, 1, 1), padding="VALID", use_bias=False)])
def test_per_example_against_loop(layer, path):
    model = L.Sequential(layer, L.Flatten(), L.Dense(2))
    x = RNG.standard_normal((3, 4, 4, 3, 2))
    _, params = model.init(fd.random.key(2), (None, *x.shape[1:]))
    params = fd.tree.astype(params, np.float64)
    target = RNG.standard_normal((3, 2))
    got = fd.per_example_grad(model, fd.losses.mse, loss_reduction="mean")(params, x, target)
    grad = fd.grad(model, fd.losses.mse)
    for i in range(3):
        row = grad(params, x[i:i + 1], target[i:i + 1])
        for a, b in zip(fd.tree.leaves(got), fd.tree.leaves(row)):
            np.testing.assert_allclose(a[i], b, rtol=1e-10, atol=1e-13)
    whole = grad(params, x, target)
    for a, b in zip(fd.tree.leaves(got), fd.tree.leaves(whole)):
        np.testing.assert_allclose(a.mean(0), b, rtol=1e-10, atol=1e-13)


def _error(fn: Any) -> str:
    with pytest.raises((ValueError, TypeError)) as e:
        fn()
    return str(e.value)


def test_bad_inputs_named():
    layer = L.Conv3D(4, 3)
    _, params = layer.init(fd.random.key(0), (None, 4, 5, 5, 3))
    x = np.zeros((2, 4, 5, 5, 3), np.float32)
    msg = _error(lambda: layer.apply(params, x[:, 0]))  # an image batch
    assert msg.startswith("Conv3D(4, 3):") and "(N, D, H, W, 3)" in msg and "Conv2D" in msg
    assert "(2, 5, 5, 3)" in msg
    msg = _error(lambda: layer.apply(params, np.moveaxis(x, -1, 1)))  # torch's NCDHW
    assert "channels-first" in msg and "(2, 3, 4, 5, 5)" in msg
    msg = _error(lambda: layer.init(fd.random.key(0), (None, 5, 5, 3)))
    assert msg.startswith("Conv3D(4, 3):") and "(N, D, H, W, C)" in msg and "Conv2D" in msg
    msg = _error(lambda: layer.apply({"w": params["w"][0], "b": params["b"]}, x))
    assert "params['w'] must have shape (3, 3, 3, in, 4)" in msg and "(3, 3, 3, 4)" in msg
    small = L.Conv3D(2, 3, padding="VALID")
    msg = _error(lambda: small.apply(_params(small, x, np.float32), x[:, :2]))
    assert msg.startswith("Conv3D(2, 3, padding='VALID'):")
    assert "(N, >=3, >=3, >=3, C)" in msg and "(2, 2, 5, 5, 3)" in msg
    for bad in ((1, 2), (1, 2, -1), "FULL", ((1, 0), (0, 1))):
        msg = _error(lambda bad=bad: L.Conv3D(2, 3, padding=bad))
        assert msg.startswith("Conv3D(") and "((front, back), (top, bottom)" in msg
    assert "kernel" in _error(lambda: L.Conv3D(2, (3, 3)))
    assert "groups" in _error(lambda: L.Conv3D(3, 2, groups=2))
    msg = _error(lambda: L.Conv3D(4, 2, groups=2).init(fd.random.key(0), (None, 3, 3, 3, 3)))
    assert "divisible by groups=2" in msg


def test_path_taken(monkeypatch):
    """groups = 1 at a small size runs one product (``_conv3d_cols.columns``); groups > 1,
    or columns past ``_COLS3_BYTES``, a Conv2D per depth offset (the fixture above forces
    the latter: this proves the former is what runs by default)."""
    calls = []
    real = conv3d.columns
    monkeypatch.setattr(conv3d, "columns", lambda *a: calls.append(a[0].shape) or real(*a))
    x = RNG.standard_normal((2, 3, 4, 4, 2))
    for layer, want in ((L.Conv3D(2, 3), 1), (L.Conv3D(2, 3, groups=2), 1)):
        layer.apply(_params(layer, x), x)
        assert len(calls) == want
    monkeypatch.setattr(conv3d, "_COLS3_BYTES", 2 * 3 * 4 * 4 * 27 * 2 * 8 - 1)  # one short
    L.Conv3D(2, 3).apply(_params(L.Conv3D(2, 3), x), x)
    assert len(calls) == 1
