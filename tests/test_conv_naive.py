"""Conv1D, Conv2D, MaxPool2D and AvgPool2D against naive loops over output pixels and taps:
forward and pullback in float64 over strides, every padding form, dilation and channel counts,
and over random geometries (hypothesis)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from _torch_util import same_pads
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from funcdl import random, tree
from funcdl.layers.conv import Conv1D, Conv2D
from funcdl.layers.pool import AvgPool2D, MaxPool2D

# ---------------------------------------------------------------------------- naive references

def naive_conv(x, w, b, stride, pads, dilation):
    """y, and the pullback (dw, db, dx) of y, by loops over output pixels and taps."""
    (sh, sw), (dh, dw_) = stride, dilation
    kh, kw, _, o = w.shape
    xp = np.pad(x, ((0, 0), pads[0], pads[1], (0, 0)))
    oh = (xp.shape[1] - (kh - 1) * dh - 1) // sh + 1
    ow = (xp.shape[2] - (kw - 1) * dw_ - 1) // sw + 1
    taps = list(itertools.product(range(oh), range(ow), range(kh), range(kw)))
    y = np.zeros((x.shape[0], oh, ow, o)) + b
    for p, q, i, j in taps:
        y[:, p, q] += xp[:, p * sh + i * dh, q * sw + j * dw_] @ w[i, j]

    def pullback(dy):
        dxp, dwt = np.zeros_like(xp), np.zeros_like(w)
        for p, q, i, j in taps:
            dxp[:, p * sh + i * dh, q * sw + j * dw_] += dy[:, p, q] @ w[i, j].T
            dwt[i, j] += xp[:, p * sh + i * dh, q * sw + j * dw_].T @ dy[:, p, q]
        (t, _), (l, _) = pads
        return dwt, dy.sum(axis=(0, 1, 2)), dxp[:, t:t + x.shape[1], l:l + x.shape[2]]

    return y, pullback


def naive_pool(x, window, stride, pads, kind, count_include_pad=True):
    """Max (first arg-max wins) or average pooling and its pullback, by loops over windows."""
    (kh, kw), (sh, sw) = window, stride
    fill = -np.inf if kind == "max" else 0.0
    xp = np.pad(x, ((0, 0), pads[0], pads[1], (0, 0)), constant_values=fill)
    real = np.pad(np.ones(x.shape[1:3]), pads)
    oh, ow = (xp.shape[1] - kh) // sh + 1, (xp.shape[2] - kw) // sw + 1
    n, c = x.shape[0], x.shape[3]
    y, grads = np.zeros((n, oh, ow, c)), []
    for p, q in itertools.product(range(oh), range(ow)):
        win = xp[:, p * sh:p * sh + kh, q * sw:q * sw + kw].reshape(n, kh * kw, c)
        if kind == "max":
            arg = win.argmax(axis=1)  # the first maximum in row-major order
            y[:, p, q] = win.max(axis=1)
            g = (np.arange(kh * kw)[None, :, None] == arg[:, None, :]).astype(float)
        else:
            m = kh * kw if count_include_pad else real[p * sh:p * sh + kh, q * sw:q * sw + kw].sum()
            y[:, p, q] = win.sum(axis=1) / m
            g = np.full(win.shape, 1.0 / m)
        grads.append((p, q, g.reshape(n, kh, kw, c)))

    def pullback(dy):
        dxp = np.zeros_like(xp)
        for p, q, g in grads:
            dxp[:, p * sh:p * sh + kh, q * sw:q * sw + kw] += g * dy[:, p, q, None, None]
        (t, _), (l, _) = pads
        return dxp[:, t:t + x.shape[1], l:l + x.shape[2]]

    return y, pullback


def run_pullback(layer, params, x, seed=3):
    y, pullback = layer.vjp(params, x)
    dy = random.normal(random.key(seed), y.shape, np.float64)
    return y, dy, pullback(dy)


def close(got, expected):
    np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-12)


def compare_conv(layer, x, stride, pads, dilation, one_d=False):
    """Forward and pullback against ``naive_conv``; a Conv1D as a 1 x k Conv2D."""
    out_shape, params = layer.init(random.key(0), (None, *x.shape[1:]))
    params = tree.astype(params, np.float64)
    y, dy, (grads, dx) = run_pullback(layer, params, x)
    lift = (lambda a: a[:, None]) if one_d else (lambda a: a)
    w = params["w"][None] if one_d else params["w"]
    y_ref, pullback_ref = naive_conv(lift(x), w, params["b"], stride, pads, dilation)
    assert y.shape[1:] == out_shape[1:]
    close(lift(y), y_ref)
    dw, db, dx_ref = pullback_ref(lift(dy))
    close(grads["w"][None] if one_d else grads["w"], dw)
    close(grads["b"], db)
    close(lift(dx), dx_ref)


CONV_CASES = [  # kernel, stride, padding, dilation, explicit pads for the reference
    ((3, 3), (1, 1), "SAME", (1, 1), None),
    ((3, 3), (2, 2), "SAME", (1, 1), None),
    ((2, 3), (2, 1), "VALID", (1, 1), ((0, 0), (0, 0))),
    ((3, 3), (1, 2), 2, (2, 1), ((2, 2), (2, 2))),
    ((1, 1), (2, 2), (1, 0), (1, 1), ((1, 1), (0, 0))),
    ((3, 2), (1, 1), ((0, 2), (1, 0)), (1, 2), ((0, 2), (1, 0))),
    ((2, 2), (3, 3), "SAME", (2, 2), None),
]


@pytest.mark.parametrize(("kernel", "stride", "padding", "dilation", "pads"), CONV_CASES)
@pytest.mark.parametrize("channels", [1, 3, 6])
def test_conv2d_matches_naive_loops(kernel, stride, padding, dilation, pads, channels,
                                    conv_path):
    if pads is None:
        pads = tuple(same_pads(n, k, s, d) for n, k, s, d in zip((7, 6), kernel, stride, dilation))
    x = random.normal(random.key(1), (2, 7, 6, channels), np.float64)
    layer = Conv2D(4, kernel, stride=stride, padding=padding, dilation=dilation)
    compare_conv(layer, x, stride, pads, dilation)


@pytest.mark.parametrize(("kernel", "stride", "padding", "dilation", "pads"), [
    (3, 1, "SAME", 1, (1, 1)), (3, 2, "SAME", 1, (1, 1)), (2, 2, "SAME", 1, (0, 1)),
    (3, 2, "VALID", 2, (0, 0)), (2, 1, 3, 1, (3, 3)), (3, 3, (0, 2), 1, (0, 2))])
def test_conv1d_matches_naive_loops(kernel, stride, padding, dilation, pads, conv_path):
    x = random.normal(random.key(1), (3, 7, 2), np.float64)
    layer = Conv1D(3, kernel, stride=stride, padding=padding, dilation=dilation)
    compare_conv(layer, x, (1, stride), ((0, 0), pads), (1, dilation), one_d=True)


@settings(max_examples=25, deadline=None)
@given(h=st.integers(1, 7), w=st.integers(1, 7), c=st.integers(1, 6), k=st.integers(1, 3),
       s=st.integers(1, 3), d=st.integers(1, 2), same=st.booleans())
def test_conv2d_random_geometry_matches_naive(h, w, c, k, s, d, same):
    assume(same or (k - 1) * d + 1 <= min(h, w))  # a VALID window that fits the input
    pads = tuple(same_pads(n, k, s, d) for n in (h, w)) if same else ((0, 0), (0, 0))
    x = random.normal(random.key(h * 100 + w), (2, h, w, c), np.float64)
    layer = Conv2D(2, k, stride=s, padding="SAME" if same else "VALID", dilation=d)
    compare_conv(layer, x, (s, s), pads, (d, d))


POOL_CASES = [  # window, stride, padding, pads for the reference
    ((2, 2), None, "VALID", ((0, 0), (0, 0))),
    ((3, 3), (2, 2), "VALID", ((0, 0), (0, 0))),
    ((3, 3), (2, 2), "SAME", None),
    ((2, 3), (1, 2), 1, ((1, 1), (1, 1))),
    ((3, 2), (2, 1), ((2, 0), (0, 1)), ((2, 0), (0, 1))),
    ((2, 2), None, "SAME", None),
]


@pytest.mark.parametrize(("window", "stride", "padding", "pads"), POOL_CASES)
@pytest.mark.parametrize(("make", "kind", "include"), [
    (MaxPool2D, "max", True),
    (AvgPool2D, "avg", None),  # the default: padding counts as zeros but for 'SAME'
    (lambda *a, **k: AvgPool2D(*a, **k, count_include_pad=True), "avg", True),
    (lambda *a, **k: AvgPool2D(*a, **k, count_include_pad=False), "avg", False)])
def test_pools_match_naive_loops(window, stride, padding, pads, make, kind, include):
    if include is None:  # as PyTorch's padding=int; as TF, Keras and JAX's stax for 'SAME'
        include = padding != "SAME"
    x = random.normal(random.key(4), (2, 7, 5, 3), np.float64)
    steps = window if stride is None else stride
    if pads is None:
        pads = tuple(same_pads(n, k, s) for n, k, s in zip((7, 5), window, steps))
    layer = make(window, stride=stride, padding=padding)
    out_shape, _ = layer.init(random.key(0), (None, 7, 5, 3))
    y, dy, (_, dx) = run_pullback(layer, (), x)
    y_ref, pullback_ref = naive_pool(x, window, steps, pads, kind, include)
    assert y.shape == y_ref.shape and y.shape[1:] == out_shape[1:]
    close(y, y_ref)
    close(dx, pullback_ref(dy))
