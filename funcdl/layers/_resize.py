"""Upsample to a fixed output size, torch's ``F.interpolate(x, size=(oh, ow))`` (DeepLab's
logits resized to the image, an ASPP pooling branch to the features), NHWC, for any input
size, up or down (no antialiasing, as torch's default).

Torch's source coordinates for ``size=`` (the ratio ``in/out``, not a scale factor):
- ``'nearest'``: ``src = min(floor(o · (in/out)), in - 1)``, the product and the ratio in
  float32 as torch's CPU kernel computes them for float32, so that its rounding picks the
  same pixel (checked for every size to 39 and output to 199); torch's float64 kernel
  rounds otherwise at some exact boundaries (2 -> 164: its row 82 reads pixel 1, here 0);
- ``'bilinear'``: ``src = max((o + 1/2)·(in/out) - 1/2, 0)``, or with ``align_corners``
  ``o·(in - 1)/(out - 1)`` (0 for ``out = 1``), in float64; the two taps as upsample.py's.

Each axis is a matrix ``A (out, in)`` (one 1 per row for nearest, two weights for
bilinear): forward ``y = A_h x A_wᵀ`` over (H, W) (nearest by a gather, which keeps
non-finite values to their own pixels), vjp ``dx = A_hᵀ dy A_w``, two products.
"""

from __future__ import annotations

import functools

import numpy as np

from funcdl._args import frozen
from funcdl.layers._sums import product
from funcdl.layers.base import Array


def nearest_index(size: int, n_out: int) -> Array:
    """torch's legacy ``'nearest'`` source row of each of ``n_out`` outputs (float32 ratio)."""
    o = np.arange(n_out)
    if n_out == size:
        return o
    if n_out == 2 * size:  # torch's shortcut, exact
        return o >> 1
    ratio = np.float32(size) / np.float32(n_out)
    src: Array = np.floor(o.astype(np.float32) * ratio).astype(np.intp)
    return np.minimum(src, size - 1)


# a model's few (size, n_out) pairs per axis, as upsample.py's cache
@functools.lru_cache(maxsize=16)
def resize_matrix(size: int, n_out: int, mode: str, align_corners: bool, dtype: str) -> Array:
    """The interpolation weights along one axis, ``(n_out, size)``; read-only, as cached."""
    a = np.zeros((n_out, size))
    rows = np.arange(n_out)
    if mode == "nearest":
        a[rows, nearest_index(size, n_out)] = 1.0
        return frozen(a.astype(dtype))
    o = rows.astype(np.float64)
    if align_corners:
        src = o * ((size - 1) / (n_out - 1)) if n_out > 1 else np.zeros(n_out)
    else:  # torch clamps a source before the first centre to it
        src = np.maximum((size / n_out) * (o + 0.5) - 0.5, 0.0)
    h0 = np.minimum(src.astype(np.intp), size - 1)  # floor: src >= 0
    h1 = np.minimum(h0 + 1, size - 1)
    lam = np.clip(src - h0, 0.0, 1.0)
    a[rows, h0] = 1.0 - lam
    a[rows, h1] += lam  # each (row, h1) once
    return frozen(a.astype(dtype))


def resize_forward(x: Array, out: tuple[int, int], mode: str, align: bool) -> Array:
    """``(N, H, W, C) -> (N, oh, ow, C)``: ``y = A_h x A_wᵀ`` (nearest: the same by a gather)."""
    n, h, w, c = x.shape
    oh, ow = out
    if mode == "nearest":
        return x[:, nearest_index(h, oh)[:, None], nearest_index(w, ow)[None, :]]
    t = product(np.matmul, resize_matrix(h, oh, mode, align, x.dtype.char),
                x.reshape(n, h, w * c))
    t = product(np.matmul, resize_matrix(w, ow, mode, align, x.dtype.char),
                t.reshape(n * oh, w, c))
    return t.reshape(n, oh, ow, c)


def resize_backward(dy: Array, x_shape: tuple[int, ...], mode: str, align: bool) -> Array:
    """``dx = A_hᵀ dy A_w``, ``(N, oh, ow, C) -> x_shape``."""
    n, h, w, c = x_shape
    oh, ow = dy.shape[1], dy.shape[2]
    t = product(np.matmul, resize_matrix(w, ow, mode, align, dy.dtype.char).T,
                dy.reshape(n * oh, ow, c))
    t = product(np.matmul, resize_matrix(h, oh, mode, align, dy.dtype.char).T,
                t.reshape(n, oh, w * c))
    return t.reshape(x_shape)
