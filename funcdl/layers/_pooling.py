"""Window offsets of a pooling layer as whole pixels: the gather and its adjoint, NHWC.

A pool reads, for each window offset ``k = (i, j)`` (row-major), the ``(N, OH, OW, C)``
slice ``xp[:, p·sh + i, q·sw + j]`` of the padded input. A NumPy op on that strided slice
runs its inner loop over the C channels of one pixel only (16 values for C = 16), and the
per-loop overhead dominates. Here each pixel is viewed as one opaque item of C values, so
one copy moves the slice into a contiguous buffer, and every op after it (max, comparison,
sum) runs on contiguous memory (the whole-layer effect, measured by
``benchmarks/pool_norm_micro.py``, is in ``pool``'s docstring).
Padding is never materialised: the rows and columns of a slice that fall outside the image
get the fill value. The adjoint ``scatter`` adds each offset's ``(N, OH, OW, C)`` share back:
offsets whose pixels are disjoint (``i`` and ``i + sh`` overlap, ``i`` and ``i + 1`` do not)
form ``min(sh, kh)·min(sw, kw)`` classes; a class's members are summed, shifted, into one
buffer (in ascending ``k``, the order of the per-offset additions this replaced, so sums
round the same), and each class is then copied pixel by pixel into ``dx``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from funcdl.layers._windows import Pads, Window
from funcdl.layers.base import Array

__all__ = ["gather", "scatter"]


def _pixels(a: Array) -> Array:
    """``a (..., C)``, C-contiguous, viewed as ``(...)`` opaque items of C values (a view of
    ``a`` when ``a`` is C-contiguous, else of a contiguous copy)."""
    a = np.ascontiguousarray(a)
    return a.view(np.dtype((np.void, a.shape[-1] * a.dtype.itemsize)))[..., 0]


def _inside(out: int, s: int, off: int, size: int) -> tuple[int, int]:
    """``[p0, p1)``: the outputs ``p < out`` whose input index ``p·s + off`` is in
    ``[0, size)`` (an empty range as ``p0 == p1``)."""
    p0 = min(out, max(0, -(off // s)))  # ceil(-off / s)
    return p0, max(p0, min(out, (size - 1 - off) // s + 1))


def gather(out: Array, x: Array, win: Window, pads: Pads, i: int, j: int,
           fill: float) -> Array:
    """``out[n, p, q] = xp[n, p·sh + i, q·sw + j]`` for the input ``x`` padded by ``pads``
    with ``fill``; ``out`` is a C-contiguous ``(N, OH, OW, C)`` buffer. Returns ``out``."""
    (sh, sw), ((t, _), (l, _)) = win.stride, pads
    oh, ow = out.shape[1:3]
    h, w = x.shape[1:3]
    p0, p1 = _inside(oh, sh, i - t, h)
    q0, q1 = _inside(ow, sw, j - l, w)
    if (p0, p1, q0, q1) != (0, oh, 0, ow):  # windows over the padding: fill's borders
        out[:, :p0] = fill
        out[:, p1:] = fill
        out[:, p0:p1, :q0] = fill
        out[:, p0:p1, q1:] = fill
    if p1 > p0 and q1 > q0 and out.size:
        r0, c0 = p0 * sh + i - t, q0 * sw + j - l
        _pixels(out)[:, p0:p1, q0:q1] = _pixels(x)[:, r0:r0 + (p1 - p0 - 1) * sh + 1:sh,
                                                   c0:c0 + (q1 - q0 - 1) * sw + 1:sw]
    return out


def scatter(x_shape: tuple[int, ...], dtype: Any, win: Window, pads: Pads,
            share: Callable[[int], Array]) -> Array:
    """The adjoint of ``gather`` over every offset: ``dx`` of ``x_shape`` with
    ``dx[n, p·sh + i - top, q·sw + j - left] += share(k)[n, p, q]`` (``k = i·kw + j``),
    shares over the padding dropped, pixels no window reads 0."""
    (kh, kw), (sh, sw), ((t, _), (l, _)) = win.size, win.stride, pads
    n, h, w, c = x_shape
    # Every pixel is written exactly once when the offsets' classes cover the image; they
    # are all the pairs (a, b), so the pixels written are the rows of some a times the
    # columns of some b.
    dx = np.empty(x_shape, dtype)
    rows_hit, cols_hit = np.zeros(h, bool), np.zeros(w, bool)
    dxp = _pixels(dx) if dx.size else dx
    for a in range(min(sh, kh)):
        for b in range(min(sw, kw)):
            ms, ns = range((kh - 1 - a) // sh + 1), range((kw - 1 - b) // sw + 1)
            first = share(a * kw + b)
            oh, ow = first.shape[1:3]
            if len(ms) == 1 and len(ns) == 1:
                acc = first
            else:  # members (a + m·sh, b + n·sw) land m rows and n columns further on
                acc = np.zeros((n, oh + len(ms) - 1, ow + len(ns) - 1, c), dtype)
                for m in ms:
                    for nn in ns:
                        view = acc[:, m:m + oh, nn:nn + ow]
                        part = first if m == nn == 0 else share((a + m * sh) * kw + b + nn * sw)
                        np.add(view, part, out=view)
            u0, u1 = _inside(acc.shape[1], sh, a - t, h)
            v0, v1 = _inside(acc.shape[2], sw, b - l, w)
            if u1 > u0 and v1 > v0:
                rows = slice(u0 * sh + a - t, (u1 - 1) * sh + a - t + 1, sh)
                cols = slice(v0 * sw + b - l, (v1 - 1) * sw + b - l + 1, sw)
                if dx.size:
                    dxp[:, rows, cols] = _pixels(acc.astype(dtype, copy=False))[:, u0:u1,
                                                                                 v0:v1]
                rows_hit[rows], cols_hit[cols] = True, True
    # a VALID margin, or gaps between windows (stride > window)
    dx[:, ~rows_hit] = 0
    dx[:, :, ~cols_hit] = 0
    return dx
