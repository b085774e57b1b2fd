"""The adaptive pools and InstanceNorm against torch.nn.functional's adaptive_avg_pool2d,
adaptive_max_pool2d, adaptive_avg_pool1d, adaptive_max_pool1d and nn.InstanceNorm1d/2d/3d
in float64: output and input gradient (channels last here, channels first there) over a
grid of sizes, ties, -inf and NaN included for the max, and InstanceNorm's refusals."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

torch = pytest.importorskip("torch")
F = torch.nn.functional

from funcdl.layers.adaptive_pool import (  # noqa: E402
    AdaptiveAvgPool1D,
    AdaptiveAvgPool2D,
    AdaptiveMaxPool1D,
    AdaptiveMaxPool2D,
)
from funcdl.layers.instancenorm import InstanceNorm  # noqa: E402

TOL = {"rtol": 1e-10, "atol": 1e-12}
SIDES = [(1, 1), (1, 3), (4, 2), (5, 3), (6, 6), (7, 4), (3, 5), (9, 2)]  # (n, m)


def _x(shape, data, seed):
    rng = np.random.default_rng(seed)
    if data == "normal":
        return rng.standard_normal(shape)
    x = rng.integers(0, 3, shape).astype(np.float64)  # ties in most windows
    if data == "nan":
        x[rng.random(shape) < 0.2] = np.nan
        x[rng.random(shape) < 0.3] = -np.inf
    if data == "-inf":
        x[rng.random(shape) < 0.8] = -np.inf
    return x


def _torch(fn, x_cf, dy_cf, *args):
    xt = torch.tensor(x_cf, requires_grad=True)
    yt = fn(xt, *args)
    yt.backward(torch.tensor(dy_cf))
    return yt.detach().numpy(), xt.grad.numpy()


@pytest.mark.parametrize("is_max,data", [(False, "normal"), (True, "normal"), (True, "ties"),
                                         (True, "nan"), (True, "-inf")])
@pytest.mark.parametrize("hs,ws", list(itertools.product(SIDES, SIDES[1::2])))
def test_2d(is_max, data, hs, ws):
    (h, oh), (w, ow) = hs, ws
    x = _x((2, h, w, 3), data, h * 31 + w)
    dy = np.random.default_rng(oh * 7 + ow).standard_normal((2, oh, ow, 3))
    layer = (AdaptiveMaxPool2D if is_max else AdaptiveAvgPool2D)((oh, ow))
    y, pullback = layer.vjp((), x)
    dx = pullback(dy)[1]
    fn = F.adaptive_max_pool2d if is_max else F.adaptive_avg_pool2d
    ty, tdx = _torch(fn, x.transpose(0, 3, 1, 2), dy.transpose(0, 3, 1, 2), (oh, ow))
    np.testing.assert_allclose(y, ty.transpose(0, 2, 3, 1), **TOL)
    np.testing.assert_allclose(dx, tdx.transpose(0, 2, 3, 1), **TOL)


@pytest.mark.parametrize("is_max,data", [(False, "normal"), (True, "normal"), (True, "ties"),
                                         (True, "nan"), (True, "-inf")])
@pytest.mark.parametrize("n,m", [*SIDES, (30, 7), (10, 1)])
def test_1d(is_max, data, n, m):
    x = _x((3, n, 2), data, n * 13 + m)
    dy = np.random.default_rng(m).standard_normal((3, m, 2))
    layer = (AdaptiveMaxPool1D if is_max else AdaptiveAvgPool1D)(m)
    y, pullback = layer.vjp((), x)
    dx = pullback(dy)[1]
    fn = F.adaptive_max_pool1d if is_max else F.adaptive_avg_pool1d
    ty, tdx = _torch(fn, x.transpose(0, 2, 1), dy.transpose(0, 2, 1), m)
    np.testing.assert_allclose(y, ty.transpose(0, 2, 1), **TOL)
    np.testing.assert_allclose(dx, tdx.transpose(0, 2, 1), **TOL)


@pytest.mark.parametrize("size", [(None, 3), (2, None), (None, None)])
@pytest.mark.parametrize("is_max", [False, True])
def test_none_in_the_pair(size, is_max):
    x = _x((2, 5, 6, 2), "ties" if is_max else "normal", 3)
    layer = (AdaptiveMaxPool2D if is_max else AdaptiveAvgPool2D)(size)
    y, pullback = layer.vjp((), x)
    dy = np.random.default_rng(4).standard_normal(y.shape)
    fn = F.adaptive_max_pool2d if is_max else F.adaptive_avg_pool2d
    ty, tdx = _torch(fn, x.transpose(0, 3, 1, 2), dy.transpose(0, 3, 1, 2), size)
    np.testing.assert_allclose(y, ty.transpose(0, 2, 3, 1), **TOL)
    np.testing.assert_allclose(pullback(dy)[1], tdx.transpose(0, 2, 3, 1), **TOL)


@pytest.mark.parametrize("shape", [(3, 5, 4), (2, 4, 5, 3), (2, 3, 2, 2, 4), (2, 2, 1, 3)])
@pytest.mark.parametrize("affine", [False, True])
def test_instance_norm(shape, affine):
    rng = np.random.default_rng(len(shape))
    x, dy = rng.standard_normal(shape) * 2 + 1, rng.standard_normal(shape)
    c = shape[-1]
    params = {"scale": rng.standard_normal(c), "bias": rng.standard_normal(c)}
    y, pullback = InstanceNorm(affine=affine).vjp(params if affine else (), x)
    dparams, dx = pullback(dy)
    mod = {3: torch.nn.InstanceNorm1d, 4: torch.nn.InstanceNorm2d,
           5: torch.nn.InstanceNorm3d}[len(shape)](c, affine=affine).double()
    if affine:
        mod.weight.data, mod.bias.data = torch.tensor(params["scale"]), torch.tensor(params["bias"])
    first = (0, len(shape) - 1, *range(1, len(shape) - 1))
    last = tuple(np.argsort(first))
    xt = torch.tensor(x.transpose(first), requires_grad=True)
    yt = mod(xt)
    yt.backward(torch.tensor(dy.transpose(first)))
    np.testing.assert_allclose(y, yt.detach().numpy().transpose(last), **TOL)
    np.testing.assert_allclose(dx, xt.grad.numpy().transpose(last), **TOL)
    if affine:
        np.testing.assert_allclose(dparams["scale"], mod.weight.grad.numpy(), **TOL)
        np.testing.assert_allclose(dparams["bias"], mod.bias.grad.numpy(), **TOL)


def test_instance_norm_refuses_as_torch():
    for shape in [(4, 3), (4, 3, 1)]:  # torch's (N, C, ...): no spatial axis, one element
        with pytest.raises(ValueError, match="Expected more than 1 spatial element"):
            F.instance_norm(torch.zeros(shape, dtype=torch.float64))
        ours = (shape[0], *shape[2:], shape[1])
        with pytest.raises(ValueError, match=r"InstanceNorm\(\): expected"):
            InstanceNorm().apply((), np.zeros(ours))
