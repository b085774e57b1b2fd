"""Each rank's part of a data set, behind ``funcdl.parallel.batches`` and ``shard``: the
examples of ``funcdl.data.batches``'s global batches (or of the whole set), in the same
order from the same key, cut into ``size`` contiguous shares that differ by at most one
example, rank ``r`` taking the ``r``-th. No communication: every rank computes the same
order from the key and keeps its own share."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from funcdl import data
from funcdl._args import bool_arg, int_arg
from funcdl.random import Key

__all__ = ["batches", "shard"]


def batches(key: Key | None, *arrays: ArrayLike, batch_size: int, rank: int, size: int,
            shuffle: bool = True,
            drop_last: bool = False) -> Iterator[tuple[NDArray[Any], ...]]:
    """This rank's share of each global batch of ``funcdl.data.batches``.

    The global batches (``batch_size`` examples, ``>= size``) are those of
    ``data.batches(key, *arrays, batch_size=batch_size)``, same key (the same on every rank,
    a new one per epoch), same order, same ``shuffle`` and ``drop_last``. Each is split into
    ``size`` contiguous shares, rank ``r`` taking the ``r``-th, so every example lands on
    exactly one rank per epoch and K data-parallel steps see the data of K single-process
    steps. When ``size`` does not divide a global batch, the shares differ by at most one
    example (the first ranks take the extra ones); ``data_parallel`` weights the ranks by
    their counts, so the gradient is unchanged. A last global batch with fewer examples than
    ranks joins the one before it: no rank ever gets an empty batch. It may get one example:
    a BatchNorm in training refuses that (as in PyTorch), on that rank alone, and the others
    wait for it in the next sum (launch with ``python -m mpi4py`` so that an error stops
    every rank); with BatchNorm, pass ``drop_last=True``, leave at least ``2·size``
    examples in the last batch, or synchronise the statistics
    (``data_parallel(..., sync_batch_stats=True)``: the global batch's count then counts).
    """
    rank, size = _rank("parallel.batches", rank, size)
    global_batch = int_arg(batch_size, "parallel.batches", "batch_size", 1)
    if global_batch < size:
        raise ValueError(f"parallel.batches: the global batch_size {global_batch} is smaller "
                         f"than the {size} ranks, and every rank needs at least one example "
                         f"per step: use batch_size >= {size}, or fewer ranks")
    xs = data.examples("parallel.batches", key, arrays,
                       "batches(key, x, y, batch_size=256, rank=rank, size=size)")
    n = _enough("parallel.batches", len(xs[0]), size)
    order = data.shuffled("parallel.batches", key, n, shuffle, " (the same on every rank)")
    stop = n - n % global_batch if bool_arg(drop_last, "parallel.batches", "drop_last") else n
    starts = [*range(0, stop, global_batch), stop]
    if len(starts) > 2 and starts[-1] - starts[-2] < size:
        del starts[-2]  # the small remainder joins the previous global batch
    return _shares(xs, order, starts, rank, size)


def _shares(xs: list[NDArray[Any]], order: NDArray[np.int64] | None, starts: list[int],
            rank: int, size: int) -> Iterator[tuple[NDArray[Any], ...]]:
    for start, stop in itertools.pairwise(starts):
        base, extra = divmod(stop - start, size)
        lo = start + rank * base + min(rank, extra)
        hi = lo + base + (rank < extra)
        if order is None:
            yield tuple(a[lo:hi] for a in xs)
        else:
            rows = order[lo:hi]
            yield tuple(a[rows] for a in xs)


def shard(key: Key | None, *arrays: ArrayLike, rank: int, size: int,
          shuffle: bool = True) -> tuple[NDArray[Any], ...]:
    """This rank's share of the whole data set for one epoch: the ``n`` examples in the
    order of ``random.permutation(key, n)`` (as ``data.batches``'s; the same key on every
    rank, a new one per epoch, e.g. ``random.fold_in(key, epoch)``), cut into ``size``
    contiguous shares of ``n // size`` or ``n // size + 1`` examples, rank ``r`` taking the
    ``r``-th: every example lands on exactly one rank. ``shuffle=False`` (the key may then
    be None): the data's own order. Returns a tuple, one array of this rank's rows per
    array given."""
    where = "parallel.shard"
    rank, size = _rank(where, rank, size)
    xs = data.examples(where, key, arrays, "shard(key, x, y, rank=rank, size=size)")
    n = _enough(where, len(xs[0]), size)
    order = data.shuffled(where, key, n, shuffle, " (the same on every rank)")
    return next(_shares(xs, order, [0, n], rank, size))


def _rank(where: str, rank: Any, size: Any) -> tuple[int, int]:
    size = int_arg(size, where, "size", 1)
    rank = int_arg(rank, where, "rank")
    if rank >= size:
        raise ValueError(f"{where}: rank {rank} is not in [0, {size})")
    return rank, size


def _enough(where: str, n: int, size: int) -> int:
    if n < size:
        raise ValueError(f"{where}: {n} examples cannot be shared by {size} ranks (each "
                         f"needs at least one): use more data or fewer ranks")
    return n
