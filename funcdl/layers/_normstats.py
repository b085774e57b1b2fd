"""Broadcasts along short rows, for the normalisation layers.

NumPy runs an elementwise op as an inner loop over the last axis; when an operand is
broadcast along the other axes (a per-channel vector against NHWC, a per-row statistic
against (rows, C)) that loop covers only C values, and for small C its per-call overhead
dominates: on (64·28·28, 16) float32, ``x * scale`` takes 340 µs and ``x - mean[:, None]``
470 µs, where ``x * x`` takes 80 µs. So:

- ``chan`` applies a ufunc to ``a`` and a per-channel vector (last axis) on ``a`` viewed as
  rows of ``reps·C`` values against the vector tiled ``reps`` times (~100 µs): every
  element goes through the same single operation, so the result is bitwise the same;
- ``per_row`` expands a per-row vector to the rows' width (``np.repeat``, ~110 µs), after
  which ops against it are contiguous;
- ``row_sums`` sums each row with one BLAS matrix-vector product with a ones vector.
"""

from __future__ import annotations

import numpy as np

from funcdl.layers.base import Array, dot, ones

__all__ = ["chan", "per_row", "row_sums"]

WIDE = 1024  # the width of a tiled row
SHORT = 128  # rows at least this wide broadcast well as they are


def chan(ufunc: np.ufunc, a: Array, v: Array, out: Array | None = None) -> Array:
    """``ufunc(a, v, out=out)`` for ``v`` broadcast against ``a`` (e.g. of shape
    ``(1, ..., 1, C)``), bitwise as NumPy's broadcast; fast when ``v`` runs along ``a``'s last
    axis only and that axis is short."""
    c = a.shape[-1] if a.ndim else 0
    if (c == 0 or c >= SHORT or v.size != c or v.shape[-1:] != (c,) or a.ndim < 2
            or not a.flags.c_contiguous or (out is not None and not out.flags.c_contiguous)):
        res: Array = ufunc(a, v, out=out)
        return res
    rows, reps = a.size // c, WIDE // c
    cut = rows - rows % reps
    o = np.empty(a.shape, np.result_type(a, v)) if out is None else out
    a2, o2, v1 = a.reshape(rows, c), o.reshape(rows, c), v.reshape(c)
    if cut:
        wide = (-1, reps * c)
        ufunc(a2[:cut].reshape(wide), np.tile(v1, reps), out=o2[:cut].reshape(wide))
    if cut < rows:
        ufunc(a2[cut:], v1, out=o2[cut:])
    return o


def per_row(v: Array, width: int) -> Array:
    """``v`` (one value per row) as an operand against ``(rows, width)``: expanded to
    ``(rows, width)`` when the rows are short, else the broadcast ``v[:, None]``."""
    if width >= SHORT:
        return v[:, None]
    out: Array = np.repeat(v, width).reshape(-1, width)
    return out


def row_sums(a2: Array) -> Array:
    """Σ of each row of a 2-D array, as one BLAS product (``a2 @ ones``)."""
    out: Array = dot(a2, ones(a2.shape[1], a2.dtype))
    return out

