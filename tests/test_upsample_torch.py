"""Upsample against PyTorch's ``F.interpolate(scale_factor=...)`` in float64: forward and dx
over integer scale factors (one or a pair), sizes from 1 pixel, both modes and both
``align_corners``; and ``nn.Upsample``'s refusal of align_corners with 'nearest'. Skipped
where torch is not installed. funcdl is NHWC, torch NCHW."""

from __future__ import annotations

import numpy as np
import pytest
from _torch_util import t64

from funcdl.layers.upsample import Upsample

torch = pytest.importorskip("torch")
F = torch.nn.functional
TOL = {"rtol": 1e-10, "atol": 1e-12}

SCALES = (1, 2, 3, 4, (2, 3), (1, 5), (7, 1))
SIZES = ((1, 1), (1, 4), (3, 2), (5, 6), (8, 3))


@pytest.mark.parametrize("mode, align", [("nearest", None), ("bilinear", False),
                                         ("bilinear", True)])
@pytest.mark.parametrize("scale", SCALES)
def test_matches_torch(mode, align, scale):
    """Every size of SIZES (a loop: one test each would spend its time in pytest)."""
    layer = Upsample(scale, mode, align_corners=bool(align))
    rng = np.random.default_rng(0)
    factors = tuple(float(s) for s in (scale if isinstance(scale, tuple) else (scale, scale)))
    for hw in SIZES:
        x = rng.standard_normal((2, *hw, 3))
        y, pullback = layer.vjp((), x)
        dy = rng.standard_normal(y.shape)
        _, dx = pullback(dy)
        xt = t64(x.transpose(0, 3, 1, 2), grad=True)
        yt = F.interpolate(xt, scale_factor=factors, mode=mode, align_corners=align)
        yt.backward(t64(dy.transpose(0, 3, 1, 2)))
        where = f"{layer.name} at {hw}"
        assert y.shape == tuple(yt.permute(0, 2, 3, 1).shape), where
        np.testing.assert_allclose(y, yt.detach().numpy().transpose(0, 2, 3, 1), **TOL,
                                   err_msg=where)
        np.testing.assert_allclose(dx, xt.grad.numpy().transpose(0, 2, 3, 1), **TOL,
                                   err_msg=where)


def test_nearest_with_align_corners_refused_as_torch():
    with pytest.raises(ValueError, match="align_corners"):
        F.interpolate(t64(np.ones((1, 1, 2, 2))), scale_factor=2.0, mode="nearest",
                      align_corners=True)
    with pytest.raises(ValueError, match=r"Upsample\(2, align_corners=True\): align_corners"):
        Upsample(2, align_corners=True)


@pytest.mark.parametrize("scale", [2, 3, 5, 7, 11])
def test_nearest_index_is_floor_division(scale):
    """torch's 'nearest' computes floor(o · (1/s)) in floating point; for integer s its
    source row is o // s at every size tried (no rounding below a multiple of 1/s)."""
    for dtype in (torch.float32, torch.float64):
        x = torch.arange(40, dtype=dtype).reshape(1, 1, 40, 1)
        idx = F.interpolate(x, scale_factor=(float(scale), 1.0), mode="nearest")
        np.testing.assert_array_equal(idx.numpy().ravel(), np.arange(40 * scale) // scale)
    got = Upsample((scale, 1)).apply((), np.arange(40.0).reshape(1, 40, 1, 1))
    np.testing.assert_array_equal(got.ravel(), np.arange(40 * scale) // scale)
