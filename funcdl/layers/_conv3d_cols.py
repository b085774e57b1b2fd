"""Conv3D with ``groups = 1`` as one im2col product (conv3d.py's choice up to a buffer size),
from the 2-D window plumbing of ``_im2col``: the input is padded in H and W once (``pad``) as
a batch of ``N·D`` images, whose 2-D windows (``windows``, a strided view ``(N·D, OH, OW,
kh, kw, C)``) are viewed as ``(N, D, OH, OW, kh, kw, C)``; for each depth offset ``a`` the
depths its outputs read are copied into that offset's block of the columns, so that
``cols (N·OD·OH·OW, kd·kh·kw·C)`` is in the kernel's (kd, kh, kw, C) order and the forward
is one product with the kernel ``(kd·kh·kw·C, out)``. A depth offset's block is 0 where
its depth lies in the padding. The pullback: ``dw = colsᵀ dy`` (one product; per example
one batched product); ``dx`` by the 2-D ``fold`` per depth offset (kh·kw products ``dy
w[a,i,j]ᵀ`` added into a padded plane buffer of that offset's depth slice), cropped and
added into ``dx`` at the slice's depths: kd·kh·kw Python steps, each over the whole batch.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from funcdl._blas import product
from funcdl.layers._im2col import crop, fold, pad, windows
from funcdl.layers._windows import Window
from funcdl.layers.base import Array

__all__ = ["columns", "dx_fold"]

Taps = list[tuple[int, int, int, slice]]


def columns(x: Array, win: Window, pads: Any, sizes: tuple[int, int, int], kd: int,
            taps: Taps) -> Array:
    """``cols (N·OD·OH·OW, kd·kh·kw·C)`` of ``x (N, D, H, W, C)``: row ``(n, o, p, q)`` holds
    ``xp[n, o·sd + a·dd, p·sh + i·dh, q·sw + j·dw, :]`` at column block ``(a, i, j)`` (0 in
    the padding); ``win`` the plane's window, ``pads`` the 3-D pads, ``taps`` the depth
    offsets reading real input (``_volume.depth_taps``)."""
    n, d, h, w, c = x.shape
    od, oh, ow = sizes
    kh, kw = win.size
    xp = pad(x.reshape(n * d, h, w, c), pads[1:])
    view = windows(xp, win, oh, ow).reshape(n, d, oh, ow, kh, kw, c)  # a view still
    cols = np.empty((n, od, oh, ow, kd, kh, kw, c), x.dtype)
    for a, o0, o1, sl in taps:  # zeros only where the depth is padding
        cols[:, o0:o1, :, :, a] = view[:, sl]
        cols[:, :o0, :, :, a] = 0
        cols[:, o1:, :, :, a] = 0
    for a in set(range(kd)) - {tap[0] for tap in taps}:  # offsets reading padding only
        cols[:, :, :, :, a] = 0
    return cols.reshape(n * od * oh * ow, kd * kh * kw * c)


def dx_fold(dy: Array, w: Array, win: Window, pads: Any, x_shape: tuple[int, ...],
            taps: Taps) -> Array:
    """``dx (N, D, H, W, C)`` for ``dy (N, OD, OH, OW, out)`` and the kernel ``w (kd, kh, kw,
    C, out)``: per depth offset ``a``, the 2-D fold of ``dy[:, o0:o1] w[a, i, j]ᵀ`` over
    ``(i, j)`` into the padded planes of its depth slice, added into ``dx`` there."""
    n, _, h, wd, c = x_shape
    oh, ow, out = dy.shape[2:]
    (t, b), (l, r) = pads[1:]
    kd, kh, kw = w.shape[:3]
    wk = w.reshape(kd, kh * kw, c, out).transpose(0, 1, 3, 2)  # (out, C) per offset, views
    dtype = np.result_type(dy, w)
    dx = np.zeros(x_shape, dtype)
    for a, o0, o1, sl in taps:
        m = n * (o1 - o0)
        dya = dy[:, o0:o1].reshape(m * oh * ow, out)  # a copy unless every output
        buf = np.zeros((m, h + t + b, wd + l + r, c), dtype)

        def part(k: int, i: int, j: int, a: int = a, dya: Array = dya, m: int = m) -> Array:
            del i, j
            out_k: Array = product(np.matmul, dya, wk[a, k]).reshape(m, oh, ow, c)
            return out_k

        fold(buf, win, oh, ow, part)
        view = dx[:, sl]
        np.add(view, crop(buf, pads[1:], h, wd).reshape(view.shape), out=view)
    return dx
