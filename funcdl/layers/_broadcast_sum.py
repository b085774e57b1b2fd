"""``FanInSum(broadcast=True)``: a tuple summed with NumPy's broadcasting over its non-batch
axes, the entries of one rank. A diffusion U-Net adds its time embedding, (N, 1, 1, C),
into every pixel's features, (N, H, W, C), as PyTorch's ``h + temb[:, :, None, None]``;
the plain FanInSum refuses any two shapes that differ, so that a (N, 1) beside a (N,) is
never summed into a silent (N, N)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from funcdl import random
from funcdl.layers._route_trees import tuple_arrays, tuple_shapes
from funcdl.layers._step import POSITIONWISE
from funcdl.layers._sums import rows_sum
from funcdl.layers.base import (
    Array,
    Layer,
    as_floats,
    check_cotangent,
    in_input_dtype,
    like,
    no_params,
)

NAME = "FanInSum(broadcast=True)"
BROADCAST_HINT = ("; FanInSum(broadcast=True) broadcasts entries of one rank, e.g. an "
                  "(N, 1, 1, C) embedding into (N, H, W, C) features")
_FIX = ("; give each entry the output's rank with size 1 on the axes to broadcast, e.g. "
        "Reshape((1, 1, C)) on an (N, C) embedding added to (N, H, W, C)")


def out_shape(shapes: list[tuple[Any, ...]]) -> tuple[Any, ...]:
    """The broadcast shape of ``shapes`` (None: unknown), or a ValueError naming them: one
    rank, the batch axes alike, each other axis 1 or the output's size."""
    rank = len(shapes[0])
    if any(len(s) != rank for s in shapes):
        raise ValueError(f"{NAME}: inputs must have one rank, got {tuple(shapes)}{_FIX}")
    out: list[Any] = []
    for axis, sizes in enumerate(zip(*shapes)):
        known = {d for d in sizes if d is not None}
        big = known - {1} if axis else known  # the batch axis is never broadcast
        if len(big) > 1:
            what = "batch sizes" if axis == 0 else f"sizes on axis {axis}"
            raise ValueError(f"{NAME}: the {what} {sorted(big)} do not broadcast, in inputs "
                             f"of shapes {tuple(shapes)}{_FIX if axis else ''}")
        out.append(big.pop() if big else (None if None in sizes else 1))
    return tuple(out)


def summed_to(dy: Array, shape: tuple[int, ...]) -> Array:
    """``dy`` summed over the axes where ``shape`` has 1 and dy does not, kept as size 1:
    ``shape``. A block of such axes before the last (an (N, 1, 1, C) time embedding's) is
    one stacked BLAS row sum (``rows_sum``), as a bias gradient is."""
    axes = [i for i, (a, b) in enumerate(zip(shape, dy.shape)) if a == 1 and b != 1]
    if not axes:
        return dy
    lo, hi = axes[0], axes[-1] + 1
    # an empty dy (N = 0, or a 0 axis) takes NumPy's sum: a reshape cannot infer a -1 there
    if hi - lo == len(axes) and hi < dy.ndim and dy.size:  # one block, not the last axis
        pre, post = math.prod(dy.shape[:lo]), math.prod(dy.shape[hi:])
        return rows_sum(dy.reshape(pre, -1, post)).reshape(shape)
    return np.add.reduce(dy, axis=tuple(axes), keepdims=True)


def broadcast_sum() -> Layer:
    """``(x_1, ..., x_n) -> Σ_i x_i`` broadcast as NumPy does over the non-batch axes; the
    entries of one rank, their batch sizes equal; vjp: ``dx_i = dy`` summed over the axes
    x_i broadcast (its size 1 where y's is not), as ``jnp``'s ``unbroadcast``."""

    def init(key: random.Key, in_shapes: Any) -> tuple[Any, Any]:
        del key
        return out_shape(tuple_shapes(NAME, in_shapes)), ()

    def forward(params: Any, xs: Any) -> tuple[Array, list[Array]]:
        no_params(NAME, params)
        arrays = [as_floats(NAME, a) for a in tuple_arrays(NAME, xs)]
        out_shape([a.shape for a in arrays])
        total = arrays[0]
        for a in arrays[1:]:
            total = total + a
        return total, arrays

    def apply(params: Any, xs: Any, *, key: Any = None, train: bool = False) -> Array:
        del key, train
        return forward(params, xs)[0]

    def vjp(params: Any, xs: Any, *, key: Any = None, train: bool = False) -> Any:
        del key, train
        y, arrays = forward(params, xs)
        shapes = [a.shape for a in arrays]
        dtypes = [getattr(x, "dtype", None) for x in xs]  # each dx in its input's dtype
        box = type(xs)  # xs's container, not its arrays, which dx does not read
        y_shape, y_dtype = y.shape, y.dtype

        def pullback(dy: Any) -> tuple[Any, Any]:
            dy = check_cotangent(NAME, dy, y_shape, y_dtype)
            return params, like(box, [in_input_dtype(summed_to(dy, s), d)
                                      for s, d in zip(shapes, dtypes)])

        return y, pullback

    return Layer(init, apply, vjp, name=NAME, step=POSITIONWISE)
