"""Adaptive pools, channels last: AdaptiveAvgPool2D and AdaptiveMaxPool2D on ``(N, H, W, C)``,
AdaptiveAvgPool1D and AdaptiveMaxPool1D on ``(N, L, C)`` (PyTorch's ``nn.AdaptiveAvgPool2d``
and the rest, which take ``(N, C, H, W)`` and ``(N, C, L)``).

The output size is fixed and the windows fit it: output ``i`` of ``m`` along an axis of
``n`` pools ``[floor(i·n/m), ceil((i+1)·n/m))``, so windows may overlap and differ in size
by one (``_adaptive``). A 2-D pool runs along W, then along H; a 1-D one as a 2-D pool on
``(N, 1, L, C)`` whose H it keeps. Integers are pooled as float32; float32 stays float32.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from funcdl import random
from funcdl._args import call_name
from funcdl.layers._adaptive import avg_along, avg_along_t, max_along, output_size_arg
from funcdl.layers.base import (
    Array,
    Layer,
    Shape,
    as_floats,
    check_cotangent,
    check_in_shape,
    no_params,
)
from funcdl.layers.pool import MaxPool2D

__all__ = ["AdaptiveAvgPool1D", "AdaptiveAvgPool2D", "AdaptiveMaxPool1D", "AdaptiveMaxPool2D"]

_LAYOUT = {1: "(N, L, C)", 2: "(N, H, W, C)"}
_OFFSETS = 64  # the largest window run as MaxPool2D (see _adaptive's tiled)


def AdaptiveAvgPool2D(output_size: int | tuple[int | None, int | None]) -> Layer:
    """Mean over each adaptive window, NHWC: ``(N, H, W, C) -> (N, OH, OW, C)``.

    forward: ``y[n,p,q,c] = Σ_{i in I_p, j in J_q} x[n,i,j,c] / (|I_p|·|J_q|)``, with
    ``I_p = [floor(p·H/OH), ceil((p+1)·H/OH))`` and ``J_q`` alike along W;
    vjp: ``dx[n,i,j,c] = Σ_{p: i in I_p} Σ_{q: j in J_q} dy[n,p,q,c] / (|I_p|·|J_q|)``.
    ``output_size``: an int (both sides) or a pair ``(OH, OW)``, None in it keeping that
    side (PyTorch's). ``AdaptiveAvgPool2D(1)`` is a global average pool ``(N, 1, 1, C)``.
    """
    return _adaptive(call_name("AdaptiveAvgPool2D", (output_size,)), 2, output_size, False)


def AdaptiveMaxPool2D(output_size: int | tuple[int | None, int | None]) -> Layer:
    """Max over each adaptive window, NHWC: ``(N, H, W, C) -> (N, OH, OW, C)``.

    forward: ``y[n,p,q,c] = max_{i in I_p, j in J_q} x[n,i,j,c]`` (windows as
    AdaptiveAvgPool2D's); vjp: ``dx[n,i*,j*,c] += dy[n,p,q,c]`` at each window's arg-max.
    Ties: the first maximum in row-major window order takes all of ``dy``; a NaN is its
    window's maximum, the last NaN if several (both as PyTorch's CPU kernel, torch 2.13).
    ``output_size`` as AdaptiveAvgPool2D's.
    """
    return _adaptive(call_name("AdaptiveMaxPool2D", (output_size,)), 2, output_size, True)


def AdaptiveAvgPool1D(output_size: int) -> Layer:
    """Mean over each adaptive window, channels last: ``(N, L, C) -> (N, OL, C)``.

    forward: ``y[n,p,c] = Σ_{j in J_p} x[n,j,c] / |J_p|``,
    ``J_p = [floor(p·L/OL), ceil((p+1)·L/OL))``;
    vjp: ``dx[n,j,c] = Σ_{p: j in J_p} dy[n,p,c] / |J_p|``. ``output_size``: an int OL.
    """
    return _adaptive(call_name("AdaptiveAvgPool1D", (output_size,)), 1, output_size, False)


def AdaptiveMaxPool1D(output_size: int) -> Layer:
    """Max over each adaptive window, channels last: ``(N, L, C) -> (N, OL, C)``.

    forward: ``y[n,p,c] = max_{j in J_p} x[n,j,c]`` (``J_p`` as AdaptiveAvgPool1D's);
    vjp: ``dx[n,j*,c] += dy[n,p,c]`` at each window's arg-max ``j*`` (the first maximum;
    a NaN wins, the last NaN if several), as AdaptiveMaxPool2D. ``output_size``: an int.
    """
    return _adaptive(call_name("AdaptiveMaxPool1D", (output_size,)), 1, output_size, True)


def _adaptive(name: str, rank: int, output_size: Any, is_max: bool) -> Layer:
    """The four pools: rank 1 runs as rank 2 on ``(N, 1, L, C)`` with H kept."""
    sizes = output_size_arg(name, output_size, rank)
    wanted = sizes if rank == 2 else (None, *sizes)  # None: that axis' size kept

    def out_sides(h: Any, w: Any) -> tuple[Any, Any]:
        return (h if wanted[0] is None else wanted[0]), (w if wanted[1] is None else wanted[1])

    def init(key: random.Key, in_shape: Shape) -> tuple[Shape, Any]:
        del key
        shape = check_in_shape(name, in_shape, rank=rank + 2, layout=_LAYOUT[rank])
        if 0 in shape[1:-1]:
            raise ValueError(f"{name}: cannot pool an empty side, got in_shape {shape} "
                             f"(expected {_LAYOUT[rank]} with sides >= 1)")
        oh, ow = out_sides(*((shape[1], shape[2]) if rank == 2 else (1, shape[1])))
        return (shape[0], *((oh, ow) if rank == 2 else (ow,)), shape[-1]), ()

    def as_input(x: Any) -> Array:
        """``x`` checked, integers as float32, a 1-D input viewed as ``(N, 1, L, C)``."""
        a = as_floats(name, x)
        if a.ndim != rank + 2 or 0 in a.shape[1:-1]:
            raise ValueError(f"{name}: expected an input {_LAYOUT[rank]} of rank {rank + 2} "
                             f"with sides >= 1, got shape {a.shape}")
        return a if rank == 2 else a[:, None]

    def forward(x: Array, arg: bool) -> tuple[Array, Array | None, Array | None]:
        """``(y, row arg-max, column arg-max)`` on ``(N, H, W, C)``: the pool along W, then
        H; an arg-max is None (not computed) unless ``arg`` and is_max, and for a side kept
        as it is, else ``(N, OH, OW, C)`` rows and ``(N, H, OW, C)`` columns."""
        n, h, w, c = x.shape
        oh, ow = out_sides(h, w)
        z, cols = x, None
        if ow != w:
            x3 = x.reshape(n * h, w, c)
            z, cols = max_along(x3, ow, arg) if is_max else (avg_along(x3, ow), None)
        y, rows = z.reshape(n, h, ow, c), None
        if oh != h:
            z3 = y.reshape(n, h, ow * c)
            y, rows = max_along(z3, oh, arg) if is_max else (avg_along(z3, oh), None)
        y = (x.copy() if (oh, ow) == (h, w) else y).reshape(n, oh, ow, c)  # never x itself
        return (y, None if rows is None else rows.reshape(y.shape),
                None if cols is None else cols.reshape(n, h, ow, c))

    def apply(params: Any, x: Any, *, key: Any = None, train: bool = False) -> Array:
        no_params(name, params)
        del key, train
        xa = as_input(x)
        pool = tiled(xa.shape) if is_max else None
        y = forward(xa, False)[0] if pool is None else pool.apply((), xa)
        return y if rank == 2 else y[:, 0]

    pools: dict[tuple[int, int], Layer] = {}

    def tiled(shape: tuple[int, ...]) -> Layer | None:
        """MaxPool2D(H/OH, W/OW) when the windows tile x (OH | H, OW | W, one not kept)
        and are small: the same windows, maxima, ties and NaN rule (the first maximum in
        row-major order, the last NaN), by offsets instead of per-bin maxima: 8.8 -> 3.4-4.2 ms
        on a (64, 28, 28, 32) batch to 7 x 7 (benchmarks/pullback_micro.py). Not past
        64 offsets: a step and a kept mask each, where a global pool (1 x 1 of 64 x 64)
        takes two steps by bins."""
        h, w = shape[1], shape[2]
        oh, ow = out_sides(h, w)
        if h % oh or w % ow or (oh, ow) == (h, w) or (h // oh) * (w // ow) > _OFFSETS:
            return None
        if (h // oh, w // ow) not in pools:
            pools[h // oh, w // ow] = MaxPool2D((h // oh, w // ow))  # a few sizes per model
        return pools[h // oh, w // ow]

    def pooled_vjp(pool: Layer, params: Any, xa: Array) -> Any:
        y, pull = pool.vjp((), xa)
        out = y if rank == 2 else y[:, 0]
        out_shape, dtype = out.shape, y.dtype

        def pullback(dy: Array) -> tuple[Any, Array]:
            dy = check_cotangent(name, dy, out_shape, dtype)  # named as this layer's
            dx = pull(dy if rank == 2 else dy[:, None])[1]
            return params, dx if rank == 2 else dx[:, 0]

        return out, pullback

    def vjp(params: Any, x: Any, *, key: Any = None, train: bool = False) -> Any:
        no_params(name, params)
        del key, train
        xa = as_input(x)
        if is_max and (pool := tiled(xa.shape)) is not None:
            return pooled_vjp(pool, params, xa)
        y, rows, cols = forward(xa, True)
        x_shape, dtype = xa.shape, y.dtype
        out = y if rank == 2 else y[:, 0]
        target = _targets(x_shape, rows, cols) if is_max else None

        out_shape, y_shape = out.shape, y.shape  # not out, which the caller may free

        def pullback(dy: Array) -> tuple[Any, Array]:
            dy = check_cotangent(name, dy, out_shape, dtype)
            dy = dy if rank == 2 else dy[:, None]
            n, h, w, c = x_shape
            oh, ow = y_shape[1:3]
            if target is not None:  # each dy to its window's arg-max; colliding ones add
                dx = np.zeros(n * h * w * c, dtype)
                np.add.at(dx, target, dy.ravel())
                dx = dx.reshape(x_shape)
            elif is_max or (oh, ow) == (h, w):  # every side kept: the identity
                dx = dy.copy()
            else:
                g = dy if oh == h else avg_along_t(dy.reshape(n, oh, ow * c), h)
                dx = (g.reshape(n, h, ow, c) if ow == w
                      else avg_along_t(g.reshape(n * h, ow, c), w)).reshape(x_shape)
            return params, dx if rank == 2 else dx[:, 0]

        return out, pullback

    return Layer(init, apply, vjp, name=name)


def _targets(x_shape: tuple[int, ...], rows: Array | None, cols: Array | None
             ) -> Array | None:
    """The flat index into ``x`` (``(N, H, W, C)``) of each output's arg-max, or None when
    both sides were kept (the identity): its row from ``rows``, its column the arg-max of
    that row's pool along W (``cols`` at that row)."""
    if rows is None and cols is None:
        return None
    n, h, w, c = x_shape
    i = np.arange(h)[None, :, None, None] if rows is None else rows
    j = (np.arange(w)[None, None, :, None] if cols is None
         else cols if rows is None else np.take_along_axis(cols, rows, axis=1))
    flat = ((np.arange(n)[:, None, None, None] * h + i) * w + j) * c + np.arange(c)
    out: Array = flat.ravel()
    return out
