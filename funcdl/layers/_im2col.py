"""Window plumbing on NHWC arrays, shared by the convolutions and their transposes: the
padded copy (``pad``) and its interior (``crop``), each kernel offset's slice of it
(``offsets``), the strided view of every window (``windows``) and its copy as rows
(``im2col``), the adjoint that adds per-offset parts back (``fold``), and a per-example
weight gradient from those windows (``each_dw``). Split from ``conv``."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np
from numpy.lib.stride_tricks import as_strided

from funcdl._blas import product
from funcdl.layers import _grouped
from funcdl.layers._windows import NO_PADS, Pads, Window
from funcdl.layers.base import Array

__all__ = ["crop", "each_dw", "fold", "im2col", "offsets", "pad", "windows"]

Slices = tuple[slice, slice, slice]


def pad(x: Array, pads: Pads, value: float = 0.0, repeat: int = 1) -> Array:
    """NHWC ``x`` padded with ``value`` (``x`` itself when no padding), its channels
    ``repeat`` times each in the copy when ``repeat > 1`` (``np.repeat(x, repeat, -1)``)."""
    if pads == NO_PADS and repeat == 1:
        return x
    (t, b), (l, r) = pads
    n, h, w, c = x.shape
    xp = np.empty((n, h + t + b, w + l + r, c * repeat), x.dtype)
    xp[:, :t] = value  # borders only: the interior is written once, below
    xp[:, t + h:] = value
    xp[:, t:t + h, :l] = value
    xp[:, t:t + h, l + w:] = value
    _grouped.repeat_into(xp[:, t:t + h, l:l + w], x, repeat)
    return xp


def crop(xp: Array, pads: Pads, h: int, w: int) -> Array:
    """The inverse of ``pad``: the ``h x w`` interior (a view)."""
    (t, _), (l, _) = pads
    return xp[:, t:t + h, l:l + w]


def offsets(win: Window, oh: int, ow: int) -> Iterator[tuple[int, int, Slices]]:
    """For each kernel offset ``(i, j)`` in row-major order, the index of the
    ``(N, OH, OW, C)`` slice of the padded input that offset reads in every window."""
    (kh, kw), (sh, sw), (dh, dw) = win.size, win.stride, win.dilation
    for i in range(kh):
        for j in range(kw):
            yield i, j, (slice(None), slice(i * dh, i * dh + (oh - 1) * sh + 1, sh),
                         slice(j * dw, j * dw + (ow - 1) * sw + 1, sw))


def windows(xp: Array, win: Window, oh: int, ow: int) -> Array:
    """The read-only strided view ``(N, OH, OW, kh, kw, C)`` of the windows of padded ``xp``."""
    (kh, kw), (sh, sw), (dh, dw) = win.size, win.stride, win.dilation
    s0, s1, s2, s3 = xp.strides
    view: Array = as_strided(xp, (xp.shape[0], oh, ow, kh, kw, xp.shape[3]),
                             (s0, s1 * sh, s2 * sw, s1 * dh, s2 * dw, s3), writeable=False)
    return view


def im2col(xp: Array, win: Window, oh: int, ow: int) -> Array:
    """``cols (N·OH·OW, kh·kw·C)``: one row per output pixel, its window in (kh, kw, C)
    order, matching a kernel ``(kh, kw, C, out)`` reshaped to ``(kh·kw·C, out)``."""
    n, c = xp.shape[0], xp.shape[3]
    kh, kw = win.size
    if c == 1:
        # One strided copy per kernel offset, moving whole rows; copying the window view
        # would move kw values at a time (measured 3x slower for a grey-scale first layer).
        cols = np.empty((n, oh, ow, kh * kw), xp.dtype)
        for k, (_, _, sl) in enumerate(offsets(win, oh, ow)):
            cols[..., k] = xp[sl][..., 0]
        return cols.reshape(n * oh * ow, kh * kw)
    out: Array = windows(xp, win, oh, ow).reshape(n * oh * ow, kh * kw * c)
    return out


def each_dw(x4: Array, dy: Array, win: Window, pads: Pads, oh: int, ow: int, groups: int,
            w_shape: tuple[int, ...]) -> Array:
    """Per-example ``dw`` (``_per_example``): ``dw_n = cols_nᵀ dy_n`` per group, with
    ``cols`` the windows of the padded NHWC input x4 (N, H, W, C), dy (N, OH, OW, out):
    (N, *w_shape), one batched BLAS product over (example, group)."""
    n, c, out = x4.shape[0], x4.shape[-1], w_shape[-1]
    kk, cg, og = win.size[0] * win.size[1], c // groups, out // groups
    cols = im2col(pad(x4, pads), win, oh, ow).reshape(n, oh * ow, kk, groups, cg)
    a = cols.transpose(0, 3, 2, 4, 1).reshape(n, groups, kk * cg, oh * ow)
    b = dy.reshape(n, oh * ow, groups, og).transpose(0, 2, 1, 3)
    dw = product(np.matmul, a, b).reshape(n, groups, kk, cg, og)  # (n, g, k, c, o)
    out_w: Array = dw.transpose(0, 2, 3, 1, 4).reshape(n, *w_shape)
    return out_w


def fold(out: Array, win: Window, oh: int, ow: int,
         part: Callable[[int, int, int], Array]) -> Array:
    """The adjoint of reading windows (col2im): add ``part(k, i, j)``, an ``(N, OH, OW, C)``
    array for kernel offset ``k = (i, j)``, into ``out`` (the padded input's shape, zeros)
    at the pixels that offset reads; overlapping windows sum. Returns ``out``."""
    for k, (i, j, sl) in enumerate(offsets(win, oh, ow)):
        view = out[sl]
        np.add(view, part(k, i, j), out=view)
    return out
