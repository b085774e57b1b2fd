"""Grouped Conv2D and Conv1D against PyTorch's ``conv2d``/``conv1d`` with ``groups``, in
float64: forward, dw, db and dx over strides, dilations, every padding form, depthwise and
channel multipliers, on both ways a convolution runs, and one input channel per group on its
own NHWC path (proved taken). Skipped where torch is not installed.

funcdl is NHWC with an HWIO kernel whose I axis is ``C // groups`` (JAX's
``feature_group_count``); torch is NCHW with OIHW, ``I = C // groups`` as well, so the kernel
converts by a transpose alone. Padding goes to torch explicitly (``F.pad``): "SAME" is the
TF/JAX rule, the odd pixel after.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from _torch_util import same_pads, t64

import funcdl as fd
from funcdl import layers as L
from funcdl.layers import _grouped, conv

torch = pytest.importorskip("torch")
F = torch.nn.functional
TOL = {"rtol": 1e-10, "atol": 1e-12}


def ours(layer: Any, x: np.ndarray) -> tuple[Any, Any, Any, Any, Any]:
    """float64 params, y, a random dy, and the pullback's (dparams, dx)."""
    _, params = layer.init(fd.random.key(0), (None, *x.shape[1:]))
    params = fd.tree.astype(params, np.float64)
    y, pullback = layer.vjp(params, x)
    dy = np.random.default_rng(1).standard_normal(y.shape)
    dparams, dx = pullback(dy)
    return params, y, dy, dparams, dx


CONV2D = [  # kernel, stride, padding (ours), dilation, (h, w, c), out, groups
    ((3, 3), (1, 1), "SAME", (1, 1), (7, 6, 4), 6, 2),
    ((3, 3), (2, 2), "SAME", (1, 1), (8, 7, 6), 6, 6),          # depthwise
    ((3, 3), (2, 1), "SAME", (1, 2), (7, 9, 4), 8, 4),          # depthwise, multiplier 2
    ((4, 2), (2, 1), "SAME", (1, 1), (9, 6, 6), 3, 3),          # even kernel, Og = 1
    ((3, 3), (1, 2), "VALID", (2, 1), (9, 8, 8), 4, 2),
    ((2, 3), (1, 1), ((1, 0), (2, 1)), (1, 2), (6, 7, 9), 6, 3),
    ((1, 1), (2, 2), 1, (1, 1), (5, 5, 8), 12, 4),
    ((3, 3), (1, 1), (2, 0), (1, 1), (6, 6, 12), 12, 3),        # Cg = Og = 4
]


@pytest.mark.parametrize("kernel, stride, padding, dilation, hwc, out, groups", CONV2D)
def test_grouped_conv2d_matches_torch(kernel, stride, padding, dilation, hwc, out, groups,
                                      conv_path):
    layer = L.Conv2D(out, kernel, stride=stride, padding=padding, dilation=dilation,
                     groups=groups)
    x = np.random.default_rng(0).standard_normal((2, *hwc))
    params, y, dy, dp, dx = ours(layer, x)
    assert params["w"].shape == (*kernel, hwc[2] // groups, out)
    if padding == "SAME":
        pads = [same_pads(n, k, s, d) for n, k, s, d in zip(hwc, kernel, stride, dilation)]
    elif padding == "VALID":
        pads = [(0, 0), (0, 0)]
    elif isinstance(padding, int):
        pads = [(padding, padding)] * 2
    elif isinstance(padding[0], int):
        pads = [(padding[0],) * 2, (padding[1],) * 2]
    else:
        pads = list(padding)
    xt = t64(x.transpose(0, 3, 1, 2), grad=True)
    wt = t64(params["w"].transpose(3, 2, 0, 1), grad=True)  # HWIO -> OIHW
    bt = t64(params["b"], grad=True)
    yt = F.conv2d(F.pad(xt, (*pads[1], *pads[0])), wt, bt, stride=stride, dilation=dilation,
                  groups=groups)
    yt.backward(t64(dy.transpose(0, 3, 1, 2)))
    np.testing.assert_allclose(y, yt.detach().numpy().transpose(0, 2, 3, 1), **TOL)
    np.testing.assert_allclose(dx, xt.grad.numpy().transpose(0, 2, 3, 1), **TOL)
    np.testing.assert_allclose(dp["w"], wt.grad.numpy().transpose(2, 3, 1, 0), **TOL)
    np.testing.assert_allclose(dp["b"], bt.grad.numpy(), **TOL)


@pytest.mark.parametrize("kernel, stride, padding, dilation, c, out, groups", [
    (3, 1, "SAME", 1, 4, 6, 2), (4, 2, "SAME", 1, 6, 6, 6), (3, 2, "VALID", 2, 6, 12, 3),
    (2, 1, (2, 1), 1, 8, 4, 4), (3, 3, 1, 1, 4, 8, 4)])
def test_grouped_conv1d_matches_torch(kernel, stride, padding, dilation, c, out, groups,
                                      conv_path):
    layer = L.Conv1D(out, kernel, stride=stride, padding=padding, dilation=dilation,
                     groups=groups)
    x = np.random.default_rng(2).standard_normal((2, 11, c))
    params, y, dy, dp, dx = ours(layer, x)
    pads = (same_pads(11, kernel, stride, dilation) if padding == "SAME" else
            (0, 0) if padding == "VALID" else
            (padding, padding) if isinstance(padding, int) else padding)
    xt = t64(x.transpose(0, 2, 1), grad=True)
    wt = t64(params["w"].transpose(2, 1, 0), grad=True)  # (k, I, O) -> (O, I, k)
    bt = t64(params["b"], grad=True)
    yt = F.conv1d(F.pad(xt, pads), wt, bt, stride=stride, dilation=dilation, groups=groups)
    yt.backward(t64(dy.transpose(0, 2, 1)))
    np.testing.assert_allclose(y, yt.detach().numpy().transpose(0, 2, 1), **TOL)
    np.testing.assert_allclose(dx, xt.grad.numpy().transpose(0, 2, 1), **TOL)
    np.testing.assert_allclose(dp["w"], wt.grad.numpy().transpose(2, 1, 0), **TOL)
    np.testing.assert_allclose(dp["b"], bt.grad.numpy(), **TOL)


DEPTHWISE_2D = [  # Cg = 1, as CONV2D: Og = 1, 2, 3, 3, 2, 6
    ((3, 3), (1, 1), "SAME", (1, 1), (7, 6, 4), 4, 4),
    ((3, 3), (2, 2), 1, (1, 1), (7, 6, 3), 6, 3),
    ((3, 2), (1, 1), "VALID", (2, 2), (7, 6, 2), 6, 2),
    ((2, 2), (2, 1), "SAME", (2, 2), (7, 6, 3), 9, 3),
    ((2, 3), (1, 2), ((1, 0), (0, 2)), (2, 1), (7, 6, 5), 10, 5),
    ((3, 3), (1, 1), 2, (1, 1), (7, 6, 2), 12, 2),
]
DEPTHWISE_1D = [(3, 1, "SAME", 1, 4, 4, 4), (3, 2, 2, 1, 3, 9, 3), (2, 1, "VALID", 2, 2, 4, 2)]


@pytest.mark.parametrize("nhwc", [True, False], ids=["nhwc", "dispatched"])
@pytest.mark.parametrize("case", DEPTHWISE_2D + DEPTHWISE_1D)
def test_depthwise_matches_torch(case, nhwc, monkeypatch):
    # nhwc: every multiplier on the NHWC path, proved taken (group-major refuses)
    def refuse(*args: Any) -> None:
        raise AssertionError("Cg = 1 went group-major")

    if nhwc:
        monkeypatch.setattr(conv, "_NHWC_OG", 1 << 30)
        monkeypatch.setattr(_grouped, "to_groups", refuse)
        monkeypatch.setattr(_grouped, "by_group", refuse)
    two_d = isinstance(case[4], tuple)
    (test_grouped_conv2d_matches_torch if two_d else test_grouped_conv1d_matches_torch)(
        *case, "nhwc")


def test_default_init_bounds_match_torch_conv2d():
    # torch's Conv2d(groups=g) draws w and b from U(±1/sqrt(C/g·kh·kw)); so must we
    layer = L.Conv2D(64, 3, groups=16)
    _, params = layer.init(fd.random.key(0), (None, 8, 8, 32))
    conv = torch.nn.Conv2d(32, 64, 3, groups=16)
    for ours_p, theirs in ((params["w"], conv.weight), (params["b"], conv.bias)):
        bound = 1 / np.sqrt(2 * 3 * 3)
        assert np.abs(ours_p).max() <= bound
        assert float(theirs.detach().abs().max()) <= bound
        assert np.abs(ours_p).max() > 0.9 * bound
    assert tuple(conv.weight.shape) == tuple(params["w"].transpose(3, 2, 0, 1).shape)
