"""Sparsemax (Martins & Astudillo 2016): the Euclidean projection of the input onto the
probability simplex along an axis, a softmax whose outputs can be exactly 0."""

from __future__ import annotations

from typing import Any

import numpy as np

from funcdl import random
from funcdl._args import int_arg
from funcdl._simplex import simplex_projection, simplex_projection_vjp
from funcdl.layers.base import (
    Array,
    Layer,
    Shape,
    as_floats,
    axis_in_range,
    check_cotangent,
    check_in_shape,
    kept,
    no_params,
)

__all__ = ["Sparsemax"]


def Sparsemax(axis: int = -1) -> Layer:
    """``y = argmin_{p in simplex} |p - x|² = max(x - τ, 0)`` along ``axis`` (τ makes the
    entries sum to 1), any shape in and out; vjp ``dx = m (dy - Σ m dy / Σ m)``, m the
    support ``y > 0``. One sort along the axis, vectorised over every other."""
    a = int_arg(axis, "Sparsemax", "axis", None)
    name = f"Sparsemax(axis={a})"

    def check(x: Any) -> Array:
        xa = as_floats(name, x)
        axis_in_range(name, a, xa.shape)
        return xa

    def forward(x: Array) -> Array:
        if x.shape[a] == 0:  # nothing to project
            return x.copy()
        # the projection works on the last axis: moved there and back, views, no copy
        out: Array = np.moveaxis(simplex_projection(np.moveaxis(x, a, -1)), -1, a)
        return out

    def apply(params: Any, x: Any, *, key: Any = None, train: bool = False) -> Array:
        no_params(name, params)
        del key, train
        return forward(check(x))

    def vjp(params: Any, x: Any, *, key: Any = None, train: bool = False) -> Any:
        no_params(name, params)
        del key, train
        y = kept(forward(check(x)))

        def pullback(dy: Any) -> tuple[Any, Array]:
            dy = check_cotangent(name, dy, y.shape, y.dtype)
            dx: Array = np.moveaxis(simplex_projection_vjp(
                np.moveaxis(y, a, -1), np.moveaxis(dy, a, -1)), -1, a)
            return params, dx

        return y, pullback

    def init(key: random.Key, in_shape: Shape) -> tuple[Shape, Any]:
        del key
        shape = check_in_shape(name, in_shape, min_rank=1)
        axis_in_range(name, a, shape)
        return shape, ()

    return Layer(init, apply, vjp, name=name)
