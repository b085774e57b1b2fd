"""Volumetric pooling, channels last: MaxPool3D and AvgPool3D on ``(N, D, H, W, C)``.

Both are separable: the max (sum) over a ``kd x kh x kw`` box is the max (sum) over its kd
depths of the max (sum) over each depth's ``kh x kw`` window. So each runs the 2-D pool
(``pool.max_pool``, ``pool.avg_pool``) on the view ``(N·D, H, W, C)``, then the 1-D pool
along depth on its output viewed as ``(N, D, OH·OW·C)`` (every pixel's channels one wide
channel), and chains the two pullbacks: no copy of the input, no code of their own for the
window offsets, padding, ``ceil_mode``, ties or NaN. AvgPool's divisor factors as well: the
counted cells of a box are the product of the counted cells along each axis (``_pooling.
counts``, with or without the padding, and without a ``ceil_mode`` window's cells past it),
so the 2-D mean followed by the depth mean divides by the box's count. The plane goes first:
a tie then goes to the first maximum in ``(d, h, w)`` order, as PyTorch's MaxPool3d.
"""

from __future__ import annotations

import math
from typing import Any

from funcdl import random
from funcdl._args import bool_arg, call_name
from funcdl.layers._pooling import check_windows
from funcdl.layers._volume import LAYOUT, Volume, fit3, geometry3, rank_hint, volume_arg
from funcdl.layers._windows import Window
from funcdl.layers.base import Array, Layer, Shape, as_floats, check_cotangent, check_in_shape
from funcdl.layers.pool import avg_pool, max_pool

__all__ = ["AvgPool3D", "MaxPool3D"]


def _volume(name: str, window: Any, stride: Any, padding: Any, dilation: Any,
            ceil_mode: Any) -> Volume:
    """The pool's window, checked by the rules of the 2-D pools (``pool._window``)."""
    vol = volume_arg(name, "window", window, window if stride is None else stride, dilation,
                     padding, bool_arg(ceil_mode, name, "ceil_mode"))
    if vol.ceil and vol.padding == "SAME":
        raise ValueError(f"{name}: ceil_mode=True needs padding 'VALID' or explicit padding, "
                         f"got padding 'SAME' (which already gives ceil(in / stride) outputs); "
                         f"drop ceil_mode or pass padding='VALID' or an int")
    # a pad as wide as the window's extent would make windows of padding only
    if not isinstance(vol.padding, str) and any(p >= k for pair, k in zip(vol.padding,
                                                                          vol.extent())
                                                for p in pair):
        what = "window" if vol.dilation == (1, 1, 1) else "window's extent (k - 1)·dilation + 1"
        raise ValueError(f"{name}: padding must be smaller than the {what} {vol.extent()} on "
                         f"each side, got {vol.padding}")
    return vol


def _check_dilated(name: str, vol: Volume, shape: tuple[Any, ...], out: tuple[Any, ...],
                   pads: Any) -> None:
    """``_pooling.check_windows`` on the depth axis and the plane, naming the 5-D shape."""
    if vol.dilation == (1, 1, 1):
        return
    n, d, h, w, c = shape
    wins = [(Window((1, vol.size[0]), (1, vol.stride[0]), (1, vol.dilation[0]), "VALID"),
             (n, d, c), (1, out[0]), ((0, 0), pads[0])),
            (Window(*vol.plane(), "VALID"),
             (n, h, w, c), out[1:], pads[1:])]
    for win, view, o, p in wins:
        try:
            check_windows(name, win, view, o, p)
        except ValueError as e:
            raise ValueError(str(e).replace(str(view), str(tuple(shape)))) from None


def _pool3d(name: str, vol: Volume, plane: Layer, depth: Layer) -> Layer:
    """The 3-D pool: ``plane`` (a 2-D pool on ``(N·D, H, W, C)``), then ``depth`` (a 1-D
    pool on ``(N, D, OH·OW·C)``)."""

    def init(key: random.Key, in_shape: Shape) -> tuple[Shape, Any]:
        del key
        try:
            shape = check_in_shape(name, in_shape, rank=5, layout=LAYOUT)
        except ValueError as e:
            raise ValueError(f"{e}{rank_hint(tuple(in_shape), name[:3] + 'Pool2D')}") from None
        sizes, pads = fit3(name, vol, shape, "window")
        _check_dilated(name, vol, shape, sizes, pads)
        return (shape[0], *sizes, shape[-1]), ()

    def check(x: Any) -> tuple[Array, tuple[int, ...]]:
        """The input as floats, checked, and the output's shape."""
        x = as_floats(name, x)
        if x.ndim != 5:
            raise ValueError(f"{name}: expected an input {LAYOUT} of rank 5, got shape "
                             f"{x.shape}{rank_hint(x.shape, name[:3] + 'Pool2D')}")
        sizes, pads = geometry3(name, vol, x.shape, "window")
        _check_dilated(name, vol, x.shape, sizes, pads)
        return x, (x.shape[0], *sizes, x.shape[-1])

    def flat(x: Array) -> Array:
        n, d, h, w, c = x.shape
        return x.reshape(n * d, h, w, c)

    def apply(params: Any, x: Any, *, key: Any = None, train: bool = False) -> Array:
        del key, train
        x, y_shape = check(x)
        y2 = plane.apply(params, flat(x))
        y: Array = depth.apply(params, y2.reshape(*x.shape[:2], math.prod(y2.shape[1:])))
        return y.reshape(y_shape)

    def vjp(params: Any, x: Any, *, key: Any = None, train: bool = False) -> Any:
        del key, train
        x, y_shape = check(x)
        n, d = x.shape[:2]
        y2, pull2 = plane.vjp(params, flat(x))
        mid = y2.shape
        y, pull1 = depth.vjp(params, y2.reshape(n, d, math.prod(mid[1:])))
        del y2
        x_shape, y_dtype = x.shape, y.dtype
        y = y.reshape(y_shape)

        def pullback(dy: Array) -> tuple[Any, Array]:
            dy = check_cotangent(name, dy, y_shape, y_dtype)
            d2 = pull1(dy.reshape(n, y_shape[1], math.prod(mid[1:])))[1]
            dx = pull2(d2.reshape(mid))[1]
            return params, dx.reshape(x_shape)

        return y, pullback

    return Layer(init, apply, vjp, name=name)


def MaxPool3D(window: int | tuple[int, int, int] = 2,
              stride: int | tuple[int, int, int] | None = None, padding: Any = "VALID", *,
              dilation: int | tuple[int, int, int] = 1, ceil_mode: bool = False) -> Layer:
    """Max over each window, channels last: ``(N, D, H, W, C) -> (N, OD, OH, OW, C)``.

    forward: ``y[n,o,p,q,c] = max_{a,i,j} xp[n, o·sd + a·dd, p·sh + i·dh, q·sw + j·dw, c]``
    (xp: x padded with -inf), as ``max_a`` of MaxPool2D over each depth;
    vjp: ``dx[n, o·sd + a*·dd, p·sh + i*·dh, q·sw + j*·dw, c] += dy[n,o,p,q,c]`` at each
    window's arg-max ``(a*, i*, j*)`` (shifted back by the front/top/left padding).

    Ties: the first maximum in ``(d, h, w)`` order (smallest a, then i, then j) takes all
    of ``dy``; padding never does (a window that is all -inf sends its ``dy`` to its first
    real cell); a NaN is the maximum of its window, the last NaN in that order if several.
    As PyTorch's MaxPool3d (CPU) and MaxPool2D's rules on each axis. ``window`` defaults
    to 2 x 2 x 2, ``stride`` to the window; ``padding``: ``'VALID'``, ``'SAME'``, an int, a
    triple or ``((front, back), (top, bottom), (left, right))``, narrower than the window's
    extent; ``dilation`` and ``ceil_mode`` (not with 'SAME') as PyTorch's.
    """
    name = call_name("MaxPool3D", (window,), stride=(stride, None),
                     padding=(padding, "VALID"), dilation=(dilation, 1),
                     ceil_mode=(ceil_mode, False))
    vol = _volume(name, window, stride, padding, dilation, ceil_mode)
    size, steps, spread = vol.plane()
    plane = max_pool(name, 2, size, steps, vol.plane_padding(), spread, vol.ceil)
    depth = max_pool(name, 1, vol.size[0], vol.stride[0], vol.depth_padding(),
                     vol.dilation[0], vol.ceil)
    return _pool3d(name, vol, plane, depth)


def AvgPool3D(window: int | tuple[int, int, int] = 2,
              stride: int | tuple[int, int, int] | None = None, padding: Any = "VALID",
              count_include_pad: bool | None = None, *, ceil_mode: bool = False) -> Layer:
    """Mean over each window, channels last: ``(N, D, H, W, C) -> (N, OD, OH, OW, C)``.

    forward: ``y[n,o,p,q,c] = Σ_{a,i,j} xp[n, o·sd + a, p·sh + i, q·sw + j, c] / m[o,p,q]``
    (xp: zero-padded), as AvgPool2D over each depth, then the mean over depth;
    vjp: ``dx[n, o·sd + a, p·sh + i, q·sw + j, c] += dy[n,o,p,q,c] / m[o,p,q]``.

    ``m = md[o]·mh[p]·mw[q]``, each axis's count of the window's cells that count:
    ``count_include_pad=True`` (the default for explicit padding, as PyTorch's) counts the
    padding, False (the default for ``'SAME'``, as TF and Keras) the real cells only;
    ``ceil_mode`` (PyTorch's; not with 'SAME') as AvgPool2D's. ``window`` defaults to 2 x 2
    x 2, ``stride`` to the window; ``padding`` as MaxPool3D's, narrower than the window.
    """
    name = call_name("AvgPool3D", (window,), stride=(stride, None),
                     padding=(padding, "VALID"), count_include_pad=(count_include_pad, None),
                     ceil_mode=(ceil_mode, False))
    vol = _volume(name, window, stride, padding, 1, ceil_mode)
    count = (vol.padding != "SAME" if count_include_pad is None
             else bool_arg(count_include_pad, name, "count_include_pad"))
    size, steps, _ = vol.plane()
    plane = avg_pool(name, 2, size, steps, vol.plane_padding(), count, vol.ceil)
    depth = avg_pool(name, 1, vol.size[0], vol.stride[0], vol.depth_padding(), count,
                     vol.ceil)
    return _pool3d(name, vol, plane, depth)
