"""PixelShuffle / PixelUnshuffle against torch in float64: forward and input gradients,
torch on NCHW and ours on the NHWC transpose."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from funcdl.layers.pixel_shuffle import PixelShuffle, PixelUnshuffle  # noqa: E402

NCHW, NHWC = (0, 3, 1, 2), (0, 2, 3, 1)


def torch_call(module, x_nhwc, dy_nhwc):
    xt = torch.tensor(x_nhwc.transpose(NCHW), requires_grad=True)
    yt = module(xt)
    yt.backward(torch.tensor(dy_nhwc.transpose(NCHW)))
    return yt.detach().numpy().transpose(NHWC), xt.grad.numpy().transpose(NHWC)


@pytest.mark.parametrize(("r", "shape", "up"), [
    (2, (2, 3, 2, 8), True), (3, (1, 2, 3, 18), True), (1, (2, 2, 2, 3), True),
    (2, (2, 4, 6, 3), False), (3, (1, 6, 3, 2), False), (2, (1, 2, 2, 1), False)])
def test_against_torch(r, shape, up):
    rng = np.random.default_rng(0)
    x = rng.standard_normal(shape)
    ours = PixelShuffle(r) if up else PixelUnshuffle(r)
    theirs = torch.nn.PixelShuffle(r) if up else torch.nn.PixelUnshuffle(r)
    y, pullback = ours.vjp((), x)
    dy = rng.standard_normal(y.shape)
    ty, tdx = torch_call(theirs, x, dy)
    np.testing.assert_array_equal(y, ty)
    np.testing.assert_array_equal(pullback(dy)[1], tdx)
