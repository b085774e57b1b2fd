"""Upsample: hand-computed values, naive loops over output pixels in float64 (nearest: the
source pixel; bilinear: torch's source coordinates and four taps per pixel, written from
its documented formula), forward and pullback, over scale factors, sizes and
align_corners; finite differences; float32 kept; bad inputs named by the layer. Torch
cross-checks are in test_upsample_torch.py."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from funcdl.layers import ReLU, Sequential
from funcdl.layers.conv import Conv2D
from funcdl.layers.conv_transpose import ConvTranspose2D
from funcdl.layers.upsample import Upsample
from funcdl.testing import check_layer, check_vjp

# ---------------------------------------------------------------------------- references

def source(o, size, s, align_corners):
    """torch's bilinear taps for output index o: (h0, h1, weight of h1)."""
    if align_corners:
        src = o * (size - 1) / (size * s - 1) if size * s > 1 else 0.0
    else:
        src = max((o + 0.5) / s - 0.5, 0.0)
    h0 = min(math.floor(src), size - 1)
    return h0, min(h0 + 1, size - 1), src - h0


def naive(x, scale, mode, align_corners=False):
    """y and the pullback dx, one output pixel at a time."""
    n, h, w, c = x.shape
    sh, sw = scale
    y = np.zeros((n, h * sh, w * sw, c))
    taps = {}
    for p, q in itertools.product(range(h * sh), range(w * sw)):
        if mode == "nearest":
            taps[p, q] = [(p // sh, q // sw, 1.0)]
        else:
            a0, a1, la = source(p, h, sh, align_corners)
            b0, b1, lb = source(q, w, sw, align_corners)
            taps[p, q] = [(a0, b0, (1 - la) * (1 - lb)), (a0, b1, (1 - la) * lb),
                          (a1, b0, la * (1 - lb)), (a1, b1, la * lb)]
        for i, j, wt in taps[p, q]:
            y[:, p, q] += wt * x[:, i, j]

    def pullback(dy):
        dx = np.zeros_like(x)
        for (p, q), ts in taps.items():
            for i, j, wt in ts:
                dx[:, i, j] += wt * dy[:, p, q]
        return dx

    return y, pullback


CASES = [  # scale_factor, mode, align_corners, (h, w)
    (2, "nearest", False, (3, 4)),
    ((3, 1), "nearest", False, (2, 3)),
    ((1, 4), "nearest", False, (1, 2)),
    (2, "bilinear", False, (3, 4)),
    (3, "bilinear", False, (2, 1)),
    ((2, 3), "bilinear", False, (1, 3)),
    (2, "bilinear", True, (3, 4)),
    ((3, 2), "bilinear", True, (2, 1)),
    (1, "bilinear", True, (3, 2)),   # the identity either way
    (1, "bilinear", False, (2, 3)),
]


def pair(s):
    return s if isinstance(s, tuple) else (s, s)


@pytest.mark.parametrize("scale, mode, align, hw", CASES)
def test_matches_naive_loops(scale, mode, align, hw):
    layer = Upsample(scale, mode, align_corners=align)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, *hw, 3))
    y, pullback = layer.vjp((), x)
    want, naive_pullback = naive(x, pair(scale), mode, align)
    assert y.shape == want.shape
    np.testing.assert_allclose(y, want, rtol=1e-12, atol=1e-13)
    dy = rng.standard_normal(y.shape)
    dparams, dx = pullback(dy)
    assert dparams == ()
    np.testing.assert_allclose(dx, naive_pullback(dy), rtol=1e-12, atol=1e-13)


def test_known_values():
    x = np.array([0.0, 1.0]).reshape(1, 1, 2, 1)
    for mode, align, want in (("nearest", False, [0, 0, 0, 1, 1, 1]),
                              ("bilinear", False, [0, 0, 1 / 3, 2 / 3, 1, 1]),
                              ("bilinear", True, [0, 0.2, 0.4, 0.6, 0.8, 1])):
        got = Upsample((1, 3), mode, align_corners=align).apply((), x).ravel()
        np.testing.assert_allclose(got, want, rtol=1e-15, atol=1e-15)
    # scale 2, centres aligned: 1/4 and 3/4 of the way, the ends clamped
    x = np.array([0.0, 4.0, 8.0]).reshape(1, 3, 1, 1)
    got = Upsample((2, 1), "bilinear").apply((), x).ravel()
    np.testing.assert_array_equal(got, [0, 1, 3, 5, 7, 8])
    # the vjp of nearest sums each block
    _, pullback = Upsample(2).vjp((), np.zeros((1, 1, 2, 1)))
    dx = pullback(np.arange(8.0).reshape(1, 2, 4, 1))[1]
    np.testing.assert_array_equal(dx.ravel(), [0 + 1 + 4 + 5, 2 + 3 + 6 + 7])


# ---------------------------------------------------------------------------- gradients, dtypes

@pytest.mark.parametrize("scale, mode, align", [(2, "nearest", False), ((2, 3), "bilinear", False),
                                                (3, "bilinear", True)])
def test_check_layer_and_vjp(scale, mode, align):
    layer = Upsample(scale, mode, align_corners=align)
    check_layer(layer, (None, 3, 2, 2), batch=2)
    check_vjp(layer, (), np.random.default_rng(1).standard_normal((2, 2, 3, 2)))


def test_in_a_decoder(key):
    """A decoder's up-blocks, as a U-Net or a GAN generator has them, end to end."""
    model = Sequential(ConvTranspose2D(4, 4, stride=2, padding=1), ReLU(),
                       Upsample(2, "bilinear"), Conv2D(2, 3))
    assert model.init(key, (None, 2, 3, 3))[0] == (None, 8, 12, 2)
    check_layer(model, (None, 2, 3, 3), batch=2)


@pytest.mark.parametrize("mode", ["nearest", "bilinear"])
def test_float32_kept_and_fresh(key, mode):
    layer = Upsample(2, mode)
    assert layer.init(key, (None, 3, None, 5)) == ((None, 6, None, 5), ())
    x = np.random.default_rng(0).standard_normal((2, 3, 2, 5)).astype(np.float32)
    y, pullback = layer.vjp((), x)
    assert y.dtype == np.float32 and y.shape == (2, 6, 4, 5) and y.flags.c_contiguous
    _, dx = pullback(np.ones(y.shape))  # a float64 cotangent is taken as float32
    assert dx.dtype == np.float32 and dx.shape == x.shape
    assert layer.apply((), x.astype(np.int64)).dtype == np.float32
    assert layer.apply((), x.astype(np.float64)).dtype == np.float64
    same = Upsample(1, mode).apply((), x)  # scale 1: equal values, never the input itself
    np.testing.assert_array_equal(same, x)
    assert not np.shares_memory(same, x)


# ---------------------------------------------------------------------------- bad inputs

@pytest.mark.parametrize("args, kwargs, error, words", [
    ((0,), {}, ValueError, r"Upsample\(0\): scale_factor must be a positive int"),
    (((2, -1),), {}, ValueError, r"Upsample\(\(2, -1\)\): scale_factor must be a positive int"),
    ((1.5,), {}, TypeError, r"Upsample\(1.5\): scale_factor .*integer scale factors only"),
    ((2.0,), {}, TypeError, r"Upsample\(2.0\): scale_factor .*pass 2\)"),
    (((2, 2, 2),), {}, TypeError, r"scale_factor must be a positive int or a pair"),
    ((2,), {"mode": "bicubic"}, ValueError,
     r"Upsample\(2, mode='bicubic'\): mode must be 'nearest' or 'bilinear', got 'bicubic'"),
    ((2,), {"mode": None}, TypeError,
     r"Upsample\(2, mode=None\): mode must be 'nearest' or 'bilinear', got None \(NoneType"),
    ((2,), {"align_corners": True}, ValueError,
     r"Upsample\(2, align_corners=True\): align_corners=True needs mode='bilinear'"),
    ((2,), {"mode": "bilinear", "align_corners": 1}, TypeError,
     r"align_corners must be True or False"),
])
def test_bad_constructor_arguments(args, kwargs, error, words):
    with pytest.raises(error, match=words):
        Upsample(*args, **kwargs)


def test_bad_inputs(key):
    layer = Upsample(2, "bilinear")
    name = r"Upsample\(2, mode='bilinear'\)"
    with pytest.raises(ValueError, match=name + r".*\(N, H, W, C\) of rank 4.*\(None, 5, 3\)"):
        layer.init(key, (None, 5, 3))
    with pytest.raises(ValueError, match=name + r".*\(N, H, W, C\) of rank 4.*shape \(2, 3\)"):
        layer.apply((), np.ones((2, 3)))
    with pytest.raises(ValueError, match=r"Sequential\[0\] " + name + r".*H, W >= 1.*"
                                         r"\(1, 0, 3, 2\)"):
        Sequential(layer).apply([()], np.ones((1, 0, 3, 2)))
    with pytest.raises(ValueError, match=name + r".*H, W >= 1.*\(None, 4, 0, 2\)"):
        layer.init(key, (None, 4, 0, 2))
    with pytest.raises(ValueError, match=name + r".*no parameters"):
        layer.apply({"w": np.ones(2)}, np.ones((1, 2, 2, 1)))
    _, pullback = layer.vjp((), np.ones((1, 2, 3, 1), np.float32))
    with pytest.raises(ValueError, match=name + r".*dy of shape \(1, 4, 6, 1\).*\(1, 6, 4, 1\)"):
        pullback(np.ones((1, 6, 4, 1)))
