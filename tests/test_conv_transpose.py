"""ConvTranspose2D: a hand-computed 1-D case, naive loops over input pixels and taps (forward
and pullback, float64) over strides, paddings of every form, output paddings, dilations and
kernel shapes, the adjoint identities with Conv2D (its forward is Conv2D's input-gradient
and its input-gradient Conv2D's forward, on both of Conv2D's paths), finite differences,
float32 kept, torch's default init bound, and bad inputs named by the layer. Torch and JAX
cross-checks are in test_conv_transpose_torch.py."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from funcdl import random, tree
from funcdl.layers import Sequential
from funcdl.layers.conv import Conv2D
from funcdl.layers.conv_transpose import ConvTranspose2D
from funcdl.testing import check_layer, check_vjp

# ---------------------------------------------------------------------------- references

def axis_geometry(n, k, s, d, p, op):
    """(out, lo, full): output size, rows cropped before it, the full result's size;
    written from torch's and JAX's documented sizes, not from the layer's code."""
    full = (n - 1) * s + (k - 1) * d + 1
    if p == "SAME":
        span = (k - 1) * d + 1
        return n * s, max(span - s, 0) // 2, full
    if p == "VALID":
        return n * s + max((k - 1) * d + 1 - s, 0), 0, full
    return full - 2 * p + op, p, full


def naive(x, w, b, stride, padding, output_padding, dilation):
    """y and the pullback (dw, db, dx), by loops over input pixels and kernel taps: input
    pixel (h, v) under tap (i, j) adds x[h, v] · w[i, j]ᵀ at row h·s + i·d of the full
    result, which is then cropped."""
    n, hh, ww, _ = x.shape
    kh, kw, o, _ = w.shape
    pads = padding if isinstance(padding, (tuple, str)) else (padding, padding)
    pads = (pads, pads) if isinstance(pads, str) else pads
    ops = output_padding if isinstance(output_padding, tuple) else (output_padding,) * 2
    (oh, t, fh), (ow, l, fw) = (axis_geometry(sz, k, s, d, p, op) for sz, k, s, d, p, op in
                                zip((hh, ww), (kh, kw), stride, dilation, pads, ops))
    big = np.zeros((n, max(fh, t + oh), max(fw, l + ow), o))
    taps = list(itertools.product(range(hh), range(ww), range(kh), range(kw)))

    def at(h, v, i, j):
        return h * stride[0] + i * dilation[0], v * stride[1] + j * dilation[1]

    for h, v, i, j in taps:
        big[:, at(h, v, i, j)[0], at(h, v, i, j)[1]] += x[:, h, v] @ w[i, j].T
    y = big[:, t:t + oh, l:l + ow] + b

    def pullback(dy):
        dbig = np.zeros_like(big)
        dbig[:, t:t + oh, l:l + ow] = dy
        dx, dw = np.zeros_like(x), np.zeros_like(w)
        for h, v, i, j in taps:
            p, q = at(h, v, i, j)
            dx[:, h, v] += dbig[:, p, q] @ w[i, j]
            dw[i, j] += dbig[:, p, q].T @ x[:, h, v]
        return dw, dy.sum(axis=(0, 1, 2)), dx

    return y, pullback


# kernel, stride, padding, output_padding, dilation, (h, w, c), out
GRID = [
    (3, (1, 1), 0, 0, (1, 1), (3, 4, 2), 3),
    (3, (2, 2), 1, 1, (1, 1), (3, 3, 2), 2),
    (4, (2, 2), 1, 0, (1, 1), (3, 2, 3), 2),       # the DCGAN / U-Net up-block
    ((2, 3), (3, 1), (2, 1), (2, 0), (1, 2), (2, 3, 1), 2),
    (3, (2, 3), 2, (0, 2), (2, 1), (3, 2, 2), 1),   # output_padding > padding: bias rows
    (2, (1, 1), 0, (1, 0), (2, 1), (2, 2, 2), 3),  # output_padding < dilation, stride 1
    (1, (2, 2), 0, 1, (1, 1), (2, 3, 2), 2),        # 1 x 1: a strided scatter
    (3, (2, 2), "SAME", 0, (1, 1), (3, 3, 2), 2),
    ((4, 1), (2, 3), "SAME", 0, (2, 1), (2, 3, 1), 2),
    (3, (2, 2), "VALID", 0, (1, 1), (2, 3, 2), 2),
    (2, (3, 3), "VALID", 0, (1, 1), (2, 2, 1), 2),  # stride beyond the kernel: zero rows
]


def float64_params(layer, x):
    _, params = layer.init(random.key(1), x.shape)
    return tree.map(lambda a: a.astype(np.float64), params)


@pytest.mark.parametrize("kernel, stride, padding, op, dilation, hwc, out", GRID)
def test_matches_naive_loops(kernel, stride, padding, op, dilation, hwc, out):
    layer = ConvTranspose2D(out, kernel, stride=stride, padding=padding, output_padding=op,
                            dilation=dilation)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, *hwc))
    params = float64_params(layer, x)
    y, pullback = layer.vjp(params, x)
    want, naive_pullback = naive(x, params["w"], params["b"], stride, padding, op, dilation)
    assert y.shape == want.shape
    np.testing.assert_allclose(y, want, rtol=1e-12, atol=1e-12)
    dy = rng.standard_normal(y.shape)
    dparams, dx = pullback(dy)
    dw, db, dx_want = naive_pullback(dy)
    np.testing.assert_allclose(dparams["w"], dw, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(dparams["b"], db, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(dx, dx_want, rtol=1e-12, atol=1e-12)


def test_known_values_one_dimensional():
    """Stride 2 spreads each input pixel's kernel copy 2 apart, overlaps summing; the
    kernel is not flipped; padding 1 crops a row from each end, output_padding adds one."""
    x = np.array([1.0, 2.0]).reshape(1, 1, 2, 1)
    w = np.array([1.0, 10.0, 100.0]).reshape(1, 3, 1, 1)
    full = [1.0, 10.0, 102.0, 20.0, 200.0]  # [1, 10, 100] + 2·[0, 0, 1, 10, 100]
    for padding, op, want in ((0, 0, full), (1, 0, full[1:-1]), (1, 1, full[1:]),
                              ("SAME", 0, full[:4]), ("VALID", 0, full)):
        layer = ConvTranspose2D(1, (1, 3), stride=(1, 2), padding=(0, padding) if isinstance(
            padding, int) else padding, output_padding=(0, op), use_bias=False)
        np.testing.assert_array_equal(layer.apply({"w": w}, x).ravel(), want)
    # stride 3 > kernel 2, 'VALID': H·s outputs, the last a zero row (no tap reaches it)
    layer = ConvTranspose2D(1, (1, 2), stride=(1, 3), padding="VALID", use_bias=False)
    got = layer.apply({"w": w[:, :2]}, x).ravel()
    np.testing.assert_array_equal(got, [1.0, 10.0, 0.0, 2.0, 20.0, 0.0])


# ---------------------------------------------------------------------------- adjoint of Conv2D

ADJOINT = [  # kernel, stride, padding, output_padding, dilation, (h, w) of x
    (3, 1, 1, 0, 1, (4, 5)),
    (3, 2, 1, 1, 1, (3, 4)),
    (4, 2, 1, 0, 1, (3, 3)),
    ((2, 3), (3, 2), (1, 2), (2, 1), (1, 2), (3, 2)),
    (3, 2, "SAME", 0, 2, (3, 4)),
    ((3, 2), (2, 3), "VALID", 0, 1, (2, 3)),
]


@pytest.mark.parametrize("kernel, stride, padding, op, dilation, hw", ADJOINT)
def test_adjoint_of_conv2d(kernel, stride, padding, op, dilation, hw, conv_path):
    """With one kernel (kh, kw, out, C): ConvTranspose2D's forward is the input-gradient
    of the Conv2D from out to C channels at dy = x, and its input-gradient at dz is that
    Conv2D's forward of dz; hence <CT(x), z> = <x, Conv2D(z)>."""
    c, out = 3, 2
    ct = ConvTranspose2D(out, kernel, stride=stride, padding=padding, output_padding=op,
                         dilation=dilation, use_bias=False)
    conv = Conv2D(c, kernel, stride=stride, padding=padding, dilation=dilation,
                  use_bias=False)
    rng = np.random.default_rng(2)
    x = rng.standard_normal((2, *hw, c))
    params = float64_params(ct, x)
    y, pullback = ct.vjp(params, x)
    z = rng.standard_normal(y.shape)
    assert conv.init(random.key(0), z.shape)[0][1:] == x.shape[1:]  # z's Conv2D gives x's shape
    conv_y, conv_pullback = conv.vjp(params, z)
    np.testing.assert_allclose(conv_y, pullback(z)[1], rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(y, conv_pullback(x)[1], rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(np.vdot(y, z), np.vdot(x, conv_y), rtol=1e-12)


# ---------------------------------------------------------------------------- gradients, dtypes

TABLE = [
    (lambda: ConvTranspose2D(3, 3), (None, 3, 4, 2)),
    (lambda: ConvTranspose2D(2, 4, stride=2, padding=1), (None, 3, 3, 3)),
    (lambda: ConvTranspose2D(1, (2, 3), stride=(2, 1), padding=(1, 0), output_padding=(1, 0),
                             dilation=(1, 2)), (None, 3, 2, 5)),
    (lambda: ConvTranspose2D(4, 3, stride=2, padding="SAME", use_bias=False), (None, 2, 3, 1)),
    (lambda: ConvTranspose2D(2, 2, stride=3, padding="VALID"), (None, 2, 2, 2)),
]


@pytest.mark.parametrize("make, in_shape", TABLE)
def test_check_layer(make, in_shape):
    check_layer(make(), in_shape, batch=2)


@pytest.mark.parametrize("make, in_shape", TABLE[1:3])
def test_check_vjp_float64(make, in_shape):
    layer = make()
    x = np.random.default_rng(3).standard_normal((2, *in_shape[1:]))
    check_vjp(layer, float64_params(layer, x), x)


def test_float32_kept_and_pullback_without_dx(key):
    layer = ConvTranspose2D(3, 3, stride=2, padding=1, output_padding=1)
    _, params = layer.init(key, (None, 3, 3, 2))
    x = np.random.default_rng(0).standard_normal((2, 3, 3, 2)).astype(np.float32)
    y, pullback = layer.vjp(params, x)
    assert y.dtype == np.float32 and y.shape == (2, 6, 6, 3) and y.flags.c_contiguous
    dparams, dx = pullback(np.ones(y.shape))  # a float64 cotangent is taken as float32
    assert dx.dtype == np.float32 and dparams["w"].dtype == dparams["b"].dtype == np.float32
    dparams2, none = pullback(np.ones(y.shape), need_dx=False)
    assert none is None and all(np.array_equal(dparams[k], dparams2[k]) for k in dparams)
    # float64 input, float32 params: a float64 output and dx, float32 param gradients
    y64, pullback64 = layer.vjp(params, x.astype(np.float64))
    dparams64, dx64 = pullback64(np.ones(y64.shape))
    assert y64.dtype == dx64.dtype == np.float64 and dparams64["w"].dtype == np.float32
    assert layer.apply(params, x.astype(np.int32)).dtype == np.float32


def test_default_init_is_torchs_bound(key):
    """torch computes fan_in on its weight (C, out, kh, kw) as out·kh·kw; not Conv2D's
    C·kh·kw, which the layout (kh, kw, out, C) would give read the other way."""
    c, out, k = 64, 4, 3
    _, params = ConvTranspose2D(out, k, b_init=None).init(key, (None, 3, 3, c))
    bound = 1 / math.sqrt(out * k * k)
    assert params["w"].shape == (k, k, out, c)
    w = np.abs(params["w"])
    assert w.max() <= bound and w.max() > 0.99 * bound  # 2304 draws: within 1% of the bound
    b = np.abs(ConvTranspose2D(400, 1).init(key, (None, 1, 1, 2))[1]["b"])
    assert b.max() <= 1 / math.sqrt(400) and b.max() > 0.97 / math.sqrt(400)


# ---------------------------------------------------------------------------- bad inputs

def test_wrong_rank_and_channels(key):
    layer = ConvTranspose2D(4, 3, stride=2)
    name = r"ConvTranspose2D\(4, 3, stride=2\)"
    with pytest.raises(ValueError, match=name + r".*\(N, H, W, C\) of rank 4.*\(None, 5\)"):
        layer.init(key, (None, 5))
    with pytest.raises(ValueError, match=name + r".*channel.*\(None, 5, 5, None\)"):
        layer.init(key, (None, 5, 5, None))
    _, params = layer.init(key, (None, 5, 5, 3))
    with pytest.raises(ValueError, match=name + r".*expected input \(N, H, W, 3\).*\(2, 5, 5\)"):
        layer.apply(params, np.ones((2, 5, 5), np.float32))
    with pytest.raises(ValueError, match=r"Sequential\[0\] " + name + r".*\(N, H, W, 3\).*"
                                         r"\(2, 5, 5, 2\)"):
        Sequential(layer).apply([params], np.ones((2, 5, 5, 2), np.float32))
    with pytest.raises(ValueError, match=name + r".*params\['w'\].*\(3, 3, 4, in\).*"
                                         r"\(3, 3, 3, 4\)"):
        layer.apply({**params, "w": params["w"].transpose(0, 1, 3, 2)}, np.ones((1, 5, 5, 4)))
    _, pullback = layer.vjp(params, np.ones((1, 5, 5, 3), np.float32))
    with pytest.raises(ValueError, match=name + r".*dy of shape \(1, 11, 11, 4\).*\(1, 11, 11\)"):
        pullback(np.ones((1, 11, 11)))


def test_output_padding_and_size_refused_as_torch(key):
    with pytest.raises(ValueError, match=r"ConvTranspose2D\(2, 3, stride=2, output_padding=2\).*"
                                         r"smaller than the stride or the dilation.*2 on the "
                                         r"height axis with stride 2 and dilation 1"):
        ConvTranspose2D(2, 3, stride=2, output_padding=2)
    with pytest.raises(ValueError, match=r"output_padding.*width axis with stride 1 and "
                                         r"dilation 1"):
        ConvTranspose2D(2, 3, stride=(2, 1), output_padding=(1, 1))
    ConvTranspose2D(2, 3, dilation=2, output_padding=1)  # < dilation: torch takes it
    with pytest.raises(ValueError, match=r"output_padding needs an int padding.*'SAME'"):
        ConvTranspose2D(2, 3, stride=2, padding="SAME", output_padding=1)
    # padding 3 crops 6 rows from (H - 1)·1 + 3: H >= 5 leaves one
    layer = ConvTranspose2D(2, 3, padding=3)
    with pytest.raises(ValueError, match=r"ConvTranspose2D\(2, 3, padding=3\).*"
                                         r"\(N, >=5, >=5, C\).*\(None, 4, 6, 1\)"):
        layer.init(key, (None, 4, 6, 1))
    _, params = layer.init(key, (None, 5, 5, 1))
    with pytest.raises(ValueError, match=r"\(N, >=5, >=5, C\).*\(1, 5, 2, 1\)"):
        layer.apply(params, np.ones((1, 5, 2, 1)))
    with pytest.raises(ValueError, match=r"ConvTranspose2D\(2, 1\).*\(N, >=1, >=1, C\)"):
        ConvTranspose2D(2, 1).init(key, (None, 0, 3, 1))


@pytest.mark.parametrize("kwargs, error, words", [
    ({"padding": "FULL"}, ValueError, r"padding must be 'SAME', 'VALID', an int"),
    ({"padding": ((1, 0), (0, 1))}, TypeError, r"padding must be .*crops the same on both"),
    ({"padding": -1}, ValueError, r"padding must be an int >= 0"),
    ({"padding": 1.5}, TypeError, r"padding must be an int >= 0 or a pair"),
    ({"output_padding": (0, -1)}, ValueError, r"output_padding must be an int >= 0"),
    ({"stride": 0}, ValueError, r"stride must be a positive int"),
    ({"kernel": (3, 2, 1)}, TypeError, r"kernel must be a positive int or 2"),
    ({"out": 0}, ValueError, r"out must be >= 1"),
    ({"use_bias": 1}, TypeError, r"use_bias must be True or False"),
])
def test_bad_constructor_arguments(kwargs, error, words):
    with pytest.raises(error, match=r"ConvTranspose2D\(.*\): " + words):
        ConvTranspose2D(**{"out": 2, "kernel": 3, **kwargs})
