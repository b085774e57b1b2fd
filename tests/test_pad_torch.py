"""Pad2D / Pad1D against torch's F.pad in float64, forward and input gradients, across
modes and paddings (cropping in 'constant' mode): torch on NCHW / NCL, ours on the NHWC /
NLC transpose; our ((top, bottom), (left, right)) is torch's (left, right, top, bottom)."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
F = torch.nn.functional

from funcdl.layers.pad import Pad1D, Pad2D  # noqa: E402

MODES = ("constant", "reflect", "replicate", "circular")


def torch_call(x, move, back, pad, mode, value, dy):
    xt = torch.tensor(x.transpose(move), requires_grad=True)
    kw = {"value": value} if mode == "constant" else {}
    yt = F.pad(xt, pad, mode=mode, **kw)
    yt.backward(torch.tensor(dy.transpose(move)))
    return yt.detach().numpy().transpose(back), xt.grad.numpy().transpose(back)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("pads", [((1, 2), (3, 1)), ((2, 2), (2, 2)), ((0, 1), (3, 0)),
                                  ((3, 3), (1, 0))])
def test_pad2d(mode, pads):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 4, 5, 3))
    layer = Pad2D(pads, mode, value=0.75 if mode == "constant" else 0.0)
    y, pullback = layer.vjp((), x)
    dy = rng.standard_normal(y.shape)
    (t, b), (l, r) = pads
    ty, tdx = torch_call(x, (0, 3, 1, 2), (0, 2, 3, 1), (l, r, t, b), mode,
                         0.75, dy)
    np.testing.assert_array_equal(y, ty)
    np.testing.assert_allclose(pullback(dy)[1], tdx, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("pads", [((-1, 2), (3, -2)), ((-2, -1), (0, 0)), ((0, -5), (1, 1)),
                                  ((-4, 0), (-1, -3))])
def test_pad2d_crop(pads):
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, 5, 4, 2))
    y, pullback = Pad2D(pads, value=-1.0).vjp((), x)
    dy = rng.standard_normal(y.shape)
    (t, b), (l, r) = pads
    ty, tdx = torch_call(x, (0, 3, 1, 2), (0, 2, 3, 1), (l, r, t, b), "constant", -1.0, dy)
    np.testing.assert_array_equal(y, ty)
    np.testing.assert_array_equal(pullback(dy)[1], tdx)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("pad", [1, (0, 2), (3, 1), (4, 4)])
def test_pad1d(mode, pad):
    rng = np.random.default_rng(2)
    x = rng.standard_normal((2, 5, 3))
    y, pullback = Pad1D(pad, mode).vjp((), x)
    dy = rng.standard_normal(y.shape)
    lr = (pad, pad) if isinstance(pad, int) else pad
    ty, tdx = torch_call(x, (0, 2, 1), (0, 2, 1), lr, mode, 0.0, dy)
    np.testing.assert_array_equal(y, ty)
    np.testing.assert_allclose(pullback(dy)[1], tdx, rtol=1e-12, atol=1e-12)
    crop = Pad1D((-1, 2)).vjp((), x)
    ty, tdx = torch_call(x, (0, 2, 1), (0, 2, 1), (-1, 2), "constant", 0.0, dy[:, :6])
    np.testing.assert_array_equal(crop[0], ty)
    np.testing.assert_array_equal(crop[1](dy[:, :6])[1], tdx)


def test_refusals_match_torch():
    """What torch refuses at these sizes, we refuse too (ValueError naming the layer)."""
    x = np.zeros((1, 3, 3, 1))
    for mode, pad in (("reflect", 3), ("circular", 4)):
        with pytest.raises(RuntimeError):
            F.pad(torch.tensor(x.transpose(0, 3, 1, 2)), (pad,) * 4, mode=mode)
        with pytest.raises(ValueError, match="Pad2D"):
            Pad2D(pad, mode).apply((), x)
    with pytest.raises(RuntimeError):
        F.pad(torch.zeros(1, 1, 3, 3), (1,) * 4, mode="reflect", value=1.0)
    with pytest.raises(ValueError, match="Pad2D"):
        Pad2D(1, "reflect", value=1.0)
