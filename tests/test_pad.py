"""Pad2D / Pad1D: the forward and the pullback against naive loops over output pixels
written from the source-index rule (the forward reads each entry's source, the pullback
adds each cotangent onto it; not the code's np.pad and strips), hand values, the adjoint identity
<pad(x), g> = <x, vjp(g)> per mode, cropping, finite differences, float32 kept, and bad
inputs named by the layer. Torch cross-checks: test_pad_torch.py."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from funcdl import random
from funcdl.layers.pad import Pad1D, Pad2D
from funcdl.testing import check_layer, check_vjp

MODES = ("constant", "reflect", "replicate", "circular")


def source(mode, o, n, lo):
    """The source index of output o along an axis of size n, or None (the fill)."""
    s = o - lo
    if 0 <= s < n:
        return s
    if mode == "constant":
        return None
    if mode == "replicate":
        return min(max(s, 0), n - 1)
    if mode == "circular":
        return s % n
    return -s if s < 0 else 2 * (n - 1) - s  # reflect


def naive_forward(mode, x, pads, value=0.0):
    (t, b), (l, r) = pads
    n, h, w, c = x.shape
    y = np.full((n, h + t + b, w + l + r, c), value)
    for p, q in itertools.product(range(y.shape[1]), range(y.shape[2])):
        i, j = source(mode, p, h, t), source(mode, q, w, l)
        if i is not None and j is not None:
            y[:, p, q] = x[:, i, j]
    return y


def naive_pullback(mode, dy, x_shape, pads):
    """dx by a loop over output pixels: each dy entry added onto its source."""
    dx = np.zeros(x_shape)
    (t, _), (l, _) = pads
    for p, q in itertools.product(range(dy.shape[1]), range(dy.shape[2])):
        h, w = source(mode, p, x_shape[1], t), source(mode, q, x_shape[2], l)
        if h is not None and w is not None:
            dx[:, h, w] += dy[:, p, q]
    return dx


def rand(*shape, seed=0, dtype=np.float64):
    return np.random.default_rng(seed).standard_normal(shape).astype(dtype)


PADS = [((1, 2), (3, 1)), ((2, 2), (0, 3)), ((0, 0), (1, 0)), ((2, 1), (3, 3))]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("pads", PADS)
def test_pad2d_against_naive(mode, pads):
    x = rand(2, 3, 4, 2)
    value = 0.5 if mode == "constant" else 0.0
    layer = Pad2D(pads, mode, value)
    y, pullback = layer.vjp((), x)
    np.testing.assert_array_equal(y, naive_forward(mode, x, pads, value))
    dy = rand(*y.shape, seed=1)
    _, dx = pullback(dy)
    np.testing.assert_allclose(dx, naive_pullback(mode, dy, x.shape, pads), rtol=1e-13,
                               atol=1e-13)
    assert layer.init(None, (None, 3, 4, 2))[0] == (None, *y.shape[1:])


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("pad", [1, (2, 0), (0, 3), (3, 1)])
def test_pad1d_against_naive_and_adjoint(mode, pad):
    x = rand(2, 4, 3)
    lr = (pad, pad) if isinstance(pad, int) else pad
    y, pullback = Pad1D(pad, mode).vjp((), x)
    np.testing.assert_array_equal(y, naive_forward(mode, x[:, None], ((0, 0), lr))[:, 0])
    g = rand(*y.shape, seed=2)
    dx = pullback(g)[1]
    assert np.isclose(np.sum(y * g), np.sum(x * dx), rtol=1e-12)
    # the same as Pad2D with a unit H axis: one code path checked against the naive loop
    want = naive_pullback(mode, g[:, None], (2, 1, 4, 3), ((0, 0), lr))[:, 0]
    np.testing.assert_allclose(dx, want, rtol=1e-13, atol=1e-13)


@pytest.mark.parametrize("mode", MODES)
def test_adjoint_identity(mode):
    """<pad(x), g> = <x, vjp(g)>: the pullback is the forward's transpose (for 'constant'
    with value 0, which is linear)."""
    x = rand(3, 5, 4, 2)
    y, pullback = Pad2D(((3, 2), (1, 3)), mode).vjp((), x)
    g = rand(*y.shape, seed=3)
    assert np.isclose(np.sum(y * g), np.sum(x * pullback(g)[1]), rtol=1e-12)


def test_hand_values():
    x = np.array([1.0, 2.0, 3.0]).reshape(1, 3, 1)
    row = {m: Pad1D((2, 2), m).apply((), x)[0, :, 0].tolist() for m in MODES}
    assert row["constant"] == [0, 0, 1, 2, 3, 0, 0]
    assert row["reflect"] == [3, 2, 1, 2, 3, 2, 1]
    assert row["replicate"] == [1, 1, 1, 2, 3, 3, 3]
    assert row["circular"] == [2, 3, 1, 2, 3, 1, 2]
    ones = np.ones((1, 7, 1))
    grads = {m: Pad1D((2, 2), m).vjp((), x)[1](ones)[1][0, :, 0].tolist() for m in MODES}
    assert grads["constant"] == [1, 1, 1]
    assert grads["reflect"] == [2, 3, 2]
    assert grads["replicate"] == [3, 1, 3]
    assert grads["circular"] == [2, 3, 2]
    assert Pad1D(1, value=-2.5).apply((), x)[0, :, 0].tolist() == [-2.5, 1, 2, 3, -2.5]


def test_crop_constant():
    x = rand(2, 5, 6, 3)
    y, pullback = Pad2D(((-1, 2), (3, -2)), value=1.5).vjp((), x)
    want = naive_forward("constant", x[:, 1:, :4], ((0, 2), (3, 0)), 1.5)
    np.testing.assert_array_equal(y, want)
    dy = rand(*y.shape, seed=1)
    dx = pullback(dy)[1]
    want_dx = np.zeros_like(x)
    want_dx[:, 1:, :4] = dy[:, :4, 3:]
    np.testing.assert_array_equal(dx, want_dx)
    # cropping everything: torch gives an empty axis
    assert Pad1D((-2, -1)).apply((), rand(2, 3, 1)).shape == (2, 0, 1)
    assert Pad2D(((0, 0), (-1, -1))).init(None, (None, 3, 4, 2))[0] == (None, 3, 2, 2)


@pytest.mark.parametrize("layer, shape", [
    *((Pad2D(((1, 2), (2, 1)), m), (None, 3, 4, 2)) for m in MODES),
    (Pad2D(((-1, 1), (2, -2)), value=0.5), (None, 3, 4, 2)),
    *((Pad1D((2, 1), m), (None, 4, 3)) for m in MODES),
    (Pad1D(-1), (None, 4, 2))])
def test_check_layer(layer, shape):
    check_layer(layer, shape)
    check_vjp(layer, (), rand(2, *shape[1:]))


def test_float32_kept_and_no_alias():
    for m in MODES:
        x = rand(2, 3, 3, 2, dtype=np.float32)
        y, pb = Pad2D(1, m).vjp((), x)
        assert y.dtype == np.float32 and pb(np.ones(y.shape))[1].dtype == np.float32
        y0 = Pad2D(0, m).apply((), x)
        assert not np.shares_memory(y0, x)
        np.testing.assert_array_equal(y0, x)
    assert Pad1D(1).apply((), np.ones((1, 2, 1), np.int64)).dtype == np.float32


def test_bad_inputs():
    with pytest.raises(ValueError, match=r"Pad2D\(2, mode='reflect'\).*padding < H = 2.*"
                                         r"got \(2, 2\)"):
        Pad2D(2, "reflect").apply((), np.zeros((1, 2, 3, 1)))
    with pytest.raises(ValueError, match=r"Pad1D.*padding < L = 3"):
        Pad1D((0, 3), "reflect").init(random.key(0), (None, 3, 2))
    with pytest.raises(ValueError, match=r"Pad2D.*'circular' expected padding <= W = 2"):
        Pad2D((0, 3), "circular").apply((), np.zeros((1, 2, 2, 1)))
    with pytest.raises(ValueError, match=r"Pad2D.*'replicate' expected H >= 1"):
        Pad2D(1, "replicate").apply((), np.zeros((1, 0, 2, 1)))
    with pytest.raises(ValueError, match=r"Pad1D\(-2\).*crops more than L = 3"):
        Pad1D(-2).apply((), np.zeros((1, 3, 1)))
    with pytest.raises(ValueError, match=r"Pad2D.*negative padding.*'constant' only"):
        Pad2D(-1, "reflect")
    with pytest.raises(ValueError, match=r"Pad2D.*mode 'replicate' takes no value"):
        Pad2D(1, "replicate", value=1.0)
    with pytest.raises(ValueError, match=r"Pad2D.*mode must be one of.*got 'edge'"):
        Pad2D(1, "edge")
    with pytest.raises(TypeError, match=r"Pad2D.*torch's \(left, right, top, bottom\) pass "
                                        r"\(\(3, 4\), \(1, 2\)\)"):
        Pad2D((1, 2, 3, 4))
    for bad in (1.5, None, "1", (1, 2, 3), ((1,), (1, 1)), True):
        with pytest.raises(TypeError, match="Pad2D"):
            Pad2D(bad)
        with pytest.raises(TypeError, match="Pad1D"):
            Pad1D(bad)
    with pytest.raises(TypeError, match=r"Pad1D.*value"):
        Pad1D(1, value="0")
    with pytest.raises(ValueError, match=r"Pad2D\(1\).*rank 4.*\(2, 3\)"):
        Pad2D(1).apply((), np.zeros((2, 3)))
    with pytest.raises(ValueError, match=r"Pad1D\(1\).*input shape \(N, L, C\) of rank 3"):
        Pad1D(1).init(random.key(0), (None, 3))
    with pytest.raises(ValueError, match=r"Pad1D\(1\).*pullback expected dy of shape"):
        Pad1D(1).vjp((), np.zeros((1, 3, 1)))[1](np.zeros((1, 3, 1)))
