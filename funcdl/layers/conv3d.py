"""Conv3D, volumetric convolution on ``(N, D, H, W, C)``, built on the 2-D code.

A 3-D convolution is a sum over the kernel's depth offsets ``a`` of 2-D convolutions:
``y[:, o] = b + Σ_a conv2d(xp[:, o·sd + a·dd], w[a])``. It runs one of two ways:

- ``groups = 1`` and columns up to ``_COLS3_BYTES``: one im2col product (``_conv3d_cols``).
  Every depth offset's 2-D windows (``_im2col.windows`` of the input as ``N·D`` images) go
  into one buffer ``cols (N·OD·OH·OW, kd·kh·kw·C)`` times the kernel ``(kd·kh·kw·C, out)``;
  ``dw = colsᵀ dy``; ``dx`` by the 2-D ``fold`` per depth offset.
- otherwise, a Conv2D per depth offset: the input's strided depth slice ``(N, L, H, W, C)``
  (the ``L`` outputs that offset reads real input for) as a batch of ``N·L`` images,
  convolved with ``w[a]`` ``(kh, kw, C/G, out)`` and added into ``y[:, o0:o1]``; the
  pullback runs each Conv2D pullback on ``dy[:, o0:o1]``, for ``dw[a]`` and that slice's
  share of ``dx``. Conv2D's grouped, depthwise and one-offset-at-a-time paths come with it,
  and no buffer of every offset's columns (the memory cap below).

Either way kd (or kd·kh·kw) Python steps, each over the whole batch; the depth padding is
never materialised (an offset's slice covers only the outputs whose input depth is real).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from funcdl import initializers, random
from funcdl._args import bool_arg, call_name, int_arg
from funcdl.layers import _grouped
from funcdl.layers import _per_example as per_example
from funcdl.layers._conv3d_cols import columns, dx_fold
from funcdl.layers._params import in_param_dtypes, initializer_arg
from funcdl.layers._sums import product, rows_sum
from funcdl.layers._volume import LAYOUT, depth_taps, fit3, geometry3, rank_hint, volume_arg
from funcdl.layers._windows import Window
from funcdl.layers.base import (
    Array,
    Layer,
    Shape,
    as_array,
    cast_ints,
    check_cotangent,
    check_in_shape,
    in_input_dtype,
)
from funcdl.layers.conv import Conv2D, add_bias, conv_kernel, conv_params

__all__ = ["Conv3D"]

# Up to this many bytes of columns (N·OD·OH·OW rows of kd·kh·kw·C), with groups = 1, the
# forward is one product over all of them (_conv3d_cols); past it, or with groups > 1, a
# Conv2D per depth offset, which keeps no such buffer (past conv.py's _COLS_BYTES per slice
# it goes one kernel offset at a time). A cap on memory, not a choice of speed: the columns
# are kd·kh·kw times the input at stride 1, and the vjp keeps them. benchmarks/conv3d.py
# (results/conv3d.md), one thread, apply / vjp + pullback in ms, one product against a
# Conv2D per depth offset, 3 x 3 x 3 -> 32, a shared 2-core machine: (8, 16, 16, 16, 8),
# 28 MiB of columns: 17.7 / 42.9 against 26.1 / 53.2; (8, 16, 32, 32, 8), 113 MiB: 90 / 238
# against 161 / 346; stride 2, 3.5 MiB: 1.4 / 6.3 against 1.6 / 6.4 (an earlier run, more
# loaded: per-round ratios 0.40-0.70 / 0.55-0.87 at 28 MiB, 0.51-0.80 / 0.57-0.74 at 113).
_COLS3_BYTES = 256 << 20


def Conv3D(out: int, kernel: int | tuple[int, int, int], stride: int | tuple[int, int, int] = 1,
           padding: Any = "SAME", dilation: int | tuple[int, int, int] = 1,
           use_bias: bool = True, w_init: initializers.Initializer | None = None,
           b_init: initializers.Initializer | None = None, groups: int = 1) -> Layer:
    """3-D convolution (cross-correlation), channels last: ``(N, D, H, W, C) -> (N, OD, OH,
    OW, out)``; params ``{'w': (kd, kh, kw, C/G, out), 'b': (out,)}`` (DHWIO, as Conv2D's
    HWIO; torch's Conv3d weight ``(out, C/G, kd, kh, kw)`` is ``w.transpose(4, 3, 0, 1, 2)``),
    ``G = groups`` as Conv2D's (``Cg = C/G``, ``Og = out/G``).

    forward: ``y[n,o,p,q,e] = b[e] + Σ_{a,i,j,c<Cg} xp[n, o·sd + a·dd, p·sh + i·dh,
    q·sw + j·dw, (e // Og)·Cg + c] w[a,i,j,c,e]`` (``y = cols w``, or ``Σ_a`` of Conv2Ds on
    depth slices: see the module docstring);
    vjp: ``dw = colsᵀ dy`` (per depth offset, its Conv2D's dw), ``db = Σ_{n,o,p,q} dy``,
    ``dx = col2im(dy wᵀ)``, cropped.

    Args:
      out: output channels. kernel, stride, dilation: an int or a triple (d, h, w).
      padding: ``'SAME'`` (the default, as Conv2D's and Flax's ``nn.Conv``; JAX's rule on
        each axis: ``ceil(in / stride)`` outputs, the odd pad after), ``'VALID'``, an int,
        a triple ``(pd, ph, pw)`` (PyTorch's) or ``((front, back), (top, bottom), (left,
        right))``.
      use_bias, w_init, b_init: as Conv2D; the default init is PyTorch's Conv3d
        (U(±1/sqrt(fan_in)) for w and b, fan_in = kd·kh·kw·C/groups).
      groups: PyTorch's ``groups``, as Conv2D's.
    Per-example gradients (``autodiff.per_example_grad``): ``dw_n = cols_nᵀ dy_n``, one
    batched product; by depth offset, that Conv2D's for its ``N·L`` slices, summed over
    each example's ``L``.
    """
    name = call_name("Conv3D", (out, kernel), stride=(stride, 1), padding=(padding, "SAME"),
                     dilation=(dilation, 1), use_bias=(use_bias, True), groups=(groups, 1))
    out = int_arg(out, name, "out", minimum=1)
    groups = _grouped.groups_arg(name, groups, out)
    vol = volume_arg(name, "kernel", kernel, stride, dilation, padding)
    use_bias = bool_arg(use_bias, name, "use_bias")
    w_init = initializer_arg(name, "w_init", w_init) or initializers.torch_default()
    b_init = initializer_arg(name, "b_init", b_init)
    kd, kh, kw = vol.size
    # every depth slice is an image batch for this one: fit3 checks the plane beforehand
    _, p_stride, p_dilation = vol.plane()
    plane = Conv2D(out, (kh, kw), stride=p_stride, padding=vol.plane_padding(),
                   dilation=p_dilation, use_bias=False, groups=groups)
    plane_win = Window(*vol.plane(), "VALID")  # the plane's window for _conv3d_cols

    def init(key: random.Key, in_shape: Shape) -> tuple[Shape, Any]:
        try:
            shape = check_in_shape(name, in_shape, rank=5, layout=LAYOUT)
        except ValueError as e:
            raise ValueError(f"{e}{rank_hint(tuple(in_shape), 'Conv2D')}") from None
        c = _grouped.in_channels(name, shape, groups)
        (od, oh, ow), _ = fit3(name, vol, shape, "kernel")
        params = conv_params(name, key, w_init, b_init, (*vol.size, c // groups, out), use_bias)
        return (shape[0], od, oh, ow, out), params

    def check(params: Any, x: Any) -> tuple[Array, Array, Any]:
        """``(x, w, geo)``: the input in the kernel's dtype, the kernel, and ``(sizes, taps,
        pads)``: the output size, the depth offsets that read real input
        (``_volume.depth_taps``) and the resolved pads."""
        w = conv_kernel(name, params, vol.size, out, groups, use_bias)
        x = as_array(name, x, w.dtype)
        if x.ndim != 5 or x.shape[-1] != w.shape[-2] * groups:
            raise _grouped.channels_error(name, "(N, D, H, W, ", w.shape, x.shape, groups,
                                          rank_hint(x.shape, "Conv2D"))
        sizes, pads = geometry3(name, vol, x.shape, "kernel")
        taps = depth_taps(vol, sizes[0], pads[0][0], x.shape[1])
        return cast_ints(x, w.dtype), w, (sizes, taps, pads)

    def slab(x: Array, o0: int, o1: int, sl: slice) -> Array:
        """The depth slice ``x[:, sl]`` as a batch of ``N·(o1 - o0)`` images (a copy, as
        the batch and depth axes merge)."""
        return x[:, sl].reshape(x.shape[0] * (o1 - o0), *x.shape[2:])

    def one_product(x: Array, sizes: tuple[int, int, int]) -> bool:
        """Whether the columns of every depth offset go into one product (``_COLS3_BYTES``)."""
        rows = x.shape[0] * math.prod(sizes)
        return groups == 1 and rows * kd * kh * kw * x.shape[-1] * x.itemsize <= _COLS3_BYTES

    def forward(params: Any, x: Array, w: Array, geo: Any, keep: bool) -> tuple[Array, Any]:
        """``(y, kept)``: for the pullback (``keep``) the columns, or each depth offset's
        Conv2D pullback; else None."""
        (od, oh, ow), taps, pads = geo
        kept: Any = None
        if one_product(x, (od, oh, ow)):
            cols = columns(x, plane_win, pads, (od, oh, ow), kd, taps)
            y = product(np.matmul, cols, w.reshape(-1, out)).reshape(x.shape[0], od, oh, ow,
                                                                     out)
            kept = cols if keep else None
        else:
            y = np.zeros((x.shape[0], od, oh, ow, out), np.result_type(x, w))
            kept = [] if keep else None
            for a, o0, o1, sl in taps:
                p, xs = {"w": w[a]}, slab(x, o0, o1, sl)
                if kept is None:
                    ya = plane.apply(p, xs)
                else:
                    ya, pb = plane.vjp(p, xs)
                    kept.append(pb)
                view = y[:, o0:o1]
                np.add(view, ya.reshape(view.shape), out=view)
        if use_bias:
            y = add_bias(y, params["b"])
        return y, kept

    def apply(params: Any, x: Any, *, key: Any = None, train: bool = False) -> Array:
        del key, train
        x, w, geo = check(params, x)
        return forward(params, x, w, geo, False)[0]

    def vjp(params: Any, x: Any, *, key: Any = None, train: bool = False) -> Any:
        del key, train
        x, w, geo = check(params, x)
        each = per_example.ON.get()  # read when the vjp runs, as the Conv2Ds do
        y, kept = forward(params, x, w, geo, True)
        _, taps, pads = geo
        n, oh, ow = x.shape[0], y.shape[2], y.shape[3]
        x_shape, x_dtype, w_shape, w_dtype = x.shape, x.dtype, w.shape, w.dtype
        y_shape, y_dtype = y.shape, y.dtype
        cols = kept if isinstance(kept, np.ndarray) else None

        def by_depth(dy: Array, need_dx: bool) -> tuple[Array, Array | None]:
            """dw and dx from each depth offset's Conv2D pullback."""
            dw = np.zeros((n, *w_shape) if each else w_shape, w_dtype)
            dx = np.zeros(x_shape, x_dtype) if need_dx else None
            for (a, o0, o1, sl), pb in zip(taps, kept):
                # the slice's outputs as a batch of N·L (a copy unless L = OD)
                dya = dy[:, o0:o1].reshape(n * (o1 - o0), oh, ow, out)
                grads, dxa = pb(dya, need_dx=need_dx)
                if each:  # the Conv2D's per-slice rows, summed over each example's L
                    dw[:, a] = grads["w"].reshape(n, o1 - o0, *w_shape[1:]).sum(axis=1)
                else:
                    dw[a] = grads["w"]
                if dx is not None:
                    view = dx[:, sl]
                    np.add(view, dxa.reshape(view.shape), out=view)
            return dw, dx

        def pullback(dy: Array, need_dx: bool = True) -> tuple[Any, Array | None]:
            dy = check_cotangent(name, dy, y_shape, y_dtype)
            dy2 = dy.reshape(-1, out)
            dx: Array | None = None
            if cols is None:
                dw, dx = by_depth(dy, need_dx)
            elif each:  # dw_n = cols_nᵀ dy_n, one batched product
                rows = math.prod(y_shape[1:4])
                dw = per_example.outer(cols.reshape(n, rows, cols.shape[1]),
                                       dy.reshape(n, rows, out)).reshape(n, *w_shape)
            else:  # BLAS reads cols.T in place
                dw = product(np.matmul, cols.T, dy2).reshape(w_shape)
            if cols is not None and need_dx:  # (w: params keep it alive anyway)
                dx = in_input_dtype(dx_fold(dy, w, plane_win, pads, x_shape, taps), x_dtype)
            grads = {"w": dw}
            if use_bias:
                grads["b"] = per_example.sums(dy) if each else rows_sum(dy2)
            return in_param_dtypes(grads, params), dx

        return y, pullback

    return Layer(init, apply, vjp, name=name, dx_optional=True)
