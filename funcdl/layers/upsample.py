"""Upsample: PyTorch's ``nn.Upsample`` / ``F.interpolate`` by integer scale factors, NHWC:
``(N, H, W, C) -> (N, sh·H, sw·W, C)``, in ``'nearest'`` or ``'bilinear'`` mode; or to a
fixed ``size=(oh, ow)`` from any input size (_resize.py).

Nearest (torch's ``'nearest'``, which for an integer scale is also its
``'nearest-exact'``): output row ``o`` reads input row ``o // s``. The forward is one
broadcast copy, the vjp a sum over each ``sh x sw`` block (a reshape and one reduction).

Bilinear, torch's source coordinate of output row ``o`` (and likewise columns):
``align_corners=False``: ``src = max((o + 1/2)/s - 1/2, 0)``, the pixel centres aligned;
``align_corners=True``: ``src = o·(H - 1)/(sH - 1)`` (0 when ``sH = 1``), the corner
pixels aligned. Row ``o`` is then ``(1 - λ)·x[h0] + λ·x[h1]`` with ``h0 = floor(src)``,
``h1 = min(h0 + 1, H - 1)``, ``λ = src - h0``. Each axis' interpolation is a dense matrix
``A (sH, H)`` of those weights (two per row), applied by one matrix product per axis
(``y = A_h x A_wᵀ`` over the spatial axes); the vjp is the transposes', exactly:
``dx = A_hᵀ dy A_w``. The two passes do ``H`` and ``W`` multiply-adds per value where
the taps need two each, but run in BLAS: at (32, 16, 16, 64) x 2, 1.8 ms against 16 ms for gathering
the taps with NumPy (one thread; a one-off timing). The price is at non-finite values:
the products meet an inf or NaN with the matrix's zeros (0·inf = NaN), so one such input
value makes its image's whole channel non-finite (NaN; inf at an inf's own taps), where
torch's are its neighbours only, and NumPy warns "invalid value encountered in matmul" for
an inf. Likewise in the pullback for a non-finite dy.
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np

from funcdl import random
from funcdl._args import bool_arg, call_name, choice_arg, frozen, is_int
from funcdl.layers._resize import resize_backward, resize_forward
from funcdl.layers._sums import product
from funcdl.layers.base import (
    Array,
    Layer,
    Shape,
    as_floats,
    check_in_shape,
    linear_map,
    no_params,
)

__all__ = ["Upsample"]

_MODES = ("nearest", "bilinear")


def _scale(name: str, value: Any) -> tuple[int, int]:
    """``scale_factor``: a positive int or a pair of them."""
    vals = (value, value) if is_int(value) else value
    if not (isinstance(vals, (tuple, list)) and len(vals) == 2 and all(map(is_int, vals))):
        hint = ""
        if isinstance(value, float) and value.is_integer():
            hint = f" (for torch's scale_factor={value!r}, pass {int(value)})"
        elif isinstance(value, float):
            hint = " (integer scale factors only)"
        raise TypeError(f"{name}: scale_factor must be a positive int or a pair (sh, sw) of "
                        f"them, got {value!r}{hint}")
    if any(v < 1 for v in vals):
        raise ValueError(f"{name}: scale_factor must be a positive int or a pair (sh, sw) of "
                         f"them, got {value!r}")
    return int(vals[0]), int(vals[1])


# a model's few (size, factor) pairs; each entry is (s·size, size), 16 MiB at 1024 px x 4 in
# float32, so that images of many sizes keep at most 16 of them
@functools.lru_cache(maxsize=16)
def _matrix(size: int, s: int, align_corners: bool, dtype: str) -> Array:
    """The bilinear weights along one axis, ``(s·size, size)``: row ``o`` holds ``1 - λ``
    at ``h0`` and ``λ`` at ``h1`` (their sum where ``h0 = h1``); read-only, as cached."""
    n_out = size * s
    o = np.arange(n_out, dtype=np.float64)
    if align_corners:
        src = o * ((size - 1) / (n_out - 1)) if n_out > 1 else np.zeros(n_out)
    else:  # torch clamps a source before the first centre to it
        src = np.maximum((o + 0.5) / s - 0.5, 0.0)
    h0 = np.minimum(src.astype(np.intp), size - 1)  # floor: src >= 0
    h1 = np.minimum(h0 + 1, size - 1)
    lam = np.clip(src - h0, 0.0, 1.0)
    a = np.zeros((n_out, size))
    rows = np.arange(n_out)
    a[rows, h0] = 1.0 - lam
    a[rows, h1] += lam  # each (row, h1) once: plain fancy-index addition is exact here
    return frozen(a.astype(dtype))


def _size(name: str, value: Any) -> tuple[int, int]:
    """``size``: a positive int or a pair (oh, ow) of them."""
    vals = (value, value) if is_int(value) else value
    if not (isinstance(vals, (tuple, list)) and len(vals) == 2 and all(map(is_int, vals))
            and all(v >= 1 for v in vals)):
        raise TypeError(f"{name}: size must be a positive int or a pair (oh, ow) of them, "
                        f"the output's height and width, got {value!r}")
    return int(vals[0]), int(vals[1])


def Upsample(scale_factor: int | tuple[int, int] | None = None, mode: str = "nearest",
             align_corners: bool = False, *, size: int | tuple[int, int] | None = None
             ) -> Layer:
    """Upsampling by integer factors, PyTorch's ``nn.Upsample(scale_factor=...)``, NHWC:
    ``(N, H, W, C) -> (N, sh·H, sw·W, C)``; or to ``size=(oh, ow)``, torch's
    ``nn.Upsample(size=...)`` / ``F.interpolate(size=...)``: ``(N, H, W, C) -> (N, oh, ow,
    C)`` from any H, W (smaller ones too, without antialiasing, as torch's); no params.

    nearest: forward ``y[n, p, q, c] = x[n, p // sh, q // sw, c]``;
    vjp ``dx[n, h, w, c] = Σ_{i<sh, j<sw} dy[n, h·sh + i, w·sw + j, c]``.
    bilinear: forward ``y = A_h x A_wᵀ`` over (H, W), vjp ``dx = A_hᵀ dy A_w``, with
    ``A (s·H, H)`` torch's interpolation weights (the module docstring).

    size: ``y = A_h x A_wᵀ`` with ``A (oh, H)`` torch's weights for the ratio ``H/oh``;
    vjp ``dx = A_hᵀ dy A_w`` (_resize.py).

    Args:
      scale_factor: a positive int or a pair (sh, sw); or None with ``size``.
      mode: ``'nearest'`` or ``'bilinear'``.
      size: the output's (oh, ow) (an int: both), instead of ``scale_factor``.
      align_corners: torch's, for ``'bilinear'`` only (True with ``'nearest'`` is refused,
        as torch refuses it).
    Integer inputs are upsampled as float32.
    """
    name = call_name("Upsample", () if scale_factor is None else (scale_factor,),
                     size=(size, None), mode=(mode, "nearest"),
                     align_corners=(align_corners, False))
    if (scale_factor is None) == (size is None):
        raise TypeError(f"{name}: pass either scale_factor or size (torch's rule: one of the "
                        f"two), e.g. Upsample(2) or Upsample(size=(64, 64))")
    sh, sw = (1, 1) if scale_factor is None else _scale(name, scale_factor)
    out = None if size is None else _size(name, size)
    choice_arg(mode, name, "mode", _MODES)
    align = bool_arg(align_corners, name, "align_corners")
    if align and mode == "nearest":
        raise ValueError(f"{name}: align_corners=True needs mode='bilinear' (torch refuses it "
                         f"for 'nearest', whose source pixel does not depend on it); drop "
                         f"align_corners or pass mode='bilinear'")

    def init(key: random.Key, in_shape: Shape) -> tuple[Shape, Any]:
        del key
        shape = check_in_shape(name, in_shape, rank=4, layout="(N, H, W, C)")
        n, h, w, c = shape
        empty(h, w, shape)
        if out is not None:
            return (n, out[0], out[1], c), ()
        return (n, None if h is None else h * sh, None if w is None else w * sw, c), ()

    def empty(h: int | None, w: int | None, shape: tuple[int | None, ...]) -> None:
        if h == 0 or w == 0:
            raise ValueError(f"{name}: expected an input (N, H, W, C) with H, W >= 1 (torch's "
                             f"rule: nothing to interpolate from), got shape {shape}")

    def check(params: Any, x: Any) -> Array:
        no_params(name, params)
        a = as_floats(name, x)
        if a.ndim != 4:
            raise ValueError(f"{name}: expected an input (N, H, W, C) of rank 4, got shape "
                             f"{a.shape}")
        empty(a.shape[1], a.shape[2], a.shape)
        return a

    def forward(x: Array) -> Array:
        if out is not None:
            return resize_forward(x, out, mode, align)
        n, h, w, c = x.shape
        if mode == "nearest":
            y = np.empty((n, h, sh, w, sw, c), x.dtype)
            np.copyto(y, x[:, :, None, :, None, :])
            return y.reshape(n, h * sh, w * sw, c)
        t = x
        if sh > 1 or align:  # s = 1 without align_corners: the identity
            t = product(np.matmul, _matrix(h, sh, align, x.dtype.char), x.reshape(n, h, w * c))
        if sw > 1 or align:
            t = product(np.matmul, _matrix(w, sw, align, x.dtype.char),
                        t.reshape(n * h * sh, w, c))
        return (t.copy() if t is x else t).reshape(n, h * sh, w * sw, c)

    def backward(dy: Array, x_shape: tuple[int, ...]) -> Array:
        if out is not None:
            return resize_backward(dy, x_shape, mode, align)
        n, h, w, c = x_shape
        if mode == "nearest":  # sh·sw strided adds: NumPy's sum over axes (2, 4) of
            # the 6-d view ran 3.3x slower ((32, 32, 32, 32) float32 dy, one thread)
            if sh * sw > 4 and n * h * w * c < 16384:  # many small adds: one sum (dy in
                # C order, so that the order of the adds is every layout's)
                dx: Array = np.ascontiguousarray(dy).reshape(n, h, sh, w, sw, c).sum(
                    axis=(2, 4))
                return dx
            blocks = dy.reshape(n, h, sh, w, sw, c)
            dx = blocks[:, :, 0, :, 0].copy()
            for i in range(sh):
                for j in range(sw):
                    if i or j:
                        dx += blocks[:, :, i, :, j]
            return dx
        t = dy
        if sw > 1 or align:
            t = product(np.matmul, _matrix(w, sw, align, dy.dtype.char).T,
                        dy.reshape(n * h * sh, w * sw, c))
        if sh > 1 or align:
            t = product(np.matmul, _matrix(h, sh, align, dy.dtype.char).T,
                        t.reshape(n, h * sh, w * c))
        return (t.copy() if t is dy else t).reshape(x_shape)

    return linear_map(name, init, check, forward, backward)
