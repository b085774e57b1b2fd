"""k MPI ranks as threads over an in-process communicator: the collectives that
``parallel``'s agreement and ``_rank_sums.RankSums`` call (Allgather; allgather on the
agreement's error path; allreduce), each recorded in ``calls``, with a barrier timeout so
that a wrong number of calls fails instead of hanging. An Allreduce (of buffers: an average)
is an error: nothing simulated here averages."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from _threads_util import finishes, together


class World:
    def __init__(self, k: int) -> None:
        self.k, self.slots = k, [None] * k
        self.barrier = threading.Barrier(k, timeout=20)
        self.calls: list[str] = []

    @property
    def gathers(self) -> int:
        return self.calls.count("Allgather")

    def _exchange(self, rank: int, what: str, value: Any) -> list[Any]:
        """Every rank's ``value``, once all have come; rank 0 records the call."""
        self.slots[rank] = value
        self.barrier.wait()
        every = list(self.slots)
        if rank == 0:
            self.calls.append(what)
        self.barrier.wait()
        return every

    def comm(self, rank: int) -> Any:
        world = self

        class Comm:
            def Get_size(self) -> int:
                return world.k

            def Get_rank(self) -> int:
                return rank

            def Allgather(self, send: Any, recv: Any) -> None:
                for i, v in enumerate(world._exchange(rank, "Allgather",
                                                      np.array(send, copy=True))):
                    recv[i] = v

            def allgather(self, v: Any) -> list[Any]:
                return world._exchange(rank, "allgather", v)

            def allreduce(self, v: Any) -> Any:
                return sum(world._exchange(rank, "allreduce", v))

            def Allreduce(self, send: Any, recv: Any) -> None:
                raise AssertionError("an Allreduce: something was averaged")

        return Comm()

    def run(self, per_rank: Callable[[int, Any, int, int], Any],
            shares: Sequence[int]) -> list[Any]:
        """``per_rank(rank, comm, lo, hi)`` on every rank at once, a thread each, rank r
        holding rows [lo, hi) of a batch split by ``shares``: each rank's value, or the
        exception it raised. A rank still waiting after 30 s fails the test."""
        assert len(shares) == self.k
        bounds = np.cumsum([0, *shares]).tolist()
        out: list[Any] = [None] * self.k

        def work(r: int) -> None:
            try:
                out[r] = per_rank(r, self.comm(r), bounds[r], bounds[r + 1])
            except Exception as e:  # handed to the test
                out[r] = e

        error, _ = finishes(together(work, self.k))
        assert error is None, error
        return out
