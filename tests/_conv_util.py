"""The references of the grouped-convolution tests (test_conv_groups.py,
test_conv_depthwise.py): a nested-loop grouped convolution, groups ungrouped Conv2Ds on
channel slices, and a float64 vjp run."""

from __future__ import annotations

import itertools

import numpy as np

from funcdl import random, tree
from funcdl.layers.conv import Conv2D


def naive_grouped(x, w, b, stride, pads, dilation, groups):
    """y and its pullback (dw, db, dx) by loops over output pixels, taps and output
    channels, each reading the input channels of its group: ``o // (out // groups)``."""
    (sh, sw), (dh, dw_) = stride, dilation
    kh, kw, cg, out = w.shape
    og = out // groups
    xp = np.pad(x, ((0, 0), pads[0], pads[1], (0, 0)))
    oh = (xp.shape[1] - (kh - 1) * dh - 1) // sh + 1
    ow = (xp.shape[2] - (kw - 1) * dw_ - 1) // sw + 1
    taps = list(itertools.product(range(oh), range(ow), range(kh), range(kw), range(out)))
    y = np.zeros((x.shape[0], oh, ow, out)) + b
    for p, q, i, j, o in taps:
        c0 = (o // og) * cg
        y[:, p, q, o] += xp[:, p * sh + i * dh, q * sw + j * dw_, c0:c0 + cg] @ w[i, j, :, o]

    def pullback(dy):
        dxp, dwt = np.zeros_like(xp), np.zeros_like(w)
        for p, q, i, j, o in taps:
            c0 = (o // og) * cg
            r, s = p * sh + i * dh, q * sw + j * dw_
            dxp[:, r, s, c0:c0 + cg] += dy[:, p, q, o, None] * w[i, j, :, o]
            dwt[i, j, :, o] += dy[:, p, q, o] @ xp[:, r, s, c0:c0 + cg]
        (t, _), (l, _) = pads
        return dwt, dy.sum(axis=(0, 1, 2)), dxp[:, t:t + x.shape[1], l:l + x.shape[2]]

    return y, pullback


def sliced(layer_kw, out, groups, params, x, dy):
    """``groups`` ungrouped Conv2Ds, group g on input channels and outputs of its slice:
    y, dw, db, dx concatenated over the channel axis."""
    cg, og = x.shape[-1] // groups, out // groups
    ys, dws, dbs, dxs = [], [], [], []
    for g in range(groups):
        i, o = slice(g * cg, (g + 1) * cg), slice(g * og, (g + 1) * og)
        p = {"w": params["w"][..., o], "b": params["b"][o]}
        y, pullback = Conv2D(og, **layer_kw).vjp(p, np.ascontiguousarray(x[..., i]))
        grads, dx = pullback(np.ascontiguousarray(dy[..., o]))
        ys.append(y), dws.append(grads["w"]), dbs.append(grads["b"]), dxs.append(dx)
    return tuple(np.concatenate(a, axis=-1) for a in (ys, dws, dbs, dxs))


def run(layer, x, seed=3):
    """float64 params of ``layer`` at ``x``, y, a random dy, and (dparams, dx)."""
    _, params = layer.init(random.key(0), (None, *x.shape[1:]))
    params = tree.astype(params, np.float64)
    y, pullback = layer.vjp(params, x)
    dy = random.normal(random.key(seed), y.shape, np.float64)
    return params, y, dy, pullback(dy)


def close(got, expected):
    np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-12)
