"""PixelShuffle and PixelUnshuffle: PyTorch's ``nn.PixelShuffle`` / ``nn.PixelUnshuffle``
translated to NHWC, so that on ``x_nhwc = x_nchw.transpose(0, 2, 3, 1)`` each gives the
transpose of torch's result.

Torch moves channel ``c·r² + i·r + j`` of pixel ``(h, w)`` to channel ``c`` of pixel
``(h·r + i, w·r + j)``. In NHWC the channel axis of ``C·r²`` entries, read in C order, is
therefore ``(C, r, r)`` indexed ``(c, i, j)``: PixelShuffle is one reshape to
``(N, H, W, C, r, r)``, one transpose to ``(N, H, r, W, r, C)`` and one reshape;
PixelUnshuffle is the inverse permutation. Both move entries and nothing else, so the vjp
of each is the other.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from funcdl import random
from funcdl._args import call_name, int_arg
from funcdl.layers.base import (
    Array,
    Layer,
    Shape,
    as_floats,
    check_in_shape,
    linear_map,
    no_params,
)

__all__ = ["PixelShuffle", "PixelUnshuffle"]


def _shuffle(x: Array, r: int) -> Array:
    """``(N, H, W, C·r²) -> (N, H·r, W·r, C)``, channel ``c·r² + i·r + j`` to pixel offset
    ``(i, j)``."""
    n, h, w, crr = x.shape
    c = crr // (r * r)
    t = x.reshape(n, h, w, c, r, r).transpose(0, 1, 4, 2, 5, 3)
    # np.array copies even where the transpose is a view (r = 1): y never aliases x
    return np.array(t).reshape(n, h * r, w * r, c)


def _unshuffle(x: Array, r: int) -> Array:
    """``(N, H·r, W·r, C) -> (N, H, W, C·r²)``, the inverse of ``_shuffle``."""
    n, hr, wr, c = x.shape
    h, w = hr // r, wr // r
    t = x.reshape(n, h, r, w, r, c).transpose(0, 1, 3, 5, 2, 4)
    return np.array(t).reshape(n, h, w, c * r * r)


def _rank4(name: str, shape: tuple[Any, ...], what: str) -> None:
    if len(shape) != 4:
        raise ValueError(f"{name}: expected {what} of rank 4, got {shape} "
                         f"(rank {len(shape)})")


def _layer(name: str, r: int, up: bool) -> Layer:
    """The shared body: ``up`` PixelShuffle, else PixelUnshuffle."""
    forward, backward = (_shuffle, _unshuffle) if up else (_unshuffle, _shuffle)

    def check_dims(shape: tuple[Any, ...]) -> None:
        if up:
            c = shape[3]
            if c is not None and c % (r * r):
                raise ValueError(f"{name}: expected a channel count divisible by r·r = "
                                 f"{r * r} (C·r² channels become C at r times the height "
                                 f"and width), got {c} channels in shape {shape}; give the "
                                 f"layer before it a multiple of {r * r} outputs")
            return
        bad = [(ax, d) for ax, d in (("H", shape[1]), ("W", shape[2]))
               if d is not None and d % r]
        if bad:
            raise ValueError(f"{name}: expected H and W divisible by {r}, got "
                             + ", ".join(f"{ax} = {d}" for ax, d in bad)
                             + f" in shape {shape}; crop or pad the input to a multiple "
                               f"of {r} (e.g. with Pad2D or Slice)")

    def init(key: random.Key, in_shape: Shape) -> tuple[Shape, Any]:
        del key
        shape = check_in_shape(name, in_shape)
        _rank4(name, shape, "an input shape (N, H, W, C)")
        check_dims(shape)
        n, h, w, c = shape
        if up:
            return (n, None if h is None else h * r, None if w is None else w * r,
                    None if c is None else c // (r * r)), ()
        return (n, None if h is None else h // r, None if w is None else w // r,
                None if c is None else c * r * r), ()

    def check(params: Any, x: Any) -> Array:
        no_params(name, params)
        a = as_floats(name, x)
        _rank4(name, a.shape, "an input (N, H, W, C)")
        check_dims(a.shape)
        return a

    return linear_map(name, init, check, lambda x: forward(x, r),
                      lambda dy, x_shape: backward(dy, r))


def PixelShuffle(upscale_factor: int) -> Layer:
    """Sub-pixel upsampling, torch's ``nn.PixelShuffle(r)`` in NHWC:
    ``(N, H, W, C·r²) -> (N, H·r, W·r, C)``; no params.

    forward: ``y[n, h·r + i, w·r + j, c] = x[n, h, w, c·r² + i·r + j]``;
    vjp: ``dx = PixelUnshuffle(r)(dy)`` (the inverse permutation).
    Integer inputs are moved as float32.
    """
    name = call_name("PixelShuffle", (upscale_factor,))
    return _layer(name, int_arg(upscale_factor, name, "upscale_factor", 1), True)


def PixelUnshuffle(downscale_factor: int) -> Layer:
    """Space-to-depth, torch's ``nn.PixelUnshuffle(r)`` in NHWC:
    ``(N, H·r, W·r, C) -> (N, H, W, C·r²)``; no params.

    forward: ``y[n, h, w, c·r² + i·r + j] = x[n, h·r + i, w·r + j, c]``;
    vjp: ``dx = PixelShuffle(r)(dy)`` (the inverse permutation).
    Integer inputs are moved as float32.
    """
    name = call_name("PixelUnshuffle", (downscale_factor,))
    return _layer(name, int_arg(downscale_factor, name, "downscale_factor", 1), False)
