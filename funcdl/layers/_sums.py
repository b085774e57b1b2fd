"""Sums and per-channel broadcasts for the layers' hot paths: BLAS where it beats NumPy's
reductions (``block_sum``, ``ones @ dy``), and ``chan`` / ``per_row``, which apply a vector
along a short last axis as whole rows (benchmarks/broadcast_micro.py). Every BLAS product of
funcdl/layers goes through ``product`` (funcdl/_blas.py), so that a flag BLAS left raised
does not fail it (tests/test_sums.py checks each module's source)."""

from __future__ import annotations

import functools
import math
from typing import Any

import numpy as np
from numpy.typing import NDArray

from funcdl._blas import product as product  # the layers take it from here

Array = NDArray[Any]


# np.dot's C function behind its __array_function__ dispatcher (NEP 18): the same product
# without a Python-level call first; the operands here are always ndarrays.
dot = getattr(np.dot, "_implementation", np.dot)


_ONES: dict[np.dtype[Any], Array] = {}  # per dtype: the longest vector of ones asked for


@functools.lru_cache(maxsize=64)  # the lookup every Dense step makes: C's, not a dict's
def ones(n: int, dtype: np.dtype[Any]) -> Array:
    """A read-only vector of ``n`` ones: ``ones @ dy`` sums a batch in one BLAS call, which
    beats ``dy.sum(axis=0)`` on tall arrays; kept because every Dense step needs one, as
    the first ``n`` of one vector per dtype, so that the memory kept is about the longest
    asked for (vectors of their own in 64 cached sizes grew with every size seen: 76 MiB
    after 40 image sizes, a one-off tracemalloc measurement; views of bases that double
    hold at most twice the longest)."""
    v = _ONES.get(dtype)
    if v is None or v.size < n:
        v = np.ones(max(n, 2 * (0 if v is None else v.size)), dtype)
        v.flags.writeable = False
        _ONES[dtype] = v  # one assignment: a thread reading the old one keeps a good one
    return v[:n]


# Rows past which a sum over them goes in blocks (see rows_sum).
CASCADE = 2048


def rows_sum(a: Array) -> Array:
    """``Σ_i a[..., i, :]``, a fresh ``(..., C)`` array: ``ones @ a``, one BLAS product (a
    stack of them for leading axes). BLAS's float32 product adds the rows in turn, an error
    growing with their count; past ``CASCADE`` rows they go in ``k`` blocks of ``b`` ~
    sqrt(n) rows, summed by two products: the blocks as the rows of a (k, b·C) matrix (row
    i of every block together), then the b rows that makes: an error of about 2·sqrt(n)
    additions, not n (a bias gradient over 65,536 rows: 4.1e-6 -> 3.0e-7 relative, torch's
    and JAX's tree sums 8e-8; ``benchmarks/pullback_micro.py``). A stack of k products by
    block ran up to 2x slower than these two."""
    n = a.shape[-2]
    if n == 1:  # NumPy's matmul loops over a stack of 1-row products slowly: the row is all
        return a[..., 0, :].copy()
    if n <= CASCADE:  # a Dense bias's every step
        return product(dot if a.ndim == 2 else np.matmul, ones(n, a.dtype), a)
    b = block_of(n)
    m, c, lead = n - n % b, a.shape[-1], a.shape[:-2]
    blocks = a[..., :m, :].reshape(*lead, m // b, b * c)
    across = product(np.matmul, ones(m // b, a.dtype), blocks).reshape(*lead, b, c)
    out = product(np.matmul, ones(b, a.dtype), across)
    if m < n:
        out += rows_sum(a[..., m:, :])
    return out


def block_of(n: int) -> int:
    """The block size that sums n > ``CASCADE`` terms in about 2·sqrt(n) additions each: a
    power of 2 near sqrt(n)."""
    return 1 << ((n.bit_length() + 1) // 2)


# Columns per block of ``row_dots``: a sum in turn over at most this many products.
ROW_BLOCK = 256


def row_dots(a: Array, b: Array) -> Array:
    """``Σ_j a[i, j]·b[i, j]``, a fresh (rows,) array, for (rows, C) ``a`` and ``b``.
    ``np.einsum`` adds a row's C products in turn (in a few SIMD lanes): an error growing
    with C, 7e-5 relative for a mean square over 65,536 values near 1e4, where torch's is
    1e-7. Past ``2·ROW_BLOCK`` columns the row goes in blocks of ``ROW_BLOCK``, their
    partial sums added by NumPy's pairwise reduction: 1.4e-8 there, at einsum's speed."""
    rows, c = a.shape
    if c <= 2 * ROW_BLOCK:
        out: Array = np.einsum("ij,ij->i", a, b)
        return out
    m = c - c % ROW_BLOCK
    k = m // ROW_BLOCK  # not -1: rows may be 0
    part = np.einsum("ikj,ikj->ik", a[:, :m].reshape(rows, k, ROW_BLOCK),
                     b[:, :m].reshape(rows, k, ROW_BLOCK))
    out = np.add.reduce(part, axis=1)
    if m < c:
        out += np.einsum("ij,ij->i", a[:, m:], b[:, m:])
    return out


def block_sum(a: Array, lo: int, hi: int) -> Array:
    """Σ of ``a`` over every axis outside ``[lo, hi)``, a fresh array of shape
    ``a.shape[lo:hi]``: two matrix-vector products at most (``a`` as (pre, kept, post)).
    NumPy's ``a.sum(axis=...)`` over leading axes adds one slice at a time: on a
    (64, 28, 28, 16) float32 batch of values near 1e4, 20x slower than BLAS and its mean
    off by 0.14, where BLAS's blocked sum is off by one ulp."""
    pre, kept = math.prod(a.shape[:lo]), math.prod(a.shape[lo:hi])
    post = math.prod(a.shape[hi:])
    flat = a.reshape(pre * kept, post)
    rows = flat.reshape(pre, kept) if post == 1 else product(
        dot, flat, ones(post, a.dtype)).reshape(pre, kept)
    # one row is the sum already, fresh from the product (a view of ``a`` if post == 1)
    fresh = pre == 1 and post > 1
    out: Array = (rows if fresh else rows_sum(rows.reshape(pre, kept))).reshape(
        a.shape[lo:hi])
    return out


# Broadcasts along short rows. NumPy runs an elementwise op as an inner loop over the last
# axis; when an operand is broadcast along the other axes (a per-channel vector against
# NHWC, a per-row statistic against (rows, C)) that loop covers only C values, and for
# small C its per-call overhead dominates. benchmarks/broadcast_micro.py (its output in
# benchmarks/results/broadcast_micro.md, the run at 752d2fb), (50176, 16) float32, one
# thread: ``a + v`` 348 µs, tiled by chan 133, ``a + a`` 68 (no broadcast); ``a - m[:,
# None]`` 286, ``per_row`` 222.
_WIDE = 1024  # the width of a tiled row
_SHORT = 128  # rows at least this wide broadcast well as they are
# Below this many elements the tiling's own calls (np.tile, two ufuncs, reshapes) cost more
# than the broadcast saves: Dense(25) on 50 rows, the disk benchmark's, took 7 µs tiled (a
# one-off timing in commit 7f684f7's message, not kept) against 1.3 broadcast
# (broadcast_micro.md: ``a + v`` at 50 rows of 25, 1.28-1.29 µs in its three runs).
TILE_FROM = 1 << 14
# And at least this many rows: below them NumPy's broadcast was ahead at 25 to 64 channels
# (chan 1.1-1.3x its time at 1000-2000 rows), above them chan at 10 to 64 (benchmarks/
# results/broadcast_micro.md, the run before this threshold, at c20b010: the crossover at
# 1500-2500 rows).
TILE_ROWS = 2048


def chan(ufunc: np.ufunc, a: Array, v: Array, out: Array | None = None) -> Array:
    """``ufunc(a, v, out=out)`` for ``v`` broadcast against ``a`` (e.g. of shape
    ``(1, ..., 1, C)``: a bias, a per-channel scale), bitwise as NumPy's broadcast; fast
    when ``v`` runs along ``a``'s last axis only and that axis is short: ``a`` is then
    viewed as rows of ``reps·C`` values against ``v`` tiled ``reps`` times, every element
    going through the same single operation."""
    res: Array
    if a.size < TILE_FROM:  # the common small case first, in one comparison
        res = ufunc(a, v, out=out)
        return res
    c = a.shape[-1] if a.ndim else 0
    if (c < 2 or c >= _SHORT or a.size < TILE_ROWS * c or v.size != c
            or v.shape[-1:] != (c,) or a.ndim < 2
            or not a.flags.c_contiguous or (out is not None and not out.flags.c_contiguous)):
        res = ufunc(a, v, out=out)
        return res
    rows, reps = a.size // c, _WIDE // c
    cut = rows - rows % reps
    o = np.empty(a.shape, np.result_type(a, v)) if out is None else out
    a2, o2, v1 = a.reshape(rows, c), o.reshape(rows, c), v.reshape(c)
    if cut:
        wide = (-1, reps * c)
        ufunc(a2[:cut].reshape(wide), np.tile(v1, reps), out=o2[:cut].reshape(wide))
    if cut < rows:
        ufunc(a2[cut:], v1, out=o2[cut:])
    return o


def per_row(v: Array, width: int) -> Array:
    """``v`` (one value per row) as an operand against ``(rows, width)``: expanded to
    ``(rows, width)`` when the rows are short (``np.repeat``; benchmarks/broadcast_micro.py),
    else the broadcast ``v[:, None]``."""
    if width >= _SHORT:
        return v[:, None]
    out: Array = np.repeat(v, width).reshape(-1, width)
    return out
