"""mpiexec -n 2: on each rank two threads, each on a communicator of its own
(COMM_WORLD.Dup()), run parallel.pmean on trees of three sizes (more windows than a
Reducer keeps) at once; then rank 0 alone moves its calls on COMM_WORLD to another thread.
Every result is the exact mean. Prints ``rank r ok threads``."""

from __future__ import annotations

import os
import sys
import threading

import numpy as np
from mpi4py import MPI

from funcdl import parallel

sys.setswitchinterval(1e-6)  # thread switches as often as CPython allows: races show
world = MPI.COMM_WORLD
rank, size = world.Get_rank(), world.Get_size()
comms = [world.Dup() for _ in range(2)]
errors: list[tuple[int, int]] = []


def worker(t: int, steps: int) -> None:
    held = []
    for i in range(steps):
        n = (10, 300, 5000)[i % 3] + 7 * t
        tree = {"a": np.full(n, float(rank + 1) * (i + 1), np.float32),
                "b": np.full(3, float(rank) + i, np.float32)}
        out = parallel.pmean(tree, comms[t])
        held = [*held[-1:], out]  # the last result kept, as a training loop keeps it
        if not (np.all(out["a"] == np.float32((i + 1) * (size + 1) / 2))
                and np.all(out["b"] == np.float32(i + (size - 1) / 2))):
            errors.append((t, i))


threads = [threading.Thread(target=worker, args=(t, int(sys.argv[1]))) for t in range(2)]
for th in threads:
    th.start()
for th in threads:
    th.join()

# One communicator's calls from another thread on one rank only (a pool's free worker):
# the same buffers and windows, so the ranks take the same path (a reducer per thread
# opened a window on rank 0 alone, and both hung).
for step in range(3):
    tree = {"a": np.full(5000, float(rank + 1), np.float32)}
    got: list[dict[str, np.ndarray]] = []
    if rank == 0:
        th = threading.Thread(target=lambda g=got, t=tree: g.append(parallel.pmean(t)))
        th.start()
        th.join()
    else:
        got.append(parallel.pmean(tree))
    if not np.all(got[0]["a"] == np.float32((size + 1) / 2)):
        errors.append((-1, step))
path = "allreduce" if os.environ.get("FUNCDL_MPI_SHARED_MEMORY") == "0" else "shared"
print(f"rank {rank} path {path}", flush=True)
if not errors:
    print(f"rank {rank} ok threads", flush=True)
else:
    print(f"rank {rank} wrong {errors[:5]}", flush=True)
