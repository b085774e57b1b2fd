"""``groups`` in ConvTranspose2D and ConvTranspose1D (PyTorch's): vjps against finite
differences, forward and pullback against a nested-loop NumPy reference and against
``groups`` ungrouped layers on channel slices (float64), torch's default init bound,
float32 kept, names, and bad inputs. The torch cross-check is in
test_conv_transpose_groups_torch.py."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from funcdl import random, tree
from funcdl.layers import Sequential, _grouped
from funcdl.layers.conv_transpose import ConvTranspose1D, ConvTranspose2D
from funcdl.testing import check_layer, check_vjp

TOL = {"rtol": 1e-12, "atol": 1e-12}

# ---------------------------------------------------------------------------- vjps

TABLE = [  # (constructor, in_shape): groups 2, depthwise, multipliers, strides, paddings
    (lambda: ConvTranspose2D(4, 3, groups=2), (None, 3, 4, 6)),
    (lambda: ConvTranspose2D(4, 3, stride=2, padding=1, groups=4), (None, 3, 3, 4)),  # depthwise
    (lambda: ConvTranspose2D(6, (2, 3), stride=(2, 1), padding=(1, 0), output_padding=(1, 0),
                             dilation=(1, 2), groups=3), (None, 3, 2, 3)),  # Cg = 1, Og = 2
    (lambda: ConvTranspose2D(2, 3, stride=2, padding="SAME", use_bias=False, groups=2),
     (None, 2, 3, 4)),  # Cg = 2, Og = 1
    (lambda: ConvTranspose2D(4, 2, stride=3, padding="VALID", groups=2), (None, 2, 2, 2)),
    (lambda: ConvTranspose1D(4, 3, groups=2), (None, 5, 6)),
    (lambda: ConvTranspose1D(3, 4, stride=2, padding=1, output_padding=1, dilation=2,
                             groups=3), (None, 4, 3)),  # depthwise
    (lambda: Sequential(ConvTranspose2D(6, 3, stride=2, groups=3), ConvTranspose2D(2, 1,
                                                                                   groups=2)),
     (None, 2, 2, 3)),
]
IDS = [f"{i}-{make().name}" for i, (make, _) in enumerate(TABLE)]


@pytest.mark.parametrize(("make", "in_shape"), TABLE, ids=IDS)
def test_check_layer(make, in_shape):
    check_layer(make(), in_shape, batch=2)


@pytest.mark.parametrize("block", [None, 40], ids=["whole", "pieces"])
@pytest.mark.parametrize(("make", "in_shape"), [TABLE[0], TABLE[2], TABLE[6]])
def test_check_vjp_float64(make, in_shape, block, monkeypatch):
    if block is not None:  # the depthwise steps (TABLE[6]) in pieces of one output row
        monkeypatch.setattr(_grouped, "_BLOCK", block)
    layer = make()
    x = np.random.default_rng(3).standard_normal((2, *in_shape[1:]))
    _, params = layer.init(random.key(1), in_shape)
    check_vjp(layer, tree.astype(params, np.float64), x)


# ---------------------------------------------------------------------------- references

def naive(x, w, b, stride, padding, output_padding, dilation, groups):
    """y and its pullback (dw, db, dx) for an int (torch) padding, by loops over input
    pixels, kernel offsets and groups: pixel (h, v) under offset (i, j) scatters
    ``x_g w[i, j, :, g]ᵀ`` to output row ``h·sh + i·dh - ph``, column ``v·sw + j·dw - pw``."""
    (sh, sw), (ph, pw), (oph, opw), (dh, dw_) = stride, padding, output_padding, dilation
    n, hh, ww, c = x.shape
    kh, kw, og, _ = w.shape
    cg = c // groups
    oh = (hh - 1) * sh - 2 * ph + dh * (kh - 1) + oph + 1
    ow = (ww - 1) * sw - 2 * pw + dw_ * (kw - 1) + opw + 1
    taps = []
    for h, v, i, j, g in itertools.product(range(hh), range(ww), range(kh), range(kw),
                                           range(groups)):
        r, s = h * sh + i * dh - ph, v * sw + j * dw_ - pw
        if 0 <= r < oh and 0 <= s < ow:
            taps.append((h, v, i, j, r, s, slice(g * cg, (g + 1) * cg),
                         slice(g * og, (g + 1) * og)))
    y = np.zeros((n, oh, ow, og * groups)) + b
    for h, v, i, j, r, s, ci, oi in taps:
        y[:, r, s, oi] += x[:, h, v, ci] @ w[i, j, :, ci].T

    def pullback(dy):
        dx, dwt = np.zeros_like(x), np.zeros_like(w)
        for h, v, i, j, r, s, ci, oi in taps:
            dx[:, h, v, ci] += dy[:, r, s, oi] @ w[i, j, :, ci]
            dwt[i, j, :, ci] += dy[:, r, s, oi].T @ x[:, h, v, ci]
        return dwt, dy.sum(axis=(0, 1, 2)), dx

    return y, pullback


def run(layer, x, seed=3):
    """float64 params of ``layer`` at ``x``, y, a random dy, and (dparams, dx)."""
    _, params = layer.init(random.key(0), (None, *x.shape[1:]))
    params = tree.astype(params, np.float64)
    y, pullback = layer.vjp(params, x)
    dy = random.normal(random.key(seed), y.shape, np.float64)
    return params, y, dy, pullback(dy)


GRID = [  # kernel, stride, padding, output_padding, dilation, C, out, groups
    ((3, 3), (1, 1), (0, 0), (0, 0), (1, 1), 4, 6, 2),
    ((3, 2), (2, 1), (1, 0), (1, 0), (1, 1), 6, 3, 3),
    ((2, 3), (2, 2), (0, 1), (1, 1), (1, 2), 4, 4, 4),   # depthwise
    ((3, 3), (3, 1), (2, 1), (2, 0), (1, 2), 2, 6, 2),   # Cg = 1, Og = 3
    ((1, 1), (1, 1), (0, 0), (0, 0), (1, 1), 6, 4, 2),
]


@pytest.mark.parametrize("block", [None, 1, 300], ids=["whole", "rows", "pieces"])
@pytest.mark.parametrize(("kernel", "stride", "padding", "op", "dilation", "c", "out", "groups"),
                         GRID)
def test_matches_naive_loops(kernel, stride, padding, op, dilation, c, out, groups, block,
                             monkeypatch):
    # block: depthwise's steps in pieces (_grouped._blocks) of one row, or of 300 bytes:
    # the three steps piece the float64 (2, 3, 4, 4) input's shape, rows of 128 bytes, so
    # two rows then one per example
    if block is not None:
        monkeypatch.setattr(_grouped, "_BLOCK", block)
    layer = ConvTranspose2D(out, kernel, stride=stride, padding=padding, output_padding=op,
                            dilation=dilation, groups=groups)
    x = np.random.default_rng(1).standard_normal((2, 3, 4, c))
    params, y, dy, (dparams, dx) = run(layer, x)
    assert params["w"].shape == (*kernel, out // groups, c)
    y_ref, pullback = naive(x, params["w"], params["b"], stride, padding, op, dilation, groups)
    np.testing.assert_allclose(y, y_ref, **TOL)
    dw, db, dx_ref = pullback(dy)
    np.testing.assert_allclose(dparams["w"], dw, **TOL)
    np.testing.assert_allclose(dparams["b"], db, **TOL)
    np.testing.assert_allclose(dx, dx_ref, **TOL)


def test_1d_matches_naive_loops():
    layer = ConvTranspose1D(4, 3, stride=2, padding=1, output_padding=1, dilation=2, groups=2)
    x = np.random.default_rng(2).standard_normal((2, 5, 6))
    params, y, dy, (dparams, dx) = run(layer, x)
    assert params["w"].shape == (3, 2, 6) and y.shape == (2, 12, 4)
    y_ref, pullback = naive(x[:, None], params["w"][None], params["b"], (1, 2), (0, 1),
                            (0, 1), (1, 2), 2)
    np.testing.assert_allclose(y, y_ref[:, 0], **TOL)
    dw, db, dx_ref = pullback(dy[:, None])
    np.testing.assert_allclose(dparams["w"], dw[0], **TOL)
    np.testing.assert_allclose(dparams["b"], db, **TOL)
    np.testing.assert_allclose(dx, dx_ref[:, 0], **TOL)


SLICED = [  # constructor kwargs (SAME and VALID too), C, out, groups
    ({"kernel": 3, "stride": 2, "padding": "SAME"}, 4, 6, 2),
    ({"kernel": (2, 3), "stride": (3, 1), "padding": "VALID", "dilation": (2, 1)}, 3, 3, 3),
    ({"kernel": 3, "stride": 2, "padding": 1, "output_padding": 1}, 6, 2, 2),
]


@pytest.mark.parametrize(("kw", "c", "out", "groups"), SLICED)
def test_matches_ungrouped_layers_on_channel_slices(kw, c, out, groups):
    """Group g is an ungrouped layer from input channels g·Cg.. to outputs g·Og..; its
    kernel is the grouped kernel's channel slice, (kh, kw, Og, Cg)."""
    x = np.random.default_rng(4).standard_normal((2, 3, 4, c))
    params, y, dy, (dparams, dx) = run(ConvTranspose2D(out, groups=groups, **kw), x)
    cg, og = c // groups, out // groups
    for g in range(groups):
        ci, oi = slice(g * cg, (g + 1) * cg), slice(g * og, (g + 1) * og)
        p = {"w": params["w"][..., ci], "b": params["b"][oi]}
        y_g, pullback = ConvTranspose2D(og, **kw).vjp(p, np.ascontiguousarray(x[..., ci]))
        grads, dx_g = pullback(np.ascontiguousarray(dy[..., oi]))
        np.testing.assert_allclose(y[..., oi], y_g, **TOL)
        np.testing.assert_allclose(dparams["w"][..., ci], grads["w"], **TOL)
        np.testing.assert_allclose(dparams["b"][oi], grads["b"], **TOL)
        np.testing.assert_allclose(dx[..., ci], dx_g, **TOL)


def test_groups_one_is_the_ungrouped_layer(key):
    layer, plain = ConvTranspose2D(3, 3, stride=2, groups=1), ConvTranspose2D(3, 3, stride=2)
    assert layer.name == plain.name == "ConvTranspose2D(3, 3, stride=2)"
    _, params = layer.init(key, (None, 3, 3, 2))
    x = np.random.default_rng(0).standard_normal((2, 3, 3, 2)).astype(np.float32)
    assert np.array_equal(layer.apply(params, x), plain.apply(params, x))


# ---------------------------------------------------------------------------- dtypes, init

@pytest.mark.parametrize("make", [lambda: ConvTranspose2D(4, 3, stride=2, padding=1,
                                                          output_padding=1, groups=2),
                                  lambda: ConvTranspose1D(4, 3, stride=2, groups=4)])
def test_float32_kept_and_pullback_without_dx(make, key):
    layer = make()
    shape = (2, 3, 3, 4) if "2D" in layer.name else (2, 5, 4)
    _, params = layer.init(key, (None, *shape[1:]))
    x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    y, pullback = layer.vjp(params, x)
    assert y.dtype == np.float32 and y.flags.c_contiguous and y.shape[-1] == 4
    dparams, dx = pullback(np.ones(y.shape))  # a float64 cotangent is taken as float32
    assert dx.dtype == np.float32 and dx.shape == shape
    assert dparams["w"].dtype == dparams["b"].dtype == np.float32
    dparams2, none = pullback(np.ones(y.shape), need_dx=False)
    assert none is None and all(np.array_equal(dparams[k], dparams2[k]) for k in dparams)
    assert np.array_equal(layer.apply(params, x), y)


@pytest.mark.parametrize("use_bias", [True, False])
@pytest.mark.parametrize("groups", [1, 2, 4])
def test_output_is_its_own_contiguous_array(groups, use_bias, key):
    """A cropped output (padding 1) comes back as a contiguous array of its own, not a view
    into the uncropped result, grouped or not, with or without bias."""
    layer = ConvTranspose2D(4, 3, stride=2, padding=1, use_bias=use_bias, groups=groups)
    _, params = layer.init(key, (None, 3, 3, 4))
    x = np.random.default_rng(0).standard_normal((2, 3, 3, 4))
    for y in (layer.apply(params, x), layer.vjp(params, x)[0]):
        root = y
        while root.base is not None:  # a reshape's base is of y's size, a crop's larger
            root = root.base
        assert y.shape == (2, 5, 5, 4) and y.flags.c_contiguous and root.nbytes == y.nbytes


def test_default_init_is_torchs_bound(key):
    """torch's fan_in on its weight (C, out/groups, kh, kw): out/groups·kh·kw."""
    c, out, k, groups = 64, 8, 3, 4
    _, params = ConvTranspose2D(out, k, groups=groups).init(key, (None, 3, 3, c))
    bound = 1 / math.sqrt(out // groups * k * k)
    assert params["w"].shape == (k, k, out // groups, c)
    w = np.abs(params["w"])
    assert w.max() <= bound and w.max() > 0.99 * bound
    b = np.abs(ConvTranspose2D(400, 1, groups=4).init(key, (None, 1, 1, 4))[1]["b"])
    assert b.max() <= 1 / math.sqrt(100) and b.max() > 0.9 / math.sqrt(100)


# ---------------------------------------------------------------------------- bad inputs

@pytest.mark.parametrize(("ctor", "kwargs", "error", "words"), [
    (ConvTranspose2D, {"groups": 0}, ValueError, r"groups.*>= 1.*0"),
    (ConvTranspose2D, {"groups": -2}, ValueError, r"groups.*>= 1"),
    (ConvTranspose2D, {"groups": 1.5}, TypeError, r"groups.*int.*1\.5"),
    (ConvTranspose2D, {"groups": "2"}, TypeError, r"groups.*int"),
    (ConvTranspose2D, {"groups": 4}, ValueError, r"out \(6\) must be divisible by groups "
                                                 r"\(4\).*multiple of 4 or change groups"),
    (ConvTranspose1D, {"groups": 4}, ValueError, r"groups=4\): out \(6\) must be divisible"),
    (ConvTranspose1D, {"groups": True}, TypeError, r"groups"),
])
def test_bad_groups(ctor, kwargs, error, words):
    with pytest.raises(error, match=ctor.__name__ + r"\(6, 3, .*" + words):
        ctor(6, 3, **kwargs)


def test_channels_not_divisible_and_wrong_params(key):
    layer = ConvTranspose2D(4, 3, groups=2)
    name = r"ConvTranspose2D\(4, 3, groups=2\)"
    with pytest.raises(ValueError, match=name + r".*input's 3 channels must be divisible by "
                                         r"groups=2.*multiple of 2 channels or change groups"):
        layer.init(key, (None, 5, 5, 3))
    with pytest.raises(ValueError, match=r"ConvTranspose1D\(4, 3, groups=4\).*5 channels"):
        ConvTranspose1D(4, 3, groups=4).init(key, (None, 5, 5))
    _, params = layer.init(key, (None, 5, 5, 6))
    with pytest.raises(ValueError, match=name + r".*expected input \(N, H, W, 6\).*"
                                         r"\(1, 5, 5, 4\)"):
        layer.apply(params, np.ones((1, 5, 5, 4)))
    # an ungrouped layer's kernel (3, 3, 4, 6): the grouped one is (3, 3, 2, 6)
    with pytest.raises(ValueError, match=name + r".*params\['w'\].*\(3, 3, 2, in\).*out // "
                                         r"groups = 4 // 2.*\(3, 3, 4, 6\)"):
        layer.apply({**params, "w": np.ones((3, 3, 4, 6))}, np.ones((1, 5, 5, 6)))
    with pytest.raises(ValueError, match=name + r".*params\['w'\].*multiple of groups.*"
                                         r"\(3, 3, 2, 5\)"):
        layer.apply({**params, "w": np.ones((3, 3, 2, 5))}, np.ones((1, 5, 5, 5)))


@pytest.mark.parametrize("groups", [2, 4])
def test_empty_batch(groups, key):
    """N = 0: empty outputs and dx, zero dw and db (the group-major reshapes name every size)."""
    layer = ConvTranspose2D(4, 3, stride=2, padding=1, groups=groups)
    _, params = layer.init(key, (None, 3, 3, 4))
    y, pullback = layer.vjp(params, np.ones((0, 3, 3, 4), np.float32))
    dparams, dx = pullback(np.ones(y.shape, np.float32))
    assert y.shape == (0, 5, 5, 4) and dx.shape == (0, 3, 3, 4)
    assert not dparams["w"].any() and not dparams["b"].any()
    assert dparams["w"].shape == params["w"].shape
