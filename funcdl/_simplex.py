"""The Euclidean projection onto the probability simplex along the last axis (Martins &
Astudillo 2016, sparsemax) and its vjp: shared by ``funcdl.layers.Sparsemax`` and the
sparsemax losses, so neither imports the other's package."""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray

Array = NDArray[Any]
_sum = np.add.reduce  # ndarray.sum without its Python-level wrapper: the same reduction


def simplex_projection(x: Array) -> Array:
    """The projection ``p`` of ``x`` (see ``shifted_simplex_projection``)."""
    return shifted_simplex_projection(x)[0]


def shifted_simplex_projection(x: Array) -> tuple[Array, Array]:
    """``(p, z)``: ``p = max(z - τ, 0)`` along the last axis, ``z = x - max x``, with
    ``τ`` such that ``Σ p = 1``: the sorted ``z_(1) >= z_(2) >= ...`` keep the first ``k``
    where ``1 + k z_(k) > Σ_{i<=k} z_(i)`` (a prefix), and ``τ = (Σ_{i<=k} z_(i) - 1) / k``.
    One sort and one cumsum per call, no loop over rows. ``x`` has at least one entry on
    the last axis; ``z`` is returned for a caller that needs the shifted scores too."""
    # the shift makes the largest entry 0: the cumsum then adds small numbers, not 1e4s
    # whose rounding would move τ (and a NaN or inf row stays NaN, as Softmax gives it);
    # entries over the float range below the top become -inf, and then p = 0, exactly
    with np.errstate(invalid="ignore", over="ignore"):
        z = x - np.maximum.reduce(x, axis=-1, keepdims=True)
        desc = np.sort(z, axis=-1)[..., ::-1]
        # a sum or product past the float range is -inf only far below the top (the
        # support lies within 1 of it): its comparison is False, as the exact one would be
        cum = np.cumsum(desc, axis=-1)
        k = np.arange(1, x.shape[-1] + 1, dtype=x.dtype)
        size = _sum(1 + k * desc > cum, axis=-1, keepdims=True)  # >= 1: 1 + z_(1) > z_(1)
    size = np.maximum(size, 1)  # a NaN row compares False everywhere: no index -1
    tau = (np.take_along_axis(cum, size - 1, axis=-1) - 1) / size.astype(x.dtype)
    p: Array = np.maximum(z - tau, 0)
    return p, z


def simplex_projection_vjp(p: Array, dy: Array, *, overwrite: bool = False) -> Array:
    """``dx = m (dy - Σ m dy / Σ m)`` along the last axis, ``m = p > 0`` the support (an
    entry exactly at the threshold, ``p = 0``, is out of it: the one-sided derivative
    JAX's ``projection_simplex`` also takes). ``overwrite``: computed in ``dy``'s place."""
    # sign(p) is m as a float, and NaN in a NaN row (one whose entries are all -inf, say),
    # so that such a row's gradient is NaN, as the softmax's, not a silent 0
    m = np.sign(p)
    dx: Array = dy if overwrite else dy.astype(p.dtype)  # a fresh array unless overwrite
    dx *= m
    dx -= _sum(dx, axis=-1, keepdims=True) / np.maximum(_sum(m, axis=-1, keepdims=True), 1)
    dx *= m
    return dx
