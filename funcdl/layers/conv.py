"""Convolutions, NHWC with the batch first: Conv2D, and Conv1D as a 1 x k Conv2D. The window
arguments and geometry they share with the pools are in ``_windows``.

Forward is im2col and one matrix product: the windows of the padded input, a strided view
``(N, OH, OW, kh, kw, C)``, are copied once into ``cols (N·OH·OW, kh·kw·C)`` and multiplied
by the kernel reshaped to ``(kh·kw·C, out)``. The pullback keeps ``cols`` (for
``dw = colsᵀ dy``) and the kernel (for ``dx``); ``dx`` is col2im: ``dcols = dy wᵀ``, computed
as one contiguous block per kernel offset, is added back into the padded input by one
strided slice per offset (kh·kw Python steps, each vectorised over batch and pixels), then
cropped. No ``np.add.at``, no loop over pixels, rows or the batch. ``groups > 1`` runs the
same steps as batched products over a group axis (``_grouped``), or with one input channel
per group (depthwise; ``_NHWC_OG``) as per-offset broadcast products in NHWC; ``groups=1``
runs as above.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from funcdl import initializers, random
from funcdl._args import bool_arg, call_name, int_arg
from funcdl.layers import _grouped
from funcdl.layers import _per_example as per_example
from funcdl.layers._im2col import crop, each_dw, fold, im2col, offsets, pad
from funcdl.layers._params import drawn, in_param_dtypes, initializer_arg, param_arrays
from funcdl.layers._sums import chan, product, rows_sum
from funcdl.layers._windows import (
    Pads,
    Window,
    fit,
    geometry,
    window_arg,
)
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

__all__ = ["Conv1D", "Conv2D"]

# Up to this many input channels, col2im runs channel-major (C, N, H, W): NumPy's inner
# loops then span an image row instead of C values (measured: 2-3x faster at C = 1..4).
_FEW_CHANNELS = 4
# Above this many bytes of im2col buffer (and more channels than the above), a convolution
# goes one kernel offset at a time: a product of each (N, OH, OW, C) slice of the padded
# input with that offset's (C, out) kernel, summed, with no buffer overflowing the caches.
# benchmarks/layer_micro.py, one thread, vjp + pullback, im2col against by offset:
# (64, 28, 28, 16) -> 16, 3x3 (a 28 MiB buffer) 23.2-23.4 against 15.1-16.3 ms; at 6.9 MiB
# ((64, 14, 14, 16) -> 32) within the noise, 5.8-7.6 against 6.1-6.2; at 3.4 MiB ((64, 7, 7,
# 32) -> 64) the one product ahead, 4.4 against 5.0.
_COLS_BYTES = 8 << 20
# A grouped convolution (_grouped) keeps its im2col buffer up to this many times larger: by
# offset, it copies each slice for its batched products. One thread, vjp + pullback, im2col
# against by offset, groups in brackets (a one-off script on a loaded 2-core machine):
# 13.8 MiB, (64, 14, 14, 32) -> 64 [2, 8, 32]: 14.2, 15.3, 24.1 against 26.4, 18.1, 29.4 ms;
# 27.6 MiB, (64, 28, 28, 16) -> 16 [2, 16]: 31.7, 59.7 against 43.9, 88.0; 55 MiB,
# (64, 28, 28, 32) -> 64 [2, 32]: 116, 293 against 140, 232.
_GROUPED_COLS = 4
# One input channel per group (Cg = 1) with up to this many outputs per group (Og), or an
# im2col buffer past the above, runs as broadcast products in NHWC (_grouped.depthwise):
# its elementwise passes grow with out = C·Og, the group-major im2col's copy does not. One
# thread, apply / vjp + pullback in ms, group-major against NHWC (one-off, idle machine):
# Og = 1, (32, 28, 28, 32), 3 x 3: 20-22 / 39-44 against 7-8 / 24-28; Og = 2: 25-30 / 52-58
# against 14-18 / 44-53; (32, 28, 28, 16) -> 32: 10 / 18-20 against 8 / 21-23; Og = 3,
# -> 48: 10-11 / 21-22 against 12-13 / 36-39; Og = 8, (32, 28, 28, 8) -> 64: 7 / 17-20
# against 16-20 / 48-59. By offset (past _GROUPED_COLS): (32, 28, 28, 32) -> 96, 5 x 5 (Og
# = 3) 189 / 235 against 63 / 167; (64, 28, 28, 32) -> 256 (Og = 8) 355 / 480 against 179 / 474.
_NHWC_OG = 2


# ---------------------------------------------------------------------------- params

def conv_params(name: str, key: random.Key, w_init: initializers.Initializer,
                b_init: initializers.Initializer | None, w_shape: tuple[int, ...],
                use_bias: bool) -> dict[str, Array]:
    """A convolution's params (Conv1D, Conv2D, Conv3D): ``w`` of ``w_shape`` (the kernel's
    axes, C/G, out) drawn by ``w_init``; with ``use_bias`` ``b (out,)`` by ``b_init``, or
    PyTorch's conv bias rule: U(±1/sqrt(fan_in)), fan_in = the kernel's cells times C/G."""
    k_w, k_b = random.split_for(key, 2, name)
    params = {"w": drawn(name, "w_init", w_init, k_w, w_shape)}
    if use_bias:
        bound = 1 / math.sqrt(math.prod(w_shape[:-1]))
        params["b"] = drawn(name, "b_init", b_init or initializers.uniform(bound, -bound),
                            k_b, (w_shape[-1],))
    return params


def conv_kernel(name: str, params: Any, kshape: tuple[int, ...], out: int, groups: int,
                use_bias: bool) -> Array:
    """``params['w']``, checked to be ``(*kshape, C/G, out)``, and ``params['b']`` ``(out,)``
    when ``use_bias``; a ValueError naming the layer and both shapes otherwise."""
    w, *b = param_arrays(name, params, ("w", "b") if use_bias else ("w",))
    if b and b[0].shape != (out,):
        raise ValueError(f"{name}: params['b'] must have shape ({out},), got {b[0].shape}")
    rank = len(kshape)
    if w.ndim != rank + 2 or w.shape[:rank] != kshape or w.shape[-1] != out:
        i = "in" if groups == 1 else f"in // {groups}"
        raise ValueError(f"{name}: params['w'] must have shape "
                         f"({', '.join(map(str, kshape))}, {i}, {out}), got {w.shape}")
    return w


def add_bias(y: Array, b: Array) -> Array:
    """``y + b`` for a fresh output ``(..., out)``: in place when ``y``'s dtype holds ``b``'s
    (a few channels per pixel: tiled rows, see chan), else promoted (a float64 bias beside
    float32 w and x, as Dense's)."""
    if b.dtype is y.dtype or y.dtype.itemsize >= b.dtype.itemsize:
        return chan(np.add, y, b, out=y)
    out: Array = y + b
    return out


# ---------------------------------------------------------------------------- convolution

def _conv(name: str, rank: int, out: int, win: Window, use_bias: bool,
          w_init: initializers.Initializer | None,
          b_init: initializers.Initializer | None, groups: int) -> Layer:
    """Conv2D (rank 2) and Conv1D (rank 1, run as a 1 x k Conv2D on ``(N, 1, L, C)``)."""
    kh, kw = win.size
    kshape = win.size[2 - rank:]  # the kernel's receptive shape: (kh, kw) or (k,)
    layout = "(N, H, W, " if rank == 2 else "(N, L, "
    use_bias = bool_arg(use_bias, name, "use_bias")
    w_init = initializer_arg(name, "w_init", w_init) or initializers.torch_default()
    b_init = initializer_arg(name, "b_init", b_init)

    def init(key: random.Key, in_shape: Shape) -> tuple[Shape, Any]:
        shape = check_in_shape(name, in_shape, rank=rank + 2, layout=f"{layout}C)")
        c = _grouped.in_channels(name, shape, groups)
        oh, ow, _ = fit(name, win, shape, rank, "kernel")
        params = conv_params(name, key, w_init, b_init, (*kshape, c // groups, out), use_bias)
        return (shape[0], *((oh, ow) if rank == 2 else (ow,)), out), params

    def check(params: Any, x: Any) -> tuple[Array, Array]:
        w = conv_kernel(name, params, kshape, out, groups, use_bias)
        x = as_array(name, x, w.dtype)
        if x.ndim != rank + 2 or x.shape[-1] != w.shape[-2] * groups:
            raise _grouped.channels_error(name, layout, w.shape, x.shape, groups)
        return cast_ints(x, w.dtype), w

    def forward(params: Any, x: Array,
                w: Array) -> tuple[Array, Array | None, Array, Pads, int, int, bool]:
        """``(y, cols or None, padded x, pads, OH, OW, nhwc)``: cols is None when the offsets
        went one at a time (``_COLS_BYTES``) or ``nhwc``; padded x and cols are group-major
        if groups > 1, but for ``nhwc`` (Cg = 1, ``_NHWC_OG``) x is NHWC, channels repeated."""
        oh, ow, pads = geometry(name, win, x.shape, rank, "kernel")
        x4 = x if rank == 2 else x[:, None]
        n, c = x4.shape[0], x4.shape[3]
        cols: Array | None = None
        limit = _COLS_BYTES if groups == 1 else _GROUPED_COLS * _COLS_BYTES
        big = c > _FEW_CHANNELS and n * oh * ow * kh * kw * c * x4.itemsize > limit
        nhwc = groups > 1 and w.shape[-2] == 1 and (out // groups <= _NHWC_OG or big)
        if nhwc:  # broadcast products on the input, each channel repeated Og times
            xp = pad(x4, pads, repeat=out // groups)
            y = _grouped.depthwise(xp, [sl for *_, sl in offsets(win, oh, ow)], w)
        elif groups > 1:  # group-major, (G·N, Hp, Wp, C/G): see _grouped
            xp = pad(_grouped.to_groups(x4, groups), pads)
            if big:
                y = _grouped.forward_offsets(xp, [sl for *_, sl in offsets(win, oh, ow)], w,
                                             groups)
            else:
                cols = im2col(xp, win, oh, ow)
                y = _grouped.forward_cols(cols, w, groups)
        elif big:
            xp = pad(x4, pads)
            wk = w.reshape(kh * kw, c, out)
            acc = None
            for k, (_, _, sl) in enumerate(offsets(win, oh, ow)):
                part = product(np.matmul, xp[sl], wk[k])  # (N, OH, OW, C) @ (C, out)
                acc = part if acc is None else np.add(acc, part, out=acc)
            assert acc is not None
            y = acc
        else:
            xp = pad(x4, pads)
            cols = im2col(xp, win, oh, ow)
            y = product(np.matmul, cols, w.reshape(-1, out))  # (one column: a gemv)
        if use_bias:
            y = add_bias(y, params["b"])
        shape = (n, *((oh, ow) if rank == 2 else (ow,)), out)
        return y.reshape(shape), cols, xp, pads, oh, ow, nhwc

    def apply(params: Any, x: Any, *, key: Any = None, train: bool = False) -> Array:
        del key, train
        x, w = check(params, x)
        return forward(params, x, w)[0]

    def vjp(params: Any, x: Array, w: Array) -> tuple[Array, Any, Pads, int, int]:
        """``(y, pullback, pads, OH, OW)`` for x and w as ``check`` returns them."""
        y, cols, xp, pads, oh, ow, _ = forward(params, x, w)
        # cols holds what dw needs; else the input, padded again in the pullback: the
        # padded copy would double the activations a CNN holds (the layer before keeps x)
        del xp
        x4: Any = None if cols is not None else x if rank == 2 else x[:, None]
        (t, b), (l, r) = pads
        n, c = x.shape[0], x.shape[-1]
        h, wd = (x.shape[1], x.shape[2]) if rank == 2 else (1, x.shape[1])
        w2 = w.reshape(-1, out)
        wk = w.reshape(kh * kw, c, out).transpose(0, 2, 1)  # per offset (out, C), a view
        padded = (n, h + t + b, wd + l + r, c)
        x_shape, y_shape, w_shape = x.shape, y.shape, w.shape  # shapes only: not x itself
        x_dtype = x.dtype
        y_dtype = y.dtype

        def pullback(dy: Array, need_dx: bool = True,
                     need_dw: bool = True) -> tuple[Any, Array | None]:
            dy = check_cotangent(name, dy, y_shape, y_dtype)
            dy2 = dy.reshape(-1, out)
            if not need_dw:  # per example: its own dw (any_vjp)
                grads: dict[str, Array] = {}
            elif cols is not None:
                # BLAS reads cols.T in place
                grads = {"w": product(np.matmul, cols.T, dy2).reshape(w_shape)}
            else:  # one offset at a time: dw[k] = (that slice of xp)ᵀ dy
                xp = pad(x4, pads)
                dw = np.empty((kh * kw, c, out), np.result_type(xp, dy2))
                for k, (_, _, sl) in enumerate(offsets(win, oh, ow)):
                    product(np.matmul, np.ascontiguousarray(xp[sl]).reshape(-1, c).T, dy2,
                            out=dw[k])
                grads = {"w": dw.reshape(w_shape)}
            if use_bias and need_dw:  # a gemv: dy2.sum(axis=0) is ~5x slower here
                grads["b"] = rows_sum(dy2)
            in_param_dtypes(grads, params)
            if not need_dx:
                return grads, None
            # dcols = dy wᵀ: with few channels laid out one contiguous block per kernel
            # offset, so that each step of the fold adds whole rows; else one offset's
            # block at a time, as the fold takes it (no kh·kw-fold buffer: 8.8 -> 6.3 ms on
            # (64, 28, 28, 16), the same numbers)
            if c <= _FEW_CHANNELS:
                dcols = product(np.matmul, w2, dy2.T).reshape(kh * kw, c, n, oh, ow).transpose(
                    0, 2, 3, 4, 1)
                buf = np.zeros((c, *padded[:3]), dcols.dtype).transpose(1, 2, 3, 0)
                dx = crop(fold(buf, win, oh, ow, lambda k, i, j: dcols[k]), pads, h, wd)
            else:
                buf = np.zeros(padded, np.result_type(dy2, wk))
                dx = crop(fold(buf, win, oh, ow,
                               lambda k, i, j: product(np.matmul, dy2, wk[k]).reshape(
                                   n, oh, ow, c)),
                          pads, h, wd)
            if c <= _FEW_CHANNELS:
                dx = np.ascontiguousarray(dx)  # back to NHWC memory order
            return grads, in_input_dtype(dx, x_dtype).reshape(x_shape)

        return y, pullback, pads, oh, ow

    def grouped_vjp(params: Any, x: Array, w: Array) -> tuple[Array, Any, Pads, int, int]:
        """vjp for groups > 1: the pullback's products on group-major arrays, or with one
        input channel per group broadcasts on the repeated NHWC input (_grouped)."""
        y, cols, xp, pads, oh, ow, nhwc = forward(params, x, w)
        if cols is not None:
            del xp
        (t, b), (l, r) = pads
        n, cg = x.shape[0], x.shape[-1] // groups
        h, wd = (x.shape[1], x.shape[2]) if rank == 2 else (1, x.shape[1])
        padded = (h + t + b, wd + l + r)
        slices = [sl for *_, sl in offsets(win, oh, ow)]
        x_shape, y_shape, w_shape = x.shape, y.shape, w.shape  # shapes only: not x itself
        x_dtype, y_dtype = x.dtype, y.dtype

        def pullback(dy: Array, need_dx: bool = True,
                     need_dw: bool = True) -> tuple[Any, Array | None]:
            dy = check_cotangent(name, dy, y_shape, y_dtype)
            dy2, dy4 = dy.reshape(-1, out), dy.reshape(n, oh, ow, out)
            dy_g = None if nhwc else _grouped.by_group(dy2, groups)
            grads: dict[str, Array] = {}
            if need_dw:  # (per example: its own dw, any_vjp)
                grads["w"] = (_grouped.depthwise_dw(xp, slices, dy4, w_shape) if dy_g is None
                              else _grouped.dw_cols(cols, dy_g, w_shape) if cols is not None
                              else _grouped.dw_offsets(xp, slices, dy_g, w_shape))
            if use_bias and need_dw:
                grads["b"] = rows_sum(dy2)
            in_param_dtypes(grads, params)
            if not need_dx:
                return grads, None
            if dy_g is None:  # the fold at out channels, then each group's Og summed
                buf = np.zeros((n, *padded, out), np.result_type(dy, w))
                _grouped.depthwise_fold(buf, slices, dy4, w)
                dx = crop(_grouped.merge(buf, out // groups), pads, h, wd)
            else:
                buf = np.zeros((groups * n, *padded, cg), np.result_type(dy_g, w))
                parts = _grouped.dx_parts(dy_g, w, (groups * n, oh, ow, cg))
                dx = _grouped.from_groups(crop(fold(buf, win, oh, ow, parts), pads, h, wd),
                                          groups)
            return grads, in_input_dtype(dx, x_dtype).reshape(x_shape)

        return y, pullback, pads, oh, ow

    batch_vjp = vjp if groups == 1 else grouped_vjp

    def any_vjp(params: Any, x: Any, *, key: Any = None, train: bool = False) -> Any:
        del key, train
        x, w = check(params, x)
        y, pullback, pads, oh, ow = batch_vjp(params, x, w)
        if not per_example.ON.get():
            return y, pullback
        # per example: the batch's pullback for dx, the weight's per example from the
        # input's windows (_per_example)
        x4 = x if rank == 2 else x[:, None]
        y_shape, y_dtype = y.shape, y.dtype

        def each(dy: Array, need_dx: bool = True) -> tuple[Any, Array | None]:
            dy = check_cotangent(name, dy, y_shape, y_dtype)
            dx = pullback(dy, True, False)[1] if need_dx else None  # dx alone
            dy4 = dy.reshape(x4.shape[0], oh, ow, out)
            grads = {"w": each_dw(x4, dy4, win, pads, oh, ow, groups, w.shape)}
            if use_bias:
                grads["b"] = per_example.sums(dy4)
            return in_param_dtypes(grads, params), dx

        return y, each

    return Layer(init, apply, any_vjp, name=name, dx_optional=True)


def _named(ctor: str, out: Any, kernel: Any, stride: Any, padding: Any, dilation: Any,
           use_bias: Any, groups: Any) -> str:
    """The constructor call as the layer's name, options shown when not at their default."""
    return call_name(ctor, (out, kernel), stride=(stride, 1), padding=(padding, "SAME"),
                     dilation=(dilation, 1), use_bias=(use_bias, True), groups=(groups, 1))


def Conv2D(out: int, kernel: int | tuple[int, int], stride: int | tuple[int, int] = 1,
           padding: Any = "SAME", dilation: int | tuple[int, int] = 1, use_bias: bool = True,
           w_init: initializers.Initializer | None = None,
           b_init: initializers.Initializer | None = None, groups: int = 1) -> Layer:
    """2-D convolution (cross-correlation, as every framework), NHWC:
    ``(N, H, W, C) -> (N, OH, OW, out)``; params ``{'w': (kh, kw, C/G, out), 'b': (out,)}``
    with ``G = groups`` (``Cg = C/G``, ``Og = out/G``, output ``o`` in group ``o // Og``).

    forward: ``y[n,p,q,o] = b[o] + Σ_{i,j,c<Cg} xp[n, p·sh + i·dh, q·sw + j·dw,
    (o // Og)·Cg + c] w[i,j,c,o]`` (G = 1: every c < C);
    vjp: per group ``g``, ``dw_g = cols_gᵀ dy_g``, ``db = Σ_{n,p,q} dy``,
    ``dx_g = col2im(dy_g w_gᵀ)`` (cropped), with ``cols_g`` group g's windows.

    Args:
      out: output channels. kernel, stride, dilation: an int or a pair (h, w).
      padding: ``'SAME'``, ``'VALID'``, an int, a pair ``(ph, pw)`` or
        ``((top, bottom), (left, right))``. ``'SAME'`` (the default, as Flax's ``nn.Conv``;
        Keras' and stax's is ``'VALID'``, PyTorch's 0) is JAX's: ``OH = ceil(H / sh)``,
        ``max((OH - 1)·sh + (kh - 1)·dh + 1 - H, 0)`` rows padded, the odd one at the
        bottom (right): with stride 2 not torch's ``padding=1`` for a 3 x 3 kernel on an
        even H (0 rows on top, 1 below); port that as ``padding=1``.
      use_bias, w_init, b_init: as Dense; the default init is PyTorch's Conv2d
        (U(±1/sqrt(fan_in)) for w and b, fan_in = kh·kw·C/groups).
      groups: PyTorch's ``groups``, JAX's ``feature_group_count``: C and out split into
        that many groups, each convolved separately; ``groups = C = out`` is depthwise.
    """
    name = _named("Conv2D", out, kernel, stride, padding, dilation, use_bias, groups)
    out = int_arg(out, name, "out", minimum=1)
    groups = _grouped.groups_arg(name, groups, out)
    win = window_arg(name, "kernel", kernel, stride, dilation, padding, 2)
    return _conv(name, 2, out, win, use_bias, w_init, b_init, groups)


def Conv1D(out: int, kernel: int, stride: int = 1, padding: Any = "SAME", dilation: int = 1,
           use_bias: bool = True, w_init: initializers.Initializer | None = None,
           b_init: initializers.Initializer | None = None, groups: int = 1) -> Layer:
    """1-D convolution, channels last: ``(N, L, C) -> (N, OL, out)``; params
    ``{'w': (k, C/G, out), 'b': (out,)}``, ``G = groups`` as Conv2D's. Runs as a 1 x k
    Conv2D on ``(N, 1, L, C)``.

    forward: ``y[n,p,o] = b[o] + Σ_{j,c<Cg} xp[n, p·s + j·d, (o // Og)·Cg + c] w[j,c,o]``;
    vjp: per group ``g``, ``dw_g = cols_gᵀ dy_g``, ``db = Σ_{n,p} dy``,
    ``dx_g = col2im(dy_g w_gᵀ)`` (cropped).
    ``padding``: ``'SAME'``, ``'VALID'``, an int or a pair ``(left, right)``.
    """
    name = _named("Conv1D", out, kernel, stride, padding, dilation, use_bias, groups)
    out = int_arg(out, name, "out", minimum=1)
    groups = _grouped.groups_arg(name, groups, out)
    win = window_arg(name, "kernel", kernel, stride, dilation, padding, 1)
    return _conv(name, 1, out, win, use_bias, w_init, b_init, groups)
