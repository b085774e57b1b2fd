"""Pooling, NHWC: MaxPool2D, AvgPool2D, GlobalAvgPool.

The forward reduces one ``(N, OH, OW, C)`` slice per window offset (kh·kw vectorised steps),
each first copied pixel by pixel into a contiguous buffer by ``_pooling.gather`` (the padding
never materialised), so that the reductions run on contiguous memory; the backward adds
each offset's share back with its adjoint ``_pooling.scatter``. On (64, 28, 28, 16) float32
(``benchmarks/pool_norm_micro.py``) this made MaxPool2D(2) 1.3x faster to apply and its vjp
forward 2x, MaxPool2D(3, 2, 'SAME') 1.5x and 2.2x, than reducing strided slices in place.

Integer inputs are pooled as float32.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from funcdl import random
from funcdl._args import bool_arg
from funcdl.layers._pooling import gather, scatter
from funcdl.layers._sums import ones
from funcdl.layers._windows import (
    NO_PADS,
    Pads,
    Window,
    call_name,
    fit,
    geometry,
    window_arg,
)
from funcdl.layers.base import (
    Array,
    Layer,
    Pointwise,
    Shape,
    as_floats,
    check_cotangent,
    check_in_shape,
    kept,
    no_params,
)

__all__ = ["AvgPool2D", "GlobalAvgPool", "MaxPool2D"]


def _window(name: str, window: Any, stride: Any, padding: Any) -> Window:
    win = window_arg(name, "window", window, window if stride is None else stride, 1,
                     padding, 2)
    size, pads = win.size, win.padding
    # A pad as wide as the window would make windows of padding only (no maximum, no
    # pixel to average); PyTorch refuses those too. SAME never makes one.
    if not isinstance(pads, str) and any(p >= k for (lo, hi), k in zip(pads, size)
                                         for p in (lo, hi)):
        raise ValueError(f"{name}: padding must be smaller than the window {size} on each "
                         f"side, got {pads}")
    return win


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


def _pool_input(name: str, win: Window, x: Any) -> tuple[Array, int, int, Pads]:
    """``(x, out height, out width, pads)``, the input checked and integers cast to float32."""
    x = as_floats(name, x)
    if x.ndim != 4:
        raise ValueError(f"{name}: expected an input (N, H, W, C) of rank 4, got shape "
                         f"{x.shape}")
    oh, ow, pads = geometry(name, win, x.shape, 2, "window")
    return x, oh, ow, pads


def _reduce(name: str, win: Window, x: Any, fill: float, step: Any) -> Any:
    """``y`` = the first offset's slice of the padded input, then ``step(y, x_k, k)`` for
    each further offset ``k`` in row-major order; returns ``(y, x, pads)``."""
    x, oh, ow, pads = _pool_input(name, win, x)
    kh, kw = win.size
    y = gather(np.empty((x.shape[0], oh, ow, x.shape[3]), x.dtype), x, win, pads, 0, 0, fill)
    scratch = np.empty_like(y)  # one buffer for every further offset's slice
    for k in range(1, kh * kw):
        step(y, gather(scratch, x, win, pads, k // kw, k % kw, fill), k)
    return y, x, pads


def MaxPool2D(window: int | tuple[int, int] = 2, stride: int | tuple[int, int] | None = None,
              padding: Any = "VALID") -> Layer:
    """Max over each window, NHWC: ``(N, H, W, C) -> (N, OH, OW, C)``.

    forward: ``y[n,p,q,c] = max_{i,j} xp[n, p·sh + i, q·sw + j, c]`` (xp: x padded with -inf);
    vjp: ``dx[n, p·sh + i*, q·sw + j*, c] += dy[n,p,q,c]`` at each window's arg-max ``(i*, j*)``.

    Ties: the first maximum in row-major window order (smallest i, then smallest j) takes
    all of ``dy``; the others get 0. Padding never does: a window that is all -inf sends its
    ``dy`` to its first real cell. A NaN is the maximum of its window, the last NaN if
    several (all three as PyTorch's CPU kernel: checked against torch 2.13).
    ``window`` defaults to 2 x 2 (Keras' ``pool_size``), ``stride`` to the window (PyTorch,
    Keras). ``padding``: ``'VALID'``, ``'SAME'``, an int, a pair or ((top, bottom), (left,
    right)), narrower than the window.
    """
    name = call_name("MaxPool2D", (window,), stride=(stride, None),
                     padding=(padding, "VALID"))
    win = _window(name, window, stride, padding)

    def apply(params: Any, x: Any, *, key: Any = None, train: bool = False) -> Array:
        no_params(name, params)
        del key, train
        y: Array = _reduce(name, win, x, -np.inf,
                           lambda y, xk, k: np.maximum(y, xk, out=y))[0]
        return y

    def vjp(params: Any, x: Any, *, key: Any = None, train: bool = False) -> Any:
        no_params(name, params)
        del key, train
        # better[k-1] = x_k > max(x_0..x_{k-1}), strict (an equal later value does not
        # win): one comparison per offset is all the vjp adds to apply's work; each
        # window's arg-max is the last offset whose mask is set (offset 0 if none).
        better: list[Array] = []

        def step(y: Array, xk: Array, k: int) -> None:
            better.append(np.greater(xk, y))
            np.maximum(y, xk, out=y)

        y, xa, pads = _reduce(name, win, x, -np.inf, step)
        # one pass each, no temporary: maximum keeps a NaN, fmin ignores it
        if y.size and np.isnan(np.maximum.reduce(y, axis=None)):  # redo better, NaN-aware
            _reduce(name, win, xa, -np.inf, lambda y, xk, k: _nan_step(better[k - 1], y, xk))
        if pads != NO_PADS and y.size and np.fmin.reduce(y, axis=None) == -np.inf:
            _first_real_where_all_neg_inf(y, better, win, pads)
        x_shape, dtype = xa.shape, y.dtype

        def pullback(dy: Array) -> tuple[Any, Array]:
            dy = check_cotangent(name, dy, y.shape, dtype)  # in y's (x's) float dtype
            wins = _winners(better)

            def share(k: int) -> Array:  # dy at the windows whose arg-max is offset k
                # a float mask: NumPy's masked copies (np.where, copyto(where=)) and
                # products with a bool run 3-40x slower on random masks
                return dy if wins is None else np.multiply(dy, wins[k].astype(dtype))

            return params, scatter(x_shape, dtype, win, pads, share)

        return y, pullback

    def vjp_then(params: Any, x: Any, act: Pointwise | None) -> Any:
        # z = act.f(pool(x)), dz through act.df first; Sequential also runs a ReLU before
        # the pool this way (see Layer.selects_max)
        y, pull = vjp(params, x)
        if act is None:
            return y, pull
        z = kept(act.f(y))
        z_shape, z_dtype = z.shape, z.dtype

        def pullback(dz: Array) -> Any:
            return pull(act.df(y, z, check_cotangent(act.name, dz, z_shape, z_dtype)))

        return z, pullback

    return Layer(_pool_init(name, win), apply, vjp, name=name, vjp_then=vjp_then,
                 selects_max=True)


def _winners(better: list[Array]) -> list[Array] | None:
    """For each offset k, where it is the arg-max: the last k whose ``better`` mask is set
    (``better[k-1]`` for offset k), offset 0 where none is; None for a 1 x 1 window."""
    if not better:
        return None
    done = better[-1]
    wins = [done]
    for b in reversed(better[:-1]):
        wins.append(np.greater(b, done))  # b and not a later offset's
        done = done | b
    wins.append(~done)
    return wins[::-1]


def _nan_step(better: Array, run: Array, xk: Array) -> None:
    """One offset of MaxPool2D's forward by PyTorch's rule for NaN, ``better`` redone in
    place: a NaN beats every value before it, a later NaN an earlier one, and nothing after
    a NaN beats it (``x_k > running max`` or ``x_k`` is NaN, the running max NaN from the
    first NaN on). Only for inputs with a NaN in some window: a pass more per offset."""
    np.greater(xk, run, out=better)
    better |= np.isnan(xk)
    np.maximum(run, xk, out=run)


def _first_real_where_all_neg_inf(y: Array, better: list[Array], win: Window,
                                  pads: Pads) -> None:
    """Point each window whose every cell is -inf at its first real cell, not at padding
    (which is -inf too), by setting its ``better`` masks (in place) to select that cell:
    its dy then reaches the input as in PyTorch, whose kernel starts each window at its
    first real cell."""
    (top, _), (left, _) = pads
    (sh, sw), kw = win.stride, win.size[1]
    oh, ow = y.shape[1:3]
    i0 = np.maximum(0, top - np.arange(oh) * sh)  # first real row and column of each window
    j0 = np.maximum(0, left - np.arange(ow) * sw)
    k0 = i0[:, None] * kw + j0[None, :]
    neg = y == -np.inf
    for k, b in enumerate(better, 1):
        np.copyto(b, (k0 == k)[None, :, :, None], where=neg)


def _real_counts(out: int, size: int, k: int, s: int, lo: int) -> Array:
    """Per output position along one axis, how many of the window's pixels are real."""
    start = np.arange(out) * s - lo
    counts: Array = np.clip(start + k, 0, size) - np.clip(start, 0, size)
    return counts


def AvgPool2D(window: int | tuple[int, int] = 2, stride: int | tuple[int, int] | None = None,
              padding: Any = "VALID", count_include_pad: bool | None = None) -> Layer:
    """Mean over each window, NHWC: ``(N, H, W, C) -> (N, OH, OW, C)``.

    forward: ``y[n,p,q,c] = Σ_{i,j} xp[n, p·sh + i, q·sw + j, c] / m[p,q]`` (xp: zero-padded);
    vjp: ``dx[n, p·sh + i, q·sw + j, c] += dy[n,p,q,c] / m[p,q]`` for every ``(i, j)``.

    ``m = kh·kw`` (padding counts as zeros) with ``count_include_pad=True``, and by default
    for explicit padding, as PyTorch's ``padding=int``; else the number of real pixels in
    the window: with False, and by default for ``'SAME'``, as TF, Keras and JAX's stax
    (Flax's ``avg_pool`` counts the padding). ``window`` defaults to 2 x 2 (Keras'
    ``pool_size``), ``stride`` to the window.
    """
    name = call_name("AvgPool2D", (window,), stride=(stride, None),
                     padding=(padding, "VALID"), count_include_pad=(count_include_pad, None))
    win = _window(name, window, stride, padding)
    count_include_pad = (win.padding != "SAME" if count_include_pad is None
                         else bool_arg(count_include_pad, name, "count_include_pad"))
    kh, kw = win.size

    def scale(x: Array, oh: int, ow: int, pads: Pads) -> float | Array:
        """``1 / m``: a Python float (keeps x's dtype) or an (1, OH, OW, 1) array of it."""
        if count_include_pad or pads == NO_PADS:
            return 1.0 / (kh * kw)
        m = np.outer(_real_counts(oh, x.shape[1], kh, win.stride[0], pads[0][0]),
                     _real_counts(ow, x.shape[2], kw, win.stride[1], pads[1][0]))
        inv: Array = (1.0 / m).astype(x.dtype)[None, :, :, None]
        return inv

    def forward(x: Any) -> tuple[Array, Array, Pads, float | Array]:
        y, xa, pads = _reduce(name, win, x, 0.0, lambda y, xk, k: np.add(y, xk, out=y))
        inv = scale(xa, y.shape[1], y.shape[2], pads)
        y *= inv
        return y, xa, pads, inv

    def apply(params: Any, x: Any, *, key: Any = None, train: bool = False) -> Array:
        no_params(name, params)
        del key, train
        return forward(x)[0]

    def vjp(params: Any, x: Any, *, key: Any = None, train: bool = False) -> Any:
        no_params(name, params)
        del key, train
        y, xa, pads, inv = forward(x)
        x_shape = xa.shape

        def pullback(dy: Array) -> tuple[Any, Array]:
            dy = check_cotangent(name, dy, y.shape, y.dtype)
            g = dy * inv  # every offset's share
            return params, scatter(x_shape, g.dtype, win, pads, lambda k: g)

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
            dy = check_cotangent(name, dy, y.shape, y.dtype)
            g = (dy * inv).reshape(dy.shape[0], *([1] * (len(x_shape) - 2)), dy.shape[1])
            dx: Array = np.broadcast_to(g, x_shape).copy()
            return params, dx

        return y, pullback

    return Layer(init, apply, vjp, name=name)
