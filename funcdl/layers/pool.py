"""Pooling, NHWC: MaxPool2D, AvgPool2D, GlobalAvgPool.

Windows come from ``conv``'s helpers: the forward reduces one strided ``(N, OH, OW, C)``
slice per window offset (kh·kw vectorised NumPy calls; measured several times faster than
reducing a 6-D window view), and the backward adds each offset's share back the same way.
When the windows tile the image (stride == window, no padding) the backward writes straight
into an ``(N, OH, kh, OW, kw, C)`` buffer instead: no zero fill, no additions.

Integer inputs are pooled as float32.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from funcdl import random
from funcdl._args import bool_arg
from funcdl.layers.base import (
    Array,
    Layer,
    Shape,
    as_floats,
    check_cotangent,
    check_in_shape,
    no_params,
    ones,
)
from funcdl.layers.conv import (
    NO_PADS,
    Pads,
    Window,
    call_name,
    crop,
    fit,
    fold,
    geometry,
    int_tuple,
    offsets,
    pad,
    padding_arg,
)

__all__ = ["AvgPool2D", "GlobalAvgPool", "MaxPool2D"]


def _window(name: str, window: Any, stride: Any, padding: Any) -> Window:
    size = int_tuple(name, "window", window, 2)
    steps = size if stride is None else int_tuple(name, "stride", stride, 2)
    pads = padding_arg(name, padding, 2)
    # A pad as wide as the window would make windows of padding only (no maximum, no
    # pixel to average); PyTorch refuses those too. SAME never makes one.
    if not isinstance(pads, str) and any(p >= k for (lo, hi), k in zip(pads, size)
                                         for p in (lo, hi)):
        raise ValueError(f"{name}: padding must be smaller than the window {size} on each "
                         f"side, got {pads}")
    return Window(size, steps, (1, 1), pads)


def _pool_init(name: str, win: Window) -> Any:
    def init(key: random.Key, in_shape: Shape) -> tuple[Shape, Any]:
        del key
        shape = check_in_shape(name, in_shape)
        if len(shape) != 4:
            raise ValueError(f"{name}: expected an input shape (N, H, W, C) of rank 4, got "
                             f"{shape} (rank {len(shape)})")
        oh, ow, _ = fit(name, win, shape, 2, "window")
        return (shape[0], oh, ow, shape[3]), ()
    return init


def _pool_input(name: str, win: Window, x: Any, fill: float
                ) -> tuple[Array, Array, int, int, Pads, list[Any]]:
    """``(x, x padded with fill, out height, out width, pads, the window offsets' slices of
    the padded input)``, the input checked and integers cast to float32."""
    x = as_floats(name, x)
    if x.ndim != 4:
        raise ValueError(f"{name}: expected an input (N, H, W, C) of rank 4, got shape "
                         f"{x.shape}")
    oh, ow, pads = geometry(name, win, x.shape, 2, "window")
    return x, pad(x, pads, fill), oh, ow, pads, [sl for _, _, sl in offsets(win, oh, ow)]


def _tiles(win: Window, pads: Pads) -> bool:
    """Windows tile the image (possibly leaving a cropped margin, as VALID floors)."""
    return win.stride == win.size and pads == NO_PADS


def _untile(dxb: Array, x_shape: tuple[int, ...]) -> Array:
    """``(N, OH, kh, OW, kw, C)`` blocks back to the image; a VALID margin gets zeros."""
    n, oh, kh, ow, kw, c = dxb.shape
    dx = dxb.reshape(n, oh * kh, ow * kw, c)
    if dx.shape == x_shape:
        return dx
    full = np.zeros(x_shape, dxb.dtype)
    full[:, :oh * kh, :ow * kw] = dx
    return full


def MaxPool2D(window: int | tuple[int, int], stride: int | tuple[int, int] | None = None,
              padding: Any = "VALID") -> Layer:
    """Max over each window, NHWC: ``(N, H, W, C) -> (N, OH, OW, C)``.

    forward: ``y[n,p,q,c] = max_{i,j} xp[n, p·sh + i, q·sw + j, c]`` (xp: x padded with -inf);
    vjp: ``dx[n, p·sh + i*, q·sw + j*, c] += dy[n,p,q,c]`` at each window's arg-max ``(i*, j*)``.

    Ties: the first maximum in row-major window order (smallest i, then smallest j) takes
    all of ``dy``; the others get 0. Padding never does: a window that is all -inf sends its
    ``dy`` to its first real cell (both as PyTorch's CPU kernel: checked against torch 2.13).
    ``stride`` defaults to the window (PyTorch, Keras). ``padding``: ``'VALID'``, ``'SAME'``,
    an int, a pair or ((top, bottom), (left, right)), narrower than the window.
    """
    name = call_name("MaxPool2D", (window,), stride=(stride, None),
                     padding=(padding, "VALID"))
    win = _window(name, window, stride, padding)
    kh, kw = win.size
    arg_dtype = np.uint8 if kh * kw <= 256 else np.int32

    def apply(params: Any, x: Any, *, key: Any = None, train: bool = False) -> Array:
        no_params(name, params)
        del key, train
        _, xp, _, _, _, (first, *rest) = _pool_input(name, win, x, -np.inf)
        y: Array = xp[first].copy()
        for sl in rest:
            np.maximum(y, xp[sl], out=y)
        return y

    def vjp(params: Any, x: Any, *, key: Any = None, train: bool = False) -> Any:
        no_params(name, params)
        del key, train
        x, xp, oh, ow, pads, (first, *rest) = _pool_input(name, win, x, -np.inf)
        y = xp[first].copy()
        arg = np.zeros(y.shape, arg_dtype)  # the arg-max's offset k = i·kw + j
        better = np.empty(y.shape, bool)
        for k, sl in enumerate(rest, 1):
            np.greater(xp[sl], y, out=better)  # strict: an equal later value does not win
            # k grows, so max(arg, better·k) sets arg = k exactly where this offset wins
            np.maximum(arg, np.multiply(better, k, dtype=arg_dtype), out=arg)
            np.maximum(y, xp[sl], out=y)
        # fmin: one pass, no temporary (as (y == -inf).any() needs), and NaN ignored
        if pads != NO_PADS and y.size and np.fmin.reduce(y, axis=None) == -np.inf:
            arg = _first_real_where_all_neg_inf(y, arg, win, pads, oh, ow)
        tiles, xp_shape, x_shape, x_dtype = _tiles(win, pads), xp.shape, x.shape, x.dtype

        def pullback(dy: Array) -> tuple[Any, Array]:
            dy = check_cotangent(name, dy, y.shape)
            dtype = np.result_type(dy.dtype, x_dtype)
            if tiles:
                dxb = np.empty((dy.shape[0], oh, kh, ow, kw, dy.shape[3]), dtype)
                for k, (i, j, _) in enumerate(offsets(win, oh, ow)):
                    np.multiply(dy, arg == k, out=dxb[:, :, i, :, j])
                return (), _untile(dxb, x_shape)
            dxp = fold(np.zeros(xp_shape, dtype), win, oh, ow,
                       lambda k, i, j: dy * (arg == k))
            return (), crop(dxp, pads, x_shape[1], x_shape[2])

        return y, pullback

    return Layer(_pool_init(name, win), apply, vjp, name=name)


def _first_real_where_all_neg_inf(y: Array, arg: Array, win: Window, pads: Pads, oh: int,
                                  ow: int) -> Array:
    """``arg`` with each window whose every cell is -inf pointing at its first real cell,
    not at padding (which is -inf too), so that its dy reaches the input as in PyTorch,
    whose kernel starts each window at its first real cell."""
    (top, _), (left, _) = pads
    (sh, sw), kw = win.stride, win.size[1]
    i0 = np.maximum(0, top - np.arange(oh) * sh)  # first real row and column of each window
    j0 = np.maximum(0, left - np.arange(ow) * sw)
    k0 = (i0[:, None] * kw + j0[None, :]).astype(arg.dtype)
    return np.where(y == -np.inf, k0[None, :, :, None], arg)


def _real_counts(out: int, size: int, k: int, s: int, lo: int) -> Array:
    """Per output position along one axis, how many of the window's pixels are real."""
    start = np.arange(out) * s - lo
    counts: Array = np.clip(start + k, 0, size) - np.clip(start, 0, size)
    return counts


def AvgPool2D(window: int | tuple[int, int], stride: int | tuple[int, int] | None = None,
              padding: Any = "VALID", count_include_pad: bool = True) -> Layer:
    """Mean over each window, NHWC: ``(N, H, W, C) -> (N, OH, OW, C)``.

    forward: ``y[n,p,q,c] = Σ_{i,j} xp[n, p·sh + i, q·sw + j, c] / m[p,q]`` (xp: zero-padded);
    vjp: ``dx[n, p·sh + i, q·sw + j, c] += dy[n,p,q,c] / m[p,q]`` for every ``(i, j)``.

    ``m = kh·kw`` with ``count_include_pad=True`` (PyTorch's default; padding counts as
    zeros), else the number of real pixels in the window. ``stride`` defaults to the window.
    """
    name = call_name("AvgPool2D", (window,), stride=(stride, None),
                     padding=(padding, "VALID"), count_include_pad=(count_include_pad, True))
    count_include_pad = bool_arg(count_include_pad, name, "count_include_pad")
    win = _window(name, window, stride, padding)
    kh, kw = win.size

    def scale(x: Array, oh: int, ow: int, pads: Pads) -> float | Array:
        """``1 / m``: a Python float (keeps x's dtype) or an (1, OH, OW, 1) array of it."""
        if count_include_pad or pads == NO_PADS:
            return 1.0 / (kh * kw)
        m = np.outer(_real_counts(oh, x.shape[1], kh, win.stride[0], pads[0][0]),
                     _real_counts(ow, x.shape[2], kw, win.stride[1], pads[1][0]))
        inv: Array = (1.0 / m).astype(x.dtype)[None, :, :, None]
        return inv

    def forward(x: Any) -> tuple[Array, Array, int, int, Pads, float | Array]:
        x, xp, oh, ow, pads, (first, *rest) = _pool_input(name, win, x, 0.0)
        y = xp[first].copy()
        for sl in rest:
            np.add(y, xp[sl], out=y)
        inv = scale(x, oh, ow, pads)
        y *= inv
        return y, x, oh, ow, pads, inv

    def apply(params: Any, x: Any, *, key: Any = None, train: bool = False) -> Array:
        no_params(name, params)
        del key, train
        return forward(x)[0]

    def vjp(params: Any, x: Any, *, key: Any = None, train: bool = False) -> Any:
        no_params(name, params)
        del key, train
        y, xa, oh, ow, pads, inv = forward(x)
        x_shape, tiles = xa.shape, _tiles(win, pads)
        (t, b), (l, r) = pads
        xp_shape = (x_shape[0], x_shape[1] + t + b, x_shape[2] + l + r, x_shape[3])

        def pullback(dy: Array) -> tuple[Any, Array]:
            dy = check_cotangent(name, dy, y.shape)
            g = dy * inv
            if tiles:
                n, c = x_shape[0], x_shape[3]
                dxb = np.broadcast_to(g[:, :, None, :, None], (n, oh, kh, ow, kw, c))
                return (), _untile(np.ascontiguousarray(dxb), x_shape)
            dxp = fold(np.zeros(xp_shape, g.dtype), win, oh, ow, lambda k, i, j: g)
            return (), crop(dxp, pads, x_shape[1], x_shape[2])

        return y, pullback

    return Layer(_pool_init(name, win), apply, vjp, name=name)


def GlobalAvgPool() -> Layer:
    """Mean over every axis between the batch and the channels: ``(N, ..., C) -> (N, C)``.

    forward: ``y[n,c] = Σ_s x[n,s,c] / S`` (S pixels); vjp: ``dx[n,s,c] = dy[n,c] / S``.
    """
    name = "GlobalAvgPool()"

    def init(key: random.Key, in_shape: Shape) -> tuple[Shape, Any]:
        del key
        shape = check_in_shape(name, in_shape)
        if len(shape) < 3:
            raise ValueError(f"{name}: expected an input shape (N, ..., C) of rank >= 3, got "
                             f"{shape} (rank {len(shape)})")
        if 0 in shape[1:-1]:
            raise ValueError(f"{name}: cannot average over no pixels, got in_shape {shape}")
        return (shape[0], shape[-1]), ()

    def check(x: Any) -> Array:
        a = as_floats(name, x)
        if a.ndim < 3 or 0 in a.shape[1:-1]:
            raise ValueError(f"{name}: expected an input (N, ..., C) of rank >= 3 with "
                             f"pixels, got shape {a.shape}")
        return a

    def apply(params: Any, x: Any, *, key: Any = None, train: bool = False) -> Array:
        no_params(name, params)
        del key, train
        x = check(x)
        # Σ over the pixels as a batch of matrix-vector products: NumPy's mean over the
        # middle axes adds one slice at a time, 8-19x slower on (64, 28, 28, 16)
        n, c, s = x.shape[0], x.shape[-1], math.prod(x.shape[1:-1])
        y: Array = np.matmul(ones(s, x.dtype), x.reshape(n, s, c))
        y *= 1.0 / s
        return y

    def vjp(params: Any, x: Any, *, key: Any = None, train: bool = False) -> Any:
        y = apply(params, x)
        x_shape = np.shape(x)
        inv = 1.0 / math.prod(x_shape[1:-1])

        def pullback(dy: Array) -> tuple[Any, Array]:
            dy = check_cotangent(name, dy, y.shape)
            g = (dy * inv).reshape(dy.shape[0], *([1] * (len(x_shape) - 2)), dy.shape[1])
            dx: Array = np.broadcast_to(g, x_shape).copy()
            return (), dx

        return y, pullback

    return Layer(init, apply, vjp, name=name)
