"""k MPI ranks as threads over an in-process communicator: the collectives that
``parallel``'s agreement and ``_rank_sums.RankSums`` call (Allgather, and allgather on the
agreement's error path), counted, with a barrier timeout so that a wrong number of calls
fails instead of hanging; an Allreduce is an error (nothing here averages)."""

from __future__ import annotations

import threading
from typing import Any

import numpy as np


class World:
    def __init__(self, k: int) -> None:
        self.k, self.slots = k, [None] * k
        self.barrier = threading.Barrier(k, timeout=20)
        self.gathers = 0

    def comm(self, rank: int) -> Any:
        world = self

        class Comm:
            def Get_size(self) -> int:
                return world.k

            def Get_rank(self) -> int:
                return rank

            def Allgather(self, send: Any, recv: Any) -> None:
                world.slots[rank] = np.array(send, copy=True)
                world.barrier.wait()
                for i in range(world.k):
                    recv[i] = world.slots[i]
                if rank == 0:
                    world.gathers += 1
                world.barrier.wait()

            def allgather(self, v: Any) -> list[Any]:
                world.slots[rank] = v
                world.barrier.wait()
                every = list(world.slots)
                world.barrier.wait()
                return every

            def Allreduce(self, send: Any, recv: Any) -> None:
                raise AssertionError("an Allreduce: something was averaged")

        return Comm()
