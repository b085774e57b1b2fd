"""Pooling, NHWC: MaxPool2D, AvgPool2D, GlobalAvgPool.

The forward reduces one ``(N, OH, OW, C)`` slice per window offset (kh·kw vectorised steps),
each first copied pixel by pixel into a contiguous buffer by ``_pooling.gather`` (the padding
never materialised), so that the reductions run on contiguous memory; the backward adds
each offset's share back with its adjoint ``_pooling.scatter``. On (64, 28, 28, 16) float32
(``benchmarks/pool_norm_micro.py``) this made MaxPool2D(2) 1.3x faster to apply and its vjp
forward 2x, MaxPool2D(3, 2, 'SAME') 1.5x and 2.2x, than reducing strided slices in place.

Integer inputs are pooled as float32. MaxPool1D and AvgPool1D (``pool1d``) run as a 1 x k
pool on ``(N, 1, L, C)``, the way Conv1D runs as a 1 x k Conv2D.

``ceil_mode=True`` (PyTorch's) sizes the output by ``ceil`` instead of ``floor``, dropping a
last window that would start in the bottom/right padding; the last window may then run
past the padded edge, and its cells there count for nothing (MaxPool ignores them,
AvgPool's divisor leaves them out: PyTorch's rules).
It takes ``'VALID'`` (the same as padding 0) or explicit padding; ``'SAME'`` already
sizes the output by ``ceil(in / stride)``, so ``ceil_mode`` with it is refused.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from funcdl import random
from funcdl._args import bool_arg, call_name
from funcdl.layers._pooling import check_windows, counts, gather, scatter
from funcdl.layers._sums import rows_sum
from funcdl.layers._windows import (
    NO_PADS,
    Pads,
    Window,
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

_LAYOUT = {1: "(N, L, C)", 2: "(N, H, W, C)"}  # by rank: the 1-D pools are in pool1d


def _window(name: str, rank: int, window: Any, stride: Any, padding: Any, dilation: Any,
            ceil_mode: Any) -> Window:
    """The pool's window, checked; ``rank`` 1 is a 1 x k window (MaxPool1D, AvgPool1D)."""
    win = window_arg(name, "window", window, window if stride is None else stride, dilation,
                     padding, rank, bool_arg(ceil_mode, name, "ceil_mode"))
    pads, span = win.padding, tuple((k - 1) * d + 1 for k, d in zip(win.size, win.dilation))
    if win.ceil and pads == "SAME":
        raise ValueError(f"{name}: ceil_mode=True needs padding 'VALID' or explicit padding, "
                         f"got padding 'SAME' (which already gives ceil(in / stride) outputs); "
                         f"drop ceil_mode or pass padding='VALID' or an int")
    # A pad as wide as the window (its extent, dilated) would make windows of padding
    # only (no maximum, no pixel to average); PyTorch refuses those too (at half the
    # extent). SAME never makes one; a dilated window still can: check_windows.
    if not isinstance(pads, str) and any(p >= k for (lo, hi), k in zip(pads, span)
                                         for p in (lo, hi)):
        what = ("window" if win.dilation == (1, 1) else "window's extent (k - 1)·dilation + 1")
        got = pads if rank == 2 else pads[1]
        raise ValueError(f"{name}: padding must be smaller than the {what} "
                         f"{span[2 - rank:]} on each side, got {got}")
    return win


def _pool_init(name: str, win: Window, rank: int) -> Any:
    def init(key: random.Key, in_shape: Shape) -> tuple[Shape, Any]:
        del key
        shape = check_in_shape(name, in_shape, rank=rank + 2, layout=_LAYOUT[rank])
        oh, ow, pads = fit(name, win, shape, rank, "window")
        check_windows(name, win, shape, (oh, ow), pads)
        return (shape[0], *((oh, ow) if rank == 2 else (ow,)), shape[-1]), ()
    return init


def _pool_input(name: str, win: Window, rank: int, x: Any) -> tuple[Array, int, int, Pads]:
    """``(x, out height, out width, pads)``, the input checked, integers cast to float32,
    and a 1-D input ``(N, L, C)`` viewed as ``(N, 1, L, C)``."""
    x = as_floats(name, x)
    if x.ndim != rank + 2:
        raise ValueError(f"{name}: expected an input {_LAYOUT[rank]} of rank {rank + 2}, got "
                         f"shape {x.shape}")
    oh, ow, pads = geometry(name, win, x.shape, rank, "window")
    if win.dilation != (1, 1):
        check_windows(name, win, x.shape, (oh, ow), pads)
    return (x if rank == 2 else x[:, None]), oh, ow, pads


def _reduce(name: str, win: Window, rank: int, x: Any, fill: float, step: Any) -> Any:
    """``y`` = the first offset's slice of the padded input, then ``step(y, x_k, k)`` for
    each further offset ``k`` in row-major order; returns ``(y, x, pads)``, ``y`` and ``x``
    as ``(N, OH, OW, C)`` and ``(N, H, W, C)`` (``OH = H = 1`` for rank 1)."""
    x, oh, ow, pads = _pool_input(name, win, rank, x)
    kh, kw = win.size
    y = gather(np.empty((x.shape[0], oh, ow, x.shape[3]), x.dtype), x, win, pads, 0, 0, fill)
    scratch = np.empty_like(y)  # one buffer for every further offset's slice
    for k in range(1, kh * kw):
        step(y, gather(scratch, x, win, pads, k // kw, k % kw, fill), k)
    return y, x, pads


def MaxPool2D(window: int | tuple[int, int] = 2, stride: int | tuple[int, int] | None = None,
              padding: Any = "VALID", *, dilation: int | tuple[int, int] = 1,
              ceil_mode: bool = False) -> Layer:
    """Max over each window, NHWC: ``(N, H, W, C) -> (N, OH, OW, C)``.

    forward: ``y[n,p,q,c] = max_{i,j} xp[n, p·sh + i·dh, q·sw + j·dw, c]`` (xp: x padded
    with -inf, and -inf past the padding);
    vjp: ``dx[n, p·sh + i*·dh, q·sw + j*·dw, c] += dy[n,p,q,c]`` at each window's arg-max
    ``(i*, j*)`` (shifted back by the top/left padding).

    Ties: the first maximum in row-major window order (smallest i, then smallest j) takes
    all of ``dy``; the others get 0. Padding never does: a window that is all -inf sends its
    ``dy`` to its first real cell. A NaN is the maximum of its window, the last NaN if
    several (all three as PyTorch's CPU kernel: checked against torch 2.13).
    ``window`` defaults to 2 x 2 (Keras' ``pool_size``), ``stride`` to the window (PyTorch,
    Keras). ``padding``: ``'VALID'``, ``'SAME'``, an int, a pair or ((top, bottom), (left,
    right)), narrower than the window's extent ``(k - 1)·dilation + 1``. ``dilation``
    (an int or a pair): PyTorch's, the window's cells that far apart; a dilated window
    that reads padding only is refused. ``ceil_mode``: PyTorch's output size (see the
    module docstring); not with ``'SAME'``.
    """
    name = call_name("MaxPool2D", (window,), stride=(stride, None),
                     padding=(padding, "VALID"), dilation=(dilation, 1),
                     ceil_mode=(ceil_mode, False))
    return max_pool(name, 2, window, stride, padding, dilation, ceil_mode)


def max_pool(name: str, rank: int, window: Any, stride: Any, padding: Any, dilation: Any,
             ceil_mode: Any) -> Layer:
    """MaxPool2D (rank 2) and MaxPool1D (rank 1, run as a 1 x k pool on ``(N, 1, L, C)``)."""
    win = _window(name, rank, window, stride, padding, dilation, ceil_mode)

    def apply(params: Any, x: Any, *, key: Any = None, train: bool = False) -> Array:
        no_params(name, params)
        del key, train
        y: Array = _reduce(name, win, rank, x, -np.inf,
                           lambda y, xk, k: np.maximum(y, xk, out=y))[0]
        return y if rank == 2 else y[:, 0]

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

        y, xa, pads = _reduce(name, win, rank, x, -np.inf, step)
        # one pass each, no temporary: maximum keeps a NaN, fmin ignores it
        if y.size and np.isnan(np.maximum.reduce(y, axis=None)):  # redo better, NaN-aware
            _reduce(name, win, 2, xa, -np.inf,  # xa is (N, H, W, C) for either rank
                    lambda y, xk, k: _nan_step(better[k - 1], y, xk))
        if pads != NO_PADS and y.size and np.fmin.reduce(y, axis=None) == -np.inf:
            _first_real_where_all_neg_inf(y, better, win, pads)
        x_shape, dtype = xa.shape, y.dtype
        out = y if rank == 2 else y[:, 0]
        out_shape = out.shape  # the pullback keeps the masks, not the output

        def pullback(dy: Array) -> tuple[Any, Array]:
            dy = check_cotangent(name, dy, out_shape, dtype)  # in y's (x's) float dtype
            dy = dy if rank == 2 else dy[:, None]
            wins = _winners(better)
            with np.errstate(over="ignore", invalid="ignore"):  # a huge sum: the masked path
                finite = np.isfinite(np.add.reduce(dy, axis=None))  # one pass, no temporary

            def share(k: int) -> Array:  # dy at the windows whose arg-max is offset k
                # a float mask: NumPy's masked copies (np.where, copyto(where=)) and
                # products with a bool run 3-40x slower on random masks; but a NaN or inf
                # dy times a 0 would be NaN at every cell of its window, not only its max
                return (dy if wins is None else np.multiply(dy, wins[k].astype(dtype))
                        if finite else np.where(wins[k], dy, dtype.type(0)))

            if finite:
                dx = scatter(x_shape, dtype, win, pads, share)
            else:  # overlapping windows add inf to -inf (NaN) or overflow, as torch silently
                with np.errstate(invalid="ignore", over="ignore"):
                    dx = scatter(x_shape, dtype, win, pads, share)
            return params, dx if rank == 2 else dx[:, 0]

        return out, pullback

    def vjp_then(params: Any, x: Any, act: Pointwise | None) -> Any:
        # z = act.f(pool(x)), dz through act.df first; Sequential also runs a ReLU before
        # the pool this way (see Layer.selects_max)
        y, pull = vjp(params, x)
        if act is None:
            return y, pull
        z = kept(act.f(y))
        z_shape, z_dtype = z.shape, z.dtype
        yr, zr = act.residuals(y, z)
        del y  # a ReLU's df reads z only: the pooled input need not outlive the forward

        def pullback(dz: Array) -> Any:
            return pull(act.df(yr, zr, check_cotangent(act.name, dz, z_shape, z_dtype)))

        return z, pullback

    return Layer(_pool_init(name, win, rank), apply, vjp, name=name, vjp_then=vjp_then,
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
    (sh, sw), (dh, dw), kw = win.stride, win.dilation, win.size[1]
    oh, ow = y.shape[1:3]
    # each window's first offset on a real row and column (a dilated window steps by d)
    i0 = (np.maximum(0, top - np.arange(oh) * sh) + dh - 1) // dh
    j0 = (np.maximum(0, left - np.arange(ow) * sw) + dw - 1) // dw
    k0 = i0[:, None] * kw + j0[None, :]
    neg = y == -np.inf
    for k, b in enumerate(better, 1):
        np.copyto(b, (k0 == k)[None, :, :, None], where=neg)


def AvgPool2D(window: int | tuple[int, int] = 2, stride: int | tuple[int, int] | None = None,
              padding: Any = "VALID", count_include_pad: bool | None = None, *,
              ceil_mode: bool = False) -> Layer:
    """Mean over each window, NHWC: ``(N, H, W, C) -> (N, OH, OW, C)``.

    forward: ``y[n,p,q,c] = Σ_{i,j} xp[n, p·sh + i, q·sw + j, c] / m[p,q]`` (xp: zero-padded);
    vjp: ``dx[n, p·sh + i, q·sw + j, c] += dy[n,p,q,c] / m[p,q]`` for every ``(i, j)``.

    ``m = kh·kw`` (padding counts as zeros) with ``count_include_pad=True``, and by default
    for explicit padding, as PyTorch's ``padding=int``; else the number of real pixels in
    the window: with False, and by default for ``'SAME'``, as TF, Keras and JAX's stax
    (Flax's ``avg_pool`` counts the padding). ``window`` defaults to 2 x 2 (Keras'
    ``pool_size``), ``stride`` to the window. ``ceil_mode``: PyTorch's output size (see the
    module docstring; not with ``'SAME'``); a last window running past the padded edge
    divides by its cells inside it (``count_include_pad=True``: input and padding) or by its
    real pixels (False), as PyTorch (``'VALID'`` is padding 0: its real pixels either way).
    """
    name = call_name("AvgPool2D", (window,), stride=(stride, None),
                     padding=(padding, "VALID"), count_include_pad=(count_include_pad, None),
                     ceil_mode=(ceil_mode, False))
    return avg_pool(name, 2, window, stride, padding, count_include_pad, ceil_mode)


def avg_pool(name: str, rank: int, window: Any, stride: Any, padding: Any,
             count_include_pad: Any, ceil_mode: Any) -> Layer:
    """AvgPool2D (rank 2) and AvgPool1D (rank 1, run as a 1 x k pool on ``(N, 1, L, C)``)."""
    win = _window(name, rank, window, stride, padding, 1, ceil_mode)
    count_include_pad = (win.padding != "SAME" if count_include_pad is None
                         else bool_arg(count_include_pad, name, "count_include_pad"))
    kh, kw = win.size

    def scale(x: Array, oh: int, ow: int, pads: Pads) -> float | Array:
        """``1 / m``: a Python float (keeps x's dtype) or an (1, OH, OW, 1) array of it."""
        past = win.ceil and any((o - 1) * s + k > n + lo + hi for o, n, k, s, (lo, hi) in
                                zip((oh, ow), x.shape[1:3], win.size, win.stride, pads))
        if not past and (count_include_pad or pads == NO_PADS):
            return 1.0 / (kh * kw)
        m = np.outer(*(counts(o, n, k, s, pad, count_include_pad) for o, n, k, s, pad in
                       zip((oh, ow), x.shape[1:3], win.size, win.stride, pads)))
        inv: Array = (1.0 / m).astype(x.dtype)[None, :, :, None]
        return inv

    def forward(x: Any) -> tuple[Array, Array, Pads, float | Array]:
        y, xa, pads = _reduce(name, win, rank, x, 0.0, lambda y, xk, k: np.add(y, xk, out=y))
        inv = scale(xa, y.shape[1], y.shape[2], pads)
        y *= inv
        return (y if rank == 2 else y[:, 0]), xa, pads, inv

    def apply(params: Any, x: Any, *, key: Any = None, train: bool = False) -> Array:
        no_params(name, params)
        del key, train
        return forward(x)[0]

    def vjp(params: Any, x: Any, *, key: Any = None, train: bool = False) -> Any:
        no_params(name, params)
        del key, train
        y, xa, pads, inv = forward(x)
        x_shape = xa.shape

        y_shape, y_dtype = y.shape, y.dtype  # not y, which the caller may free

        def pullback(dy: Array) -> tuple[Any, Array]:
            dy = check_cotangent(name, dy, y_shape, y_dtype)
            g = (dy if rank == 2 else dy[:, None]) * inv  # every offset's share
            dx = scatter(x_shape, g.dtype, win, pads, lambda k: g)
            return params, dx if rank == 2 else dx[:, 0]

        return y, pullback

    return Layer(_pool_init(name, win, rank), apply, vjp, name=name)


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
        y: Array = rows_sum(x.reshape(n, s, c))
        y *= 1.0 / s
        return y

    def vjp(params: Any, x: Any, *, key: Any = None, train: bool = False) -> Any:
        y = apply(params, x)
        x_shape = np.shape(x)
        inv = 1.0 / math.prod(x_shape[1:-1])

        y_shape, y_dtype = y.shape, y.dtype  # not y, which the caller may free

        def pullback(dy: Array) -> tuple[Any, Array]:
            dy = check_cotangent(name, dy, y_shape, y_dtype)
            g = (dy * inv).reshape(dy.shape[0], *([1] * (len(x_shape) - 2)), dy.shape[1])
            dx: Array = np.broadcast_to(g, x_shape).copy()
            return params, dx

        return y, pullback

    return Layer(init, apply, vjp, name=name)
