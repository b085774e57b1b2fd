"""Sparsemax (Martins & Astudillo 2016): the Euclidean projection of the input onto the
probability simplex along an axis, a softmax whose outputs can be exactly 0."""

from __future__ import annotations

import numpy as np

from funcdl._args import int_arg
from funcdl._simplex import simplex_projection, simplex_projection_vjp
from funcdl.layers.activations import along_axis
from funcdl.layers.base import Array, Layer

__all__ = ["Sparsemax"]


def Sparsemax(axis: int = -1) -> Layer:
    """``y = argmin_{p in simplex} |p - x|² = max(x - τ, 0)`` along ``axis`` (τ makes the
    entries sum to 1), any shape in and out; vjp ``dx = m (dy - Σ m dy / Σ m)``, m the
    support ``y > 0``. One sort along the axis, vectorised over every other."""
    a = int_arg(axis, "Sparsemax", "axis", None)
    name = f"Sparsemax(axis={a})"

    def forward(x: Array) -> tuple[Array, None]:
        if x.shape[a] == 0:  # nothing to project
            return x.copy(), None
        # the projection works on the last axis: moved there and back, views, no copy
        out: Array = np.moveaxis(simplex_projection(np.moveaxis(x, a, -1)), -1, a)
        return out, None

    def backward(y: Array, residual: None, dy: Array) -> Array:
        dx: Array = np.moveaxis(simplex_projection_vjp(
            np.moveaxis(y, a, -1), np.moveaxis(dy, a, -1)), -1, a)
        return dx

    return along_axis(name, a, forward, backward)
