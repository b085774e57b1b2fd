"""Grouped transposed convolution (``groups = G > 1``) for conv_transpose.py: the forward and
the pullback's products. Input channels ``C`` and outputs ``out`` split into ``G`` groups,
input channel ``c`` feeding only the ``Og = out / G`` outputs of its group ``g = c // Cg``
(``Cg = C / G``); the kernel is ``(kh, kw, Og, C)``: the grouped Conv2D kernel ``(kh, kw,
in / G, out)`` of the adjoint Conv2D (from ``out`` channels to ``C``), so torch's weight
``(C, out / G, kh, kw)`` maps as for ``groups=1``, ``w = w_torch.transpose(2, 3, 1, 0)``.

As _grouped.py does for Conv2D, a grouped layer is ``G`` ungrouped ones side by side: the
input is laid out group-major once (``_grouped.to_groups``, ``(G·N, H, W, Cg)``), and every
product is one batched matmul over the leading group axis (no loop over groups, pixels or
rows):

- forward ``cols_g = x_g w_gᵀ`` (``x_g (M, Cg)``, ``w_g`` as ``(kh·kw·Og, Cg)``, a strided
  view BLAS reads in place), ``(G·N, H, W, kh·kw, Og)``, which conv.py's ``fold`` adds into
  a group-major full result (kh·kw steps, one per kernel offset), cropped, then moved back
  to NHWC by one transposing copy (``from_groups``, the size of the output);
- pullback: the cotangent goes group-major once (``to_groups``, the size of ``dy``), so
  conv.py's ``im2col`` gives ``dcols_g (G, M, kh·kw·Og)`` contiguous; ``dw_g = dcols_gᵀ
  x_g`` and ``dx_g = dcols_g w_g`` are one batched product each.

With one input channel per group (``Cg = 1``) the forward product has an inner dimension
of 1: an outer product, done as one broadcast multiply (the same values; no BLAS call per
group of a rank-1 update). Depthwise (``Cg = Og = 1``) stays in NHWC instead, with
_grouped.py's per-offset broadcast products (a group-major array would have rows of one
value): forward ``x · w[i, j, 0, :]`` added at offset ``k``'s pixels of the full result
(``depthwise_fold``); ``dw[i, j, 0, c] = Σ dyp[sl_k] · x`` (``depthwise_dw``) and ``dx = Σ_k
dyp[sl_k] · w[i, j, 0, :]`` (``depthwise``), ``dyp`` the cotangent padded back to the full
result, ``sl_k`` offset ``k``'s strided slice of it. One-off, one thread, float32, vjp + pullback of
ConvTranspose2D(32, 3, stride=2, padding=1, output_padding=1, groups=32) on (16, 16, 16,
32): group-major 17.5 ms, NHWC 5.2 ms (groups=1: 8.2 ms).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray

from funcdl.layers._grouped import (
    depthwise,
    depthwise_dw,
    depthwise_fold,
    from_groups,
    to_groups,
)
from funcdl.layers._im2col import crop, fold, im2col, offsets, pad
from funcdl.layers._sums import product
from funcdl.layers._windows import Pads, Window

Array = NDArray[Any]


def _kernel(w: Array, groups: int) -> Array:
    """The kernel ``(kh, kw, Og, C)`` as ``(G, kh·kw·Og, Cg)`` (a view)."""
    c = w.shape[-1]
    view: Array = w.reshape(-1, groups, c // groups).transpose(1, 0, 2)
    return view


def forward(x4: Array, w: Array, groups: int, win: Window, pads: Pads, oh: int, ow: int
            ) -> tuple[Array, Array]:
    """``(y, xg)``: the output ``(N, OH, OW, out)`` without bias (contiguous, but when
    depthwise a crop view) and the input as ``(G, M, Cg)`` for the pullback (``x4`` itself
    when depthwise); ``x4 (N, H, W, C)``."""
    n, h, wd, c = x4.shape
    og, kk = w.shape[-2], win.size[0] * win.size[1]
    (t, b), (l, r) = pads
    if c == groups and og == 1:  # depthwise, in NHWC; x4 kept for the pullback
        full = np.zeros((n, t + oh + b, l + ow + r, c), np.result_type(x4, w))
        slices = [sl for _, _, sl in offsets(win, h, wd)]
        return crop(depthwise_fold(full, slices, x4, w), pads, oh, ow), x4
    xg = to_groups(x4, groups).reshape(groups, n * h * wd, c // groups)  # N may be 0
    wg = _kernel(w, groups).transpose(0, 2, 1)  # (G, Cg, kh·kw·Og)
    cols = np.multiply(xg, wg) if c == groups else product(np.matmul, xg, wg)
    cols5 = cols.reshape(groups * n, h, wd, kk, og)
    full = np.zeros((groups * n, t + oh + b, l + ow + r, og), cols.dtype)
    yg = crop(fold(full, win, h, wd, lambda k, i, j: cols5[:, :, :, k]), pads, oh, ow)
    return from_groups(yg, groups), xg


def pullback(dy4: Array, xg: Array, w: Array, groups: int, win: Window, pads: Pads, h: int,
             wd: int, need_dx: bool) -> tuple[Array, Array | None]:
    """``(dw, dx or None)`` for the cotangent ``dy4 (N, OH, OW, out)``: ``dw`` in the
    kernel's shape, ``dx (N, H, W, C)``, in the result dtype of their operands."""
    if w.shape[-2] == 1 and w.shape[-1] == groups:  # depthwise: xg is x4, NHWC
        dyp = pad(dy4, pads)
        slices = [sl for _, _, sl in offsets(win, h, wd)]
        dw_d = depthwise_dw(dyp, slices, xg, w.shape)
        return dw_d, depthwise(dyp, slices, w) if need_dx else None
    dyg = to_groups(dy4, groups)
    m, cg = xg.shape[1:]
    dcols = im2col(pad(dyg, pads), win, h, wd).reshape(groups, m, w.size // w.shape[-1])
    dw_g = product(np.matmul, dcols.transpose(0, 2, 1), xg)  # (G, kh·kw·Og, Cg)
    dw = np.ascontiguousarray(dw_g.transpose(1, 0, 2)).reshape(w.shape)
    if not need_dx:
        return dw, None
    dx_g = product(np.matmul, dcols, _kernel(w, groups))  # (G, M, Cg)
    n = dy4.shape[0]
    return dw, from_groups(dx_g.reshape(groups * n, h, wd, cg), groups)
