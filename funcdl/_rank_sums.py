"""BatchNorm's batch statistics summed over MPI ranks, for ``parallel.sync_batch_stats``
and ``parallel.data_parallel(..., sync_batch_stats=True)``: the ``Replicas`` of
``funcdl.layers._slices`` over a communicator (PyTorch's SyncBatchNorm, Flax's BatchNorm
with ``axis_name``).

Each sum is one ``Allgather`` of the arrays packed as float64, added up in rank order on
every rank, so every rank gets the same bits (an ``Allreduce`` need not: MPI may add in
another order on each rank) and the ranks' running statistics stay equal. Sums of
cotangents are weighted by this rank's ``share`` of the examples (see ``_slices``).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray

from funcdl._agree import agree
from funcdl._reduce import Reducer

__all__ = ["RankSums", "step_sums"]


def step_sums(comm: Any, reducer: Reducer, params: Any, n: int, fn: str) -> RankSums:
    """The ``RankSums`` of one step of ``parallel.<fn>`` on ``n`` examples of this rank: the
    ranks first agree on the params (differing BatchNorms would exchange misaligned
    statistics, or fail inside MPI; the layout is one walk and a hash once seen) and learn
    each other's counts, hence this rank's share."""
    every = agree(comm, reducer.layout(params)[1].digest, params, fn, weight=n)
    total = sum(row[2] for row in every)
    return RankSums(comm, n / total if total else 1.0)


class RankSums:
    """Sums over the ranks of ``comm`` for one call of a data-parallel step, this rank
    holding ``share`` of the global batch's examples."""

    def __init__(self, comm: Any, share: float) -> None:
        self.comm, self.share = comm, share

    def sum(self, arrays: tuple[NDArray[Any], ...],
            cotangent: bool) -> tuple[NDArray[Any], ...]:
        # packed by hand, not by tree.ravel: its checks of every leaf (masked, foreign,
        # dtype kind) would cost more than the packing, at three sums per BatchNorm and
        # step, for arrays BatchNorm made itself
        flat = np.concatenate([np.asarray(a, np.float64).ravel() for a in arrays])
        # (a rank without examples has no cotangent to scale)
        w = self.share if cotangent and self.share else 1.0
        if w != 1.0:
            flat *= w
        every = np.empty((self.comm.Get_size(), flat.size), np.float64)
        self.comm.Allgather(flat, every)
        total = np.add.reduce(every, axis=0)  # in rank order: the same on every rank
        if w != 1.0:
            total /= w
        out, i = [], 0
        for a in arrays:
            t = total[i:i + a.size].reshape(a.shape).astype(a.dtype)
            t.flags.writeable = False
            out.append(t)
            i += a.size
        return tuple(out)
