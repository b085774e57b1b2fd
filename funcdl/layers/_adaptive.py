"""The adaptive pools' bins and their reductions along one axis of an ``(A, n, B)`` array
(the axis pooled in the middle, every other axis folded into A or B).

PyTorch's bins: output ``i`` of ``m`` over an axis of ``n`` reads ``[start_i, end_i)`` with
``start_i = floor(i·n/m)`` and ``end_i = ceil((i+1)·n/m)``; windows may overlap and differ in
size by one. A rectangle of bins is the product of its row bin and its column bin, so a
2-D adaptive pool is a 1-D pool along W, then one along H (``adaptive_pool``): the mean
of means, and the max of maxima, whose arg-max is the first maximum in row-major order
(the first row holding it, then its first column), as PyTorch's.

The mean along an axis is one BLAS product by the ``(m, n)`` 0/1 matrix of the bins'
cells, then a division by their sizes; its vjp the product by the transpose. (Prefix sums
differenced at the bins' ends give the same map, but NumPy's cumsum along a middle axis
runs one short row at a time: on (960, 30, 64) float32, 6.1 ms against the product's 0.4,
and a reshape-sum where m divides n 1.5 ms against 0.6, one-off timings.) An inf or NaN,
which the product would spread to every bin as 0·inf, is summed bin by bin instead. The
max is a loop over the m bins, each one reduction of its whole ``(A, size, B)`` slab.
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np

from funcdl._args import frozen, is_int, number, shown
from funcdl.layers._sums import CASCADE, block_of, product, rows_sum
from funcdl.layers.base import Array

__all__ = ["avg_along", "avg_along_t", "bins", "max_along", "output_size_arg"]


def output_size_arg(name: str, value: Any, rank: int) -> tuple[int | None, ...]:
    """``rank`` output sizes from an int (every axis) or ``rank`` of them; for rank 2 an
    entry may be None (that axis keeps its size, as PyTorch's). A TypeError for what is
    not that (2.5, '3', True, a pair for a 1-D pool), a ValueError for sizes below 1."""
    value = number(value)  # np.array(3): a 0-d array of one size
    vals = (value,) * rank if is_int(value) else value
    if isinstance(vals, (tuple, list)):
        vals = tuple(map(number, vals))
    many = ("a positive int or a pair of them (None in the pair keeps that axis' size)"
            if rank == 2 else "a positive int")
    if not (isinstance(vals, (tuple, list)) and len(vals) == rank
            and all(is_int(v) or (v is None and rank == 2) for v in vals)):
        raise TypeError(f"{name}: output_size must be {many}, got {shown(value)}")
    if any(v is not None and v < 1 for v in vals):
        raise ValueError(f"{name}: output_size must be {many}, got {shown(value)} (PyTorch "
                         f"gives an empty output for 0; no layer here makes one)")
    return tuple(None if v is None else int(v) for v in vals)


def bins(n: int, m: int) -> tuple[Array, Array]:
    """``(start, end)``, each ``(m,)``: bin i of ``m`` over ``n`` is ``[start_i, end_i)``."""
    i = np.arange(m)
    return i * n // m, ((i + 1) * n + m - 1) // m


@functools.lru_cache(maxsize=64)
def _members(n: int, m: int, dtype: np.dtype[Any]) -> Array:
    """The read-only ``(m, n)`` matrix of 0s and 1s whose row i marks bin i's cells."""
    start, end = bins(n, m)
    j = np.arange(n)
    return frozen(((j >= start[:, None]) & (j < end[:, None])).astype(dtype))


def _sizes(n: int, m: int, dtype: np.dtype[Any]) -> Array:
    """The bins' sizes as an ``(m, 1)`` column of ``dtype``."""
    start, end = bins(n, m)
    out: Array = (end - start).astype(dtype)[:, None]
    return out


def _bin_sums(x: Array, m: int) -> Array:
    """Each bin's sum, one whole ``(A, size, B)`` slab per bin (m is small)."""
    start, end = bins(x.shape[1], m)
    with np.errstate(over="ignore", invalid="ignore"):  # inf - inf: NaN, as PyTorch's
        return np.stack([rows_sum(x[:, s:e]) for s, e in zip(start, end)], axis=1)


def _member_sums(x: Array, members: Array) -> Array:
    """``members @ x``, each bin's sum. One product adds a bin's cells in turn, an error
    growing with their count (a global pool over 4M steps: 1.9e-5 relative, torch's 6e-8);
    bins of more than ``CASCADE`` cells go in k blocks of b ~ sqrt(n) cells: one product per
    block at once, (k, m, b) @ (A, k, b, B), the k partial sums then added by ``rows_sum``.
    The partials take k·m <= n/CASCADE·sqrt(n) rows, no more than x's n."""
    (a, n, c), m = x.shape, members.shape[0]
    if n <= CASCADE * m:
        out: Array = product(np.matmul, members, x)
        return out
    b = block_of(n)
    k = n // b
    blocks = members[:, :k * b].reshape(m, k, b).transpose(1, 0, 2)
    part = product(np.matmul, blocks, x[:, :k * b].reshape(a, k, b, c))  # (A, k, m, B)
    out = rows_sum(part.reshape(a, k, m * c)).reshape(a, m, c)
    if k * b < n:
        out += product(np.matmul, members[:, k * b:], x[:, k * b:])
    return out


def avg_along(x: Array, m: int) -> Array:
    """``y[a, i, b] = Σ_{j in bin i} x[a, j, b] / size_i``: ``(A, n, B) -> (A, m, B)``."""
    n = x.shape[1]
    with np.errstate(over="ignore", invalid="ignore"):
        y: Array = _member_sums(x, _members(n, m, x.dtype))
    # 0·inf is NaN: an inf or NaN in x makes every bin's sum non-finite (a finite y means a
    # finite x, and then y is right); those inputs are summed bin by bin instead, so that
    # only the windows that hold the inf are inf, as in PyTorch.
    if not np.isfinite(y).all():
        y = _bin_sums(x, m)
    y /= _sizes(n, m, x.dtype)
    return y


def avg_along_t(dy: Array, n: int) -> Array:
    """The adjoint of ``avg_along``: ``dx[a, j, b] = Σ_{i: j in bin i} dy[a, i, b] / size_i``,
    ``(A, m, B) -> (A, n, B)``."""
    a, m, b = dy.shape
    g = dy / _sizes(n, m, dy.dtype)
    if np.isfinite(g).all():
        dx: Array = product(np.matmul, _members(n, m, g.dtype).T, g)
        return dx
    dx = np.zeros((a, n, b), g.dtype)  # an inf or NaN in dy: bin by bin, as avg_along
    for i, (s, e) in enumerate(zip(*bins(n, m))):
        dx[:, s:e] += g[:, i:i + 1]
    return dx


@functools.lru_cache(maxsize=64)
def _ranks(size: int) -> Array:
    """``size, size - 1, ..., 1`` as a read-only ``(1, size, 1)`` array of small ints."""
    return frozen(np.arange(size, 0, -1, dtype=np.min_scalar_type(size))[None, :, None])


def max_along(x: Array, m: int, arg: bool = True) -> tuple[Array, Array | None]:
    """``y[a, i, b] = max_{j in bin i} x[a, j, b]`` and (``arg``) its arg-max ``j``, an
    index into n: ``(A, n, B) -> (A, m, B)`` twice. Ties: the first maximum; a NaN is the
    maximum of its bin, the last NaN if several (PyTorch's CPU kernel)."""
    a, n, b = x.shape
    start, end = bins(n, m)
    y = np.empty((a, m, b), x.dtype)
    idx = np.empty((a, m, b), np.intp) if arg else None
    # A loop over the m output bins: they overlap and differ in size, so no one strided
    # view holds them, and m is small (an adaptive pool's output side, 1 to ~7 in the
    # networks that use one); each step reduces a whole (A, size, B) slab at once.
    # One-off timings on (960, 30, 64) float32 slabs of 5: np.argmax along the middle axis
    # runs one short row at a time (1.75 ms a slab), while the max over the ranks of the cells
    # equal to the maximum (first = size - that) is three whole-slab passes (0.5 ms).
    for i, (s, e) in enumerate(zip(start, end)):
        seg = x[:, s:e]
        np.max(seg, axis=1, out=y[:, i])
        if idx is not None:
            top = (np.equal(seg, y[:, i:i + 1]) * _ranks(int(e - s))).max(axis=1)
            np.subtract(e, top, out=idx[:, i], casting="unsafe")
    if idx is not None and y.size and np.isnan(np.maximum.reduce(y, axis=None)):
        for i, (s, e) in enumerate(zip(start, end)):  # no cell equals NaN: the last NaN
            nan = np.isnan(x[:, s:e])
            last = e - 1 - nan[:, ::-1].argmax(axis=1)
            np.copyto(idx[:, i], last, where=nan.any(axis=1))
    return y, idx
