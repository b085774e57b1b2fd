"""PixelShuffle / PixelUnshuffle: a naive loop over output pixels written from torch's
documented channel order (``c·r² + i·r + j`` -> pixel ``(h·r + i, w·r + j)``), round
trips, each pullback against the other layer, finite differences, float32 kept, shapes,
bad inputs named by the layer. Torch cross-checks: test_pixel_shuffle_torch.py."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from funcdl import random
from funcdl.layers.pixel_shuffle import PixelShuffle, PixelUnshuffle
from funcdl.testing import check_layer, check_vjp


def naive_shuffle(x, r):
    n, h, w, crr = x.shape
    c = crr // (r * r)
    y = np.zeros((n, h * r, w * r, c), x.dtype)
    for hh, ww, cc, i, j in itertools.product(range(h), range(w), range(c), range(r), range(r)):
        y[:, hh * r + i, ww * r + j, cc] = x[:, hh, ww, cc * r * r + i * r + j]
    return y


def naive_unshuffle(x, r):
    n, hr, wr, c = x.shape
    y = np.zeros((n, hr // r, wr // r, c * r * r), x.dtype)
    for hh, ww, cc, i, j in itertools.product(range(hr // r), range(wr // r), range(c),
                                              range(r), range(r)):
        y[:, hh, ww, cc * r * r + i * r + j] = x[:, hh * r + i, ww * r + j, cc]
    return y


def rand(*shape, seed=0, dtype=np.float64):
    return np.random.default_rng(seed).standard_normal(shape).astype(dtype)


@pytest.mark.parametrize(("r", "shape"), [(2, (2, 2, 3, 8)), (3, (1, 2, 2, 18)),
                                          (1, (2, 3, 2, 3)), (2, (1, 1, 1, 4))])
def test_shuffle_naive_and_pullback(r, shape):
    x = rand(*shape)
    layer = PixelShuffle(r)
    y, pullback = layer.vjp((), x)
    np.testing.assert_array_equal(y, naive_shuffle(x, r))
    out, _ = layer.init(None, shape)
    assert out == y.shape == (shape[0], shape[1] * r, shape[2] * r, shape[3] // (r * r))
    dy = rand(*y.shape, seed=1)
    _, dx = pullback(dy)
    np.testing.assert_array_equal(dx, naive_unshuffle(dy, r))
    # the adjoint identity of a permutation
    assert np.isclose(np.sum(y * dy), np.sum(x * dx), rtol=1e-13)


@pytest.mark.parametrize(("r", "shape"), [(2, (2, 4, 6, 3)), (3, (1, 3, 6, 2)),
                                          (2, (1, 2, 2, 1))])
def test_unshuffle_naive_and_pullback(r, shape):
    x = rand(*shape)
    layer = PixelUnshuffle(r)
    y, pullback = layer.vjp((), x)
    np.testing.assert_array_equal(y, naive_unshuffle(x, r))
    out, _ = layer.init(None, (None, *shape[1:]))
    assert out == (None, *y.shape[1:])
    dy = rand(*y.shape, seed=1)
    np.testing.assert_array_equal(pullback(dy)[1], naive_shuffle(dy, r))


def test_hand_values():
    # one pixel, 4 channels, r = 2: channel i·2 + j goes to offset (i, j)
    x = np.arange(4.0).reshape(1, 1, 1, 4)
    np.testing.assert_array_equal(PixelShuffle(2).apply((), x)[0, :, :, 0], [[0, 1], [2, 3]])
    # two output channels: c·4 + i·2 + j
    x = np.arange(8.0).reshape(1, 1, 1, 8)
    y = PixelShuffle(2).apply((), x)
    np.testing.assert_array_equal(y[0, :, :, 1], [[4, 5], [6, 7]])


def test_round_trip():
    x = rand(2, 4, 6, 8, dtype=np.float32)
    s, u = PixelShuffle(2), PixelUnshuffle(2)
    np.testing.assert_array_equal(u.apply((), s.apply((), x)), x)
    z = rand(2, 4, 6, 3)
    np.testing.assert_array_equal(s.apply((), u.apply((), z)), z)


@pytest.mark.parametrize("layer, shape", [(PixelShuffle(2), (None, 2, 3, 8)),
                                          (PixelShuffle(3), (None, 1, 2, 9)),
                                          (PixelUnshuffle(2), (None, 4, 2, 3)),
                                          (PixelUnshuffle(1), (None, 2, 2, 2))])
def test_check_layer(layer, shape):
    check_layer(layer, shape)
    check_vjp(layer, (), rand(2, *shape[1:]))


def test_float32_kept_and_ints():
    y, pb = PixelShuffle(2).vjp((), rand(1, 2, 2, 4, dtype=np.float32))
    assert y.dtype == np.float32 and pb(np.ones(y.shape))[1].dtype == np.float32
    assert PixelUnshuffle(2).apply((), np.ones((1, 2, 2, 1), np.int64)).dtype == np.float32
    x = rand(1, 2, 2, 4)
    assert not np.shares_memory(PixelShuffle(1).apply((), x), x)


def test_bad_inputs():
    with pytest.raises(ValueError, match=r"PixelShuffle\(2\).*divisible by r·r = 4.*got 6"):
        PixelShuffle(2).apply((), np.zeros((1, 2, 2, 6)))
    with pytest.raises(ValueError, match=r"PixelShuffle\(2\).*divisible.*got 6"):
        PixelShuffle(2).init(random.key(0), (None, 2, 2, 6))
    with pytest.raises(ValueError, match=r"PixelUnshuffle\(2\).*H and W divisible by 2.*W = 3"):
        PixelUnshuffle(2).apply((), np.zeros((1, 2, 3, 1)))
    with pytest.raises(ValueError, match=r"PixelUnshuffle\(3\).*H = 4"):
        PixelUnshuffle(3).init(random.key(0), (None, 4, 3, 1))
    with pytest.raises(ValueError, match=r"PixelShuffle\(2\).*rank 4.*\(2, 8\)"):
        PixelShuffle(2).apply((), np.zeros((2, 8)))
    with pytest.raises(ValueError, match=r"PixelShuffle\(2\).*pullback expected dy of shape"):
        PixelShuffle(2).vjp((), np.zeros((1, 1, 1, 4)))[1](np.zeros((1, 1, 1, 4)))
    for bad in (0, -1, 2.5, "2", None, True):
        with pytest.raises((TypeError, ValueError), match="PixelShuffle"):
            PixelShuffle(bad)
        with pytest.raises((TypeError, ValueError), match="PixelUnshuffle"):
            PixelUnshuffle(bad)
