"""Window offsets of a pooling layer as whole pixels: the gather and its adjoint, NHWC; and
which of a window's cells are real (``check_windows``, ``counts``).

A pool reads, for each window offset ``k = (i, j)`` (row-major), the ``(N, OH, OW, C)``
slice ``xp[:, p·sh + i·dh, q·sw + j·dw]`` of the padded input (dilation ``(dh, dw)``). A
NumPy op on that strided slice runs its inner loop over the C channels of one pixel only
(16 values for C = 16), and the per-loop overhead dominates. Here each pixel is viewed as
one opaque item of C values, so one copy moves the slice into a contiguous buffer, and
every op after it (max, comparison, sum) runs on contiguous memory (the whole-layer effect,
measured by ``benchmarks/pool_norm_micro.py``, is in ``pool``'s docstring).
Padding is never materialised: the rows and columns of a slice that fall outside the image
get the fill value. The adjoint ``scatter`` adds each offset's ``(N, OH, OW, C)`` share back:
offsets whose pixels are disjoint (``i`` and ``i + sh`` overlap, ``i`` and ``i + 1`` do not)
form ``min(sh, kh)·min(sw, kw)`` classes (with dilation, by ``i·dh`` modulo ``sh``: see
``_classes``); a class's members are summed, shifted, into one buffer (in ascending ``k``,
the order of the per-offset additions this replaced, so sums round the same), and each
class is then copied pixel by pixel into ``dx``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from funcdl.layers._windows import Pads, Window
from funcdl.layers.base import Array

__all__ = ["check_windows", "counts", "gather", "scatter"]


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
    """``out[n, p, q] = xp[n, p·sh + i·dh, q·sw + j·dw]`` for the input ``x`` padded by
    ``pads`` with ``fill`` (and beyond them: a ``ceil_mode`` window may run past the padded
    edge); ``out`` is a C-contiguous ``(N, OH, OW, C)`` buffer. Returns ``out``."""
    (sh, sw), ((t, _), (l, _)) = win.stride, pads
    i, j = i * win.dilation[0], j * win.dilation[1]  # the offset in pixels
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


def _classes(k: int, s: int, d: int) -> list[tuple[int, list[tuple[int, int]]]]:
    """The offsets ``0..k-1`` along one axis (at pixel ``i·d``) by class of ``i·d`` modulo
    the stride ``s``: ``(the class's first pixel a, [(i, m), ...])``, offset i's pixels
    ``m`` strides after a's, classes and members by ascending i. Without dilation the
    classes are ``a = 0..min(s, k) - 1`` with members ``a + m·s``."""
    classes: dict[int, tuple[int, list[tuple[int, int]]]] = {}
    for i in range(k):
        a, members = classes.setdefault(i * d % s, (i * d, []))
        members.append((i, (i * d - a) // s))
    return list(classes.values())


def scatter(x_shape: tuple[int, ...], dtype: Any, win: Window, pads: Pads,
            share: Callable[[int], Array]) -> Array:
    """The adjoint of ``gather`` over every offset: ``dx`` of ``x_shape`` with
    ``dx[n, p·sh + i·dh - top, q·sw + j·dw - left] += share(k)[n, p, q]`` (``k = i·kw +
    j``), shares over the padding (or past it) dropped, pixels no window reads 0."""
    (kh, kw), (sh, sw), ((t, _), (l, _)) = win.size, win.stride, pads
    n, h, w, c = x_shape
    row_classes, col_classes = (_classes(kh, sh, win.dilation[0]),
                                _classes(kw, sw, win.dilation[1]))
    # Every pixel is written exactly once when the offsets' classes cover the image; they
    # are all the pairs (a, b), so the pixels written are the rows of some a times the
    # columns of some b (classes differ modulo the stride: no pixel is in two).
    dx = np.empty(x_shape, dtype)
    rows_hit, cols_hit = np.zeros(h, bool), np.zeros(w, bool)
    dxp = _pixels(dx) if dx.size else dx
    for a, ms in row_classes:
        for b, ns in col_classes:
            first = share(ms[0][0] * kw + ns[0][0])
            oh, ow = first.shape[1:3]
            if len(ms) == 1 and len(ns) == 1:
                acc = first
            else:  # members (i, j) land m rows and nn columns further on
                acc = np.zeros((n, oh + ms[-1][1], ow + ns[-1][1], c), dtype)
                for i, m in ms:
                    for j, nn in ns:
                        view = acc[:, m:m + oh, nn:nn + ow]
                        part = first if m == nn == 0 else share(i * kw + j)
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


# ---------------------------------------------------------------------------- real cells

def check_windows(name: str, win: Window, shape: tuple[int | None, ...], out: tuple[Any, Any],
                  pads: Pads) -> None:
    """A ValueError when some dilated window reads padding only, its cells stepping over
    the whole input (an input narrower than the dilation; ``shape`` ``(N, H, W, C)`` or
    ``(N, L, C)``): PyTorch returns -inf there and drops its gradient. Without dilation the
    pools' rule (padding narrower than the window) already rules this out."""
    sizes = shape[-3:-1] if len(shape) == 4 else (1, shape[1])
    for n, o, k, s, d, (lo, _) in zip(sizes, out, win.size, win.stride, win.dilation, pads):
        if d == 1 or n is None or o is None:
            continue
        # only windows starting in the padding or past the input can miss it (one starting
        # inside has that cell): a few at each end, not o of them (o may be 2**40)
        head = np.arange(min(o, lo // s + 1))
        at = np.concatenate([head, np.arange(max(head.size, (n + lo) // s - 1), o)])
        start = at * s - lo
        first = start + (np.maximum(-start, 0) + d - 1) // d * d  # its first cell >= 0
        bad = at[(first >= n) | (first > start + (k - 1) * d)]
        if bad.size:
            raise ValueError(f"{name}: with dilation {d} the window at output {int(bad[0])} "
                             f"reads padding only on an input of shape {tuple(shape)}; use "
                             f"less padding or a smaller dilation")


def counts(out: int, size: int, k: int, s: int, pad: tuple[int, int],
           with_pad: bool) -> Array:
    """Per output position along one axis, the cells of its window that count: those in
    the input and its padding (``with_pad``; not a ``ceil_mode`` window's cells past the
    padding, as PyTorch), or those in the input."""
    start = np.arange(out) * s - pad[0]
    a, b = (-pad[0], size + pad[1]) if with_pad else (0, size)
    cells: Array = np.clip(start + k, a, b) - np.clip(start, a, b)
    return cells
